"""Issue 10 over real HTTP: purchase limits under a rush, 3-D Secure settled by a webhook
delivered three times, cancel and refund restocking once (a real ``cart-engine serve``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from gateway.routes.payments import sign
from tests.e2e.server import SECRET, Server

pytestmark = pytest.mark.e2e

BUYERS = 200


def _product(server: Server, limit: int | None, stock: int) -> tuple[str, str]:
    pid = "i10-" + uuid.uuid4().hex[:8]
    variant: dict[str, Any] = {"variant_id": f"{pid}-v", "stock": stock}
    if limit is not None:
        variant["purchase_limit"] = limit
    with server.client("ops", admin=True) as admin:
        admin.put(f"/v1/admin/products/{pid}", json={
            "name": "Limited Sneaker", "category": "shoes",
            "price": {"amount": 12_000, "currency": "USD"},
            "variants": [variant]}).raise_for_status()
    return pid, f"{pid}-v"


def _stock(server: Server, vid: str) -> dict[str, int]:
    with server.client("ops", admin=True) as admin:
        return admin.post(f"/v1/admin/stock/{vid}", json={"delta": 0}).json()  # type: ignore[no-any-return]


async def _device(client: httpx.AsyncClient, h: dict[str, str], pid: str,
                  tries: list[int]) -> list[tuple[int, str]]:
    """One device of a buyer: open the active cart, add units, check out; again while the
    buyer's 3 units of tries last (after a checkout the next cart is a new one)."""
    out = []
    while tries:
        qty = tries.pop()
        r = await client.post("/v1/carts", headers=h)
        cid = r.json()["cart_id"]
        r = await client.post(f"/v1/carts/{cid}/items", headers=h,
                              json={"product_id": pid, "quantity": qty})
        if r.status_code != 200:
            out.append((r.status_code, r.json()["error"]["code"]))
            continue
        r = await client.post(f"/v1/carts/{cid}/checkout",
                              headers={**h, "Idempotency-Key": uuid.uuid4().hex},
                              json={"payment": {"token": "tok_ok"}})
        out.append((r.status_code, r.json().get("error", {}).get("code", "")))
    return out


async def _rush(server: Server, pid: str) -> list[list[tuple[int, str]]]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as client:
        async def buyer(i: int) -> list[tuple[int, str]]:
            h = {"Authorization": f"Bearer {server.token(f'rush-{pid}-{i}')}"}
            tries = [1, 1, 1]  # 3 units, one at a time, shared by two devices racing
            a, b = await asyncio.gather(_device(client, h, pid, tries),
                                        _device(client, h, pid, tries))
            return a + b
        return await asyncio.gather(*(buyer(i) for i in range(BUYERS)))


def test_200_buyers_with_a_limit_of_1_never_buy_more_than_1(server: Server) -> None:
    pid, vid = _product(server, limit=1, stock=10_000)
    results = asyncio.run(_rush(server, pid))
    with server.client("ops", admin=True) as admin:
        for i in range(BUYERS):
            orders = admin.get("/v1/orders", headers={
                "Authorization": f"Bearer {server.token(f'rush-{pid}-{i}')}"}).json()["items"]
            units = sum(ln["quantity"] for o in orders if o["status"] == "paid"
                        for ln in o["lines"])
            assert units == 1, (i, orders)
    refused = {a for r in results for a in r if a[0] != 201}
    assert refused <= {(409, "purchase_limit_exceeded"), (409, "cart_not_active")}
    assert _stock(server, vid)["sold"] == BUYERS


def _checkout(server: Server, sub: str, pid: str, qty: int, token: str) -> httpx.Response:
    with server.client(sub) as c:
        cid = c.post("/v1/carts").json()["cart_id"]
        c.post(f"/v1/carts/{cid}/items",
               json={"product_id": pid, "quantity": qty}).raise_for_status()
        return c.post(f"/v1/carts/{cid}/checkout", headers={"Idempotency-Key": sub},
                      json={"payment": {"token": token}})


def _events(server: Server, kind: str, order_id: str) -> list[dict[str, Any]]:
    with server.client("ops", admin=True) as admin:
        items = admin.get("/v1/admin/events?count=10000").json()["items"]
    return [e for e in items if e["type"] == kind and e.get("order_id") == order_id]


def test_a_3ds_checkout_confirmed_by_a_webhook_delivered_3_times_pays_once(
        server: Server) -> None:
    pid, vid = _product(server, limit=None, stock=5)
    r = _checkout(server, "tds-" + uuid.uuid4().hex[:6], pid, 2, "tok_3ds")
    assert r.status_code == 202, r.text
    order = r.json()
    assert order["status"] == "requires_action" and order["payment"]["next_action"]
    assert _stock(server, vid)["reserved"] == 2
    body = orjson.dumps({"id": "evt_" + uuid.uuid4().hex, "type": "payment.succeeded",
                         "data": {"order_id": order["order_id"]}})
    with httpx.Client(base_url=server.url, timeout=30) as c:
        json = {"Content-Type": "application/json"}
        forged = c.post("/v1/payments/webhook", content=body, headers={
            **json, "Payment-Signature": sign("x" * 40, body, int(time.time()))})
        assert forged.status_code == 401
        assert forged.json()["error"]["code"] == "invalid_signature"
        header = {**json, "Payment-Signature": sign(SECRET, body, int(time.time()))}
        answers = [c.post("/v1/payments/webhook", content=body, headers=header).json()
                   for _ in range(3)]
    assert [a["changed"] for a in answers] == [True, False, False]
    assert answers[-1]["order"]["status"] == "paid"
    assert len(_events(server, "order.paid", order["order_id"])) == 1
    stock = _stock(server, vid)
    assert (stock["sold"], stock["reserved"], stock["on_hand"]) == (2, 0, 3)


def test_cancel_and_refund_restock_and_emit_once(server: Server) -> None:
    pid, vid = _product(server, limit=None, stock=10)
    sub = "can-" + uuid.uuid4().hex[:6]
    paid = _checkout(server, sub, pid, 3, "tok_ok").json()
    assert _stock(server, vid)["on_hand"] == 7
    with server.client(sub) as c:
        for _ in range(2):
            r = c.post(f"/v1/orders/{paid['order_id']}/cancel")
            assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert _stock(server, vid)["on_hand"] == 10
    assert len(_events(server, "order.cancelled", paid["order_id"])) == 1
    sub2 = "ref-" + uuid.uuid4().hex[:6]
    order = _checkout(server, sub2, pid, 2, "tok_ok").json()
    with server.client("ops", admin=True) as admin:
        key = {"Idempotency-Key": "refund-" + order["order_id"]}
        for _ in range(2):
            r = admin.post(f"/v1/admin/orders/{order['order_id']}/refund", headers=key)
            assert r.status_code == 200, r.text
    assert len(_events(server, "order.refunded", order["order_id"])) == 1
    assert _stock(server, vid)["on_hand"] == 10
