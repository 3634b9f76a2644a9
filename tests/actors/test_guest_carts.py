"""A new guest's first cart: one turn and one write, its user actor left alone until needed.

`CartService.open_guest_cart` opens the cart at `actors.user.first_cart_id` of the new guest;
the guest's user actor treats that cart as its active one until it stores a record of its own.
"""

from __future__ import annotations

import itertools

import pytest

from actors.clock import ManualClock
from actors.service import CartService
from actors.user import first_cart_id
from engine.errors import Conflict, NotFound, ValidationFailed
from snapshots.memory_store import MemoryStore
from tests.actors.harness import Harness, product

pytestmark = pytest.mark.actors

_ids = itertools.count()


def new_guest() -> str:
    return f"guest_t{next(_ids):06d}"


async def _totals(svc: CartService) -> dict[str, int]:
    stats = await svc.placement.stats()
    return {k: sum(h[k] for h in stats) for k in ("turns", "writes", "activations")}


async def test_a_new_guest_cart_costs_one_turn_and_one_write_and_no_user_record() -> None:
    store = MemoryStore()
    svc = await CartService.in_process(store, clock=ManualClock(), hosts=1)
    try:
        before = await _totals(svc)
        guest, out = await svc.open_guest_cart(new_guest, "EUR", "key-1", "fp-1")
        after = await _totals(svc)
        assert out["created"] is True
        cart = out["cart"]
        assert cart["cart_id"] == first_cart_id(guest) and cart["owner"] == guest
        assert cart["currency"] == "EUR" and cart["status"] == "active"
        assert {k: after[k] - before[k] for k in after} == \
            {"turns": 1, "writes": 1, "activations": 1}
        assert f"cart:{cart['cart_id']}" in store.hashes
        assert f"user:{guest}" not in store.hashes
    finally:
        await svc.close()


async def test_a_bad_currency_for_a_new_guest_is_refused_and_stores_nothing() -> None:
    store = MemoryStore()
    svc = await CartService.in_process(store, clock=ManualClock(), hosts=1)
    try:
        with pytest.raises(ValidationFailed) as e:
            await svc.open_guest_cart(new_guest, "XXX")
        assert e.value.code == "unknown_currency"
        assert not [k for k in store.hashes if k.startswith(("cart:", "user:"))]
    finally:
        await svc.close()


async def test_the_guest_keeps_its_first_cart_then_gets_a_stored_new_one_after_checkout(
        harness: Harness, svc: CartService) -> None:
    await svc.put_product("p", product("p", stock=10))
    guest, out = await svc.open_guest_cart(new_guest)
    first = out["cart"]["cart_id"]
    again = await svc.active_cart(guest)
    assert again["created"] is False and again["cart"]["cart_id"] == first
    assert await svc.call("user", guest, "current", {}) == first
    await svc.add_item(guest, first, product_id="p", quantity=1)
    await svc.checkout(guest, first, payment_token="tok_ok", idempotency_key="k")
    fresh = await svc.active_cart(guest)
    assert fresh["created"] is True and fresh["cart"]["cart_id"] != first
    # The guest's record now names the new cart, across a restart of the engine.
    svc = await harness.restart()
    kept = await svc.active_cart(guest)
    assert kept["created"] is False
    assert kept["cart"]["cart_id"] == fresh["cart"]["cart_id"]


async def test_the_guests_idempotency_key_answers_the_first_open_and_refuses_another_body(
        svc: CartService) -> None:
    guest, out = await svc.open_guest_cart(new_guest, None, "key-1", "fp-1")
    # The guest's retry, now with its token: the first answer, as it was.
    replay = await svc.active_cart(guest, None, "key-1", "fp-1")
    assert replay["created"] is True
    assert replay["cart"]["cart_id"] == out["cart"]["cart_id"]
    with pytest.raises(Conflict) as e:
        await svc.active_cart(guest, "EUR", "key-1", "fp-2")
    assert e.value.code == "idempotency_key_reused"
    # Another key is another request: the cart as it is now.
    other = await svc.active_cart(guest, None, "key-2", "fp-3")
    assert other["created"] is False
    assert other["cart"]["cart_id"] == out["cart"]["cart_id"]


async def test_a_user_merges_a_guests_first_cart(svc: CartService) -> None:
    await svc.put_product("p", product("p", stock=10))
    guest, out = await svc.open_guest_cart(new_guest)
    await svc.add_item(guest, out["cart"]["cart_id"], product_id="p", quantity=2)
    mine = (await svc.active_cart("u-merge"))["cart"]["cart_id"]
    merged = await svc.merge("u-merge", mine, guest)
    assert [ln["quantity"] for ln in merged["cart"]["lines"]] == [2]
    # The guest's first cart is spent: its next cart is a new one.
    nxt = await svc.active_cart(guest)
    assert nxt["created"] is True and nxt["cart"]["cart_id"] != out["cart"]["cart_id"]


async def test_opening_a_cart_as_another_shopper_finds_nothing(svc: CartService) -> None:
    guest, out = await svc.open_guest_cart(new_guest)
    with pytest.raises(NotFound) as e:
        await svc.call("cart", out["cart"]["cart_id"], "open", {"owner": new_guest()})
    assert e.value.code == "cart_not_found"
    again = await svc.call("cart", out["cart"]["cart_id"], "open", {"owner": guest})
    assert again["created"] is False and again["cart"]["owner"] == guest
