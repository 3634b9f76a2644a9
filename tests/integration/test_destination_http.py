"""Tax by destination over HTTP (in-process engine): estimated on the cart view with
``?country=&region=``, applied at checkout from ``shipping_address``; bad codes change nothing."""

from __future__ import annotations

import pytest

from actors.settings import EngineSettings
from tests.integration.inprocess import bearer, gateway

pytestmark = pytest.mark.integration


async def test_the_cart_view_estimates_tax_for_a_destination_and_refuses_bad_codes() -> None:
    admin, shopper = bearer("ops", "admin"), bearer("dana")
    rates = EngineSettings(tax_rate_bp=0, tax_rates={"US-CA": 725, "DE": 1900})
    async with gateway(rates) as (c, service):
        r = await c.put("/v1/admin/products/lamp", headers=admin, json={
            "name": "Lamp", "category": "home", "stock": 5,
            "price": {"amount": 10_000, "currency": "USD"}})
        assert r.status_code in (200, 201), r.text
        cid = (await c.post("/v1/carts", headers=shopper)).json()["cart_id"]
        r = await c.post(f"/v1/carts/{cid}/items", headers=shopper,
                         json={"product_id": "lamp", "quantity": 1})
        assert r.json()["totals"]["tax"]["amount"] == 0  # no destination: the default rate
        version = r.json()["version"]

        async def tax(query: str) -> int:
            r = await c.get(f"/v1/carts/{cid}{query}", headers=shopper)
            assert r.status_code == 200, r.text
            return int(r.json()["totals"]["tax"]["amount"])

        # 7.25 % of 10,000 plus shipping as the policy taxes it; at least the lamp's share
        ca_tax = await tax("?country=us&region=ca")
        assert ca_tax == await tax("?region=US-CA") >= 725
        assert await tax("?country=DE") >= 1900
        assert await tax("?country=FR") == 0  # no rate for France: the default
        for query, field in (("?country=USA", "country"), ("?country=US&region=CALIF", "region"),
                             ("?region=CA", "region"), ("?country=DE&region=US-CA", "region")):
            r = await c.get(f"/v1/carts/{cid}{query}", headers=shopper)
            assert r.status_code == 422, query
            error = r.json()["error"]
            assert error["code"] == "invalid_destination"
            assert error["details"][0]["field"] == field
        # a checkout to a bad destination is refused before anything is reserved or charged
        r = await c.post(f"/v1/carts/{cid}/checkout",
                         headers={**shopper, "Idempotency-Key": "k-bad-dest"},
                         json={"payment": {"token": "tok_ok"},
                               "shipping_address": {"country": "United States"}})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_destination"
        r = await c.get(f"/v1/carts/{cid}", headers=shopper)
        assert r.json()["status"] == "active" and r.json()["version"] == version
        assert (await service.stock("lamp"))["reserved"] == 0
        r = await c.post(f"/v1/carts/{cid}/checkout",
                         headers={**shopper, "Idempotency-Key": "k-ca"},
                         json={"payment": {"token": "tok_ok"},
                               "shipping_address": {"line1": "1 Main St", "country": "us",
                                                    "region": "ca"}})
        assert r.status_code == 201, r.text
        assert r.json()["totals"]["tax"]["amount"] == ca_tax
