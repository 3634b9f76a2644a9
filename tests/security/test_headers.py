"""Issue 9, defect 8 and the response headers: ``nosniff`` everywhere, ``no-store`` on carts,
orders and tokens, no redirect that reflects ``Host``, ``/metrics`` documented as text."""

from __future__ import annotations

import pytest

from tests.security.conftest import ClientAt, Shop, assert_error, bearer

pytestmark = pytest.mark.security


async def test_every_answer_is_nosniff_and_private_answers_are_no_store(shop: Shop) -> None:
    c = shop.client
    guest = await c.post("/v1/carts")
    answers = {
        "guest cart and token": guest,
        "cart": await c.get(f"/v1/carts/{shop.cart_id}", headers=shop.user),
        "cart error": await c.get("/v1/carts/nope", headers=shop.user),
        "missing token": await c.get(f"/v1/carts/{shop.cart_id}"),
        "unsupported media type": await c.post(f"/v1/carts/{shop.cart_id}/items",
                                               content=b"x", headers={
                                                   **shop.user, "Content-Type": "text/plain"}),
        "unknown route": await c.get("/v1/nowhere"),
        "saved": await c.get("/v1/saved", headers=shop.user),
        "admin": await c.get("/v1/admin/events", headers=bearer("ops", "admin")),
    }
    r = await c.post(f"/v1/carts/{shop.cart_id}/checkout", json={"payment": {"token": "tok_ok"}},
                     headers={**shop.user, "Idempotency-Key": "k-headers"})
    assert r.status_code == 201, r.text
    answers["order"] = r
    answers["order read"] = await c.get(f"/v1/orders/{r.json()['order_id']}", headers=shop.user)
    for what, answer in answers.items():
        assert answer.headers.get("x-content-type-options") == "nosniff", what
        assert answer.headers.get("cache-control") == "no-store", what
    for path in ("/v1/products", "/healthz", "/openapi.json"):
        answer = await c.get(path)
        assert answer.headers.get("x-content-type-options") == "nosniff", path


async def test_a_trailing_slash_is_a_404_not_a_redirect_built_from_host(shop: Shop) -> None:
    for path in (f"/v1/carts/{shop.cart_id}/", "/v1/products/", "/v1/saved/"):
        r = await shop.client.get(path, headers={**shop.user, "Host": "evil.example"})
        assert "location" not in r.headers, path
        assert_error(r, 404, "not_found")


async def test_metrics_are_documented_as_prometheus_text(client_at: ClientAt) -> None:
    async with client_at() as (c, _):
        spec = (await c.get("/openapi.json")).json()
        content = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        assert list(content) == ["text/plain"]
        r = await c.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")


async def test_a_405_allows_every_method_of_the_path(shop: Shop) -> None:
    r = await shop.client.put(f"/v1/carts/{shop.cart_id}/items/ln_1", headers=shop.user)
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "DELETE, PATCH"
