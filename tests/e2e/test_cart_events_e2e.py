"""Cart event streams against a real ``cart-engine serve`` (Ray hosts, an ingress on each,
the Redis store): the hub of whichever host takes the stream sees changes made through any
host, and resumes from the Redis outbox."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.server import Server
from tests.sse import open_stream

pytestmark = pytest.mark.e2e


async def test_streams_follow_changes_made_through_other_connections(server: Server) -> None:
    pid = "sse-" + uuid.uuid4().hex[:8]
    admin = {"Authorization": f"Bearer {server.token('ops', admin=True)}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        r = await http.put(f"/v1/admin/products/{pid}", headers=admin, json={
            "name": "SSE tee", "category": "apparel", "stock": 50,
            "price": {"amount": 1200, "currency": "USD"}})
        assert r.status_code == 200, r.text
        r = await http.post("/v1/carts")
        cid, token = r.json()["cart_id"], r.json()["token"]
        mine = {"Authorization": f"Bearer {token}"}
        other = await http.get(f"/v1/carts/{cid}/events",
                               headers={"Authorization": f"Bearer {server.token('eve')}"})
        assert other.status_code == 404 and other.json()["error"]["code"] == "cart_not_found"
        async with open_stream(http, f"/v1/carts/{cid}/events", token) as st:
            first = await st.event(within=30)
            assert first.event == "cart" and first.data["cart_id"] == cid
            for n in (1, 2):  # new connections: the kernel may give each to another host
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
                    r = await c.post(f"/v1/carts/{cid}/items", headers=mine,
                                     json={"product_id": pid, "quantity": 1})
                    assert r.status_code == 200, r.text
                ev, _ = await st.until("cart", within=30, version=r.json()["version"])
                assert ev.data["lines"][0]["quantity"] == n
            last = ev.id
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            r = await c.post(f"/v1/carts/{cid}/items", headers=mine,
                             json={"product_id": pid, "quantity": 1})
            assert r.status_code == 200
        async with open_stream(http, f"/v1/carts/{cid}/events", token,
                               last_event_id=last) as st:
            ev = await st.event(within=30)
            assert ev.event == "cart" and ev.data["version"] == r.json()["version"]
