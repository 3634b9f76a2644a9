"""The checkout saga's order step (in-process): the order is listed in its owner's index
beside its creation and payment, and a listing skips an id whose order is not stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from actors.cart_keys import order_id_for
from actors.clock import ManualClock
from actors.payments import TestPaymentProvider
from actors.runtime import partition_of
from actors.service import CartService
from engine.errors import Conflict, Unavailable
from snapshots.memory_store import MemoryStore
from snapshots.store import PARTITIONS, Write
from tests.actors.harness import product

pytestmark = pytest.mark.actors


class _Store(MemoryStore):
    """A memory store that logs its activations and commits (``log``: ``("activate", key)``
    and ``("commit", key)`` per write, in order) and refuses the next write of the keys in
    ``refuse`` (each once), as a store that lost them would."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str]] = []
        self.refuse: set[str] = set()

    async def activate(self, key: str, partition: int) -> tuple[int, dict[str, Any]]:
        self.log.append(("activate", key))
        return await super().activate(key, partition)

    async def commit(self, writes: list[Write]) -> list[int | None | Exception]:
        self.log.extend(("commit", w.key) for w in writes)
        refused = [w for w in writes if w.key in self.refuse]
        self.refuse -= {w.key for w in refused}
        kept = [w for w in writes if w not in refused]
        done = iter(await super().commit(kept))
        return [ConnectionError("lost") if w in refused else next(done) for w in writes]


class _Provider(TestPaymentProvider):
    """Records the order ids it authorized."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def authorize(self, order_id: str, amount: int, currency: str, token: str,
                        idempotency_key: str | None = None) -> dict[str, Any]:
        self.calls.append(order_id)
        return await super().authorize(order_id, amount, currency, token, idempotency_key)


#: What the `engine` fixture gives: the service, its store and its payment provider.
Engine = tuple[CartService, _Store, _Provider]


@pytest.fixture
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    """An in-process engine (2 hosts, or ``request.param``) over a `_Store`, paying through a
    `_Provider`, with product ``p`` of one unit in stock; closed after the test."""
    store, provider = _Store(), _Provider()
    svc = await CartService.in_process(store, clock=ManualClock(),
                                       hosts=getattr(request, "param", 2),
                                       payment_provider=provider)
    await svc.put_product("p", product("p", stock=1))
    yield svc, store, provider
    await svc.close()


async def _filled_cart(svc: CartService, owner: str) -> str:
    cid = str((await svc.active_cart(owner))["cart"]["cart_id"])
    await svc.add_item(owner, cid, product_id="p", quantity=1)
    return cid


@pytest.mark.parametrize("engine", [1, 2], indirect=True)
async def test_an_order_is_written_without_waiting_for_its_listing_and_listed_once(
        engine: Engine) -> None:
    svc, store, _ = engine
    cid = await _filled_cart(svc, "ann")
    store.log.clear()
    order = await svc.checkout("ann", cid, payment_token="tok_ok", idempotency_key="k")
    assert order["status"] == "paid"
    # the listing runs beside the order's creation, not inside its turn
    assert store.log.index(("commit", f"order:{order['order_id']}")) < \
        store.log.index(("commit", "orders:ann"))
    listed = await svc.list_orders("ann")
    assert [o["order_id"] for o in listed["items"]] == [order["order_id"]]
    again = await svc.checkout("ann", cid, payment_token="tok_ok", idempotency_key="k")
    assert again["order_id"] == order["order_id"]  # the recorded answer
    assert len((await svc.list_orders("ann"))["items"]) == 1


async def test_a_checkout_refused_for_stock_lists_nothing(engine: Engine) -> None:
    svc, store, provider = engine
    first, second = await _filled_cart(svc, "ann"), await _filled_cart(svc, "bo")
    await svc.checkout("ann", first, payment_token="tok_ok", idempotency_key="a")
    with pytest.raises(Conflict) as refused:
        await svc.checkout("bo", second, payment_token="tok_ok", idempotency_key="b")
    assert refused.value.code == "out_of_stock"
    loser = order_id_for(second, "b")
    assert f"order:{loser}" not in store.hashes and "orders:bo" not in store.hashes
    assert loser not in provider.calls
    assert (await svc.list_orders("bo"))["items"] == []


async def test_a_listing_skips_an_id_whose_order_is_not_stored(engine: Engine) -> None:
    svc, _, _ = engine
    cid = await _filled_cart(svc, "ann")
    order = await svc.checkout("ann", cid, payment_token="tok_ok", idempotency_key="k")
    await svc.call("orders", "ann", "add", {"order_id": "ord_ffff_never", "created_at":
                                             2e9})
    page = await svc.list_orders("ann")
    assert [o["order_id"] for o in page["items"]] == [order["order_id"]]


async def test_a_lost_listing_fails_the_checkout_and_its_retry_lists_the_paid_order(
        engine: Engine) -> None:
    svc, store, provider = engine
    cid = await _filled_cart(svc, "ann")
    store.refuse.add("orders:ann")
    with pytest.raises(Unavailable):
        await svc.checkout("ann", cid, payment_token="tok_ok", idempotency_key="k")
    oid = order_id_for(cid, "k")
    assert (await svc.get_order("ann", oid))["status"] == "paid"
    assert (await svc.call("orders", "ann", "page", {}))["order_ids"] == []
    assert (await svc.get_cart("ann", cid))["status"] == "active"  # not answered yet
    order = await svc.checkout("ann", cid, payment_token="tok_ok", idempotency_key="k")
    assert order["order_id"] == oid and order["status"] == "paid"
    assert provider.calls == [oid]  # charged once
    assert (await svc.stock("p-v0"))["sold"] == 1
    assert [o["order_id"] for o in (await svc.list_orders("ann"))["items"]] == [oid]
    assert (await svc.get_cart("ann", cid))["status"] == "checked_out"


async def test_a_first_try_creates_its_order_without_reading_the_store(engine: Engine) -> None:
    svc, store, _ = engine
    cid = await _filled_cart(svc, "ann")
    store.log.clear()
    order = await svc.checkout("ann", cid, payment_token="tok_ok", idempotency_key="k")
    key = f"order:{order['order_id']}"
    assert ("activate", key) not in store.log and ("commit", key) in store.log
    assert (await svc.get_order("ann", order["order_id"]))["status"] == "paid"


async def test_a_retry_whose_order_is_stored_but_not_in_memory_reads_it(engine: Engine) -> None:
    svc, store, provider = engine
    cid = await _filled_cart(svc, "ann")
    with pytest.raises(Unavailable):  # the provider failed: a retry may run it again
        await svc.checkout("ann", cid, payment_token="tok_error", idempotency_key="k")
    oid = order_id_for(cid, "k")
    for host in svc.placement.hosts:  # type: ignore[attr-defined]
        host.drop(set(range(PARTITIONS)))  # as after a restart: memory gone, store kept
    store.log.clear()
    order = await svc.checkout("ann", cid, payment_token="tok_ok", idempotency_key="k")
    assert order["order_id"] == oid and order["status"] == "paid"
    assert ("activate", f"order:{oid}") in store.log  # assumed new, refused, then read
    created = [e for e in await svc.events() if e["type"] == "order.created"]
    assert [e["order_id"] for e in created] == [oid]  # once: the refused write had none
    assert provider.calls == [oid, oid]  # the failed try, then this one


@pytest.mark.parametrize("engine", [1], indirect=True)
async def test_a_key_is_assumed_new_only_where_nothing_may_know_it(engine: Engine) -> None:
    svc, _, _ = engine
    host = svc.placement.hosts[0]  # type: ignore[attr-defined]
    cid = await _filled_cart(svc, "ann")
    assert not host.assume_new("cart", cid)  # in memory
    assert host.assume_new("order", "ord_0000aaaa")
    assert "order:ord_0000aaaa" in host.fresh
    host.drop({partition_of("order", "ord_0000aaaa")})  # its partition left
    assert "order:ord_0000aaaa" not in host.fresh
