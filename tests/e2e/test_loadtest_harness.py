"""The load-test harness against a real server: the operator's flash-sale proof, the
read-heavy scenario's figures (including memory per active cart), and the bench's realistic
churn and flash race with the engine's actor turns per buyer."""

from __future__ import annotations

import uuid

import httpx
import pytest

from loadtest.bench import engine_counters
from loadtest.client import run_async
from loadtest.flash_sale import main as flash_sale_main
from loadtest.flash_sale import problems
from loadtest.scenarios import (
    EDIT_MIX,
    Item,
    Target,
    cart_churn,
    flash_race,
    make_admin_token,
    read_heavy,
)
from tests.e2e.server import SECRET, Server

pytestmark = pytest.mark.e2e


def test_the_flash_sale_tool_proves_a_sharded_sale_held(server: Server) -> None:
    pid = "tool-" + uuid.uuid4().hex[:8]
    with server.client("ops", admin=True) as admin:
        admin.put(f"/v1/admin/products/{pid}", json={
            "name": "Tool Tee", "category": "apparel",
            "price": {"amount": 2500, "currency": "USD"},
            "variants": [{"variant_id": f"{pid}-v", "sku": "TOOL-1", "shards": 3}],
        }).raise_for_status()
    status = flash_sale_main(["--url", server.url, "--auth-secret", SECRET,
                              "--variant", f"{pid}-v", "--product", pid, "--units", "20",
                              "--buyers", "60", "--connections", "16", "--duration", "120"])
    assert status == 0
    with server.client("ops", admin=True) as admin:
        stock = admin.post(f"/v1/admin/stock/{pid}-v", json={"delta": 0}).json()
    assert stock["sold"] == 20 and stock["on_hand"] == 0 and stock["reserved"] == 0


def test_the_judge_names_every_way_a_sale_can_fail() -> None:
    held = {"units": 10, "oversold_units": 0, "ledger_gap": 0, "unsold_units": 0,
            "refused": 5, "other_outcomes": {}, "untried": 0}
    assert problems(held) == []
    assert problems({**held, "oversold_units": 2})[0].startswith("oversold by 2 units")
    assert "not the 10 units on sale" in problems({**held, "ledger_gap": 1})[0]
    assert "unsold while 5 buyers were refused" in problems({**held, "unsold_units": 3})[0]
    assert "neither an order nor out_of_stock" in \
        problems({**held, "other_outcomes": {"http_503": 4}})[0]
    assert "never got to buy" in problems({**held, "untried": 7})[0]


def test_read_heavy_prepares_its_carts_and_meters_memory_per_cart(server: Server) -> None:
    pid = "read-" + uuid.uuid4().hex[:8]
    with server.client("ops", admin=True) as admin:
        admin.put(f"/v1/admin/products/{pid}", json={
            "name": "Read Mug", "category": "home", "stock": 10_000,
            "price": {"amount": 1200, "currency": "USD"}}).raise_for_status()
    held = {"processes": 1_000_000.0}

    def probe() -> dict[str, float]:
        held["processes"] += 30_000.0  # grows by 30,000 bytes between two readings
        return dict(held)

    target = Target(base_url=server.url, admin_token=make_admin_token(SECRET),
                    system="e2e", connections=8, duration_s=60, max_requests=200,
                    server_memory=probe)
    row = run_async(read_heavy(target, [Item(pid, pid)], carts=15, lines=2))
    assert row["carts"] == 15 and row["error_count"] == 0 and row["requests"] == 200
    assert row["bytes_per_cart_parts"] == {"processes": 2000}
    assert row["bytes_per_cart"] == 2000


def test_the_engine_churns_shared_carts_and_a_race_counts_its_turns_per_buyer(
        server: Server) -> None:
    tag = uuid.uuid4().hex[:8]
    items = [Item(f"churn-{tag}-{i}", f"churn-{tag}-{i}") for i in range(8)]
    with server.client("ops", admin=True) as admin:
        for item in items:
            admin.put(f"/v1/admin/products/{item.product_id}", json={
                "name": "Churn Sock", "category": "apparel", "stock": 100_000,
                "price": {"amount": 900, "currency": "USD"}}).raise_for_status()

    async def counters() -> dict[str, float]:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            return engine_counters((await client.get("/metrics")).text)

    target = Target(base_url=server.url, admin_token=make_admin_token(SECRET), system="e2e",
                    connections=8, duration_s=60, max_requests=300, counters=counters)
    churn = run_async(cart_churn(target, items, carts=12, lines=6))
    assert churn["error_count"] == 0 and churn["requests"] == 300 and churn["carts"] == 12
    assert churn["setup"]["requests"] == 12 * 7
    edit = run_async(cart_churn(target, items, carts=12, lines=6, mix=EDIT_MIX,
                                scenario="churn-edit"))
    assert edit["error_count"] == 0 and edit["operations"]["delete"] > 0

    sale = run_async(flash_race(target, buyers=30, units=10))
    assert sale["error_count"] == 0 and sale["untried"] == 0
    assert sale["paid_orders"] == 10 and sale["units_sold"] == 10
    assert sale["oversold_units"] == 0 and sale["ledger_gap"] == 0
    # a purchase is several actor turns (cart, add, reserve, order, ...), each persisted
    assert sale["per_buyer"]["engine_turns"] >= 3
    assert sale["counted"]["engine_writes"] > 0
