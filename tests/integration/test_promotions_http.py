"""Promotion rules over HTTP (in-process engine): a capped buy-X-get-Y with its own get target."""

from __future__ import annotations

import pytest

from tests.integration.inprocess import bearer, gateway

pytestmark = pytest.mark.integration


async def test_buy_two_shoes_get_socks_free_up_to_a_cap_through_the_api() -> None:
    admin, shopper = bearer("ops", "admin"), bearer("sam")
    async with gateway() as (c, _):
        for pid, category, amount in (("boot", "shoes", 12_000), ("sock", "socks", 900),
                                      ("silk", "socks", 7_000)):
            r = await c.put(f"/v1/admin/products/{pid}", headers=admin, json={
                "name": pid.title(), "category": category, "stock": 50,
                "price": {"amount": amount, "currency": "USD"}})
            assert r.status_code in (200, 201), r.text
        r = await c.put("/v1/admin/promotions/shoes-socks", headers=admin, json={
            "kind": "buy_x_get_y", "value": 10_000, "buy_quantity": 2, "get_quantity": 1,
            "target": {"type": "categories", "ids": ["shoes"]},
            "get_target": {"type": "categories", "ids": ["socks"]},
            "max_discount": {"amount": 5000, "currency": "USD"}})
        assert r.status_code in (200, 201), r.text
        cid = (await c.post("/v1/carts", headers=shopper)).json()["cart_id"]
        for pid, qty in (("boot", 2), ("sock", 1)):
            r = await c.post(f"/v1/carts/{cid}/items", headers=shopper,
                             json={"product_id": pid, "quantity": qty})
            assert r.status_code == 200, r.text
        cart = r.json()
        # the cheapest sock is free; the boots, though matching nothing else, stay full price
        assert cart["totals"]["discount"]["amount"] == 900
        assert [d["promotion_id"] for d in cart["discounts"]] == ["shoes-socks"]
        # a dearer pair of socks: the cheapest unit is still the one rewarded
        r = await c.post(f"/v1/carts/{cid}/items", headers=shopper,
                         json={"product_id": "silk", "quantity": 1})
        assert r.json()["totals"]["discount"]["amount"] == 900
        # four boots earn two rewards: 900 + 7,000 off, capped at 5,000
        line = next(ln for ln in r.json()["lines"] if ln["product_id"] == "boot")
        r = await c.patch(f"/v1/carts/{cid}/items/{line['line_id']}", headers=shopper,
                          json={"quantity": 4})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["totals"]["discount"]["amount"] == 5000
        assert "capped" in body["discounts"][0]["reason"]
