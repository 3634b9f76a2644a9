"""Promotions under concurrency, guest merge and saved for later, over real HTTP."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.e2e.server import Server, auth

pytestmark = pytest.mark.e2e

USES = 100
CHECKOUTS = 500


def _admin_put(server: Server, path: str, body: dict[str, object]) -> None:
    with server.client("ops", admin=True) as admin:
        admin.put(path, json=body).raise_for_status()


async def _shopper(client: httpx.AsyncClient, pid: str, code: str) -> tuple[int, str]:
    r = await client.post("/v1/carts")
    cid, h = r.json()["cart_id"], auth(r.json()["token"])
    (await client.post(f"/v1/carts/{cid}/items", headers=h,
                       json={"product_id": pid, "quantity": 1})).raise_for_status()
    r = await client.post(f"/v1/carts/{cid}/discounts", headers=h, json={"code": code})
    if r.status_code != 200:  # the last uses went while this shopper was still shopping
        return r.status_code, r.json()["error"]["code"]
    r = await client.post(f"/v1/carts/{cid}/checkout",
                          headers={**h, "Idempotency-Key": uuid.uuid4().hex},
                          json={"payment": {"token": "tok_ok"}})
    return r.status_code, r.json().get("error", {}).get("code", "")


async def _race(url: str, pid: str, code: str) -> list[tuple[int, str]]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        return await asyncio.gather(*(_shopper(client, pid, code) for _ in range(CHECKOUTS)))


def test_a_coupon_limited_to_100_uses_gives_exactly_100_under_500_checkouts(
        server: Server) -> None:
    pid, promo = "cpn-" + uuid.uuid4().hex[:8], "lim-" + uuid.uuid4().hex[:8]
    code = promo.upper()
    _admin_put(server, f"/v1/admin/products/{pid}", {
        "name": "Coupon Tee", "category": "apparel",
        "price": {"amount": 2000, "currency": "USD"}, "stock": 10_000})
    _admin_put(server, f"/v1/admin/promotions/{promo}", {
        "kind": "percentage", "value": 5000, "code": code, "usage_limit": USES})
    answers = asyncio.run(_race(server.url, pid, code))
    paid = [a for a in answers if a[0] == 201]
    assert len(paid) == USES
    # Everyone else is told the code is used up: at apply time (422) or at checkout (409).
    assert {a for a in answers if a[0] != 201} <= {(409, "usage_limit_reached"),
                                                   (422, "usage_limit_reached")}
    with server.client("ops", admin=True) as admin:
        stock = admin.post(f"/v1/admin/stock/{pid}", json={"delta": 0}).json()
        assert stock["sold"] == USES and stock["reserved"] == 0


def test_a_guest_cart_is_merged_on_login(server: Server) -> None:
    pid = "mrg-" + uuid.uuid4().hex[:8]
    _admin_put(server, f"/v1/admin/products/{pid}", {
        "name": "Merge Mug", "category": "kitchen",
        "price": {"amount": 1200, "currency": "USD"}, "stock": 50})
    with server.client() as anon:
        guest = anon.post("/v1/carts").json()
        gh = auth(guest["token"])
        anon.post(f"/v1/carts/{guest['cart_id']}/items", headers=gh,
                  json={"product_id": pid, "quantity": 2}).raise_for_status()
    user = "merge-" + uuid.uuid4().hex[:6]
    with server.client(user) as c:
        mine = c.post("/v1/carts").json()["cart_id"]
        c.post(f"/v1/carts/{mine}/items", json={"product_id": pid, "quantity": 1})
        r = c.post(f"/v1/carts/{mine}/merge", headers={"Idempotency-Key": "m1"},
                   json={"guest_token": guest["token"]})
        assert r.status_code == 200, r.text
        assert r.json()["cart"]["lines"][0]["quantity"] == 3
        assert r.json()["report"]["lines_merged"][0]["was"] == 1
        repeat = c.post(f"/v1/carts/{mine}/merge", json={"guest_token": guest["token"]})
        assert repeat.json()["report"]["already_merged"] is True
        assert repeat.json()["cart"]["lines"][0]["quantity"] == 3
        user_token = server.token(user)
        r = c.post(f"/v1/carts/{mine}/merge", json={"guest_token": user_token})
        assert r.status_code == 422 and r.json()["error"]["code"] == "not_a_guest_token"
    with server.client() as anon:
        gone = anon.get(f"/v1/carts/{guest['cart_id']}", headers=gh).json()
        assert gone["status"] == "merged" and gone["merged_into"] == mine


def test_saved_for_later_round_trip(server: Server) -> None:
    pid = "svd-" + uuid.uuid4().hex[:8]
    _admin_put(server, f"/v1/admin/products/{pid}", {
        "name": "Saved Lamp", "category": "home",
        "price": {"amount": 4500, "currency": "USD"}, "stock": 5})
    with server.client("saver-" + uuid.uuid4().hex[:6]) as c:
        cid = c.post("/v1/carts").json()["cart_id"]
        line = c.post(f"/v1/carts/{cid}/items",
                      json={"product_id": pid, "quantity": 1}).json()["lines"][0]
        r = c.post(f"/v1/carts/{cid}/items/{line['line_id']}/save-for-later")
        assert r.status_code == 200 and r.json()["cart"]["lines"] == []
        items = c.get("/v1/saved").json()["items"]
        assert [i["product_id"] for i in items] == [pid]
        r = c.post(f"/v1/saved/{items[0]['item_id']}/move-to-cart")
        assert r.status_code == 200 and r.json()["cart"]["lines"][0]["product_id"] == pid
        assert c.get("/v1/saved").json()["items"] == []
        assert c.delete(f"/v1/saved/{items[0]['item_id']}").status_code == 404
