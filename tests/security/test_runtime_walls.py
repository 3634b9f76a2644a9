"""Issue 9's defects inside the engine: one request's bad write, another caller's records,
writes for actors that do not exist, guest records that never expire."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from actors.clock import ManualClock
from actors.placement import LocalPlacement
from actors.runtime import partition_of
from actors.service import CartService
from actors.settings import EngineSettings
from engine.errors import DomainError, NotFound, Unavailable
from snapshots.redis_store import RedisStore, connect
from tests.actors.harness import product

pytestmark = pytest.mark.security


@pytest.fixture
async def svc(redis_url: str) -> AsyncIterator[CartService]:
    """An in-process engine over a real Redis (group commit is one pipeline per flush)."""
    store = RedisStore(connect(redis_url), "sec" + uuid.uuid4().hex[:8])
    placement = LocalPlacement(store, ManualClock(1.8e9), EngineSettings(), n_hosts=1)
    await placement.start()
    service = CartService(placement, store)
    await service.put_product("p", product("p", stock=10_000))
    yield service
    await service.close()
    await store.clear()
    await store.close()


async def _cart(svc: CartService, owner: str) -> str:
    return str((await svc.active_cart(owner))["cart"]["cart_id"])


async def test_a_write_the_store_cannot_hold_fails_alone_and_concurrent_writers_commit(
        svc: CartService) -> None:
    owners = [f"u{i}" for i in range(24)]
    carts = {o: await _cart(svc, o) for o in owners}
    lines = {o: (await svc.add_item(o, carts[o], product_id="p", quantity=9))["lines"][0]
             ["line_id"] for o in owners}
    bad = await _cart(svc, "mallory")
    for n in (8, 7, 6):
        # An If-Match of 2**100 with an Idempotency-Key: the refusal quotes the version, and
        # its record is written with the turn: a value msgpack cannot carry. Past the gateway's
        # validation it must fail alone, in the same group commit as the others' changes
        # (lowering a quantity asks no other actor, so they all commit in one flush).
        poisoned = svc.add_item("mallory", bad, product_id="p", quantity=1, if_match=2**100,
                                request_id=uuid.uuid4().hex, fingerprint="f")
        changes = [svc.set_quantity(o, carts[o], lines[o], n) for o in owners]
        results = await asyncio.gather(poisoned, *changes, return_exceptions=True)
        assert isinstance(results[0], DomainError)
        assert all(isinstance(r, dict) for r in results[1:]), \
            [r for r in results[1:] if not isinstance(r, dict)]
    for o in owners:  # every acknowledged change is there
        got = (await svc.get_cart(o, carts[o]))["lines"]
        assert [ln["quantity"] for ln in got] == [6]


async def test_another_caller_cannot_push_out_the_owners_idempotency_records(
        svc: CartService) -> None:
    cid = await _cart(svc, "alice")
    first = await svc.add_item("alice", cid, product_id="p", quantity=1, request_id="k1",
                               fingerprint="f1")
    for i in range(100):  # someone else's requests at alice's cart, each with its own key
        with pytest.raises(NotFound):
            await svc.add_item(f"mallory{i % 3}", cid, product_id="p", quantity=1,
                               request_id=f"m{i}", fingerprint="f")
    again = await svc.add_item("alice", cid, product_id="p", quantity=1, request_id="k1",
                               fingerprint="f1")
    assert again == first and again["lines"][0]["quantity"] == 1  # answered, not added twice


async def test_requests_at_a_made_up_cart_leave_nothing_in_the_store(
        svc: CartService) -> None:
    store = svc.store
    assert isinstance(store, RedisStore)
    for i in range(5):
        with pytest.raises(NotFound):
            await svc.add_item("mallory", "c_madeup", product_id="p", quantity=1,
                               request_id=f"k{i}", fingerprint="f")
    key = store.actor_key("cart:c_madeup", partition_of("cart", "c_madeup"))
    assert await store.r.exists(key) == 0


async def test_a_guest_user_record_expires_and_a_registered_one_is_kept(
        svc: CartService) -> None:
    store = svc.store
    assert isinstance(store, RedisStore)
    for owner in ("guest_" + uuid.uuid4().hex[:20], "alice"):
        await _cart(svc, owner)
    guest = [k async for k in store.r.scan_iter(match=f"{store.prefix}:*:a:user:guest_*")]
    alice = store.actor_key("user:alice", partition_of("user", "alice"))
    assert len(guest) == 1
    ttl = await store.r.ttl(guest[0])
    assert 0 < ttl <= EngineSettings().guest_retention
    assert await store.r.ttl(alice) == -1  # kept: a registered shopper's saved items


async def test_a_store_outage_still_fails_every_waiter_of_the_batch_cleanly(
        svc: CartService) -> None:
    cid = await _cart(svc, "bob")
    store = svc.store
    assert isinstance(store, RedisStore)
    real = store.commit

    async def down(writes):  # type: ignore[no-untyped-def]
        raise ConnectionError("redis is down")

    store.commit = down  # type: ignore[method-assign]
    try:
        with pytest.raises(Unavailable) as e:
            await svc.add_item("bob", cid, product_id="p", quantity=1)
        assert e.value.code == "store_unavailable"
    finally:
        store.commit = real  # type: ignore[method-assign]
    assert (await svc.get_cart("bob", cid))["lines"] == []  # nothing acknowledged, nothing kept
