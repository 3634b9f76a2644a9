"""Issue 9, defect 2: replaying an anonymous ``POST /v1/carts`` with someone else's
Idempotency-Key must not hand over their guest cart (nor a token for it)."""

from __future__ import annotations

import pytest

from tests.security.conftest import Shop, bearer

pytestmark = pytest.mark.security


async def test_a_replayed_guest_creation_key_does_not_reach_the_guests_cart(shop: Shop) -> None:
    c = shop.client
    key = {"Idempotency-Key": "order-1"}  # guessable, as real clients pick them
    victim = await c.post("/v1/carts", headers=key)
    assert victim.status_code == 201
    victim_cart, victim_token = victim.json()["cart_id"], victim.json()["token"]
    r = await c.post(f"/v1/carts/{victim_cart}/items", headers=bearer_token(victim_token),
                     json={"product_id": "lamp", "variant_id": "lamp-red", "quantity": 2})
    assert r.status_code == 200, r.text

    attacker = await c.post("/v1/carts", headers=key)
    assert attacker.status_code == 201
    assert attacker.json()["cart_id"] != victim_cart
    assert attacker.json()["owner"] != victim.json()["owner"]
    assert attacker.json()["lines"] == []
    stolen = bearer_token(attacker.json()["token"])
    assert (await c.get(f"/v1/carts/{victim_cart}", headers=stolen)).status_code in (403, 404)
    # nor can the attacker merge the victim's cart into an account of their own
    mallory = bearer("mallory")
    own = (await c.post("/v1/carts", headers=mallory)).json()["cart_id"]
    r = await c.post(f"/v1/carts/{own}/merge", headers=mallory,
                     json={"guest_token": attacker.json()["token"]})
    assert r.status_code == 200, r.text
    assert r.json()["cart"]["lines"] == []
    r = await c.get(f"/v1/carts/{victim_cart}", headers=bearer_token(victim_token))
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert r.json()["lines"][0]["quantity"] == 2


def bearer_token(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
