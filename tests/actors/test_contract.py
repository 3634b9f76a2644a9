"""Actor contract: the same behaviour on the in-process and the Ray placement (manual clock)."""

from __future__ import annotations

import asyncio

import pytest

from actors.service import CartService
from engine.errors import Conflict, NotFound, PaymentDeclined
from tests.actors.harness import Harness, product

pytestmark = pytest.mark.actors


async def _cart(h: Harness, owner: str = "alice") -> str:
    assert h.service is not None
    return str((await h.service.active_cart(owner))["cart"]["cart_id"])


async def test_turns_of_one_actor_run_one_at_a_time_in_arrival_order(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", stock=1000))
    cid = await _cart(harness)
    views = await asyncio.gather(*(svc.add_item("alice", cid, product_id="p", quantity=1)
                                   for _ in range(40)))
    # Each turn saw the previous one: versions 1..40 in order, quantity 1..40.
    assert [v["version"] for v in views] == list(range(1, 41))
    assert [v["lines"][0]["quantity"] for v in views] == list(range(1, 41))


async def test_one_active_cart_per_owner(harness: Harness, svc: CartService) -> None:
    first = await svc.active_cart("bob")
    again = await svc.active_cart("bob")
    assert first["created"] and not again["created"]
    assert first["cart"]["cart_id"] == again["cart"]["cart_id"]


async def test_inactive_cart_expires_and_releases_its_holds(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("flash", product("flash", hold_ttl=3600, stock=10))
    cid = await _cart(harness)
    await svc.add_item("alice", cid, product_id="flash", quantity=3)
    assert (await svc.stock("flash-v0"))["reserved"] == 3
    await harness.advance(1799)
    assert (await svc.get_cart("alice", cid))["status"] == "active"
    await harness.advance(2)
    # The cart did nothing for 30 minutes: expired, hold released, expiry persisted.
    assert (await svc.get_cart("alice", cid))["status"] == "expired"
    assert (await svc.stock("flash-v0"))["reserved"] == 0
    assert any(e["type"] == "cart.expired" and e["cart_id"] == cid for e in await svc.events())


async def test_activity_pushes_expiry_back(harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", stock=5))
    cid = await _cart(harness)
    await harness.advance(1500)
    await svc.add_item("alice", cid, product_id="p", quantity=1)
    await harness.advance(1500)
    assert (await svc.get_cart("alice", cid))["status"] == "active"


async def test_actor_activates_from_its_snapshot_after_a_restart(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", price=1250, stock=7))
    cid = await _cart(harness)
    await svc.add_item("alice", cid, product_id="p", quantity=2)
    await svc.add_item("alice", cid, product_id="p", quantity=1)
    svc = await harness.restart()
    cart = await svc.get_cart("alice", cid)
    assert cart["version"] == 2
    assert cart["lines"][0]["quantity"] == 3
    assert cart["lines"][0]["unit_price"] == {"amount": 1250, "currency": "USD"}
    assert (await svc.stock("p-v0"))["on_hand"] == 7
    # ... and the deadline survives too: it still expires on time.
    await harness.advance(1801)
    assert (await svc.get_cart("alice", cid))["status"] == "expired"


async def test_a_repeated_idempotency_key_answers_the_first_reply(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", stock=5))
    cid = await _cart(harness)
    a = await svc.add_item("alice", cid, product_id="p", quantity=1, request_id="k1",
                           fingerprint="f1")
    b = await svc.add_item("alice", cid, product_id="p", quantity=1, request_id="k1",
                           fingerprint="f1")
    assert a == b and b["lines"][0]["quantity"] == 1
    with pytest.raises(Conflict) as e:
        await svc.add_item("alice", cid, product_id="p", quantity=2, request_id="k1",
                           fingerprint="f2")
    assert e.value.code == "idempotency_key_reused"


async def test_another_owners_cart_is_not_found(harness: Harness, svc: CartService) -> None:
    cid = await _cart(harness)
    with pytest.raises(NotFound):
        await svc.get_cart("mallory", cid)


async def test_checkout_with_one_key_makes_one_order_and_sells_once(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", price=2500, stock=5))
    cid = await _cart(harness)
    await svc.add_item("alice", cid, product_id="p", quantity=2)
    first, second = await asyncio.gather(
        svc.checkout("alice", cid, payment_token="tok_ok", idempotency_key="K", fingerprint="x"),
        svc.checkout("alice", cid, payment_token="tok_ok", idempotency_key="K", fingerprint="x"))
    assert first == second and first["status"] == "paid"
    assert (await svc.stock("p-v0")) | {} == {"variant_id": "p-v0", "on_hand": 3, "reserved": 0,
                                              "available": 3, "sold": 2}
    assert (await svc.get_cart("alice", cid))["status"] == "checked_out"
    kinds = [e["type"] for e in await svc.events()]
    assert kinds.count("order.paid") == 1 and kinds.count("cart.checked_out") == 1


async def test_declined_payment_releases_every_reservation(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("a", product("a", stock=3))
    await svc.put_product("b", product("b", stock=3))
    cid = await _cart(harness)
    await svc.add_item("alice", cid, product_id="a", quantity=1)
    await svc.add_item("alice", cid, product_id="b", quantity=2)
    with pytest.raises(PaymentDeclined):
        await svc.checkout("alice", cid, payment_token="tok_declined", idempotency_key="d1")
    assert (await svc.stock("a-v0"))["available"] == 3
    assert (await svc.stock("b-v0"))["available"] == 3
    assert (await svc.get_cart("alice", cid))["status"] == "active"  # still usable
    order = await svc.checkout("alice", cid, payment_token="tok_ok", idempotency_key="d2")
    assert order["status"] == "paid"


async def test_a_line_that_cannot_be_reserved_reserves_none(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("a", product("a", stock=5))
    await svc.put_product("b", product("b", stock=1))
    cid = await _cart(harness)
    await svc.add_item("alice", cid, product_id="a", quantity=2)
    await svc.add_item("alice", cid, product_id="b", quantity=1)
    await svc.set_stock("b-v0", set=0)  # sold elsewhere since it was added
    with pytest.raises(Conflict) as e:
        await svc.checkout("alice", cid, payment_token="tok_ok", idempotency_key="o1")
    assert e.value.code == "out_of_stock"
    assert [d["variant_id"] for d in e.value.details] == ["b-v0"]
    assert (await svc.stock("a-v0"))["reserved"] == 0


async def test_concurrent_checkouts_never_oversell(harness: Harness, svc: CartService) -> None:
    await svc.put_product("hot", product("hot", stock=10))
    carts = [await _cart(harness, f"buyer{i}") for i in range(30)]
    for i, cid in enumerate(carts):
        await svc.add_item(f"buyer{i}", cid, product_id="hot", quantity=1)
    results = await asyncio.gather(*(
        svc.checkout(f"buyer{i}", cid, payment_token="tok_ok", idempotency_key=f"k{i}")
        for i, cid in enumerate(carts)), return_exceptions=True)
    paid = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, Conflict) and r.code == "out_of_stock"]
    assert len(paid) == 10 and len(refused) == 20
    stock = await svc.stock("hot-v0")
    assert stock["on_hand"] == 0 and stock["sold"] == 10 and stock["reserved"] == 0


async def test_unfinished_checkout_reservations_expire(harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", stock=4))
    await svc.call("inv", "p-v0", "reserve", {"reservation_id": "crashed/ln_1", "quantity": 4,
                                               "ttl": 600.0, "owner": "crashed"})
    assert (await svc.stock("p-v0"))["available"] == 0
    await harness.advance(601)
    assert (await svc.stock("p-v0"))["available"] == 4


async def test_a_sharded_variant_sells_every_unit_and_never_oversells(
        harness: Harness, svc: CartService) -> None:
    body = product("hot", stock=10)
    body["variants"][0]["shards"] = 4
    await svc.put_product("hot", body)
    parts = [await svc.call("inv", f"hot-v0#{k}", "status", {}) for k in range(4)]
    assert [p["on_hand"] for p in parts] == [3, 3, 2, 2]  # spread over the shards
    carts = [await _cart(harness, f"s{i}") for i in range(25)]
    for i, cid in enumerate(carts):
        await svc.add_item(f"s{i}", cid, product_id="hot", quantity=1)
    results = await asyncio.gather(*(
        svc.checkout(f"s{i}", cid, payment_token="tok_ok", idempotency_key=f"k{i}")
        for i, cid in enumerate(carts)), return_exceptions=True)
    assert sum(isinstance(r, dict) for r in results) == 10
    assert await svc.stock("hot-v0") == {"variant_id": "hot-v0", "on_hand": 0,
                                         "reserved": 0, "available": 0, "sold": 10}


async def test_the_shard_count_of_a_variant_that_held_stock_cannot_change(
        harness: Harness, svc: CartService) -> None:
    body = product("hot", stock=10)
    body["variants"][0]["shards"] = 4
    await svc.put_product("hot", body)
    resharded = product("hot")
    resharded["variants"][0]["shards"] = 2
    with pytest.raises(Conflict) as e:
        await svc.put_product("hot", resharded)
    assert e.value.code == "shards_in_use"
    assert e.value.details[0] == {"variant_id": "hot-v0", "shards": 4, "on_hand": 10,
                                  "reserved": 0, "available": 10, "sold": 0}
    # nothing changed: the product still has 4 shards and all 10 units
    assert svc.reference.catalog.get("hot").variants[0].shards == 4
    assert (await svc.stock("hot-v0"))["available"] == 10
    # a variant that never held stock may be re-sharded freely
    await svc.put_product("cold", product("cold"))
    cold = product("cold", stock=6)
    cold["variants"][0]["shards"] = 3
    await svc.put_product("cold", cold)
    assert (await svc.stock("cold-v0"))["available"] == 6


async def test_a_line_larger_than_any_shard_is_spread_over_shards(
        harness: Harness, svc: CartService) -> None:
    body = product("big", stock=8, hold_ttl=300)
    body["variants"][0]["shards"] = 4  # 2 units per shard
    await svc.put_product("big", body)
    cid = await _cart(harness, "whale")
    await svc.add_item("whale", cid, product_id="big", quantity=7)
    assert (await svc.stock("big-v0"))["reserved"] == 7
    order = await svc.checkout("whale", cid, payment_token="tok_ok", idempotency_key="w")
    assert order["status"] == "paid"
    assert (await svc.stock("big-v0"))["sold"] == 7
    other = await _cart(harness, "minnow")
    with pytest.raises(Conflict) as e:
        await svc.add_item("minnow", other, product_id="big", quantity=2)
    assert e.value.code == "out_of_stock" and e.value.details[0]["available"] == 1


async def test_an_expired_cart_cannot_change_or_check_out(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", stock=5))
    cid = await _cart(harness)
    await svc.add_item("alice", cid, product_id="p", quantity=1)
    await harness.advance(1801)
    with pytest.raises(Conflict) as e:
        await svc.checkout("alice", cid, payment_token="tok_ok", idempotency_key="late")
    assert e.value.code == "cart_not_active"
    with pytest.raises(Conflict):
        await svc.add_item("alice", cid, product_id="p", quantity=1)
    assert (await svc.stock("p-v0"))["sold"] == 0
    # The owner simply gets a new active cart.
    assert (await svc.active_cart("alice"))["cart"]["cart_id"] != cid


async def test_a_checkout_retried_with_its_key_after_a_provider_outage_goes_through(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", stock=3))
    cid = await _cart(harness)
    await svc.add_item("alice", cid, product_id="p", quantity=1)
    with pytest.raises(Exception) as outage:
        await svc.checkout("alice", cid, payment_token="tok_error", idempotency_key="same")
    assert getattr(outage.value, "code", "") == "payment_provider_error"
    order = await svc.checkout("alice", cid, payment_token="tok_ok", idempotency_key="same")
    assert order["status"] == "paid" and order["failure_reason"] is None
    assert (await svc.stock("p-v0"))["sold"] == 1


async def test_deadlines_kept_in_the_store_are_honoured_after_a_restart(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("flash", product("flash", hold_ttl=3600, stock=5))
    cid = await _cart(harness)
    await svc.add_item("alice", cid, product_id="flash", quantity=2)
    svc = await harness.restart()  # the timers died with the hosts
    await harness.advance(1801)  # nothing touches the cart: only the sweeper can find it
    assert (await svc.stock("flash-v0"))["reserved"] == 0
    assert any(e["type"] == "cart.expired" and e["cart_id"] == cid for e in await svc.events())
    assert (await svc.get_cart("alice", cid))["status"] == "expired"


async def test_checkout_with_a_stale_version_changes_nothing(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", stock=3))
    cid = await _cart(harness)
    view = await svc.add_item("alice", cid, product_id="p", quantity=1)
    with pytest.raises(Conflict) as e:
        await svc.checkout("alice", cid, payment_token="tok_ok", idempotency_key="v",
                           if_match=view["version"] - 1)
    assert e.value.code == "version_mismatch"
    assert (await svc.stock("p-v0"))["reserved"] == 0
    order = await svc.checkout("alice", cid, payment_token="tok_ok", idempotency_key="v2",
                               if_match=view["version"])
    assert order["status"] == "paid"
