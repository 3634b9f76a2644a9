"""The micro-batching router: batches per host, replies to the right caller, bounded queues."""

from __future__ import annotations

import asyncio
import zlib

import pytest

from actors.cart_keys import order_id_for
from actors.router import BatchingRouter
from actors.runtime import Message, Reply, host_of, key_hash, ok, partition_of

pytestmark = pytest.mark.actors


def msg(i: int) -> Message:
    return ("cart", f"c{i}", "view", {"i": i}, None, None)


class SlowHosts:
    """Answers each message with its own ``i``; each call waits until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.release = asyncio.Event()
        self.called = asyncio.Event()

    async def __call__(self, host: int, batch: list[Message]) -> list[Reply]:
        self.calls.append((host, len(batch)))
        self.called.set()
        await self.release.wait()
        return [ok(m[3]["i"]) for m in batch]


async def test_messages_for_a_busy_host_travel_together_and_replies_find_their_callers() -> None:
    hosts = SlowHosts()
    router = BatchingRouter(hosts, n_hosts=1, max_delay=0.001, max_batch=1000, max_in_flight=1)
    first = asyncio.ensure_future(router.send(msg(0)))
    await asyncio.sleep(0)  # the first message leaves at once: nothing was in flight
    rest = [asyncio.ensure_future(router.send(msg(i))) for i in range(1, 200)]
    await asyncio.sleep(0.01)
    hosts.release.set()
    replies = await asyncio.gather(first, *rest)
    assert [r[1] for r in replies] == list(range(200))
    assert hosts.calls[0] == (0, 1) and sum(n for _, n in hosts.calls) == 200
    assert len(hosts.calls) <= 3  # 199 messages waited for the first call, then went together


async def test_a_full_queue_answers_overloaded_instead_of_growing() -> None:
    hosts = SlowHosts()
    router = BatchingRouter(hosts, n_hosts=1, max_delay=10.0, max_batch=1000, max_queue=5,
                            max_in_flight=1)
    first = asyncio.ensure_future(router.send(msg(0)))
    await hosts.called.wait()  # the first message is in flight...
    queued = [asyncio.ensure_future(router.send(msg(i))) for i in range(1, 6)]
    await asyncio.sleep(0)  # one loop turn: each queued send runs to its await
    assert len(router._queues[0]) == 5  # ...and five wait behind it
    refused = await router.send(msg(99))
    assert refused[0] == "err" and refused[1]["code"] == "overloaded"
    assert refused[1]["category"] == "unavailable"  # the gateway's 503 with Retry-After
    hosts.release.set()  # the first call returns: the queued ones go at once, not in 10 s
    assert [r[1] for r in await asyncio.gather(first, *queued)] == [0, 1, 2, 3, 4, 5]


async def test_a_host_that_dies_mid_call_fails_every_message_of_the_batch_cleanly() -> None:
    async def dead(host: int, batch: list[Message]) -> list[Reply]:
        raise ConnectionError("actor died")

    router = BatchingRouter(dead, n_hosts=2)
    replies = await asyncio.gather(*(router.send(msg(i)) for i in range(10)))
    assert {r[1]["code"] for r in replies} == {"host_unavailable"}


def test_actor_keys_map_to_partitions_by_a_stable_hash() -> None:
    # Python's hash() is salted per process; every process must agree on an actor's
    # partition, so it is CRC-32 of "kind:key" to 16 bits, modulo the 256 partitions: changing
    # it would move every actor's stored state to other keys.
    assert key_hash("cart", "c_1") == zlib.crc32(b"cart:c_1") & 0xFFFF
    assert partition_of("cart", "c_1") == key_hash("cart", "c_1") % 256
    assert host_of("inv", "sku-1", 7) == partition_of("inv", "sku-1") % 7


@pytest.mark.parametrize("hosts", [1, 2, 3, 5, 8])
def test_an_order_is_placed_on_the_host_of_the_cart_it_came_from(hosts: int) -> None:
    for i in range(50):
        cart_id = f"c_{i}"
        order_id = order_id_for(cart_id, f"key-{i}")
        assert host_of("order", order_id, hosts) == host_of("cart", cart_id, hosts)
    # Ids of another shape (older orders, tests' own) hash like any other key.
    assert key_hash("order", "ord_1") == zlib.crc32(b"order:ord_1") & 0xFFFF
