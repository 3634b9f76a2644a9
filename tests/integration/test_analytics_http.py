"""``GET /v1/admin/analytics`` over an in-process engine on a manual clock (memory store: its
outbox is folded on demand): a day of shoppers through HTTP gives every figure; the events
carry what the figures need; bad queries are 422s with the API's error body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from actors.clock import ManualClock
from actors.service import CartService
from actors.settings import EngineSettings
from engine.timefmt import rfc3339
from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.integration.inprocess import SECRET, bearer, gateway

pytestmark = pytest.mark.integration
ADMIN = bearer("ops", "admin")
START = 1_790_000_000.0 - 1_790_000_000.0 % 86400 + 9 * 3600  # 09:00 UTC
RANGE = {"from": rfc3339(START - 3600), "to": rfc3339(START + 86400)}


@pytest.fixture
async def shop() -> AsyncIterator[tuple[httpx.AsyncClient, ManualClock]]:
    clock = ManualClock(START)
    async with gateway(clock=clock) as (client, _):
        yield client, clock


async def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text[:500]
    return r.json()


async def _cart(c: httpx.AsyncClient, who: dict[str, str], qty: int = 0,
                code: str | None = None) -> str:
    cid = (await _ok(await c.post("/v1/carts", headers=who), 201))["cart_id"]
    if qty:
        await _ok(await c.post(f"/v1/carts/{cid}/items", headers=who,
                               json={"product_id": "tee", "quantity": qty}))
    if code:
        await _ok(await c.post(f"/v1/carts/{cid}/discounts", headers=who, json={"code": code}))
    return str(cid)


async def _checkout(c: httpx.AsyncClient, who: dict[str, str], cid: str,
                    token: str = "tok_ok") -> httpx.Response:
    return await c.post(f"/v1/carts/{cid}/checkout", json={"payment": {"token": token}},
                        headers={**who, "Idempotency-Key": f"k-{cid}"})


async def test_a_day_of_shoppers_through_http_gives_every_figure(
        shop: tuple[httpx.AsyncClient, ManualClock]) -> None:
    c, clock = shop
    await _ok(await c.put("/v1/admin/products/tee", headers=ADMIN, json={
        "name": "Tee", "category": "tops", "price": {"amount": 2500, "currency": "USD"},
        "variants": [{"variant_id": "tee-m", "stock": 20}]}))
    await _ok(await c.put("/v1/admin/promotions/ten", headers=ADMIN, json={
        "kind": "percentage", "value": 1000, "code": "TEN"}))
    ann, bob, cat, dan, eve, fay = (bearer(n) for n in ("ann", "bob", "cat", "dan", "eve",
                                                        "fay"))
    a = await _ok(await _checkout(c, ann, await _cart(c, ann, 2, "TEN")), 201)
    await clock.advance(3600)
    b = await _ok(await _checkout(c, bob, await _cart(c, bob, 1)), 201)
    await _ok(await c.post(f"/v1/admin/orders/{b['order_id']}/refund", headers=ADMIN,
                           json={"amount": 1000}))
    f = await _ok(await _checkout(c, fay, await _cart(c, fay, 1)), 201)
    await _ok(await c.post(f"/v1/orders/{f['order_id']}/cancel", headers=fay))
    await _cart(c, cat, 3)
    await _cart(c, dan)  # stays empty
    eve_cart = await _cart(c, eve, 1)
    assert (await _checkout(c, eve, eve_cart, "tok_declined")).status_code == 402
    await clock.advance(2 * 3600)  # past the 30-minute inactivity: cat, dan, eve expire

    r = await _ok(await c.get("/v1/admin/analytics", headers=ADMIN,
                              params={**RANGE, "bucket": "hour"}))
    total = a["totals"]["total"]["amount"] + b["totals"]["total"]["amount"] + \
        f["totals"]["total"]["amount"]
    assert a["totals"]["discount"]["amount"] == 500
    assert r["sales"] == [{
        "currency": "USD", "orders": 3, "orders_cancelled": 1, "revenue": total,
        "refunded": 1000 + f["totals"]["total"]["amount"],
        "net_revenue": total - 1000 - f["totals"]["total"]["amount"],
        "average_order_value": (2 * total + 3) // 6, "discount_given": 500}]
    assert r["conversion"] == {"carts_created": 6, "carts_checked_out": 3, "rate": 0.5}
    assert r["abandonment"] == {"carts": 2, "units": 4,
                                "value": [{"amount": 4 * 2500, "currency": "USD"}]}
    assert r["top_sellers"]["by_units"] == [{"product_id": "tee", "variant_id": "tee-m",
                                             "units": 3}]  # 2 + 1 + 1 sold, 1 cancelled
    assert r["top_sellers"]["by_revenue"] == [{
        "product_id": "tee", "variant_id": "tee-m",
        "revenue": {"amount": 4500 + 2500, "currency": "USD"}}]
    assert r["promotions"] == [{"promotion_id": "ten", "code": "TEN", "uses": 1,
                                "discount": [{"amount": 500, "currency": "USD"}]}]
    assert (r["start"], r["end"], r["bucket"]) == (RANGE["from"], RANGE["to"], "hour")
    orders_by_hour = {s["start"]: s["orders"] for s in r["series"] if s["orders"]}
    assert orders_by_hour == {rfc3339(START): 1, rfc3339(START + 3600): 2}
    assert len(r["series"]) == 25
    # A range before the sales holds nothing; by day the same totals.
    empty = await _ok(await c.get("/v1/admin/analytics", headers=ADMIN, params={
        "from": rfc3339(START - 7200), "to": rfc3339(START), "bucket": "minute"}))
    assert empty["sales"] == [] and empty["conversion"]["rate"] is None
    by_day = await _ok(await c.get("/v1/admin/analytics", headers=ADMIN,
                                   params={**RANGE, "bucket": "day"}))
    assert by_day["sales"] == r["sales"] and len(by_day["series"]) == 2


async def test_events_carry_what_the_figures_need(
        shop: tuple[httpx.AsyncClient, ManualClock]) -> None:
    c, clock = shop
    await _ok(await c.put("/v1/admin/products/tee", headers=ADMIN, json={
        "name": "Tee", "price": {"amount": 2500, "currency": "USD"},
        "variants": [{"variant_id": "tee-m", "stock": 20}]}))
    await _ok(await c.put("/v1/admin/promotions/ten", headers=ADMIN, json={
        "kind": "percentage", "value": 1000, "code": "TEN"}))
    ann = bearer("ann")
    order = await _ok(await _checkout(c, ann, await _cart(c, ann, 2, "TEN")), 201)
    cid = await _cart(c, ann, 1)
    await clock.advance(3600)
    events = (await _ok(await c.get("/v1/admin/events?count=100", headers=ADMIN)))["items"]
    kinds = [e["type"] for e in events]
    assert kinds.count("cart.created") == 2
    [created] = [e for e in events if e["type"] == "cart.created"][:1]
    assert created["currency"] == "USD" and created["owner"]
    [paid] = [e for e in events if e["type"] == "order.paid"]
    assert paid["order_id"] == order["order_id"] and paid["currency"] == "USD"
    assert paid["lines"] == [{"product_id": "tee", "variant_id": "tee-m", "quantity": 2,
                              "unit_price": 2500, "line_total": 4500}]
    assert paid["discounts"] == [{"promotion_id": "ten", "code": "TEN", "amount": 500}]
    assert (paid["codes"], paid["subtotal"], paid["discount"]) == (["TEN"], 5000, 500)
    assert paid["total"] == order["totals"]["total"]  # an existing field, unchanged
    [gone] = [e for e in events if e["type"] == "cart.expired"]
    assert gone["cart_id"] == cid and gone["value"] == {"amount": 2500, "currency": "USD"}
    assert gone["lines"][0]["quantity"] == 1 and "released" in gone


@pytest.mark.parametrize(("params", "status", "code"), [
    ({"from": "yesterday", "to": RANGE["to"]}, 422, "invalid_time"),
    ({"from": RANGE["from"], "to": "2026-13-40T00:00:00Z"}, 422, "invalid_time"),
    ({**RANGE, "bucket": "week"}, 422, "validation_failed"),
    ({"from": RANGE["to"], "to": RANGE["from"]}, 422, "invalid_range"),
    ({"from": RANGE["from"], "to": rfc3339(START + 2 * 86400), "bucket": "minute"}, 422,
     "range_too_large"),
    ({"to": RANGE["to"]}, 422, "validation_failed"),
    ({**RANGE, "top": 0}, 422, "validation_failed"),
])
async def test_a_bad_query_is_a_422_with_the_error_body(
        shop: tuple[httpx.AsyncClient, ManualClock], params: dict[str, Any], status: int,
        code: str) -> None:
    c, _ = shop
    r = await c.get("/v1/admin/analytics", headers=ADMIN, params=params)
    assert r.status_code == status, r.text[:500]
    assert r.json()["error"]["code"] == code


async def test_only_an_admin_reads_analytics(
        shop: tuple[httpx.AsyncClient, ManualClock]) -> None:
    c, _ = shop
    assert (await c.get("/v1/admin/analytics", params=RANGE)).status_code == 401
    r = await c.get("/v1/admin/analytics", params=RANGE, headers=bearer("ann"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_only"


async def test_cancelling_a_paid_order_whose_capture_waited_takes_its_total_back() -> None:
    clock = ManualClock(START)
    service = await CartService.in_process(
        clock=clock, settings=EngineSettings(payment_capture="on_shipment"))
    app = create_app(GatewaySettings(auth_secret=SECRET), service)
    app.state.service = service
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test") as c:
            await _ok(await c.put("/v1/admin/products/tee", headers=ADMIN, json={
                "name": "Tee", "price": {"amount": 2500, "currency": "USD"},
                "variants": [{"variant_id": "tee-m", "stock": 5}]}))
            ann = bearer("ann")
            order = await _ok(await _checkout(c, ann, await _cart(c, ann, 2)), 201)
            await _ok(await c.post(f"/v1/orders/{order['order_id']}/cancel", headers=ann))
            events = (await _ok(await c.get("/v1/admin/events", headers=ADMIN)))["items"]
            [cancelled] = [e for e in events if e["type"] == "order.cancelled"]
            total = order["totals"]["total"]["amount"]
            assert cancelled["previous_status"] == "paid"
            assert cancelled["voided"] == {"amount": total, "currency": "USD"}
            assert cancelled["refund"] == {"amount": 0, "currency": "USD"}
            r = await _ok(await c.get("/v1/admin/analytics", headers=ADMIN, params=RANGE))
            assert r["sales"] == [{
                "currency": "USD", "orders": 1, "orders_cancelled": 1, "revenue": total,
                "refunded": total, "net_revenue": 0, "average_order_value": total,
                "discount_given": 0}]
            assert r["top_sellers"]["by_units"] == []
    finally:
        await service.close()
