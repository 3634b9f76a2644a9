"""Issue 9, defects 1 and 8: every value is validated at the edge, so no turn carries a value
the engine or its codec cannot hold, and a 4xx answers it with nothing changed."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import ValidationFailed
from engine.limits import check_id
from tests.security.conftest import Shop, assert_error, bearer

pytestmark = pytest.mark.security

ADD = {"product_id": "lamp", "variant_id": "lamp-red", "quantity": 1}


async def _unchanged(shop: Shop) -> None:
    cart = await shop.cart()
    assert cart["version"] == shop.version and cart["lines"][0]["quantity"] == 1
    assert (await shop.service.stock("lamp-red"))["reserved"] == 0


@pytest.mark.parametrize("if_match", [str(2**100), f'"{2**100}"', str(2**63), "9" * 5000,
                                      f'W/"{2**64}"'])
async def test_an_if_match_beyond_a_64_bit_version_is_a_422(shop: Shop, if_match: str) -> None:
    r = await shop.client.post(
        f"/v1/carts/{shop.cart_id}/items", json=ADD,
        headers={**shop.user, "If-Match": if_match, "Idempotency-Key": "k-if-match"})
    assert_error(r, 422, "invalid_if_match")
    await _unchanged(shop)


async def test_the_largest_64_bit_version_is_a_mere_mismatch(shop: Shop) -> None:
    r = await shop.client.post(f"/v1/carts/{shop.cart_id}/items", json=ADD,
                               headers={**shop.user, "If-Match": f'"{2**63 - 1}"'})
    assert_error(r, 409, "version_mismatch")
    r = await shop.client.post(f"/v1/carts/{shop.cart_id}/items", json=ADD,
                               headers={**shop.user, "If-Match": str(shop.version)})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("raw", [
    b'{"payment": {"token": "tok_ok"}, "shipping_address": {"country": NaN}}',
    b'{"payment": {"token": "tok_ok"}, "shipping_address": {"zip": Infinity}}',
    b'{"payment": {"token": "tok_ok"}, "shipping_address": {"zip": -Infinity}}',
])
async def test_nan_or_infinity_in_a_checkout_is_a_400_at_parse_time(shop: Shop,
                                                                   raw: bytes) -> None:
    r = await shop.client.post(f"/v1/carts/{shop.cart_id}/checkout", content=raw,
                               headers={**shop.user, "Idempotency-Key": "k-nan",
                                        "Content-Type": "application/json"})
    assert_error(r, 400, "malformed_json")
    await _unchanged(shop)


@pytest.mark.parametrize("address", [
    {"country": "US", "apartment": 2**100},
    {"country": "US", "postal_code": 2**100},
    {"country": "US", "line1": 12},
    {"country": "US", "line1": "x" * 201},
    {"country": "US", "nested": {"a": [1, 2]}},
    {"country": "US", "name": None, "extra": "field"},
])
async def test_a_shipping_address_is_a_typed_bounded_object(shop: Shop,
                                                           address: dict[str, Any]) -> None:
    r = await shop.client.post(f"/v1/carts/{shop.cart_id}/checkout",
                               json={"payment": {"token": "tok_ok"},
                                     "shipping_address": address},
                               headers={**shop.user, "Idempotency-Key": "k-address"})
    assert_error(r, 422, "validation_failed")
    await _unchanged(shop)


async def test_a_full_shipping_address_checks_out_and_is_kept_on_the_order(shop: Shop) -> None:
    address = {"name": "Ada L.", "line1": "1 Main St", "line2": "Apt 4", "city": "Springfield",
               "region": "CA", "postal_code": "94105", "country": "US",
               "phone": "+14155550100"}
    r = await shop.client.post(f"/v1/carts/{shop.cart_id}/checkout",
                               json={"payment": {"token": "tok_ok"},
                                     "shipping_address": address},
                               headers={**shop.user, "Idempotency-Key": "k-ok"})
    assert r.status_code == 201, r.text
    assert r.json()["shipping_address"] == address


@pytest.mark.parametrize("raw", [
    b'{"name": "Lamp", "category": "home", "price": {"amount": NaN, "currency": "USD"}}',
    b'{"name": "Lamp", "category": "home", "price": {"amount": 2500, "currency": "USD"},'
    b' "attributes": {"watts": Infinity}}',
    b'{"name": "Lamp", "category": "home", "price": {"amount": 2500, "currency": "USD"},'
    b' "attributes": {"watts": 1267650600228229401496703205376}}',
    b'{"name": "Lamp", "category": "home", "price": {"amount": 2500, "currency": "USD"},'
    b' "attributes": {"watts": 1e400}}',
])
async def test_an_admin_body_with_unbounded_numbers_is_a_400(shop: Shop, raw: bytes) -> None:
    r = await shop.client.put("/v1/admin/products/lamp2", content=raw,
                              headers={**bearer("ops", "admin"),
                                       "Content-Type": "application/json"})
    assert_error(r, 400, "malformed_json")
    r = await shop.client.get("/v1/products/lamp2")
    assert_error(r, 404)


@pytest.mark.parametrize("path", ["/v1/carts/{cart}%0A", "/v1/carts/{cart}%0A/items",
                                  "/v1/orders/ord_1%0A"])
async def test_an_id_ending_in_a_newline_is_refused(shop: Shop, path: str) -> None:
    url = path.format(cart=shop.cart_id)
    if url.endswith("/items"):
        r = await shop.client.post(url, json=ADD, headers=shop.user)
    else:
        r = await shop.client.get(url, headers=shop.user)
    assert_error(r, 422, "validation_failed")
    await _unchanged(shop)


def test_check_id_refuses_a_trailing_newline() -> None:
    assert check_id("lamp-red", "variant_id") == "lamp-red"
    for bad in ("lamp-red\n", "lamp\nred", "\nlamp"):
        with pytest.raises(ValidationFailed):
            check_id(bad, "variant_id")


@pytest.mark.parametrize("content_type", [
    "text/json", "application/jsonp", "application/x-json", "application/json-patch+json",
    "text/plain; note=application/json", "application/json; charset=latin-1",
    "multipart/form-data; boundary=json"])
async def test_only_application_json_bodies_are_accepted(shop: Shop, content_type: str) -> None:
    r = await shop.client.post(f"/v1/carts/{shop.cart_id}/items", content=b'{"product_id":'
                               b' "lamp", "variant_id": "lamp-red", "quantity": 1}',
                               headers={**shop.user, "Content-Type": content_type})
    assert_error(r, 415, "unsupported_media_type")
    await _unchanged(shop)


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON",
                                          "application/json; charset=utf-8",
                                          'application/json;charset="UTF-8"'])
async def test_application_json_with_a_utf8_charset_is_accepted(shop: Shop,
                                                                content_type: str) -> None:
    r = await shop.client.post(f"/v1/carts/{shop.cart_id}/items", content=b'{"product_id":'
                               b' "lamp", "variant_id": "lamp-red", "quantity": 1}',
                               headers={**shop.user, "Content-Type": content_type})
    assert r.status_code == 200, r.text
