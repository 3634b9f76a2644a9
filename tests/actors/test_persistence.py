"""Persistence: O(change) writes, group commit, failed and fenced writes (in-process placement).

The tests take the ``store`` fixture: a memory store here; tests/integration/test_redis_cluster.py
runs them again over a Redis Cluster.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.clock import ManualClock
from actors.service import CartService
from actors.settings import EngineSettings
from engine.errors import Unavailable
from snapshots.codec import encode
from snapshots.memory_store import MemoryStore
from snapshots.store import SnapshotStore, Write
from tests.actors.harness import product

pytestmark = pytest.mark.actors


class RecordingStore:
    """Any store, keeping every batch it was asked to commit; ``fail_next`` makes the next
    commit raise that exception instead (a store outage)."""

    def __init__(self, inner: SnapshotStore) -> None:
        self.inner = inner
        self.batches: list[list[Write]] = []
        self.fail_next: Exception | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, writes: list[Write]) -> list[int | None]:
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        self.batches.append(writes)
        return await self.inner.commit(writes)


@pytest.fixture
def store() -> RecordingStore:
    return RecordingStore(MemoryStore())


def _bytes(w: Write) -> int:
    return sum(len(f) + len(encode(v)) for f, v in w.hset.items()) + sum(map(len, w.hdel))


async def _service(store: Any) -> CartService:
    return await CartService.in_process(store=store, clock=ManualClock(),
                                        settings=EngineSettings(), hosts=2)


async def test_a_new_reservation_writes_as_much_with_10000_open_as_with_none(
        store: RecordingStore) -> None:
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


async def test_concurrent_turns_share_one_commit(store: RecordingStore) -> None:
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


async def test_a_failed_write_is_never_acknowledged_and_the_actor_reloads(
        store: RecordingStore) -> None:
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


async def test_a_host_that_lost_an_actor_cannot_overwrite_its_new_owner(
        store: RecordingStore) -> None:
    old = await _service(store)
    new = None
    try:
        await old.put_product("p", product("p", stock=10))
        cid = (await old.active_cart("ann"))["cart"]["cart_id"]
        await old.add_item("ann", cid, product_id="p", quantity=1)
        # Another engine over the same store takes the cart over (activation: a new epoch)...
        new = await _service(store)
        await new.put_product("p", product("p"))  # its catalog; the stock stays as it is
        assert (await new.get_cart("ann", cid))["lines"][0]["quantity"] == 1
        # ...so the old owner's next write is refused, and nothing of it is visible.
        with pytest.raises(Unavailable) as e:
            await old.add_item("ann", cid, product_id="p", quantity=4)
        assert e.value.code == "actor_moved"
        assert (await new.get_cart("ann", cid))["lines"][0]["quantity"] == 1
        view = await new.add_item("ann", cid, product_id="p", quantity=2)
        assert view["lines"][0]["quantity"] == 3
    finally:
        await old.close()
        if new is not None:
            await new.close()
