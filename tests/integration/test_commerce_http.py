"""Issue 10 over HTTP (in-process engine): stock on add, purchase limits, admin idempotency,
promotions active / delete / uses, order lifecycle, 3-D Secure and signed webhooks."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from gateway.routes.payments import sign
from tests.integration.inprocess import SECRET, bearer, gateway

pytestmark = pytest.mark.integration
ADMIN = bearer("ops", "admin")


async def _product(c: httpx.AsyncClient, pid: str, stock: int, **variant: Any) -> None:
    r = await c.put(f"/v1/admin/products/{pid}", headers=ADMIN, json={
        "name": pid.title(), "price": {"amount": 2500, "currency": "USD"},
        "variants": [{"variant_id": f"{pid}-v", "stock": stock, **variant}]})
    assert r.status_code == 200, r.text


async def _cart_with(c: httpx.AsyncClient, who: dict[str, str], pid: str, qty: int) -> str:
    cid = (await c.post("/v1/carts", headers=who)).json()["cart_id"]
    r = await c.post(f"/v1/carts/{cid}/items", headers=who,
                     json={"product_id": pid, "quantity": qty})
    assert r.status_code == 200, r.text
    return str(cid)


async def _events(c: httpx.AsyncClient, kind: str, order_id: str) -> list[dict[str, Any]]:
    items = (await c.get("/v1/admin/events?count=1000", headers=ADMIN)).json()["items"]
    return [e for e in items if e["type"] == kind and e.get("order_id") == order_id]


async def test_adding_beyond_stock_or_a_limit_is_a_409_with_the_numbers() -> None:
    me = bearer("ann")
    async with gateway() as (c, _):
        await _product(c, "tee", 3)
        await _product(c, "ltd", 50, purchase_limit=2)
        cid = (await c.post("/v1/carts", headers=me)).json()["cart_id"]
        r = await c.post(f"/v1/carts/{cid}/items", headers=me,
                         json={"product_id": "tee", "quantity": 50})
        assert r.status_code == 409 and r.json()["error"]["code"] == "out_of_stock"
        assert r.json()["error"]["details"][0]["available"] == 3
        r = await c.post(f"/v1/carts/{cid}/items", headers=me,
                         json={"product_id": "ltd", "quantity": 3})
        assert r.status_code == 409
        err = r.json()["error"]
        assert err["code"] == "purchase_limit_exceeded"
        assert (err["details"][0]["limit"], err["details"][0]["already"]) == (2, 0)
        assert (await c.get(f"/v1/carts/{cid}", headers=me)).json()["lines"] == []


async def test_a_retried_admin_stock_delta_adds_once() -> None:
    async with gateway() as (c, svc):
        await _product(c, "tee", 10)
        key = {**ADMIN, "Idempotency-Key": "restock-1"}
        first = await c.post("/v1/admin/stock/tee-v", headers=key, json={"delta": 1})
        again = await c.post("/v1/admin/stock/tee-v", headers=key, json={"delta": 1})
        assert first.json() == again.json() and first.json()["on_hand"] == 11
        assert (await svc.stock("tee-v"))["on_hand"] == 11
        other = await c.post("/v1/admin/stock/tee-v", headers=key, json={"delta": 5})
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_promotions_can_be_paused_read_with_their_uses_and_deleted() -> None:
    me = bearer("bo")
    async with gateway() as (c, _):
        await _product(c, "tee", 10)
        body = {"kind": "percentage", "value": 1000, "code": "TEN", "usage_limit": 5}
        assert (await c.put("/v1/admin/promotions/ten", headers=ADMIN,
                            json={**body, "active": False})).status_code == 200
        cid = await _cart_with(c, me, "tee", 1)
        r = await c.post(f"/v1/carts/{cid}/discounts", headers=me, json={"code": "ten"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "code_inactive"
        await c.put("/v1/admin/promotions/ten", headers=ADMIN, json=body)
        r = await c.post(f"/v1/carts/{cid}/discounts", headers=me, json={"code": "ten"})
        assert r.status_code == 200, r.text
        r = await c.post(f"/v1/carts/{cid}/checkout", headers={**me, "Idempotency-Key": "k"},
                         json={"payment": {"token": "tok_ok"}})
        assert r.status_code == 201, r.text
        promo = (await c.get("/v1/admin/promotions/ten", headers=ADMIN)).json()
        assert promo["uses"] == {"used": 1, "held": 0} and promo["active"] is True
        assert (await c.delete("/v1/admin/promotions/ten", headers=ADMIN)).status_code == 204
        assert (await c.get("/v1/admin/promotions/ten", headers=ADMIN)).status_code == 404
        cid = await _cart_with(c, me, "tee", 1)
        r = await c.post(f"/v1/carts/{cid}/discounts", headers=me, json={"code": "ten"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_code"


async def test_orders_are_listed_newest_first_and_cancel_restocks_once() -> None:
    me = bearer("cy")
    async with gateway() as (c, svc):
        await _product(c, "tee", 10)
        ids = []
        for i in range(3):
            cid = await _cart_with(c, me, "tee", 1)
            r = await c.post(f"/v1/carts/{cid}/checkout",
                             headers={**me, "Idempotency-Key": f"o{i}"},
                             json={"payment": {"token": "tok_ok"}})
            ids.append(r.json()["order_id"])
        page = (await c.get("/v1/orders?limit=2", headers=me)).json()
        assert [o["order_id"] for o in page["items"]] == ids[::-1][:2]
        rest = (await c.get(f"/v1/orders?limit=2&cursor={page['next_cursor']}",
                            headers=me)).json()
        assert [o["order_id"] for o in rest["items"]] == ids[:1] and rest["next_cursor"] is None
        assert (await c.get("/v1/orders", headers=bearer("someone"))).json()["items"] == []
        assert (await svc.stock("tee-v"))["on_hand"] == 7
        for _ in range(2):  # a repeat changes nothing and emits nothing
            r = await c.post(f"/v1/orders/{ids[0]}/cancel", headers=me)
            assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert (await svc.stock("tee-v"))["on_hand"] == 8
        assert len(await _events(c, "order.cancelled", ids[0])) == 1
        assert (await c.post(f"/v1/orders/{ids[1]}/cancel",
                             headers=bearer("someone"))).status_code == 404
        # shipped twice: one event; then it can no longer be cancelled
        for _ in range(2):
            assert (await c.post(f"/v1/admin/orders/{ids[1]}/ship",
                                 headers=ADMIN)).status_code == 200
        assert len(await _events(c, "order.shipped", ids[1])) == 1
        r = await c.post(f"/v1/orders/{ids[1]}/cancel", headers=me)
        assert r.status_code == 409 and r.json()["error"]["code"] == "order_shipped"


async def test_partial_refunds_stop_at_the_captured_total() -> None:
    me = bearer("di")
    async with gateway() as (c, svc):
        await _product(c, "tee", 10)
        cid = await _cart_with(c, me, "tee", 2)  # 50.00 USD, free shipping
        order = (await c.post(f"/v1/carts/{cid}/checkout",
                              headers={**me, "Idempotency-Key": "r"},
                              json={"payment": {"token": "tok_ok"}})).json()
        oid, total = order["order_id"], order["totals"]["total"]["amount"]
        key = {**ADMIN, "Idempotency-Key": "refund-1"}
        for _ in range(2):
            r = await c.post(f"/v1/admin/orders/{oid}/refund", headers=key,
                             json={"amount": 1000})
            assert r.status_code == 200, r.text
        assert len(await _events(c, "order.refunded", oid)) == 1
        r = await c.post(f"/v1/admin/orders/{oid}/refund", headers=ADMIN,
                         json={"amount": total})
        assert r.status_code == 409
        assert r.json()["error"]["details"] == [{"refundable": total - 1000}]
        assert (await svc.stock("tee-v"))["on_hand"] == 8
        r = await c.post(f"/v1/admin/orders/{oid}/refund", headers=ADMIN)  # the rest
        assert r.json()["payment"]["refunded"]["amount"] == total
        assert (await svc.stock("tee-v"))["on_hand"] == 10  # a full refund restocks


def _webhook(order_id: str, kind: str, event_id: str, t: int | None = None,
             secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps({"id": event_id, "type": kind, "data": {"order_id": order_id}})
    t = int(time.time()) if t is None else t
    return body, {"Payment-Signature": sign(secret, body, t),
                  "Content-Type": "application/json"}


async def test_a_3ds_checkout_is_paid_once_by_a_webhook_delivered_three_times() -> None:
    me = bearer("eve")
    async with gateway() as (c, svc):
        await _product(c, "tee", 5)
        cid = await _cart_with(c, me, "tee", 2)
        r = await c.post(f"/v1/carts/{cid}/checkout", headers={**me, "Idempotency-Key": "3"},
                         json={"payment": {"token": "tok_3ds"}})
        assert r.status_code == 202, r.text
        order = r.json()
        assert order["status"] == "requires_action" and order["payment"]["next_action"]
        assert (await svc.stock("tee-v"))["reserved"] == 2
        body, headers = _webhook(order["order_id"], "payment.succeeded", "evt_1")
        bad = dict(headers, **{"Payment-Signature": headers["Payment-Signature"][:-2] + "00"})
        r = await c.post("/v1/payments/webhook", content=body, headers=bad)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_signature"
        old_body, old = _webhook(order["order_id"], "payment.succeeded", "evt_1",
                                 t=int(time.time()) - 3600)
        r = await c.post("/v1/payments/webhook", content=old_body, headers=old)
        assert r.status_code == 401 and r.json()["error"]["code"] == "signature_expired"
        changed = []
        for _ in range(3):
            r = await c.post("/v1/payments/webhook", content=body, headers=headers)
            assert r.status_code == 200, r.text
            changed.append(r.json()["changed"])
        assert changed == [True, False, False]
        assert (await c.get(f"/v1/orders/{order['order_id']}", headers=me)).json()[
            "status"] == "paid"
        assert len(await _events(c, "order.paid", order["order_id"])) == 1
        stock = await svc.stock("tee-v")
        assert stock["sold"] == 2 and stock["reserved"] == 0


async def test_a_failed_3ds_payment_releases_the_stock() -> None:
    me = bearer("fay")
    async with gateway() as (c, svc):
        await _product(c, "tee", 2)
        cid = await _cart_with(c, me, "tee", 2)
        order = (await c.post(f"/v1/carts/{cid}/checkout",
                              headers={**me, "Idempotency-Key": "f"},
                              json={"payment": {"token": "tok_3ds"}})).json()
        body, headers = _webhook(order["order_id"], "payment.failed", "evt_f")
        r = await c.post("/v1/payments/webhook", content=body, headers=headers)
        assert r.json()["order"]["status"] == "payment_failed"
        assert (await svc.stock("tee-v"))["available"] == 2


async def test_capture_can_wait_for_shipment() -> None:
    me = bearer("gil")
    from actors.settings import EngineSettings

    async with gateway(EngineSettings(payment_capture="on_shipment")) as (c, _):
        await _product(c, "tee", 5)
        cid = await _cart_with(c, me, "tee", 1)
        order = (await c.post(f"/v1/carts/{cid}/checkout",
                              headers={**me, "Idempotency-Key": "s"},
                              json={"payment": {"token": "tok_ok"}})).json()
        assert order["payment"]["status"] == "authorized"
        r = await c.post(f"/v1/admin/orders/{order['order_id']}/refund", headers=ADMIN)
        assert r.status_code == 409  # nothing captured yet
        shipped = (await c.post(f"/v1/admin/orders/{order['order_id']}/ship",
                                headers=ADMIN)).json()
        assert shipped["payment"]["status"] == "captured"


async def test_the_waitlist_over_http() -> None:
    ann, bo = bearer("wl-ann"), bearer("wl-bo")
    async with gateway() as (c, _):
        await _product(c, "hot", 0)
        r = await c.post("/v1/waitlist/hot-v", headers=ann, json={"quantity": 1})
        assert r.status_code == 201 and r.json()["position"] == 1, r.text
        r = await c.post("/v1/waitlist/hot-v", headers=bo, json={})
        assert r.status_code == 201 and r.json()["position"] == 2
        again = await c.post("/v1/waitlist/hot-v", headers=bo, json={"quantity": 1})
        assert again.status_code == 200 and again.json()["position"] == 2
        assert (await c.post("/v1/waitlist/nope", headers=bo, json={})).status_code == 404
        r = await c.post("/v1/waitlist/hot-v", headers=bo, json={"quantity": 0})
        assert r.status_code == 422
        await c.post("/v1/admin/stock/hot-v", headers=ADMIN, json={"delta": 1})
        [entry] = (await c.get("/v1/waitlist", headers=ann)).json()["items"]
        assert entry["state"] == "offered" and entry["offer"]["quantity"] == 1
        cid = (await c.post("/v1/carts", headers=ann)).json()["cart_id"]
        r = await c.post(f"/v1/carts/{cid}/items", headers=ann,
                         json={"product_id": "hot", "quantity": 1})
        assert r.status_code == 200 and r.json()["lines"][0]["held"] is True
        assert (await c.delete("/v1/waitlist/hot-v", headers=bo)).status_code == 200
        assert (await c.get("/v1/waitlist", headers=bo)).json()["items"] == []
        r = await c.delete("/v1/waitlist/hot-v", headers=bo)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_waiting"
