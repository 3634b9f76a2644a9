"""Persistence costs: O(change) writes and group commit (in-process placement, memory store)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.clock import ManualClock
from actors.service import CartService
from actors.settings import EngineSettings
from snapshots.codec import encode
from snapshots.memory_store import MemoryStore
from snapshots.store import Write
from tests.actors.harness import product

pytestmark = pytest.mark.actors


class RecordingStore(MemoryStore):
    """A memory store that keeps every batch it was asked to commit."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[Write]] = []

    async def commit(self, writes: list[Write]) -> list[int | None]:
        self.batches.append(writes)
        return await super().commit(writes)


def _bytes(w: Write) -> int:
    return sum(len(f) + len(encode(v)) for f, v in w.hset.items()) + sum(map(len, w.hdel))


async def _service(store: Any) -> CartService:
    return await CartService.in_process(store=store, clock=ManualClock(),
                                        settings=EngineSettings(), hosts=2)


async def test_a_new_reservation_writes_as_much_with_10000_open_as_with_none() -> None:
    store = RecordingStore()
    svc = await _service(store)
    await svc.put_product("hot", product("hot", stock=100_000))

    async def reserve(i: int) -> Write:
        await svc.call("inv", "hot-v0", "reserve", {"reservation_id": f"r{i:06d}", "quantity": 1,
                                                     "ttl": 600.0, "owner": f"c{i:06d}"})
        return store.batches[-1][-1]

    first = await reserve(0)
    for start in range(1, 10_001, 500):
        await asyncio.gather(*(reserve(i) for i in range(start, start + 500)))
    assert (await svc.stock("hot-v0"))["reserved"] == 10_001
    later = await reserve(10_001)
    # One field, the new reservation, whatever the ledger already holds.
    assert list(first.hset) == ["r:r000000"] and list(later.hset) == ["r:r010001"]
    assert _bytes(later) == _bytes(first)
    await svc.close()


async def test_concurrent_turns_share_one_commit() -> None:
    store = RecordingStore()
    svc = await _service(store)
    await svc.put_product("p", product("p", stock=1000))
    carts = [(await svc.active_cart(f"u{i}"))["cart"]["cart_id"] for i in range(100)]
    before = len(store.batches)
    await asyncio.gather(*(svc.add_item(f"u{i}", cid, product_id="p", quantity=1)
                           for i, cid in enumerate(carts)))
    batches = store.batches[before:]
    assert sum(len(b) for b in batches) == 100  # every turn persisted...
    assert len(batches) <= 4  # ...in a handful of round trips, not one per turn
    await svc.close()


async def test_a_failed_write_is_never_acknowledged_and_the_actor_reloads() -> None:
    store = MemoryStore()
    svc = await _service(store)
    await svc.put_product("p", product("p", stock=10))
    cid = (await svc.active_cart("zed"))["cart"]["cart_id"]
    await svc.add_item("zed", cid, product_id="p", quantity=1)
    store.fail_next = ConnectionError("redis went away")
    with pytest.raises(Exception) as e:
        await svc.add_item("zed", cid, product_id="p", quantity=5)
    assert getattr(e.value, "code", "") == "store_unavailable"
    # The change that could not be persisted is not visible: the actor reloaded its snapshot.
    assert (await svc.get_cart("zed", cid))["lines"][0]["quantity"] == 1
    await svc.close()
