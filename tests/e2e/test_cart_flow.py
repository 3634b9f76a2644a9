"""The shopper's whole flow over real HTTP against a real ``cart-engine serve``."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest

from tests.e2e.server import Server, auth

pytestmark = pytest.mark.e2e


def _product(server: Server, price: int = 4000, stock: int = 20, **variant: object) -> str:
    pid = "e2e-" + uuid.uuid4().hex[:8]
    with server.client("ops", admin=True) as admin:
        r = admin.put(f"/v1/admin/products/{pid}", json={
            "name": "E2E Trail Runner", "category": "shoes",
            "price": {"amount": price, "currency": "USD"},
            "variants": [{"variant_id": f"{pid}-42", "sku": "E2E-42",
                          "attributes": {"size": "42"}, "stock": stock, **variant}]})
        assert r.status_code == 200, r.text
    return pid


def test_a_guest_shops_applies_a_code_and_checks_out(server: Server) -> None:
    pid = _product(server, price=4000, stock=20)
    with server.client("ops", admin=True) as admin:
        assert admin.put("/v1/admin/promotions/e2e10", json={
            "kind": "percentage", "value": 1000, "code": "E2E10"}).status_code == 200
    with server.client() as c:
        r = c.post("/v1/carts")
        assert r.status_code == 201
        cart, token = r.json(), r.json()["token"]
        cid, h = cart["cart_id"], auth(token)
        r = c.post(f"/v1/carts/{cid}/items", headers=h,
                   json={"product_id": pid, "variant_id": f"{pid}-42", "quantity": 1})
        assert r.status_code == 200 and r.headers["ETag"] == '"1"'
        r = c.post(f"/v1/carts/{cid}/items", headers=h,
                   json={"product_id": pid, "variant_id": f"{pid}-42", "quantity": 2})
        line = r.json()["lines"][0]
        assert len(r.json()["lines"]) == 1 and line["quantity"] == 3
        assert line["unit_price"] == {"amount": 4000, "currency": "USD"}
        r = c.patch(f"/v1/carts/{cid}/items/{line['line_id']}", headers=h, json={"quantity": 2})
        assert r.json()["totals"]["subtotal"]["amount"] == 8000
        r = c.post(f"/v1/carts/{cid}/discounts", headers=h, json={"code": "e2e10"})
        assert r.status_code == 200, r.text
        totals = r.json()["totals"]
        assert totals["discount"]["amount"] == 800 and totals["total"]["amount"] == 7200
        r = c.post(f"/v1/carts/{cid}/checkout", headers={**h, "Idempotency-Key": "flow-1"},
                   json={"payment": {"token": "tok_ok"}})
        assert r.status_code == 201, r.text
        order = r.json()
        assert order["status"] == "paid" and order["totals"]["total"]["amount"] == 7200
        got = c.get(f"/v1/orders/{order['order_id']}", headers=h)
        assert got.status_code == 200 and got.json()["status"] == "paid"
        assert "server" not in got.headers and "date" in got.headers  # no software banner
        assert c.get(f"/v1/carts/{cid}", headers=h).json()["status"] == "checked_out"
        # One active cart per shopper: the next one is new.
        again = c.post("/v1/carts", headers=h)
        assert again.status_code == 201 and again.json()["cart_id"] != cid
    with server.client("ops", admin=True) as admin:
        stock = admin.post(f"/v1/admin/stock/{pid}-42", json={"delta": 0}).json()
        assert (stock["on_hand"], stock["sold"], stock["reserved"]) == (18, 2, 0)


def test_a_signed_in_user_keeps_one_active_cart(server: Server) -> None:
    with server.client("carol") as c:
        first = c.post("/v1/carts")
        second = c.post("/v1/carts")
        assert (first.status_code, second.status_code) == (201, 200)
        assert first.json()["cart_id"] == second.json()["cart_id"]
        assert first.json()["owner"] == "carol" and "token" not in first.json()


def test_a_price_change_after_add_leaves_the_line_price_alone(server: Server) -> None:
    pid = _product(server, price=4000)
    with server.client("dave") as c:
        cid = c.post("/v1/carts").json()["cart_id"]
        c.post(f"/v1/carts/{cid}/items", json={"product_id": pid, "quantity": 1})
        with server.client("ops", admin=True) as admin:
            admin.put(f"/v1/admin/products/{pid}", json={
                "name": "E2E Trail Runner", "category": "shoes",
                "price": {"amount": 4500, "currency": "USD"},
                "variants": [{"variant_id": f"{pid}-42", "sku": "E2E-42"}]})
        line = c.get(f"/v1/carts/{cid}").json()["lines"][0]
        assert line["unit_price"]["amount"] == 4000
        assert line["price_changed"] is True and line["current_unit_price"]["amount"] == 4500
        r = c.post(f"/v1/carts/{cid}/checkout", headers={"Idempotency-Key": "pc-1"},
                   json={"payment": {"token": "tok_ok"}})
        assert r.status_code == 409 and r.json()["error"]["code"] == "price_changed"
        detail = r.json()["error"]["details"][0]
        assert detail["old_price"]["amount"] == 4000 and detail["new_price"]["amount"] == 4500
        r = c.post(f"/v1/carts/{cid}/checkout", headers={"Idempotency-Key": "pc-2"},
                   json={"payment": {"token": "tok_ok"}, "accept_price_changes": True})
        assert r.status_code == 201 and r.json()["totals"]["subtotal"]["amount"] == 4500


def test_two_checkouts_with_one_key_make_one_order(server: Server) -> None:
    pid = _product(server, stock=5)
    with server.client("erin") as c:
        cid = c.post("/v1/carts").json()["cart_id"]
        c.post(f"/v1/carts/{cid}/items", json={"product_id": pid, "quantity": 1})

    def checkout() -> tuple[int, dict[str, object]]:
        with server.client("erin") as c2:
            r = c2.post(f"/v1/carts/{cid}/checkout", headers={"Idempotency-Key": "same-key"},
                        json={"payment": {"token": "tok_ok"}})
            return r.status_code, r.json()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: checkout(), range(4)))
    assert {code for code, _ in answers} == {201}
    assert len({body["order_id"] for _, body in answers}) == 1
    with server.client("ops", admin=True) as admin:
        stock = admin.post(f"/v1/admin/stock/{pid}-42", json={"delta": 0}).json()
        assert stock["sold"] == 1 and stock["on_hand"] == 4
        events = admin.get("/v1/admin/events", params={"count": 10000}).json()["items"]
        order_id = answers[0][1]["order_id"]
        assert sum(e["type"] == "order.paid" and e["order_id"] == order_id for e in events) == 1


def test_if_match_with_a_stale_version_is_a_conflict(server: Server) -> None:
    pid = _product(server)
    with server.client("frank") as c:
        cid = c.post("/v1/carts").json()["cart_id"]
        r = c.post(f"/v1/carts/{cid}/items", headers={"If-Match": '"0"'},
                   json={"product_id": pid, "quantity": 1})
        assert r.status_code == 200
        r = c.post(f"/v1/carts/{cid}/items", headers={"If-Match": '"0"'},
                   json={"product_id": pid, "quantity": 1})
        assert r.status_code == 409 and r.json()["error"]["code"] == "version_mismatch"
        assert c.get(f"/v1/carts/{cid}").json()["lines"][0]["quantity"] == 1


def test_declined_and_failing_payments_release_stock(server: Server) -> None:
    pid = _product(server, stock=2)
    with server.client("gina") as c:
        cid = c.post("/v1/carts").json()["cart_id"]
        c.post(f"/v1/carts/{cid}/items", json={"product_id": pid, "quantity": 2})
        r = c.post(f"/v1/carts/{cid}/checkout", headers={"Idempotency-Key": "dec"},
                   json={"payment": {"token": "tok_declined"}})
        assert r.status_code == 402 and r.json()["error"]["code"] == "payment_declined"
        r = c.post(f"/v1/carts/{cid}/checkout", headers={"Idempotency-Key": "err"},
                   json={"payment": {"token": "tok_error"}})
        assert r.status_code == 503 and r.headers["Retry-After"]
        with server.client("ops", admin=True) as admin:
            assert admin.post(f"/v1/admin/stock/{pid}-42",
                              json={"delta": 0}).json()["available"] == 2
        r = c.post(f"/v1/carts/{cid}/checkout", headers={"Idempotency-Key": "ok"},
                   json={"payment": {"token": "tok_ok"}})
        assert r.status_code == 201


def test_operations_endpoints_answer(server: Server) -> None:
    with server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok", "hosts": 2}
        assert c.get("/readyz").json()["status"] == "ready"
        assert "cart_engine_http_requests_total" in c.get("/metrics").text
        assert c.get("/docs").status_code == 200
        products = c.get("/v1/products", params={"limit": 5}).json()
        assert len(products["items"]) == 5 and products["next_cursor"]
        nxt = c.get("/v1/products", params={"limit": 5, "cursor": products["next_cursor"]})
        assert nxt.json()["items"][0]["product_id"] > products["items"][-1]["product_id"]
        one = c.get(f"/v1/products/{products['items'][0]['product_id']}").json()
        assert "available" in one["variants"][0]


def test_metrics_show_the_engines_hosts_and_routers(server: Server) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with server.client() as c:
        c.post("/v1/carts").raise_for_status()  # at least one message through the router
        text = c.get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("cart_engine_directory_hosts") == 2  # the e2e server runs two Ray hosts
    assert value("cart_engine_directory_unowned") == 0
    assert sum(value("cart_engine_directory_partitions", host=h) for h in ("h0", "h1")) == 256
    for host in ("h0", "h1"):
        assert value("cart_engine_host_actors", host=host) >= 0
        assert value("cart_engine_router_overloaded_total", router=f"host-{host}") == 0
        assert value("cart_engine_router_messages_total", router=f"host-{host}") >= \
            value("cart_engine_router_batches_total", router=f"host-{host}")
    assert sum(value("cart_engine_host_turns_total", host=h) for h in ("h0", "h1")) >= 1
