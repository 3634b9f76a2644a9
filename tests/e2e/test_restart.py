"""A restart of the whole service (bundled Redis included) loses nothing acknowledged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.server import Server

pytestmark = pytest.mark.e2e

PRODUCT = {"name": "Restart Boot", "category": "shoes",
           "price": {"amount": 12000, "currency": "USD"},
           "variants": [{"variant_id": "boot-43", "sku": "BOOT-43", "stock": 10}]}


def _serve(data_dir: Path, ray_address: str, log: Path) -> Server:
    # No --redis-url and REDIS_URL blanked: the service runs its bundled Redis in data_dir.
    return Server("--data-dir", str(data_dir), "--ray-address", ray_address,
                  env={"REDIS_URL": "", "CART_ENGINE_REDIS_URL": ""}, log=log).start()


def test_carts_stock_and_orders_survive_a_restart(ray_address: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    first = _serve(tmp_path / "data", ray_address, log)
    try:
        with first.client("ops", admin=True) as admin:
            admin.put("/v1/admin/products/boot", json=PRODUCT).raise_for_status()
        with first.client("hana") as c:
            paid_cart = c.post("/v1/carts").json()["cart_id"]
            c.post(f"/v1/carts/{paid_cart}/items", json={"product_id": "boot", "quantity": 3})
            order = c.post(f"/v1/carts/{paid_cart}/checkout", headers={"Idempotency-Key": "r1"},
                           json={"payment": {"token": "tok_ok"}}).json()
            open_cart = c.post("/v1/carts").json()["cart_id"]
            before = c.post(f"/v1/carts/{open_cart}/items",
                            json={"product_id": "boot", "quantity": 2}).json()
    finally:
        assert first.stop() in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
    assert "stopped cleanly" in log.read_text()

    second = _serve(tmp_path / "data", ray_address, log)
    try:
        with second.client("hana") as c:
            after = c.get(f"/v1/carts/{open_cart}").json()
            assert after == before  # same lines, prices, times, version
            assert c.get(f"/v1/orders/{order['order_id']}").json()["status"] == "paid"
            assert c.get(f"/v1/carts/{paid_cart}").json()["status"] == "checked_out"
            assert c.post("/v1/carts").json()["cart_id"] == open_cart  # still the active one
            # The idempotency record survived too: the same key answers the same order.
            again = c.post(f"/v1/carts/{paid_cart}/checkout", headers={"Idempotency-Key": "r1"},
                           json={"payment": {"token": "tok_ok"}})
            assert again.status_code == 201 and again.json() == order
        with second.client("ops", admin=True) as admin:
            stock = admin.post("/v1/admin/stock/boot-43", json={"delta": 0}).json()
            assert (stock["on_hand"], stock["sold"]) == (7, 3)
            assert admin.get("/v1/products/boot").json()["name"] == "Restart Boot"
    finally:
        second.stop()
