"""Stock on add and purchase limits across actors (both placements)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.service import CartService
from actors.stock_client import MAX_REUSE_FOR, PLENTY, REUSE_FOR, SELL_RATE, reusable_for
from engine.errors import Conflict, DomainError, Forbidden
from tests.actors.harness import Harness, product

pytestmark = pytest.mark.actors


async def _cart(h: Harness, owner: str) -> str:
    assert h.service is not None
    return str((await h.service.active_cart(owner))["cart"]["cart_id"])


async def test_adding_more_than_is_available_is_refused_and_changes_nothing(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", stock=3))
    cid = await _cart(harness, "ann")
    with pytest.raises(Conflict) as e:
        await svc.add_item("ann", cid, product_id="p", quantity=50)
    assert e.value.code == "out_of_stock" and e.value.details[0]["available"] == 3
    view = await svc.add_item("ann", cid, product_id="p", quantity=2)
    with pytest.raises(Conflict):  # 2 in the cart + 2 more > 3
        await svc.add_item("ann", cid, product_id="p", quantity=2)
    with pytest.raises(Conflict):
        await svc.set_quantity("ann", cid, view["lines"][0]["line_id"], 4)
    cart = await svc.get_cart("ann", cid)
    assert [ln["quantity"] for ln in cart["lines"]] == [2] and cart["version"] == view["version"]
    lowered = await svc.set_quantity("ann", cid, view["lines"][0]["line_id"], 1)
    assert lowered["lines"][0]["quantity"] == 1
    assert (await svc.stock("p-v0"))["reserved"] == 0  # a check, not a hold


async def test_a_sold_out_variant_cannot_be_added_and_apply_reports_it(
        harness: Harness, svc: CartService) -> None:
    from actors.service import CartOp

    await svc.put_product("p", product("p", stock=1))
    await svc.put_product("gone", product("gone", stock=0))
    cid = await _cart(harness, "bo")
    with pytest.raises(Conflict):
        await svc.add_item("bo", cid, product_id="gone", quantity=1)
    out = await svc.apply([CartOp(cid, "bo", "add", "p", 1, "p-v0"),
                           CartOp(cid, "bo", "add", "p", 1, "p-v0"),
                           CartOp(cid, "bo", "set", "ln_1", 5)])
    assert out[0] == ("ok", "ln_1")
    assert [o[1]["code"] for o in out[1:]] == ["out_of_stock", "out_of_stock"]


async def test_a_purchase_limit_counts_the_cart_and_paid_orders(
        harness: Harness, svc: CartService) -> None:
    body = product("ltd", stock=100)
    body["variants"][0]["purchase_limit"] = 2
    await svc.put_product("ltd", body)
    cid = await _cart(harness, "cy")
    with pytest.raises(Conflict) as e:
        await svc.add_item("cy", cid, product_id="ltd", quantity=3)
    assert e.value.code == "purchase_limit_exceeded"
    assert e.value.details[0] | {} == {"scope": "v:ltd-v0", "limit": 2, "already": 0,
                                       "requested": 3}
    await svc.add_item("cy", cid, product_id="ltd", quantity=1)
    await svc.checkout("cy", cid, payment_token="tok_ok", idempotency_key="k1")
    cid2 = await _cart(harness, "cy")
    await svc.add_item("cy", cid2, product_id="ltd", quantity=1)
    with pytest.raises(Conflict) as e:
        await svc.add_item("cy", cid2, product_id="ltd", quantity=1)
    assert e.value.details[0]["already"] == 1
    # Another customer has a limit of their own.
    other = await _cart(harness, "di")
    await svc.add_item("di", other, product_id="ltd", quantity=2)


async def test_concurrent_checkouts_on_several_carts_never_exceed_the_limit(
        harness: Harness, svc: CartService) -> None:
    body = product("ltd", stock=100)
    body["variants"][0]["purchase_limit"] = 1
    await svc.put_product("ltd", body)
    # One customer, three carts (devices): each holds one unit, within the limit on its own.
    carts = []
    for i in range(3):
        cid = f"c_dev{i}"
        await svc.call("cart", cid, "create", {"owner": "eve"})
        await svc.add_item("eve", cid, product_id="ltd", quantity=1)
        carts.append(cid)
    results = await asyncio.gather(*(
        svc.checkout("eve", cid, payment_token="tok_ok", idempotency_key=f"k{i}")
        for i, cid in enumerate(carts)), return_exceptions=True)
    paid = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, DomainError)]
    assert len(paid) == 1 and {r.code for r in refused} == {"purchase_limit_exceeded"}
    stock = await svc.stock("ltd-v0")
    assert stock["sold"] == 1 and stock["reserved"] == 0  # the refused released their stock


async def test_a_declined_payment_gives_the_limit_back(harness: Harness,
                                                       svc: CartService) -> None:
    body = product("ltd", stock=10)
    body["variants"][0]["purchase_limit"] = 1
    await svc.put_product("ltd", body)
    cid = await _cart(harness, "fay")
    await svc.add_item("fay", cid, product_id="ltd", quantity=1)
    with pytest.raises(DomainError):
        await svc.checkout("fay", cid, payment_token="tok_declined", idempotency_key="a")
    order = await svc.checkout("fay", cid, payment_token="tok_ok", idempotency_key="b")
    assert order["status"] == "paid"


async def test_guests_are_limited_per_cart_and_kept_out_of_account_only_variants(
        harness: Harness, svc: CartService) -> None:
    body = product("ltd", stock=10)
    body["variants"][0]["purchase_limit"] = 1
    await svc.put_product("ltd", body)
    members = product("vip", stock=10)
    members["variants"][0]["account_required"] = True
    await svc.put_product("vip", members)
    cid = await _cart(harness, "guest_g1")
    await svc.add_item("guest_g1", cid, product_id="ltd", quantity=1)
    with pytest.raises(Conflict):
        await svc.add_item("guest_g1", cid, product_id="ltd", quantity=1)
    with pytest.raises(Forbidden) as e:
        await svc.add_item("guest_g1", cid, product_id="vip", quantity=1)
    assert e.value.code == "account_required"
    order = await svc.checkout("guest_g1", cid, payment_token="tok_ok", idempotency_key="g")
    assert order["status"] == "paid"


async def _counted(clock: Any) -> tuple[CartService, list[str]]:
    """An in-process engine of one host on ``clock``, and the ``kind.method`` of every
    message its host delivers from now on."""
    from snapshots.memory_store import MemoryStore

    svc = await CartService.in_process(store=MemoryStore(), clock=clock, hosts=1)
    host = svc.placement.hosts[0]  # type: ignore[attr-defined]
    seen: list[str] = []
    deliver = host.deliver

    async def counting(msg, internal=False):  # type: ignore[no-untyped-def]
        seen.append(f"{msg[0]}.{msg[2]}")
        return await deliver(msg, internal)

    host.deliver = counting
    return svc, seen


async def test_concurrent_adds_of_one_variant_share_one_stock_read() -> None:
    """Stock on add costs the inventory one ``status`` turn per host for a burst of adds,
    and one per variant for a whole `CartService.apply` batch (the design's batching)."""
    from actors.clock import ManualClock
    from actors.service import CartOp

    clock = ManualClock(1.8e9)
    svc, seen = await _counted(clock)
    try:
        await svc.put_product("tee", product("tee", stock=10_000))
        carts = [f"c_{i}" for i in range(200)]
        for cid in carts:
            await svc.call("cart", cid, "create", {"owner": f"guest_{cid}"})
        seen.clear()
        await asyncio.gather(*(svc.add_item(f"guest_{cid}", cid, product_id="tee", quantity=1)
                               for cid in carts))
        assert seen.count("cart.add_item") == 200
        assert 1 <= seen.count("inv.status") <= 2  # one read in flight for the burst
        await clock.advance(MAX_REUSE_FOR)  # past what any answer may be reused for
        seen.clear()
        out = await svc.apply([CartOp(carts[0], f"guest_{carts[0]}", "add", "tee", 1)
                               for _ in range(50)])
        assert all(r[0] == "ok" for r in out)
        assert seen.count("inv.status") == 1
    finally:
        await svc.close()


async def test_a_recent_answer_serves_adds_while_stock_is_plenty_and_not_near_sell_out() -> None:
    """Stock on add reuses an availability answer at most `REUSE_FOR` s old that showed
    `PLENTY` units beyond the add; otherwise (older, or near sell-out) it asks again."""
    from actors.clock import ManualClock

    clock = ManualClock(1.8e9)
    svc, seen = await _counted(clock)
    try:
        await svc.put_product("tee", product("tee", stock=PLENTY + 3))
        carts = [f"c_{i}" for i in range(4)]
        for cid in carts:
            await svc.call("cart", cid, "create", {"owner": f"guest_{cid}"})
        seen.clear()
        await svc.add_item("guest_c_0", "c_0", product_id="tee", quantity=1)
        await svc.add_item("guest_c_1", "c_1", product_id="tee", quantity=1)
        assert seen.count("inv.status") == 1  # the second add reused the first answer
        # Three units beyond PLENTY: an add of 4 is near sell-out and asks afresh.
        await svc.add_item("guest_c_2", "c_2", product_id="tee", quantity=4)
        assert seen.count("inv.status") == 2
        await clock.advance(REUSE_FOR)
        await svc.add_item("guest_c_3", "c_3", product_id="tee", quantity=1)
        assert seen.count("inv.status") == 3  # too old to reuse
    finally:
        await svc.close()


def test_an_answer_with_more_to_spare_is_reused_longer_up_to_a_bound() -> None:
    """Near sell-out nothing is reused; with plenty, half a second; with thousands of units
    to spare, as long as `SELL_RATE` units a second could not use them up, capped."""
    assert reusable_for(PLENTY - 1) == 0.0
    assert reusable_for(PLENTY) == REUSE_FOR
    assert reusable_for(4 * SELL_RATE // 2) == 2.0
    assert reusable_for(10_000_000) == MAX_REUSE_FOR


async def test_a_well_stocked_variant_is_read_again_only_after_the_longer_reuse() -> None:
    """An answer showing 10,000 units to spare serves adds for 5 s of the clock, then the
    next add reads the inventory again."""
    from actors.clock import ManualClock

    clock = ManualClock(1.8e9)
    svc, seen = await _counted(clock)
    try:
        await svc.put_product("tee", product("tee", stock=10 * SELL_RATE))
        for cid in ("c_0", "c_1", "c_2"):
            await svc.call("cart", cid, "create", {"owner": f"guest_{cid}"})
        seen.clear()
        await svc.add_item("guest_c_0", "c_0", product_id="tee", quantity=1)
        await clock.advance(MAX_REUSE_FOR - 1)
        await svc.add_item("guest_c_1", "c_1", product_id="tee", quantity=1)
        assert seen.count("inv.status") == 1  # reused: well within its window
        await clock.advance(1)
        await svc.add_item("guest_c_2", "c_2", product_id="tee", quantity=1)
        assert seen.count("inv.status") == 2
    finally:
        await svc.close()
