"""Waitlists across actors (both placements): offers in queue order, lapses, claims."""

from __future__ import annotations

import pytest

from actors.service import CartService
from engine.errors import Conflict
from tests.actors.harness import Harness, product

pytestmark = pytest.mark.actors


async def _cart(h: Harness, owner: str) -> str:
    assert h.service is not None
    return str((await h.service.active_cart(owner))["cart"]["cart_id"])


async def _offered(svc: CartService) -> list[tuple[str, int]]:
    return [(e["customer"], e["quantity"]) for e in await svc.events()
            if e["type"] == "stock.offered"]


async def test_returned_units_are_offered_in_line_and_claimed_by_adding_to_a_cart(
        harness: Harness, svc: CartService) -> None:
    body = product("hot", stock=2)
    body["variants"][0]["offer_ttl"] = 120
    await svc.put_product("hot", body)
    buyer = await _cart(harness, "buyer")
    await svc.add_item("buyer", buyer, product_id="hot", quantity=2)
    order = await svc.checkout("buyer", buyer, payment_token="tok_ok", idempotency_key="b")
    for i in range(3):
        joined = await svc.join_waitlist(f"w{i}", "hot-v0", 1)
        assert (joined["position"], joined["state"]) == (i + 1, "waiting")
    late = await _cart(harness, "w2")
    with pytest.raises(Conflict) as e:  # sold out, and w2 is third in line
        await svc.add_item("w2", late, product_id="hot", quantity=1)
    assert e.value.details[0]["waitlist"] is True
    await svc.cancel_order("buyer", order["order_id"])  # 2 units come back
    assert await _offered(svc) == [("w0", 1), ("w1", 1)]
    [entry] = (await svc.waitlists("w0"))["items"]
    assert entry["state"] == "offered" and entry["offer"]["quantity"] == 1
    assert (await svc.stock("hot-v0"))["available"] == 0  # held for w0 and w1
    with pytest.raises(Conflict):
        await svc.add_item("w2", late, product_id="hot", quantity=1)
    cid = await _cart(harness, "w0")
    view = await svc.add_item("w0", cid, product_id="hot", quantity=1)
    assert view["lines"][0]["held"] is True
    assert (await svc.checkout("w0", cid, payment_token="tok_ok",
                               idempotency_key="w0"))["status"] == "paid"
    # w1 lets the offer lapse: it goes to w2, the next in line.
    await harness.advance(121)
    assert await _offered(svc) == [("w0", 1), ("w1", 1), ("w2", 1)]
    assert (await svc.waitlists("w1"))["items"][0]["state"] == "lapsed"
    await svc.add_item("w2", late, product_id="hot", quantity=1)
    assert (await svc.checkout("w2", late, payment_token="tok_ok",
                               idempotency_key="w2"))["status"] == "paid"
    stock = await svc.stock("hot-v0")
    assert (stock["sold"], stock["reserved"], stock["on_hand"]) == (2, 0, 0)


async def test_an_admin_restock_offers_units_and_leaving_passes_them_on(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("hot", product("hot", stock=0))
    await svc.join_waitlist("a", "hot-v0", 2)
    await svc.join_waitlist("b", "hot-v0", 1)
    await svc.set_stock("hot-v0", delta=2)
    assert await _offered(svc) == [("a", 2)]
    await svc.leave_waitlist("a", "hot-v0")
    assert await _offered(svc) == [("a", 2), ("b", 1)]
    assert (await svc.waitlists("a"))["items"] == []


async def test_the_line_survives_a_restart(harness: Harness, svc: CartService) -> None:
    await svc.put_product("hot", product("hot", stock=0))
    await svc.join_waitlist("a", "hot-v0", 1)
    svc = await harness.restart()
    await svc.set_stock("hot-v0", delta=1)
    [entry] = (await svc.waitlists("a"))["items"]
    assert entry["state"] == "offered"
