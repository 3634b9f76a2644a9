"""An anonymous ``POST /v1/carts`` is a caller of its own: its Idempotency-Key is scoped to it.

A retry without the guest's token is another new guest (a key never hands over a cart); a
retry carrying the guest's token is that guest, and answers its cart.
"""

from __future__ import annotations

import pytest

from tests.integration.inprocess import gateway

pytestmark = pytest.mark.integration


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_guest_cart_creation_key_belongs_to_the_guest() -> None:
    async with gateway() as (c, _):
        key = {"Idempotency-Key": "3f0c8d3e-6a55-4a8e-9d1f-3e2b1f7b9c10"}
        first = await c.post("/v1/carts", headers=key)
        assert first.status_code == 201
        token = first.json()["token"]
        # the guest's own retry, with its token, answers its cart (and no second token)
        again = await c.post("/v1/carts", headers={**key, **bearer(token)})
        assert again.status_code in (200, 201), again.text
        assert again.json()["cart_id"] == first.json()["cart_id"]
        assert again.json()["owner"] == first.json()["owner"]
        assert again.json().get("token") is None
        # the same key without the token is another guest with another cart
        replay = await c.post("/v1/carts", headers=key)
        assert replay.status_code == 201
        assert replay.json()["cart_id"] != first.json()["cart_id"]
        assert replay.json()["owner"] != first.json()["owner"]
        r = await c.get(f"/v1/carts/{first.json()['cart_id']}",
                        headers=bearer(replay.json()["token"]))
        assert r.status_code in (403, 404), r.text
        # the guest's id does not reveal the key
        assert key["Idempotency-Key"] not in first.json()["owner"]
        # the same key with another body, by the same guest, is a conflict
        r = await c.post("/v1/carts", headers={**key, **bearer(token)},
                         json={"currency": "EUR"})
        assert r.status_code == 409, r.text
