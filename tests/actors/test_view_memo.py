"""A cart read again without a change is not priced again, and still shows what time and
reference data change (in-process, manual clock)."""

from __future__ import annotations

from typing import Any

import pytest

import actors.cart
from actors.clock import ManualClock
from actors.service import CartService
from snapshots.memory_store import MemoryStore
from tests.actors.harness import product

pytestmark = pytest.mark.actors


async def test_reads_between_changes_reuse_the_view_until_a_promotion_window_moves(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock()
    svc = await CartService.in_process(MemoryStore(), clock=clock, hosts=1)
    priced: list[int] = []
    real = actors.cart.price_cart

    def counting(cart: Any, ctx: Any) -> Any:
        priced.append(cart.version)
        return real(cart, ctx)

    monkeypatch.setattr(actors.cart, "price_cart", counting)
    try:
        await svc.put_product("p", product("p", price=5000, stock=100))
        cid = (await svc.active_cart("u1"))["cart"]["cart_id"]
        added = await svc.add_item("u1", cid, product_id="p", quantity=2)
        before = len(priced)
        views = [await svc.get_cart("u1", cid) for _ in range(3)]
        assert len(priced) == before  # three reads, no pricing
        assert views[0] == added and views[0] is not views[1]  # equal, never the same dict

        now = clock.now()
        await svc.put_promotion("soon", {"kind": "percentage", "value": 1000,
                                         "starts_at": now + 60, "ends_at": now + 120})
        view = await svc.get_cart("u1", cid)  # reference data changed: priced again
        assert len(priced) == before + 1 and view["totals"]["discount"]["amount"] == 0
        await clock.advance(61)  # the promotion starts: the view must show it
        view = await svc.get_cart("u1", cid)
        assert view["totals"]["discount"]["amount"] == 1000
        await clock.advance(60)  # and it ends
        view = await svc.get_cart("u1", cid)
        assert view["totals"]["discount"]["amount"] == 0
        assert view["version"] == added["version"]  # none of this was a change of the cart
    finally:
        await svc.close()
