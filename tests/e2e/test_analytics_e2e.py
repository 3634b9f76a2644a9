"""Sales analytics through a real ``cart-engine serve``: a small flash sale over HTTP (12
buyers for 5 units), then ``GET /v1/admin/analytics`` shows it once the consumer `serve`
started has read the outbox."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from typing import Any

import pytest

from engine.timefmt import rfc3339
from tests.e2e.server import Server, auth

pytestmark = pytest.mark.e2e
PRICE = 98_765


def _figures(server: Server, since: float) -> dict[str, Any]:
    with server.client("ops", admin=True) as admin:
        r = admin.get("/v1/admin/analytics", params={
            "from": rfc3339(since - 3600), "to": rfc3339(since + 3600), "bucket": "hour",
            "top": 100})
        assert r.status_code == 200, r.text[:500]
        return r.json()  # type: ignore[no-any-return]


def _usd(figures: dict[str, Any]) -> dict[str, Any]:
    return next((s for s in figures["sales"] if s["currency"] == "USD"),
                {"orders": 0, "revenue": 0})


def test_a_flash_sale_through_http_shows_in_the_analytics(server: Server) -> None:
    now = time.time()
    before = _figures(server, now)
    pid = "e2e-an-" + uuid.uuid4().hex[:8]
    vid = f"{pid}-1"
    with server.client("ops", admin=True) as admin:
        assert admin.put(f"/v1/admin/products/{pid}", json={
            "name": "Analytics Tee", "price": {"amount": PRICE, "currency": "USD"},
            "variants": [{"variant_id": vid, "stock": 5}]}).status_code == 200

    def buyer(i: int) -> int:
        with server.client() as c:
            cart = c.post("/v1/carts").json()
            h = auth(cart["token"])
            r = c.post(f"/v1/carts/{cart['cart_id']}/items", headers=h,
                       json={"product_id": pid, "variant_id": vid, "quantity": 1})
            if r.status_code != 200:
                return r.status_code
            return c.post(f"/v1/carts/{cart['cart_id']}/checkout",
                          headers={**h, "Idempotency-Key": f"an-{i}"},
                          json={"payment": {"token": "tok_ok"}}).status_code

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(buyer, range(12)))
    assert statuses.count(201) == 5, statuses

    deadline = time.monotonic() + 30
    while True:  # the consumer reads the outbox within about a second
        after = _figures(server, now)
        mine = [s for s in after["top_sellers"]["by_units"] if s["variant_id"] == vid]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mine == [{"product_id": pid, "variant_id": vid, "units": 5}]
    assert {"product_id": pid, "variant_id": vid,
            "revenue": {"amount": 5 * PRICE, "currency": "USD"}} in \
        after["top_sellers"]["by_revenue"]
    assert _usd(after)["orders"] - _usd(before)["orders"] == 5
    assert _usd(after)["revenue"] - _usd(before)["revenue"] >= 5 * PRICE
    conv, conv0 = after["conversion"], before["conversion"]
    assert conv["carts_created"] - conv0["carts_created"] == 12
    assert conv["carts_checked_out"] - conv0["carts_checked_out"] == 5
