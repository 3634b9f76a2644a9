"""Commerce rules that span actors: usage limits, guest merge, saved for later, holds."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from actors.clock import ManualClock
from actors.placement import LocalPlacement
from actors.service import CartService
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.stock import COMMITTED_MEMORY
from snapshots.memory_store import MemoryStore
from tests.actors.harness import SETTINGS, START, Harness, product

pytestmark = pytest.mark.actors


async def _cart(h: Harness, owner: str) -> str:
    assert h.service is not None
    return str((await h.service.active_cart(owner))["cart"]["cart_id"])


async def test_a_coupon_limited_to_k_uses_is_used_exactly_k_times(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", price=5000, stock=100))
    await svc.put_promotion("few", {"kind": "percentage", "value": 1000, "code": "FEW",
                                    "usage_limit": 5})
    carts = []
    for i in range(20):
        cid = await _cart(harness, f"u{i}")
        await svc.add_item(f"u{i}", cid, product_id="p", quantity=1)
        await svc.add_code(f"u{i}", cid, "few")
        carts.append(cid)
    results = await asyncio.gather(*(
        svc.checkout(f"u{i}", cid, payment_token="tok_ok", idempotency_key=f"k{i}")
        for i, cid in enumerate(carts)), return_exceptions=True)
    paid = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(paid) == 5 and {r.code for r in refused} == {"usage_limit_reached"}
    assert len(refused) == 15
    assert (await svc.call("promo", "few", "usage", {}))["used"] == 5
    assert (await svc.stock("p-v0"))["sold"] == 5  # refused checkouts released their stock


async def test_a_declined_payment_gives_the_coupon_use_back(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", price=5000, stock=10))
    await svc.put_promotion("once", {"kind": "fixed", "value": 500, "currency": "USD",
                                     "code": "ONCE", "usage_limit": 1})
    cid = await _cart(harness, "ann")
    await svc.add_item("ann", cid, product_id="p", quantity=1)
    await svc.add_code("ann", cid, "ONCE")
    with pytest.raises(Exception) as declined:
        await svc.checkout("ann", cid, payment_token="tok_declined", idempotency_key="a")
    assert getattr(declined.value, "code", "") == "payment_declined"
    assert (await svc.call("promo", "once", "usage", {}))["held"] == 0
    order = await svc.checkout("ann", cid, payment_token="tok_ok", idempotency_key="b")
    assert order["totals"]["discount"]["amount"] == 500


async def test_a_per_customer_limit_counts_each_customer(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", price=3000, stock=10))
    await svc.put_promotion("welcome", {"kind": "percentage", "value": 1500,
                                        "code": "WELCOME", "per_customer_limit": 1})
    cid = await _cart(harness, "bea")
    await svc.add_item("bea", cid, product_id="p", quantity=1)
    await svc.add_code("bea", cid, "welcome")
    await svc.checkout("bea", cid, payment_token="tok_ok", idempotency_key="1")
    cid2 = await _cart(harness, "bea")
    await svc.add_item("bea", cid2, product_id="p", quantity=1)
    with pytest.raises(ValidationFailed) as e:
        await svc.add_code("bea", cid2, "welcome")
    assert e.value.code == "usage_limit_reached"


async def test_group_only_promotions_need_the_group(harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", price=10000, stock=10))
    await svc.put_promotion("gold", {"kind": "percentage", "value": 2000, "code": "GOLD",
                                     "customer_groups": ["gold"]})
    cid = await _cart(harness, "cid")
    await svc.add_item("cid", cid, product_id="p", quantity=1)
    with pytest.raises(ValidationFailed) as e:
        await svc.add_code("cid", cid, "GOLD")
    assert e.value.code == "customer_not_eligible"
    view = await svc.add_code("cid", cid, "GOLD", groups=["gold"])
    assert view["totals"]["discount"]["amount"] == 2000


async def test_guest_cart_merges_into_the_users_cart_once(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("a", product("a", price=1000, stock=4))
    await svc.put_product("b", product("b", price=2000, stock=10))
    guest = await _cart(harness, "guest_x")
    await svc.add_item("guest_x", guest, product_id="a", quantity=3)
    await svc.add_item("guest_x", guest, product_id="b", quantity=1)
    mine = await _cart(harness, "dan")
    await svc.add_item("dan", mine, product_id="a", quantity=2)
    out = await svc.merge("dan", mine, "guest_x", strategy="sum")
    lines = {ln["variant_id"]: ln["quantity"] for ln in out["cart"]["lines"]}
    # a: 2 + 3 = 5 wanted, only 4 in stock: clamped and reported.
    assert lines == {"a-v0": 4, "b-v0": 1}
    assert out["report"]["clamped"] == [{"variant_id": "a-v0", "requested": 5, "quantity": 4,
                                         "reason": "stock"}]
    assert (await svc.get_cart("guest_x", guest))["status"] == "merged"
    again = await svc.merge("dan", mine, "guest_x")
    assert again["report"]["already_merged"] is True
    assert {ln["variant_id"]: ln["quantity"] for ln in again["cart"]["lines"]} == lines


@pytest.mark.parametrize("strategy,expected", [("larger", 3), ("keep_user", 2)])
async def test_merge_strategies(
        harness: Harness, strategy: str, expected: int, svc: CartService) -> None:
    await svc.put_product("a", product("a", stock=50))
    guest = await _cart(harness, "guest_y")
    await svc.add_item("guest_y", guest, product_id="a", quantity=3)
    mine = await _cart(harness, "eve")
    await svc.add_item("eve", mine, product_id="a", quantity=2)
    out = await svc.merge("eve", mine, "guest_y", strategy=strategy)
    assert out["cart"]["lines"][0]["quantity"] == expected


async def test_saved_for_later_moves_a_line_out_and_back(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", price=1500, hold_ttl=600, stock=5))
    cid = await _cart(harness, "fay")
    view = await svc.add_item("fay", cid, product_id="p", quantity=2)
    line_id = view["lines"][0]["line_id"]
    assert (await svc.stock("p-v0"))["reserved"] == 2
    out = await svc.save_for_later("fay", cid, line_id)
    assert out["cart"]["lines"] == []
    assert (await svc.stock("p-v0"))["reserved"] == 0  # the hold went with the line
    [item] = out["saved"]["items"]
    assert (item["variant_id"], item["quantity"]) == ("p-v0", 2)
    back = await svc.move_to_cart("fay", item["item_id"])
    assert back["cart"]["lines"][0]["quantity"] == 2 and back["saved"]["items"] == []
    with pytest.raises(NotFound):
        await svc.move_to_cart("fay", item["item_id"])


async def test_holds_are_renewed_by_activity_and_lapse_without_it(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("hot", product("hot", hold_ttl=300, stock=3))
    await svc.put_product("x", product("x", stock=100))
    cid = await _cart(harness, "gil")
    await svc.add_item("gil", cid, product_id="hot", quantity=1)
    await harness.advance(200)
    await svc.add_item("gil", cid, product_id="x", quantity=1)  # activity renews the hold
    await harness.advance(200)
    assert (await svc.stock("hot-v0"))["reserved"] == 1
    await harness.advance(301)  # no activity: the hold lapses, the line stays
    assert (await svc.stock("hot-v0"))["reserved"] == 0
    cart = await svc.get_cart("gil", cid)
    assert len(cart["lines"]) == 2 and cart["lines"][0]["held"] is False


async def test_a_hold_becomes_the_checkout_reservation(harness: Harness, svc: CartService) -> None:
    await svc.put_product("hot", product("hot", hold_ttl=300, stock=1))
    cid = await _cart(harness, "hal")
    await svc.add_item("hal", cid, product_id="hot", quantity=1)
    other = await _cart(harness, "ivy")
    with pytest.raises(Conflict) as e:  # the unit is held for hal: ivy cannot take it
        await svc.add_item("ivy", other, product_id="hot", quantity=1)
    assert e.value.code == "out_of_stock"
    order = await svc.checkout("hal", cid, payment_token="tok_ok", idempotency_key="h")
    assert order["status"] == "paid"
    assert (await svc.stock("hot-v0")) | {} == {"variant_id": "hot-v0", "on_hand": 0,
                                                "reserved": 0, "available": 0, "sold": 1}


async def test_a_checkout_retried_after_its_reply_was_lost_answers_the_paid_order_once(
        ) -> None:
    # A host that dies after the payment but before the cart's own write: the order is paid
    # and the stock sold, yet the cart still looks active. The buyer retries with its key.
    # (Staged through the in-memory store, so this one runs in-process only.)
    harness = Harness("local", MemoryStore())
    svc = await harness.start()
    await svc.put_product("p", product("p", stock=1))
    cid = await _cart(harness, "u")
    await svc.add_item("u", cid, product_id="p", quantity=1)
    store = harness.store
    before = dict(store.hashes[f"cart:{cid}"])
    order = await svc.checkout("u", cid, payment_token="tok_ok", idempotency_key="k")
    store.hashes[f"cart:{cid}"] = before  # the cart's write never landed
    svc = await harness.restart()  # the host's memory is gone too
    again = await svc.checkout("u", cid, payment_token="tok_ok", idempotency_key="k")
    assert again["order_id"] == order["order_id"] and again["status"] == "paid"
    assert (await svc.stock("p-v0"))["sold"] == 1  # sold once, nothing held or sold again
    assert (await svc.get_cart("u", cid))["status"] == "checked_out"
    paid = [e for e in await svc.events() if e["type"] == "order.paid"]
    assert len(paid) == 1
    await harness.close()


async def test_a_checkout_refused_for_stock_wakes_no_order_actor() -> None:
    # A flash sale's losers: their lines are fresh and unsharded, so the inventory would have
    # answered an earlier paid try of theirs from its memory; nothing to look up.
    harness = Harness("local", MemoryStore())
    svc = await harness.start()
    await svc.put_product("p", product("p", stock=1))
    won, lost = await _cart(harness, "u"), await _cart(harness, "v")
    await svc.add_item("u", won, product_id="p", quantity=1)
    await svc.add_item("v", lost, product_id="p", quantity=1)
    await svc.checkout("u", won, payment_token="tok_ok", idempotency_key="k")
    before = sum(h["activations"] for h in await svc.placement.stats())
    with pytest.raises(Conflict) as e:
        await svc.checkout("v", lost, payment_token="tok_ok", idempotency_key="k")
    assert e.value.code == "out_of_stock"
    assert sum(h["activations"] for h in await svc.placement.stats()) == before
    await harness.close()


async def test_a_paid_checkout_retried_after_its_inventory_forgot_it_answers_the_order(
        ) -> None:
    # As above, but the retry comes after the inventory forgot the committed reservation
    # (COMMITTED_MEMORY, pruned by a later sale): reserving is refused, and the order is
    # looked up. Carts live long enough here (cart_ttl) for the retry to find this one active.
    store = MemoryStore()
    settings = dataclasses.replace(SETTINGS, cart_ttl=4 * COMMITTED_MEMORY)

    async def start(at: float) -> CartService:
        placement = LocalPlacement(store, ManualClock(at), settings, n_hosts=2)
        await placement.start()
        return CartService(placement, store)

    svc = await start(START)
    await svc.put_product("p", product("p", stock=2))
    cid = (await svc.active_cart("u"))["cart"]["cart_id"]
    await svc.add_item("u", cid, product_id="p", quantity=1)
    before = dict(store.hashes[f"cart:{cid}"])
    order = await svc.checkout("u", cid, payment_token="tok_ok", idempotency_key="k")
    store.hashes[f"cart:{cid}"] = before  # the cart's write never landed
    await svc.close()
    svc = await start(START + COMMITTED_MEMORY + 100)
    other = (await svc.active_cart("v"))["cart"]["cart_id"]
    await svc.add_item("v", other, product_id="p", quantity=1)
    await svc.checkout("v", other, payment_token="tok_ok", idempotency_key="k")
    again = await svc.checkout("u", cid, payment_token="tok_ok", idempotency_key="k")
    assert again["order_id"] == order["order_id"] and again["status"] == "paid"
    assert (await svc.stock("p-v0"))["sold"] == 2
    assert (await svc.get_cart("u", cid))["status"] == "checked_out"
    await svc.close()
