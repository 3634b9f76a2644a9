"""The bench's wrk generator against a real server: the churn's requests wrk sends (the Lua
script `loadtest/wrk_churn.lua`) reach the prepared carts with their tokens, add what they
say and view the rest; read_heavy through wrk only views. Needs ``wrk`` on the PATH:
`make test-wrk` (run by CI) installs it where apt can."""

from __future__ import annotations

import uuid

import httpx
import pytest

from loadtest.client import HttpSession, run_async
from loadtest.scenarios import (
    Item,
    Target,
    make_admin_token,
    prepare_shopper_carts,
    read_heavy,
    wrk_phase,
)
from tests.e2e.server import SECRET, Server

pytestmark = [pytest.mark.e2e, pytest.mark.wrk]

CONNECTIONS = 8


def _items(server: Server, count: int) -> list[Item]:
    tag = uuid.uuid4().hex[:8]
    items = [Item(f"wrk-{tag}-{i}", f"wrk-{tag}-{i}") for i in range(count)]
    with server.client("ops", admin=True) as admin:
        for item in items:
            admin.put(f"/v1/admin/products/{item.product_id}", json={
                "name": "Wrk Cap", "category": "apparel", "stock": 1_000_000,
                "price": {"amount": 700, "currency": "USD"}}).raise_for_status()
    return items


def test_wrk_adds_to_and_views_the_prepared_carts(server: Server) -> None:
    items = _items(server, 8)
    target = Target(base_url=server.url, admin_token=make_admin_token(SECRET), system="e2e",
                    connections=CONNECTIONS, duration_s=2, generator="wrk")

    async def churn() -> tuple[list, dict]:
        async with HttpSession(server.url, CONNECTIONS) as session:
            shoppers, _ = await prepare_shopper_carts(session, target, items, 12, 3)
        row = await wrk_phase(target, [(s.cart, s.items) for s in shoppers], 0.6)
        return shoppers, row

    shoppers, row = run_async(churn())
    assert row["generator"] == "wrk" and row["error_count"] == 0 and row["requests"] > 50
    adds, views = row["operations"]["add"], row["operations"]["view"]
    assert adds + views >= row["requests"]  # sent; a connection's last may be unanswered
    assert 0.45 < adds / (adds + views) < 0.75
    assert row["client_cpu_ms_per_request"] > 0
    # every add wrk sent went to one of the carts' own lines, with the cart's token
    units = 0
    for shopper in shoppers:
        reply = httpx.get(f"{server.url}/v1/carts/{shopper.cart.cart_id}", timeout=30,
                          headers={"Authorization": f"Bearer {shopper.cart.token}"})
        reply.raise_for_status()
        lines = reply.json()["lines"]
        assert {ln["variant_id"] for ln in lines} == {i.variant_id for i in shopper.items}
        units += sum(ln["quantity"] for ln in lines)
    added = units - 12 * 3
    assert adds - CONNECTIONS <= added <= adds


def test_read_heavy_through_wrk_only_views(server: Server) -> None:
    items = _items(server, 4)
    target = Target(base_url=server.url, admin_token=make_admin_token(SECRET), system="e2e",
                    connections=CONNECTIONS, duration_s=1, generator="wrk")
    row = run_async(read_heavy(target, items, carts=6, lines=2))
    assert row["generator"] == "wrk" and row["error_count"] == 0 and row["carts"] == 6
    assert row["operations"]["add"] == 0 and row["operations"]["view"] >= row["requests"] > 20
