"""An anonymous ``POST /v1/carts`` retried with its Idempotency-Key finds the first guest cart."""

from __future__ import annotations

import pytest

from tests.integration.inprocess import gateway

pytestmark = pytest.mark.integration


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_retried_guest_cart_creation_answers_the_same_cart() -> None:
    async with gateway() as (c, _):
        key = {"Idempotency-Key": "3f0c8d3e-6a55-4a8e-9d1f-3e2b1f7b9c10"}
        first = await c.post("/v1/carts", headers=key)
        again = await c.post("/v1/carts", headers=key)
        assert first.status_code == again.status_code == 201
        assert again.json()["cart_id"] == first.json()["cart_id"]
        assert again.json()["owner"] == first.json()["owner"]
        # either token opens the cart: both name the same guest
        for answer in (first, again):
            r = await c.get(f"/v1/carts/{first.json()['cart_id']}",
                            headers=bearer(answer.json()["token"]))
            assert r.status_code == 200
        # another key, or none, is another guest with another cart
        other = await c.post("/v1/carts", headers={"Idempotency-Key": "another-key-0001"})
        keyless = [await c.post("/v1/carts") for _ in range(2)]
        ids = {first.json()["cart_id"], other.json()["cart_id"],
               *(r.json()["cart_id"] for r in keyless)}
        assert len(ids) == 4
        # the same key with another body is a conflict, not a second cart
        r = await c.post("/v1/carts", headers=key, json={"currency": "EUR"})
        assert r.status_code == 409, r.text
        # the guest's id does not reveal the key
        assert key["Idempotency-Key"] not in first.json()["owner"]
