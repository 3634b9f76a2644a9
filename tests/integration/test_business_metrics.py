"""Business figures on /metrics, and the Grafana dashboard that charts them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from actors.settings import EngineSettings
from tests.integration.inprocess import bearer, gateway

pytestmark = pytest.mark.integration
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"


def samples(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def exported_names(text: str) -> set[str]:
    """Every sample name the exposition's families can have (by their ``# TYPE``)."""
    # prometheus-client names a counter's family with its ``_total`` in the text format
    suffixes = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("_sum", "_count", ""), "untyped": ("",)}
    names = set()
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.update(m.group(1) + s for s in suffixes[m.group(2)])
    return names


async def scrape(http: Any) -> str:
    r = await http.get("/metrics")
    assert r.status_code == 200
    return r.text


async def test_a_sale_shows_on_metrics() -> None:
    async with gateway(EngineSettings(reservation_ttl=60)) as (http, service):
        await service.put_product("cap", {"name": "Cap", "category": "hats", "variants": [
            {"variant_id": "cap-1", "sku": "CAP-1", "stock": 2, "hold_ttl": 30}],
            "price": {"amount": 6000, "currency": "USD"}})
        await service.put_promotion("hats10", {"kind": "percentage", "value": 1000,
                                               "target": {"type": "cart"}})
        before = samples(await scrape(http))

        async def buy(who: str, token: str = "tok_ok") -> int:
            cart = (await http.post("/v1/carts", headers=bearer(who))).json()
            r = await http.post(f"/v1/carts/{cart['cart_id']}/items", headers=bearer(who),
                                json={"product_id": "cap", "quantity": 1})
            if r.status_code != 200:
                return r.status_code
            r = await http.post(f"/v1/carts/{cart['cart_id']}/checkout",
                                headers={**bearer(who), "Idempotency-Key": f"k-{who}"},
                                json={"payment": {"token": token}})
            return r.status_code

        assert await buy("a") == 201
        assert await buy("b", "tok_declined") == 402
        held = (await http.post("/v1/carts", headers=bearer("c"))).json()
        assert (await http.post(f"/v1/carts/{held['cart_id']}/items", headers=bearer("c"),
                                json={"product_id": "cap", "quantity": 1})).status_code == 200
        assert await buy("d") == 409  # the last unit is held by c
        mid = samples(await scrape(http))

    def delta(key: str, at: dict[str, float] = mid) -> float:
        return at.get(key, 0.0) - before.get(key, 0.0)

    assert delta("cart_engine_carts_created_total") == 4
    assert delta('cart_engine_checkouts_total{outcome="paid"}') == 1
    assert delta('cart_engine_checkouts_total{outcome="payment_declined"}') == 1
    assert delta('cart_engine_orders_paid_total{currency="USD"}') == 1
    # 6000 less 10 % = 5400, free shipping over 5000, no tax
    assert delta('cart_engine_revenue_minor_total{currency="USD"}') == 5400
    assert delta('cart_engine_promotion_uses_total{promotion="hats10"}') == 1
    assert delta('cart_engine_stock_refused_total{route="/v1/carts/{cart_id}/items"}') == 1
    assert sum(v for k, v in mid.items() if k.startswith("cart_engine_reserved_units{")) == 1
    assert sum(v for k, v in mid.items()
               if k.startswith("cart_engine_reservations_open{")) == 1


async def test_a_lapsed_hold_counts_as_expired() -> None:
    from actors.clock import ManualClock
    from actors.service import CartService
    from gateway.metrics import Metrics

    clock = ManualClock()
    service = await CartService.in_process(clock=clock)
    try:
        await service.put_product("pin", {"name": "Pin", "variants": [
            {"variant_id": "pin-1", "sku": "PIN-1", "stock": 5, "hold_ttl": 30}],
            "price": {"amount": 500, "currency": "USD"}})
        metrics = Metrics()
        await metrics.refresh(service.placement)
        before = samples(metrics.render().decode())
        cart = (await service.active_cart("eve"))["cart"]
        await service.add_item("eve", cart["cart_id"], product_id="pin", quantity=3)
        await metrics.refresh(service.placement)
        held = samples(metrics.render().decode())
        await clock.advance(31)
        await metrics.refresh(service.placement)
        after = samples(metrics.render().decode())
    finally:
        await service.close()
    assert sum(v for k, v in held.items() if k.startswith("cart_engine_reserved_units{")) == 3
    assert sum(v for k, v in after.items() if k.startswith("cart_engine_reserved_units{")) == 0
    assert after["cart_engine_reservations_expired_total"] - \
        before["cart_engine_reservations_expired_total"] == 1
    assert after["cart_engine_reservation_units_expired_total"] - \
        before["cart_engine_reservation_units_expired_total"] == 3


def test_the_ray_hosts_figures_are_summed_from_their_stats() -> None:
    from gateway.metrics import EngineCollector

    class Hosts:
        async def cluster(self) -> dict[str, Any]:  # the directory's figures (none here)
            return {}

        async def stats(self) -> list[dict[str, Any]]:
            return [{"host": i, "business": {
                "orders_paid": {"EUR": 2 + i}, "revenue_minor": {"EUR": 1000 * (i + 1)},
                "promotion_uses": {}, "reservations_expired": i,
                "reservation_units_expired": 2 * i, "reservations_open": 5,
                "reserved_units": 7}} for i in range(2)]

    import asyncio

    collector = EngineCollector()
    asyncio.run(collector.refresh(Hosts()))
    figures = {s.name + str(sorted(s.labels.items())): s.value
               for family in collector.collect() for s in family.samples}
    assert figures["cart_engine_orders_paid_total[('currency', 'EUR')]"] == 5
    assert figures["cart_engine_revenue_minor_total[('currency', 'EUR')]"] == 3000
    assert figures["cart_engine_reservations_expired_total[]"] == 1
    assert figures["cart_engine_reserved_units[('host', '1')]"] == 7


async def test_every_dashboard_query_names_a_metric_the_service_exports() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    async with gateway() as (http, _):
        exported = exported_names(await scrape(http))
    used = {name for e in exprs for name in re.findall(r"\bcart_engine_[a-z0-9_]+", e)}
    assert used and not used - exported, sorted(used - exported)
    # the dashboard charts the business figures next to the engine's
    for family in ("cart_engine_checkouts_total", "cart_engine_revenue_minor_total",
                   "cart_engine_orders_paid_total", "cart_engine_reserved_units",
                   "cart_engine_reservations_expired_total", "cart_engine_stock_refused_total",
                   "cart_engine_promotion_uses_total", "cart_engine_carts_created_total",
                   "cart_engine_host_turns_total", "cart_engine_router_messages_total"):
        assert family in used, family
