"""Issue 10's waitlist over real HTTP: a sold-out variant, 50 waiting, 20 units back through
lapsed holds, failed payments and a cancelled order: 20 offers in line order, each unit sold
once."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from gateway.routes.payments import sign
from tests.e2e.server import SECRET, Server

pytestmark = pytest.mark.e2e

WAITING = 50


def _offers(admin: httpx.Client, vid: str) -> list[dict[str, Any]]:
    items = admin.get("/v1/admin/events?count=10000").json()["items"]
    return [e for e in items if e["type"] == "stock.offered" and e["variant_id"] == vid]


def test_20_returned_units_are_offered_to_the_first_20_of_50_and_sold_once(
        server: Server) -> None:
    pid = "wl-" + uuid.uuid4().hex[:8]
    vid = f"{pid}-v"
    run = uuid.uuid4().hex[:6]
    admin = server.client("ops", admin=True)
    admin.put(f"/v1/admin/products/{pid}", json={
        "name": "Drop", "category": "shoes", "price": {"amount": 9_000, "currency": "USD"},
        "variants": [{"variant_id": vid, "stock": 20, "hold_ttl": 15,
                      "offer_ttl": 120}]}).raise_for_status()
    # Sell out: 6 awaiting 3-D Secure, 6 paid in one order, 8 held in idle carts (15 s).
    pending = []
    for i in range(6):
        with server.client(f"tds-{run}-{i}") as c:
            cid = c.post("/v1/carts").json()["cart_id"]
            c.post(f"/v1/carts/{cid}/items",
                   json={"product_id": pid, "quantity": 1}).raise_for_status()
            r = c.post(f"/v1/carts/{cid}/checkout", headers={"Idempotency-Key": "t"},
                       json={"payment": {"token": "tok_3ds"}})
            assert r.status_code == 202, r.text
            pending.append(r.json()["order_id"])
    with server.client(f"big-{run}") as c:
        cid = c.post("/v1/carts").json()["cart_id"]
        c.post(f"/v1/carts/{cid}/items",
               json={"product_id": pid, "quantity": 6}).raise_for_status()
        big = c.post(f"/v1/carts/{cid}/checkout", headers={"Idempotency-Key": "b"},
                     json={"payment": {"token": "tok_ok"}}).json()
    for i in range(8):
        with server.client(f"idle-{run}-{i}") as c:
            cid = c.post("/v1/carts").json()["cart_id"]
            c.post(f"/v1/carts/{cid}/items",
                   json={"product_id": pid, "quantity": 1}).raise_for_status()
    assert admin.post(f"/v1/admin/stock/{vid}", json={"delta": 0}).json()["available"] == 0
    # 50 join, in this order.
    waiters = [f"w-{run}-{i:02d}" for i in range(WAITING)]
    for w in waiters:
        with server.client(w) as c:
            r = c.post(f"/v1/waitlist/{vid}", json={"quantity": 1})
            assert r.status_code == 201, r.text
    # Units come back: the payments fail, the paid order is cancelled, the holds lapse.
    with httpx.Client(base_url=server.url, timeout=30) as hook:
        for oid in pending:
            body = orjson.dumps({"id": f"evt_{oid}", "type": "payment.failed",
                                 "data": {"order_id": oid}})
            hook.post("/v1/payments/webhook", content=body, headers={
                "Content-Type": "application/json",
                "Payment-Signature": sign(SECRET, body, int(time.time()))}).raise_for_status()
    with server.client(f"big-{run}") as c:
        assert c.post(f"/v1/orders/{big['order_id']}/cancel").status_code == 200
    deadline = time.monotonic() + 60
    while len(_offers(admin, vid)) < 20 and time.monotonic() < deadline:
        time.sleep(0.25)  # the holds lapse on the server's clock; poll its event stream
    offers = _offers(admin, vid)
    assert [e["customer"] for e in offers] == waiters[:20]
    assert all(e["quantity"] == 1 for e in offers)
    # Everyone offered buys their unit; the 21st in line still cannot.
    for w in waiters[:20]:
        with server.client(w) as c:
            cid = c.post("/v1/carts").json()["cart_id"]
            r = c.post(f"/v1/carts/{cid}/items", json={"product_id": pid, "quantity": 1})
            assert r.status_code == 200, r.text
            r = c.post(f"/v1/carts/{cid}/checkout", headers={"Idempotency-Key": "k"},
                       json={"payment": {"token": "tok_ok"}})
            assert r.status_code == 201, r.text
    with server.client(waiters[20]) as c:
        cid = c.post("/v1/carts").json()["cart_id"]
        r = c.post(f"/v1/carts/{cid}/items", json={"product_id": pid, "quantity": 1})
        assert r.status_code == 409 and r.json()["error"]["code"] == "out_of_stock"
        [entry] = c.get("/v1/waitlist").json()["items"]
        assert (entry["state"], entry["position"]) == ("waiting", 1)
    stock = admin.post(f"/v1/admin/stock/{vid}", json={"delta": 0}).json()
    assert (stock["sold"], stock["on_hand"], stock["reserved"]) == (20, 0, 0)
    assert len(_offers(admin, vid)) == 20
    admin.close()
