"""A flash sale over HTTP: 300 concurrent buyers race for 50 units of one variant."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.e2e.server import Server, auth

pytestmark = pytest.mark.e2e

BUYERS = 300
UNITS = 50


async def _buyer(client: httpx.AsyncClient, pid: str) -> int:
    r = await client.post("/v1/carts")
    r.raise_for_status()
    cid, h = r.json()["cart_id"], auth(r.json()["token"])
    r = await client.post(f"/v1/carts/{cid}/items", headers=h,
                          json={"product_id": pid, "quantity": 1})
    if r.status_code == 409:  # sold out by the time this buyer adds (stock on add)
        assert r.json()["error"]["code"] == "out_of_stock"
        return r.status_code
    r.raise_for_status()
    r = await client.post(f"/v1/carts/{cid}/checkout",
                          headers={**h, "Idempotency-Key": uuid.uuid4().hex},
                          json={"payment": {"token": "tok_ok"}})
    if r.status_code == 409:
        assert r.json()["error"]["code"] == "out_of_stock"
    return r.status_code


async def _sale(url: str, pid: str) -> list[int]:
    limits = httpx.Limits(max_connections=BUYERS, max_keepalive_connections=BUYERS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        return await asyncio.gather(*(_buyer(client, pid) for _ in range(BUYERS)))


def test_300_buyers_for_50_units_sell_exactly_50(server: Server) -> None:
    pid = "flash-" + uuid.uuid4().hex[:8]
    with server.client("ops", admin=True) as admin:
        admin.put(f"/v1/admin/products/{pid}", json={
            "name": "Flash Sneaker", "category": "shoes",
            "price": {"amount": 9900, "currency": "USD"}, "stock": UNITS}).raise_for_status()
    codes = asyncio.run(_sale(server.url, pid))
    assert codes.count(201) == UNITS
    assert codes.count(409) == BUYERS - UNITS
    with server.client("ops", admin=True) as admin:
        stock = admin.post(f"/v1/admin/stock/{pid}", json={"delta": 0}).json()
    assert stock["reserved"] == 0 and stock["available"] >= 0
    assert stock["on_hand"] + stock["sold"] == UNITS and stock["sold"] == UNITS
