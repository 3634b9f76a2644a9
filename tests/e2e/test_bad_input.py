"""Black-box battery: every malformed or out-of-range request gets the API.md error body with
the right status, and changes nothing (the cart reads the same, the stock is the same).

Each test builds its own products (uuid ids) and shoppers (uuid subjects): the server is shared
by the whole e2e session.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e.server import SECRET, Server, auth

pytestmark = pytest.mark.e2e

SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
OTHER_SECRET = "not-the-server-secret-but-32-bytes-long!"
LONG_ID = "x" * 129
MAX_BODY = 64 * 1024


# -- helpers ---------------------------------------------------------------------------------

def uid(prefix: str = "bad") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """``r`` is the API.md error body with ``status`` (and ``code``, when given)."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    e = body["error"]
    assert isinstance(e, dict), body
    assert isinstance(e.get("code"), str) and SNAKE.match(e["code"]), body
    if code is not None:
        assert e["code"] == code, body
    assert isinstance(e.get("message"), str) and e["message"].strip(), body
    assert isinstance(e.get("details"), list), body
    return e


def fields_of(e: dict[str, Any]) -> set[str]:
    return {str(d.get("field")) for d in e["details"] if isinstance(d, dict)}


def make_product(admin: httpx.Client, n_variants: int = 2, stock: int = 1000, price: int = 1000,
                 currency: str = "USD") -> tuple[str, list[str]]:
    pid = uid("badp")
    variants = [{"variant_id": f"{pid}-v{i}", "sku": f"SKU-{i}", "attributes": {"n": str(i)},
                 "stock": stock} for i in range(n_variants)]
    r = admin.put(f"/v1/admin/products/{pid}", json={
        "name": "Bad Input Boot", "category": "shoes",
        "price": {"amount": price, "currency": currency}, "variants": variants})
    assert r.status_code == 200, r.text
    return pid, [v["variant_id"] for v in variants]


def forged(sub: str, secret: str = SECRET, exp_in: int = 3600, **extra: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "role": "user", "iat": now, "exp": now + exp_in, **extra},
                      secret, algorithm="HS256")


@dataclass
class Shop:
    """A shopper with a cart holding one line (2 units of variant 0) of a fresh product."""

    server: Server
    admin: httpx.Client
    user: str
    client: httpx.Client
    cid: str
    pid: str
    variants: list[str]
    line_id: str
    extra_variants: list[str] = field(default_factory=list)

    def cart(self) -> dict[str, Any]:
        r = self.client.get(f"/v1/carts/{self.cid}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def stock(self) -> list[dict[str, Any]]:
        out = []
        for v in self.variants + self.extra_variants:
            r = self.admin.post(f"/v1/admin/stock/{v}", json={"delta": 0})
            assert r.status_code == 200, r.text
            out.append(r.json())
        return out

    def state(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return self.cart(), self.stock()


@contextmanager
def changes_nothing(shop: Shop) -> Iterator[None]:
    cart, stock = shop.state()
    yield
    cart2, stock2 = shop.state()
    assert cart2["version"] == cart["version"]
    assert cart2["lines"] == cart["lines"]
    assert cart2 == cart
    assert stock2 == stock


@pytest.fixture
def admin(server: Server) -> Iterator[httpx.Client]:
    with server.client("ops", admin=True) as c:
        yield c


def open_shop(server: Server, admin: httpx.Client, currency: str | None = None,
              n_variants: int = 2) -> Shop:
    pid, variants = make_product(admin, n_variants=n_variants)
    user = uid("shopper")
    c = server.client(user)
    r = c.post("/v1/carts", json={"currency": currency} if currency else None)
    assert r.status_code == 201, r.text
    cid = r.json()["cart_id"]
    line_id = ""
    if currency in (None, "USD"):
        r = c.post(f"/v1/carts/{cid}/items",
                   json={"product_id": pid, "variant_id": variants[0], "quantity": 2})
        assert r.status_code == 200, r.text
        line_id = r.json()["lines"][0]["line_id"]
    return Shop(server, admin, user, c, cid, pid, variants, line_id)


@pytest.fixture
def shop(server: Server, admin: httpx.Client) -> Iterator[Shop]:
    s = open_shop(server, admin)
    yield s
    s.client.close()


def add_body(shop: Shop, **over: Any) -> dict[str, Any]:
    return {"product_id": shop.pid, "variant_id": shop.variants[0], "quantity": 1, **over}


# -- quantities ------------------------------------------------------------------------------

BAD_QUANTITIES = [
    pytest.param(-1, id="negative"),
    pytest.param(-(10**30), id="huge-negative"),
    pytest.param(1.5, id="fractional"),
    pytest.param(2.0, id="float-integral"),
    pytest.param("2", id="string"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(None, id="null"),
    pytest.param(10**30, id="huge"),
    pytest.param(1000, id="over-999"),
    pytest.param([1], id="list"),
    pytest.param({"n": 1}, id="object"),
]


@pytest.mark.parametrize("quantity", [pytest.param(0, id="zero"), *BAD_QUANTITIES])
def test_add_with_a_bad_quantity_is_422(shop: Shop, quantity: Any) -> None:
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/items", json=add_body(shop, quantity=quantity))
        e = assert_error(r, 422, "validation_failed")
        assert "quantity" in fields_of(e)


def test_add_without_a_quantity_is_422(shop: Shop) -> None:
    body = add_body(shop)
    del body["quantity"]
    with changes_nothing(shop):
        e = assert_error(shop.client.post(f"/v1/carts/{shop.cid}/items", json=body), 422,
                         "validation_failed")
        assert "quantity" in fields_of(e)


def test_add_with_a_nan_quantity_is_422(shop: Shop) -> None:
    raw = '{"product_id": "' + shop.pid + '", "quantity": NaN}'
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/items", content=raw,
                             headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 422), r.text
        assert_error(r, r.status_code)


@pytest.mark.parametrize("quantity", BAD_QUANTITIES)
def test_patch_with_a_bad_quantity_is_422(shop: Shop, quantity: Any) -> None:
    with changes_nothing(shop):
        r = shop.client.patch(f"/v1/carts/{shop.cid}/items/{shop.line_id}",
                              json={"quantity": quantity})
        e = assert_error(r, 422, "validation_failed")
        assert "quantity" in fields_of(e)


def test_an_add_that_would_push_a_line_past_999_is_422(shop: Shop) -> None:
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/items", json=add_body(shop, quantity=998))
        assert_error(r, 422, "invalid_quantity")


def test_an_add_after_a_patch_to_999_is_422(shop: Shop) -> None:
    r = shop.client.patch(f"/v1/carts/{shop.cid}/items/{shop.line_id}", json={"quantity": 999})
    assert r.status_code == 200 and r.json()["lines"][0]["quantity"] == 999, r.text
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/items", json=add_body(shop, quantity=1))
        assert_error(r, 422, "invalid_quantity")


# -- not found -------------------------------------------------------------------------------

def test_unknown_product_is_404(shop: Shop) -> None:
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/items",
                             json={"product_id": uid("nope"), "quantity": 1})
        assert_error(r, 404, "product_not_found")


def test_unknown_variant_is_404(shop: Shop) -> None:
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/items",
                             json=add_body(shop, variant_id=uid("nope")))
        assert_error(r, 404, "variant_not_found")


def test_a_variant_of_another_product_is_404(shop: Shop) -> None:
    _, other_variants = make_product(shop.admin, n_variants=1)
    shop.extra_variants = other_variants
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/items",
                             json=add_body(shop, variant_id=other_variants[0]))
        assert_error(r, 404, "variant_not_found")


def test_a_multi_variant_product_without_a_variant_is_422(shop: Shop) -> None:
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/items",
                             json={"product_id": shop.pid, "quantity": 1})
        assert_error(r, 422, "variant_required")


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_unknown_line_is_404(shop: Shop, method: str) -> None:
    url = f"/v1/carts/{shop.cid}/items/ln_999"
    with changes_nothing(shop):
        r = shop.client.patch(url, json={"quantity": 1}) if method == "patch" \
            else shop.client.delete(url)
        assert_error(r, 404, "line_not_found")


def test_removing_a_code_not_on_the_cart_is_404(shop: Shop) -> None:
    with changes_nothing(shop):
        assert_error(shop.client.delete(f"/v1/carts/{shop.cid}/discounts/NOPE{uuid.uuid4().hex[:6]}"),
                     404, "code_not_applied")


def test_an_unknown_coupon_code_is_404(shop: Shop) -> None:
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/discounts", json={"code": uid("NOPE")})
        assert_error(r, 404, "unknown_code")


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/v1/carts/c_{x}", None),
    ("POST", "/v1/carts/c_{x}/items", "item"),
    ("PATCH", "/v1/carts/c_{x}/items/ln_1", {"quantity": 1}),
    ("DELETE", "/v1/carts/c_{x}/items/ln_1", None),
    ("POST", "/v1/carts/c_{x}/discounts", {"code": "ANY"}),
    ("POST", "/v1/carts/c_{x}/checkout", {"payment": {"token": "tok_ok"}}),
])
def test_unknown_cart_is_404(shop: Shop, method: str, path: str, body: Any) -> None:
    if body == "item":
        body = add_body(shop)
    with changes_nothing(shop):
        r = shop.client.request(method, path.format(x=uuid.uuid4().hex[:24]), json=body)
        assert_error(r, 404, "cart_not_found")


def test_unknown_order_is_404(shop: Shop) -> None:
    assert_error(shop.client.get(f"/v1/orders/ord_{uuid.uuid4().hex[:20]}"), 404,
                 "order_not_found")


def test_unknown_product_read_is_404(server: Server) -> None:
    with server.client() as c:
        assert_error(c.get(f"/v1/products/{uid('nope')}"), 404, "product_not_found")


def test_stock_of_an_unknown_variant_is_404(admin: httpx.Client) -> None:
    vid = uid("nope")
    assert_error(admin.post(f"/v1/admin/stock/{vid}", json={"delta": 0}), 404,
                 "variant_not_found")
    assert_error(admin.post(f"/v1/admin/stock/{vid}", json={"set": 5}), 404, "variant_not_found")


# -- currency and admin catalog input --------------------------------------------------------

def test_a_product_without_a_price_in_the_cart_currency_is_422(server: Server,
                                                                admin: httpx.Client) -> None:
    shop = open_shop(server, admin, currency="EUR")
    try:
        assert shop.cart()["currency"] == "EUR"
        with changes_nothing(shop):
            r = shop.client.post(f"/v1/carts/{shop.cid}/items", json=add_body(shop))
            assert_error(r, 422, "no_price_in_currency")
        assert shop.cart()["lines"] == []
    finally:
        shop.client.close()


@pytest.mark.parametrize("currency,code", [
    ("XYZ", "unknown_currency"), ("usd", "unknown_currency"), ("EURO", "validation_failed"),
    (3, "validation_failed")])
def test_opening_a_cart_in_a_bad_currency_is_422(server: Server, currency: Any,
                                                 code: str) -> None:
    user = uid("cur")
    with server.client(user) as c:
        assert_error(c.post("/v1/carts", json={"currency": currency}), 422, code)
        # Nothing was created: the next good request makes the shopper's first cart.
        r = c.post("/v1/carts")
        assert r.status_code == 201 and r.json()["currency"] == "USD", r.text
    with server.client() as guest:
        assert_error(guest.post("/v1/carts", json={"currency": currency}), 422, code)


def test_a_bad_currency_is_refused_even_when_a_cart_exists(shop: Shop) -> None:
    with changes_nothing(shop):
        assert_error(shop.client.post("/v1/carts", json={"currency": "XYZ"}), 422,
                     "unknown_currency")


BAD_PRODUCT_BODIES = [
    pytest.param({"price": {"amount": 19.99, "currency": "USD"}}, "invalid_price", id="float"),
    pytest.param({"price": {"amount": 1999.0, "currency": "USD"}}, "invalid_price",
                 id="float-integral"),
    pytest.param({"price": {"amount": "1999", "currency": "USD"}}, "invalid_price",
                 id="string-amount"),
    pytest.param({"price": {"amount": -1, "currency": "USD"}}, "invalid_price", id="negative"),
    pytest.param({"price": {"amount": 10**13, "currency": "USD"}}, "invalid_price", id="huge"),
    pytest.param({"price": {"amount": 1999, "currency": "XYZ"}}, "unknown_currency",
                 id="unknown-currency"),
    pytest.param({"price": {"amount": 1999}}, "invalid_price", id="no-currency"),
    pytest.param({"price": None}, "invalid_product", id="no-price"),
    pytest.param({"name": ""}, "invalid_product", id="empty-name"),
    pytest.param({"variants": [{"variant_id": "-bad id"}]}, "invalid_id", id="bad-variant-id"),
]


def _product_body(**over: Any) -> dict[str, Any]:
    return {"name": "Bad Input Boot", "category": "shoes",
            "price": {"amount": 1999, "currency": "USD"}, **over}


@pytest.mark.parametrize("over,code", BAD_PRODUCT_BODIES)
def test_a_bad_new_product_is_422_and_not_created(admin: httpx.Client, over: dict[str, Any],
                                                   code: str) -> None:
    pid = uid("badp")
    assert_error(admin.put(f"/v1/admin/products/{pid}", json=_product_body(**over)), 422, code)
    assert_error(admin.get(f"/v1/products/{pid}"), 404, "product_not_found")


@pytest.mark.parametrize("over,code", BAD_PRODUCT_BODIES)
def test_a_bad_product_replacement_is_422_and_changes_nothing(shop: Shop, over: dict[str, Any],
                                                               code: str) -> None:
    before = shop.admin.get(f"/v1/products/{shop.pid}").json()
    with changes_nothing(shop):
        r = shop.admin.put(f"/v1/admin/products/{shop.pid}", json=_product_body(**over))
        assert_error(r, 422, code)
    assert shop.admin.get(f"/v1/products/{shop.pid}").json() == before


def test_a_variant_id_of_another_product_is_refused_on_put(shop: Shop) -> None:
    pid = uid("badp")
    before = shop.admin.get(f"/v1/products/{shop.pid}").json()
    with changes_nothing(shop):
        r = shop.admin.put(f"/v1/admin/products/{pid}", json=_product_body(
            variants=[{"variant_id": shop.variants[0], "sku": "X", "stock": 500}]))
        assert_error(r, 422, "variant_id_taken")
    assert_error(shop.admin.get(f"/v1/products/{pid}"), 404, "product_not_found")
    assert shop.admin.get(f"/v1/products/{shop.pid}").json() == before


@pytest.mark.parametrize("stock", [-1, 1.5, "5", 10**10])
def test_a_bad_stock_in_a_product_body_is_422_and_changes_nothing(shop: Shop,
                                                                   stock: Any) -> None:
    before = shop.admin.get(f"/v1/products/{shop.pid}").json()
    new_pid = uid("badp")
    with changes_nothing(shop):
        r = shop.admin.put(f"/v1/admin/products/{shop.pid}", json=_product_body(
            name="Renamed", variants=[{"variant_id": v, "sku": "S", "stock": stock}
                                      for v in shop.variants]))
        assert_error(r, 422)
        r = shop.admin.put(f"/v1/admin/products/{new_pid}", json=_product_body(
            variants=[{"variant_id": f"{new_pid}-v0", "sku": "S", "stock": stock}]))
        assert_error(r, 422)
    assert shop.admin.get(f"/v1/products/{shop.pid}").json() == before
    assert_error(shop.admin.get(f"/v1/products/{new_pid}"), 404, "product_not_found")


@pytest.mark.parametrize("body,code", [
    ({"set": -1}, "validation_failed"), ({"delta": 1.5}, "validation_failed"),
    ({"set": "5"}, "validation_failed"), ({}, "validation_failed"),
    ({"set": 1, "delta": 1}, "validation_failed"), ({"delta": 10**10}, "validation_failed"),
    ({"delta": -1001}, "invalid_stock"), ({"set": 1, "extra": 1}, "validation_failed"),
])
def test_a_bad_stock_change_is_422_and_changes_nothing(shop: Shop, body: dict[str, Any],
                                                       code: str) -> None:
    with changes_nothing(shop):
        assert_error(shop.admin.post(f"/v1/admin/stock/{shop.variants[0]}", json=body), 422,
                     code)


@pytest.mark.parametrize("body", [
    {"kind": "percentage", "value": 0, "code": "X"},
    {"kind": "percentage", "value": 10_001, "code": "X"},
    {"kind": "percentage", "value": 10.5, "code": "X"},
    {"kind": "bogus", "value": 100},
    {"kind": "percentage", "value": 100, "colour": "red"},
])
def test_a_bad_promotion_is_422(admin: httpx.Client, shop: Shop, body: dict[str, Any]) -> None:
    code = uid("BADC").upper()
    body = {**body, "code": code}
    assert_error(admin.put(f"/v1/admin/promotions/{uid('promo')}", json=body), 422,
                 "invalid_promotion")
    with changes_nothing(shop):
        assert_error(shop.client.post(f"/v1/carts/{shop.cid}/discounts", json={"code": code}),
                     404, "unknown_code")


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 201}, {"limit": "ten"}, {"limit": 1.5}, {"cursor": "c" * 129}])
def test_bad_catalog_paging_is_422(server: Server, params: dict[str, Any]) -> None:
    with server.client() as c:
        assert_error(c.get("/v1/products", params=params), 422, "validation_failed")


# -- malformed requests ----------------------------------------------------------------------

def _cart_route(shop: Shop, route: str) -> tuple[str, str, dict[str, Any] | None]:
    """``(method, url, body)`` of a request on the shop's cart, by a short name."""
    items = _items(shop)
    return {
        "get": ("GET", f"/v1/carts/{shop.cid}", None),
        "add": ("POST", items, add_body(shop)),
        "patch": ("PATCH", f"{items}/{shop.line_id}", {"quantity": 5}),
        "delete": ("DELETE", f"{items}/{shop.line_id}", None),
        "code": ("POST", f"/v1/carts/{shop.cid}/discounts", {"code": "X"}),
        "uncode": ("DELETE", f"/v1/carts/{shop.cid}/discounts/X", None),
        "checkout": ("POST", f"/v1/carts/{shop.cid}/checkout", {"payment": {"token": "tok_ok"}}),
        "order": ("GET", "/v1/orders/ord_0123456789", None),
    }[route]


def _items(shop: Shop) -> str:
    return f"/v1/carts/{shop.cid}/items"


def test_malformed_json_is_400(shop: Shop) -> None:
    with changes_nothing(shop):
        for raw in ('{"product_id": "x", "quantity": ', "{'quantity': 1}", "not json", "{,}"):
            r = shop.client.post(_items(shop), content=raw,
                                 headers={"Content-Type": "application/json"})
            assert_error(r, 400, "malformed_json")
        r = shop.client.patch(f"{_items(shop)}/{shop.line_id}", content='{"quantity":',
                              headers={"Content-Type": "application/json"})
        assert_error(r, 400, "malformed_json")


@pytest.mark.parametrize("route", ["add", "patch", "code", "checkout", "open"])
@pytest.mark.parametrize("payload", [
    pytest.param([], id="array"), pytest.param([{"quantity": 1}], id="array-of-object"),
    pytest.param("quantity", id="string"), pytest.param(7, id="number")])
def test_a_body_that_is_not_an_object_is_422(shop: Shop, route: str, payload: Any) -> None:
    url = {"add": _items(shop), "patch": f"{_items(shop)}/{shop.line_id}",
           "code": f"/v1/carts/{shop.cid}/discounts", "open": "/v1/carts",
           "checkout": f"/v1/carts/{shop.cid}/checkout"}[route]
    with changes_nothing(shop):
        r = shop.client.request("PATCH" if route == "patch" else "POST", url, json=payload)
        assert_error(r, 422, "validation_failed")


@pytest.mark.parametrize("route", ["add", "patch", "code", "checkout", "open"])
def test_an_unknown_field_is_422(shop: Shop, route: str) -> None:
    url, body = {
        "add": (_items(shop), add_body(shop, colour="red")),
        "patch": (f"{_items(shop)}/{shop.line_id}", {"quantity": 3, "colour": "red"}),
        "code": (f"/v1/carts/{shop.cid}/discounts", {"code": "X", "colour": "red"}),
        "checkout": (f"/v1/carts/{shop.cid}/checkout",
                     {"payment": {"token": "tok_ok"}, "colour": "red"}),
        "open": ("/v1/carts", {"currency": "USD", "colour": "red"}),
    }[route]
    with changes_nothing(shop):
        r = shop.client.request("PATCH" if route == "patch" else "POST", url, json=body)
        e = assert_error(r, 422, "validation_failed")
        assert "colour" in fields_of(e)


@pytest.mark.parametrize("missing", ["product_id", "quantity"])
def test_a_missing_required_field_is_422(shop: Shop, missing: str) -> None:
    body = add_body(shop)
    del body[missing]
    with changes_nothing(shop):
        e = assert_error(shop.client.post(_items(shop), json=body), 422, "validation_failed")
        assert missing in fields_of(e)


@pytest.mark.parametrize("content", ["", "null"])
def test_an_empty_or_null_body_is_422(shop: Shop, content: str) -> None:
    with changes_nothing(shop):
        for url, method in ((_items(shop), "POST"), (f"{_items(shop)}/{shop.line_id}", "PATCH"),
                            (f"/v1/carts/{shop.cid}/checkout", "POST")):
            r = shop.client.request(method, url, content=content,
                                    headers={"Content-Type": "application/json"})
            assert_error(r, 422, "validation_failed")


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", None])
def test_a_body_not_declared_json_is_415(shop: Shop, ctype: str | None) -> None:
    raw = json.dumps(add_body(shop)).encode()
    headers = {"Content-Type": ctype} if ctype else {}
    with changes_nothing(shop):
        req = shop.client.build_request("POST", _items(shop), content=raw, headers=headers)
        if ctype is None and "content-type" in req.headers:
            del req.headers["Content-Type"]
        assert req.headers.get("content-type") == ctype
        assert_error(shop.client.send(req), 415, "unsupported_media_type")


def test_a_chunked_body_not_declared_json_is_415(shop: Shop) -> None:
    raw = json.dumps(add_body(shop)).encode()
    with changes_nothing(shop):
        r = shop.client.post(_items(shop), content=iter([raw]),
                             headers={"Content-Type": "text/plain"})
        assert "content-length" not in r.request.headers
        assert_error(r, 415, "unsupported_media_type")


def test_a_body_over_64_kib_is_413(shop: Shop) -> None:
    body = json.dumps(add_body(shop, pad="x" * (MAX_BODY + 10))).encode()
    with changes_nothing(shop):
        r = shop.client.post(_items(shop), content=body,
                             headers={"Content-Type": "application/json"})
        assert_error(r, 413, "payload_too_large")
        r = shop.admin.put(f"/v1/admin/products/{shop.pid}",
                           json=_product_body(description="d" * (MAX_BODY + 10)))
        assert_error(r, 413, "payload_too_large")


def test_a_chunked_body_over_64_kib_is_413(shop: Shop) -> None:
    body = json.dumps(add_body(shop, pad="x" * (MAX_BODY + 10))).encode()
    chunks = [body[i:i + 8192] for i in range(0, len(body), 8192)]
    with changes_nothing(shop):
        r = shop.client.post(_items(shop), content=iter(chunks),
                             headers={"Content-Type": "application/json"})
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "payload_too_large")


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/nope"), ("GET", "/v2/carts"), ("POST", "/v1/carts/{cid}/nope"),
    ("GET", "/v1/carts/{cid}/items/{line}/extra"), ("GET", "/v1/admin/nope")])
def test_an_unknown_route_is_404(shop: Shop, method: str, path: str) -> None:
    with changes_nothing(shop):
        r = shop.client.request(method, path.format(cid=shop.cid, line=shop.line_id),
                                json={"quantity": 1} if method == "POST" else None)
        assert_error(r, 404, "not_found")


@pytest.mark.parametrize("method,path", [
    ("PUT", "/v1/carts/{cid}"), ("DELETE", "/v1/carts/{cid}"),
    ("GET", "/v1/carts/{cid}/checkout"), ("PUT", "/v1/carts/{cid}/items/{line}"),
    ("GET", "/v1/carts/{cid}/items"), ("DELETE", "/v1/products"),
    ("POST", "/v1/orders/ord_x"), ("GET", "/v1/admin/products/{pid}")])
def test_a_wrong_method_is_405(shop: Shop, method: str, path: str) -> None:
    with changes_nothing(shop):
        r = shop.client.request(method, path.format(cid=shop.cid, line=shop.line_id,
                                                     pid=shop.pid))
        assert_error(r, 405, "method_not_allowed")
        assert r.headers.get("allow")


@pytest.fixture
def guest(server: Server, shop: Shop) -> Iterator[tuple[httpx.Client, str, str]]:
    """A guest cart holding one line of the shop's variant 1: (client, cart id, token)."""
    with server.client() as c:
        r = c.post("/v1/carts")
        assert r.status_code == 201, r.text
        gcid, token = r.json()["cart_id"], r.json()["token"]
        c.headers.update(auth(token))
        r = c.post(f"/v1/carts/{gcid}/items", json={
            "product_id": shop.pid, "variant_id": shop.variants[1], "quantity": 1})
        assert r.status_code == 200, r.text
        yield c, gcid, token


@pytest.mark.parametrize("case", ["garbage", "forged", "expired", "empty"])
def test_a_merge_with_a_bad_guest_token_is_refused(shop: Shop, guest: Any, case: str) -> None:
    gc, gcid, _ = guest
    gsub = gc.get(f"/v1/carts/{gcid}").json()["owner"]
    token = {"garbage": "not.a.jwt", "empty": "",
             "forged": forged(gsub, OTHER_SECRET, role="guest"),
             "expired": forged(gsub, exp_in=-60, role="guest")}[case]
    before = gc.get(f"/v1/carts/{gcid}").json()
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/merge", json={"guest_token": token})
        assert r.status_code in (401, 422), r.text
        e = assert_error(r, r.status_code)
        assert e["code"] in ("invalid_token", "token_expired", "validation_failed")
    assert gc.get(f"/v1/carts/{gcid}").json() == before


@pytest.mark.parametrize("body,status,code", [
    pytest.param({}, 422, "validation_failed", id="no-guest-token"),
    pytest.param({"guest_token": "{token}", "strategy": "max"}, 422, "validation_failed",
                 id="unknown-strategy"),
    pytest.param({"guest_token": "{token}", "colour": "red"}, 422, "validation_failed",
                 id="unknown-field"),
    pytest.param({"guest_token": "{user_token}"}, 422, "not_a_guest_token", id="user-token"),
    pytest.param({"guest_token": "{cartless_guest}"}, 404, "guest_cart_not_found",
                 id="guest-without-cart"),
])
def test_a_bad_merge_body_is_refused(shop: Shop, guest: Any, body: dict[str, Any], status: int,
                                     code: str) -> None:
    gc, gcid, token = guest
    subs = {"token": token, "user_token": shop.server.token(uid("other-user")),
            "cartless_guest": forged(uid("guest"), role="guest")}
    body = {k: v.format(**subs) if isinstance(v, str) else v for k, v in body.items()}
    before = gc.get(f"/v1/carts/{gcid}").json()
    with changes_nothing(shop):
        assert_error(shop.client.post(f"/v1/carts/{shop.cid}/merge", json=body), status, code)
    assert gc.get(f"/v1/carts/{gcid}").json() == before


def test_a_merge_into_another_users_cart_is_404(shop: Shop, guest: Any) -> None:
    gc, gcid, token = guest
    before = gc.get(f"/v1/carts/{gcid}").json()
    with changes_nothing(shop), shop.server.client(uid("intruder")) as intruder:
        r = intruder.post(f"/v1/carts/{shop.cid}/merge", json={"guest_token": token})
        assert_error(r, 404, "cart_not_found")
        r = intruder.post(f"/v1/carts/c_{uuid.uuid4().hex[:24]}/merge",
                          json={"guest_token": token})
        assert_error(r, 404, "cart_not_found")
    after = gc.get(f"/v1/carts/{gcid}").json()
    assert after == before and after["status"] == "active"


# -- auth ------------------------------------------------------------------------------------

def _auth_cases(shop: Shop) -> dict[str, dict[str, str]]:
    now = int(time.time())
    return {
        "missing": {},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "empty-bearer": {"Authorization": "Bearer"},
        "forged": auth(forged(shop.user, OTHER_SECRET)),
        "forged-admin": auth(forged(shop.user, OTHER_SECRET, role="admin")),
        "expired": auth(forged(shop.user, exp_in=-60)),
        "basic": {"Authorization": "Basic b3BzOnNlY3JldA=="},
        "alg-none": auth(jwt.encode({"sub": shop.user, "exp": now + 3600}, None,
                                    algorithm="none")),
        "no-exp": auth(jwt.encode({"sub": shop.user}, SECRET, algorithm="HS256")),
        "admin-sub": auth(forged("@admin")),
        "long-sub": auth(forged("u" * 200)),
        "tampered": auth(shop.server.token(shop.user)[:-3] + "abc"),
    }


AUTH_CASES = ["missing", "garbage", "empty-bearer", "forged", "forged-admin", "expired", "basic",
              "alg-none", "no-exp", "admin-sub", "long-sub", "tampered"]


@pytest.mark.parametrize("case", AUTH_CASES)
@pytest.mark.parametrize("route", ["get", "add", "patch", "delete", "code", "checkout", "order"])
def test_a_bad_token_on_a_cart_route_is_401(shop: Shop, case: str, route: str) -> None:
    headers = _auth_cases(shop)[case]
    method, url, body = _cart_route(shop, route)
    expected = {"missing": "missing_token", "expired": "token_expired"}.get(case, "invalid_token")
    with changes_nothing(shop), httpx.Client(base_url=shop.server.url, timeout=30) as anon:
        r = anon.request(method, url, json=body, headers=headers)
        assert_error(r, 401, expected)
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer")


@pytest.mark.parametrize("case", ["missing", "garbage", "forged-admin", "expired", "basic"])
def test_a_bad_token_on_an_admin_route_is_401(shop: Shop, case: str) -> None:
    headers = _auth_cases(shop)[case]
    with changes_nothing(shop), httpx.Client(base_url=shop.server.url, timeout=30) as anon:
        r = anon.post(f"/v1/admin/stock/{shop.variants[0]}", json={"set": 0}, headers=headers)
        assert_error(r, 401)


@pytest.mark.parametrize("who", ["user", "guest", "forged-role"])
@pytest.mark.parametrize("route", ["product", "stock", "promotion", "events", "ship"])
def test_admin_routes_refuse_a_non_admin_with_403(shop: Shop, who: str, route: str) -> None:
    token = {"user": shop.server.token(shop.user),
             "guest": forged(uid("guest"), role="guest"),
             "forged-role": forged(shop.user, role="superuser")}[who]
    method, url, body = {
        "product": ("PUT", f"/v1/admin/products/{shop.pid}", _product_body(name="Hijacked")),
        "stock": ("POST", f"/v1/admin/stock/{shop.variants[0]}", {"set": 0}),
        "promotion": ("PUT", f"/v1/admin/promotions/{uid('promo')}",
                      {"kind": "percentage", "value": 10_000, "code": uid("FREE").upper()}),
        "events": ("GET", "/v1/admin/events", None),
        "ship": ("POST", "/v1/admin/orders/ord_0123456789/ship", None),
    }[route]
    before = shop.admin.get(f"/v1/products/{shop.pid}").json()
    with changes_nothing(shop), httpx.Client(base_url=shop.server.url, timeout=30) as c:
        r = c.request(method, url, json=body, headers=auth(token))
        assert_error(r, 403, "admin_only")
    assert shop.admin.get(f"/v1/products/{shop.pid}").json() == before


# -- another shopper's cart ------------------------------------------------------------------

@pytest.mark.parametrize("route", ["get", "add", "patch", "delete", "code", "uncode", "checkout"])
def test_another_users_cart_is_404(shop: Shop, route: str) -> None:
    method, url, body = _cart_route(shop, route)
    with changes_nothing(shop), shop.server.client(uid("intruder")) as intruder:
        r = intruder.request(method, url, json=body,
                             headers={"Idempotency-Key": uid("k")} if method != "GET" else {})
        e = assert_error(r, 404, "cart_not_found")
        assert shop.user not in json.dumps(e)


def test_another_users_order_is_404(shop: Shop) -> None:
    r = shop.client.post(f"/v1/carts/{shop.cid}/checkout", headers={"Idempotency-Key": uid("k")},
                         json={"payment": {"token": "tok_ok"}})
    assert r.status_code == 201, r.text
    oid = r.json()["order_id"]
    with shop.server.client(uid("intruder")) as intruder:
        assert_error(intruder.get(f"/v1/orders/{oid}"), 404, "order_not_found")
    assert shop.client.get(f"/v1/orders/{oid}").json()["status"] == "paid"


def test_another_user_replaying_the_owners_key_gets_404(shop: Shop) -> None:
    key = uid("k")
    body = add_body(shop, quantity=1)
    r = shop.client.post(_items(shop), json=body, headers={"Idempotency-Key": key})
    assert r.status_code == 200, r.text
    with changes_nothing(shop), shop.server.client(uid("intruder")) as intruder:
        r = intruder.post(_items(shop), json=body, headers={"Idempotency-Key": key})
        assert_error(r, 404, "cart_not_found")


def test_another_user_reusing_the_owners_key_with_another_body_gets_404(shop: Shop) -> None:
    key = uid("k")
    r = shop.client.post(_items(shop), json=add_body(shop), headers={"Idempotency-Key": key})
    assert r.status_code == 200, r.text
    with changes_nothing(shop), shop.server.client(uid("intruder")) as intruder:
        r = intruder.post(_items(shop), json=add_body(shop, quantity=3),
                          headers={"Idempotency-Key": key})
        assert_error(r, 404, "cart_not_found")


def test_another_user_replaying_the_owners_checkout_key_gets_404(shop: Shop) -> None:
    key = uid("k")
    body = {"payment": {"token": "tok_ok"}}
    r = shop.client.post(f"/v1/carts/{shop.cid}/checkout", json=body,
                         headers={"Idempotency-Key": key})
    assert r.status_code == 201, r.text
    with changes_nothing(shop), shop.server.client(uid("intruder")) as intruder:
        r = intruder.post(f"/v1/carts/{shop.cid}/checkout", json=body,
                          headers={"Idempotency-Key": key})
        assert_error(r, 404, "cart_not_found")


# -- checkout --------------------------------------------------------------------------------

def test_checkout_of_an_empty_cart_is_409(server: Server, admin: httpx.Client) -> None:
    shop = open_shop(server, admin, currency="EUR")  # a cart with no lines
    try:
        with changes_nothing(shop):
            r = shop.client.post(f"/v1/carts/{shop.cid}/checkout",
                                 headers={"Idempotency-Key": uid("k")},
                                 json={"payment": {"token": "tok_ok"}})
            assert_error(r, 409, "cart_empty")
        assert shop.cart()["status"] == "active"
    finally:
        shop.client.close()


def test_a_checked_out_cart_refuses_everything_with_409(shop: Shop) -> None:
    key = uid("k")
    r = shop.client.post(f"/v1/carts/{shop.cid}/checkout", headers={"Idempotency-Key": key},
                         json={"payment": {"token": "tok_ok"}})
    assert r.status_code == 201, r.text
    order = r.json()
    assert shop.cart()["status"] == "checked_out"
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/checkout",
                             headers={"Idempotency-Key": uid("k")},
                             json={"payment": {"token": "tok_ok"}})
        assert_error(r, 409, "cart_not_active")
        assert_error(shop.client.post(_items(shop), json=add_body(shop)), 409, "cart_not_active")
        assert_error(shop.client.patch(f"{_items(shop)}/{shop.line_id}", json={"quantity": 1}),
                     409, "cart_not_active")
        assert_error(shop.client.delete(f"{_items(shop)}/{shop.line_id}"), 409,
                     "cart_not_active")
        # The same key and body answer the first Order again, and nothing is sold twice.
        again = shop.client.post(f"/v1/carts/{shop.cid}/checkout",
                                 headers={"Idempotency-Key": key},
                                 json={"payment": {"token": "tok_ok"}})
        assert again.status_code == 201 and again.json() == order


# Checkout of an expired cart: tests/actors/test_contract.py, on the manual clock.


@pytest.mark.parametrize("body", [
    pytest.param({}, id="no-payment"),
    pytest.param({"accept_price_changes": True}, id="only-accept"),
    pytest.param({"payment": {}}, id="payment-without-token"),
    pytest.param({"payment": {"token": ""}}, id="empty-token"),
    pytest.param({"payment": "tok_ok"}, id="payment-string"),
    pytest.param({"payment": {"token": 5}}, id="token-number"),
    pytest.param({"payment": {"token": "t" * 256}}, id="token-too-long"),
    pytest.param({"payment": {"token": "tok_ok"}, "accept_price_changes": "yes"},
                 id="accept-string"),
    pytest.param({"payment": {"token": "tok_ok"}, "shipping_address": "here"},
                 id="address-string"),
])
def test_a_bad_checkout_body_is_422(shop: Shop, body: dict[str, Any]) -> None:
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/checkout",
                             headers={"Idempotency-Key": uid("k")}, json=body)
        assert_error(r, 422, "validation_failed")
    assert shop.cart()["status"] == "active"


# -- idempotency -----------------------------------------------------------------------------

def test_a_key_reused_with_another_body_is_409(shop: Shop) -> None:
    key = uid("k")
    first = shop.client.post(_items(shop), json=add_body(shop, quantity=1),
                             headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    with changes_nothing(shop):
        for method, url, body in (
                ("POST", _items(shop), add_body(shop, quantity=2)),
                ("POST", _items(shop), add_body(shop, variant_id=shop.variants[1])),
                ("PATCH", f"{_items(shop)}/{shop.line_id}", {"quantity": 7}),
                ("DELETE", f"{_items(shop)}/{shop.line_id}", None)):
            r = shop.client.request(method, url, json=body, headers={"Idempotency-Key": key})
            assert_error(r, 409, "idempotency_key_reused")


def test_a_key_repeated_with_the_same_body_gives_the_same_answer(shop: Shop) -> None:
    key = uid("k")
    body = add_body(shop, quantity=3)
    first = shop.client.post(_items(shop), json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    assert first.json()["lines"][0]["quantity"] == 5
    with changes_nothing(shop):
        for _ in range(3):
            again = shop.client.post(_items(shop), json=body, headers={"Idempotency-Key": key})
            assert again.status_code == 200
            assert again.json() == first.json()
            assert again.headers["ETag"] == first.headers["ETag"]


def test_a_failed_request_repeated_with_its_key_answers_the_same_error(shop: Shop) -> None:
    key = uid("k")
    with changes_nothing(shop):
        first = shop.client.post(_items(shop), json=add_body(shop, quantity=998),
                                 headers={"Idempotency-Key": key})
        e = assert_error(first, 422, "invalid_quantity")
        again = shop.client.post(_items(shop), json=add_body(shop, quantity=998),
                                 headers={"Idempotency-Key": key})
        assert assert_error(again, 422, "invalid_quantity") == e


@pytest.mark.parametrize("key", [pytest.param("k" * 256, id="256-chars"),
                                 pytest.param("k" * 5000, id="5000-chars"),
                                 pytest.param("", id="empty")])
def test_a_bad_idempotency_key_is_422(shop: Shop, key: str) -> None:
    with changes_nothing(shop):
        for method, url, body in (
                ("POST", _items(shop), add_body(shop)),
                ("PATCH", f"{_items(shop)}/{shop.line_id}", {"quantity": 7}),
                ("DELETE", f"{_items(shop)}/{shop.line_id}", None),
                ("POST", f"/v1/carts/{shop.cid}/checkout", {"payment": {"token": "tok_ok"}}),
                ("POST", "/v1/carts", None)):
            r = shop.client.request(method, url, json=body, headers={"Idempotency-Key": key})
            assert_error(r, 422, "invalid_idempotency_key")
    assert shop.cart()["status"] == "active"


def test_a_checkout_key_reused_with_another_body_is_409(shop: Shop) -> None:
    key = uid("k")
    r = shop.client.post(f"/v1/carts/{shop.cid}/checkout", headers={"Idempotency-Key": key},
                         json={"payment": {"token": "tok_declined"}})
    assert_error(r, 402, "payment_declined")
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/checkout", headers={"Idempotency-Key": key},
                             json={"payment": {"token": "tok_ok"}})
        assert_error(r, 409, "idempotency_key_reused")
    assert shop.cart()["status"] == "active"


# -- ids and limits --------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [pytest.param(LONG_ID, id="129-chars"),
                                 pytest.param("-leading-dash", id="leading-dash"),
                                 pytest.param("sp ace", id="space"),
                                 pytest.param("semi;colon", id="semicolon")])
@pytest.mark.parametrize("route", ["cart", "add", "line-patch", "line-delete", "checkout",
                                   "order", "product", "admin-product", "stock", "promotion"])
def test_a_bad_id_in_the_path_is_422(shop: Shop, bad: str, route: str) -> None:
    method, url, body, client = {
        "cart": ("GET", f"/v1/carts/{bad}", None, shop.client),
        "add": ("POST", f"/v1/carts/{bad}/items", add_body(shop), shop.client),
        "line-patch": ("PATCH", f"{_items(shop)}/{bad}", {"quantity": 1}, shop.client),
        "line-delete": ("DELETE", f"{_items(shop)}/{bad}", None, shop.client),
        "checkout": ("POST", f"/v1/carts/{bad}/checkout", {"payment": {"token": "tok_ok"}},
                     shop.client),
        "order": ("GET", f"/v1/orders/{bad}", None, shop.client),
        "product": ("GET", f"/v1/products/{bad}", None, shop.client),
        "admin-product": ("PUT", f"/v1/admin/products/{bad}", _product_body(), shop.admin),
        "stock": ("POST", f"/v1/admin/stock/{bad}", {"set": 1}, shop.admin),
        "promotion": ("PUT", f"/v1/admin/promotions/{bad}",
                      {"kind": "percentage", "value": 100}, shop.admin),
    }[route]
    with changes_nothing(shop):
        r = client.request(method, url, json=body)
        assert_error(r, 422, "validation_failed")


def test_a_code_over_64_chars_is_422(shop: Shop) -> None:
    with changes_nothing(shop):
        assert_error(shop.client.post(f"/v1/carts/{shop.cid}/discounts", json={"code": "C" * 65}),
                     422, "validation_failed")
        assert_error(shop.client.delete(f"/v1/carts/{shop.cid}/discounts/{'C' * 65}"), 422,
                     "validation_failed")


@pytest.mark.parametrize("over", [
    pytest.param({"product_id": LONG_ID}, id="product-129"),
    pytest.param({"variant_id": LONG_ID}, id="variant-129"),
    pytest.param({"product_id": ""}, id="product-empty"),
    pytest.param({"variant_id": ""}, id="variant-empty"),
    pytest.param({"product_id": 5}, id="product-number"),
    pytest.param({"product_id": None}, id="product-null"),
])
def test_a_bad_id_in_the_body_is_422(shop: Shop, over: dict[str, Any]) -> None:
    with changes_nothing(shop):
        e = assert_error(shop.client.post(_items(shop), json=add_body(shop, **over)), 422,
                         "validation_failed")
        assert set(over) <= fields_of(e)


def test_the_101st_line_is_422_too_many_lines(server: Server, admin: httpx.Client) -> None:
    shop = open_shop(server, admin, n_variants=101)
    try:
        for v in shop.variants[1:100]:
            r = shop.client.post(_items(shop), json={"product_id": shop.pid, "variant_id": v,
                                                     "quantity": 1})
            assert r.status_code == 200, r.text
        assert len(shop.cart()["lines"]) == 100
        with changes_nothing(shop):
            r = shop.client.post(_items(shop), json={
                "product_id": shop.pid, "variant_id": shop.variants[100], "quantity": 1})
            assert_error(r, 422, "too_many_lines")
            # A new line by options is refused alike.
            r = shop.client.post(_items(shop), json=add_body(shop, options={"gift": "yes"}))
            assert_error(r, 422, "too_many_lines")
    finally:
        shop.client.close()


def test_the_11th_coupon_code_is_422_too_many_codes(shop: Shop) -> None:
    tag = uuid.uuid4().hex[:8].upper()
    codes = [f"C{i}X{tag}" for i in range(11)]
    for i, code in enumerate(codes):
        r = shop.admin.put(f"/v1/admin/promotions/bad-{tag.lower()}-{i}",
                           json={"kind": "percentage", "value": 100, "code": code})
        assert r.status_code == 200, r.text
    for code in codes[:10]:
        r = shop.client.post(f"/v1/carts/{shop.cid}/discounts", json={"code": code})
        assert r.status_code == 200, r.text
    assert len(shop.cart()["codes"]) == 10
    with changes_nothing(shop):
        r = shop.client.post(f"/v1/carts/{shop.cid}/discounts", json={"code": codes[10]})
        assert_error(r, 422, "too_many_codes")


@pytest.mark.parametrize("options,code", [
    pytest.param({f"k{i}": "v" for i in range(11)}, "invalid_options", id="11-options"),
    pytest.param({"engraving": "x" * 201}, "invalid_options", id="value-201"),
    pytest.param({"k" * 201: "x"}, "invalid_options", id="key-201"),
    pytest.param({"n": 10**201}, "invalid_options", id="int-201-digits"),
    pytest.param({"gift": {"wrap": "red"}}, "validation_failed", id="nested"),
    pytest.param({"gift": 1.5}, "validation_failed", id="float"),
    pytest.param({"gift": None}, "validation_failed", id="null-value"),
    pytest.param(["gift"], "validation_failed", id="list"),
    pytest.param("gift", "validation_failed", id="string"),
])
def test_bad_options_are_422(shop: Shop, options: Any, code: str) -> None:
    with changes_nothing(shop):
        r = shop.client.post(_items(shop), json=add_body(shop, options=options))
        assert_error(r, 422, code)


# -- If-Match --------------------------------------------------------------------------------

def _mutations(shop: Shop) -> list[tuple[str, str, Any]]:
    return [("POST", _items(shop), add_body(shop)),
            ("PATCH", f"{_items(shop)}/{shop.line_id}", {"quantity": 7}),
            ("DELETE", f"{_items(shop)}/{shop.line_id}", None),
            ("POST", f"/v1/carts/{shop.cid}/discounts", {"code": "ANY"})]


@pytest.mark.parametrize("value", ["abc", '"x"', "-1", "1.5", "v", '""', "W/", '"1"x'])
def test_a_malformed_if_match_is_422(shop: Shop, value: str) -> None:
    with changes_nothing(shop):
        for method, url, body in _mutations(shop):
            r = shop.client.request(method, url, json=body, headers={"If-Match": value})
            assert_error(r, 422, "invalid_if_match")


def test_a_stale_if_match_is_409(shop: Shop) -> None:
    version = shop.cart()["version"]
    assert version >= 1
    with changes_nothing(shop):
        for stale in (f'"{version - 1}"', f'"{version + 1}"', '"0"', f'W/"{version + 5}"'):
            for method, url, body in _mutations(shop):
                r = shop.client.request(method, url, json=body, headers={"If-Match": stale})
                e = assert_error(r, 409, "version_mismatch")
                assert e["details"] and e["details"][0].get("actual") == version
