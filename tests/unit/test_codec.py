"""snapshots.codec: versioned msgpack records of engine state."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from engine.cart import Cart, CartStatus, LineItem
from engine.catalog import Product, product_from_dict
from engine.checkout import Order, OrderStatus
from engine.promotions import Promotion, Target, promotion_from_dict
from engine.stock import Reservation, StockLedger
from snapshots.codec import SCHEMA_VERSION, SnapshotVersionError, decode, encode

pytestmark = pytest.mark.unit

T0 = 1_800_000_000.25


def round_trip(obj):
    data = encode(obj)
    assert isinstance(data, bytes)
    return decode(data)


def record(version, tag, payload) -> bytes:
    return msgpack.packb([version, tag, payload], use_bin_type=True)


def make_line(line_id: str = "ln_1", **changes) -> LineItem:
    ln = LineItem(line_id=line_id, product_id="tee", variant_id="tee-s", sku="TEE-S",
                  name="Tee Shirt", quantity=3, unit_price=2500,
                  options={"engraving": "AB", "gift_wrap": "yes"}, added_at=T0,
                  updated_at=T0 + 1.5, category="apparel", hold_until=T0 + 600)
    return dataclasses.replace(ln, **changes)


def make_cart(**changes) -> Cart:
    cart = Cart(cart_id="c1", owner="u1", currency="EUR", created_at=T0, updated_at=T0 + 9,
                expires_at=T0 + 3609, version=7, codes=["SAVE10", "FREESHIP"], line_seq=4,
                lines={"ln_1": make_line("ln_1"), "ln_4": make_line("ln_4", quantity=1)})
    return dataclasses.replace(cart, **changes)


def make_order(**changes) -> Order:
    order = Order(
        order_id="ord_1", cart_id="c1", owner="u1", currency="USD",
        lines=[{"line_id": "ln_1", "variant_id": "tee-s", "quantity": 2,
                "unit_price": {"amount": 2500, "currency": "USD"}}],
        totals={"subtotal": {"amount": 5000, "currency": "USD"},
                "total": {"amount": 4500, "currency": "USD"}},
        discounts=[{"code": "SAVE10", "promotion_id": "p1",
                    "amount": {"amount": 500, "currency": "USD"}}],
        created_at=T0, updated_at=T0 + 2, expires_at=T0 + 900, status=OrderStatus.PAID,
        payment={"status": "authorized", "reference": "pay_1"},
        reservations=[["inv:tee-s:0", "ord_1:ln_1", 2]], promotion_uses=["p1"],
        failure_reason=None, shipping_address={"country": "DE", "postal_code": "10115"},
    )
    return dataclasses.replace(order, **changes)


API_PRODUCT = {
    "name": "Trail Runner 2", "description": "Light.", "category": "shoes",
    "price": {"amount": 8999, "currency": "USD"},
    "prices": [{"amount": 8499, "currency": "EUR"}],
    "variants": [
        {"variant_id": "tr-42-blue", "sku": "TR2-42-BLU",
         "attributes": {"size": "42", "color": "blue"},
         "price": {"amount": 9499, "currency": "USD"}, "hold_ttl": 300, "shards": 8},
        {"variant_id": "tr-43-blue", "sku": "TR2-43-BLU", "attributes": {"size": "43"}},
    ],
}


# -- engine objects ------------------------------------------------------------------------

def test_a_cart_record_round_trips_without_its_lines():
    cart = make_cart()
    back = round_trip(cart)
    assert isinstance(back, Cart)
    assert back == dataclasses.replace(cart, lines={})
    assert back.status is CartStatus.ACTIVE
    assert back.lines == {}


@pytest.mark.parametrize("status", list(CartStatus))
def test_a_cart_record_keeps_its_status_order_and_merge_target(status):
    cart = make_cart(status=status, order_id="ord_9", merged_into="c-user")
    back = round_trip(cart)
    assert back.status is status
    assert (back.order_id, back.merged_into) == ("ord_9", "c-user")


def test_a_cart_rebuilt_from_its_record_and_line_records_equals_the_original():
    cart = make_cart()
    back = round_trip(cart)
    for line_id, ln in cart.lines.items():
        back.lines[line_id] = round_trip(ln)
    assert back == cart


def test_a_line_item_round_trips():
    ln = make_line()
    back = round_trip(ln)
    assert isinstance(back, LineItem)
    assert back == ln


def test_a_line_item_without_a_hold_or_options_round_trips():
    ln = make_line(options={}, hold_until=None, category="")
    assert round_trip(ln) == ln


def test_a_ledger_record_keeps_only_its_header():
    s = StockLedger("tee-s", on_hand=40, sold=12)
    s.reserve("r1", 5, T0 + 60, "c1")
    back = round_trip(s)
    assert isinstance(back, StockLedger)
    assert (back.variant_id, back.on_hand, back.sold) == ("tee-s", 40, 12)
    assert back.reservations == {}
    assert back.reserved == 0


def test_a_reservation_round_trips():
    r = Reservation("ord_1:ln_1", 4, T0 + 900, "c1")
    back = round_trip(r)
    assert isinstance(back, Reservation)
    assert back == r


def test_a_ledger_rebuilt_from_header_and_reservation_records_matches_the_original():
    s = StockLedger("tee-s", on_hand=40, sold=12)
    s.reserve("r1", 5, T0 + 60, "c1")
    s.reserve("r2", 3, T0 + 30, "c2")
    header = round_trip(s)
    reservations = [round_trip(r) for r in s.reservations.values()]
    back = StockLedger(header.variant_id, header.on_hand, header.sold,
                       reservations={r.reservation_id: r for r in reservations})
    assert back.snapshot() == s.snapshot()
    assert back.reservations == s.reservations
    assert back.next_expiry() == T0 + 30


@pytest.mark.parametrize("status", list(OrderStatus))
def test_an_order_round_trips(status):
    order = make_order(status=status)
    back = round_trip(order)
    assert isinstance(back, Order)
    assert back == order
    assert back.status is status


def test_an_order_with_defaults_round_trips():
    order = Order("ord_2", "c2", "guest-1", "JPY", [], {}, [], T0, T0, T0 + 900)
    assert round_trip(order) == order


def test_a_product_round_trips():
    p = product_from_dict("trail-runner-2", API_PRODUCT)
    back = round_trip(p)
    assert isinstance(back, Product)
    assert back == p
    assert isinstance(back.variants, tuple)
    assert back.variants[0].hold_ttl == 300.0
    assert back.variants[0].shards == 8
    assert back.price_of(back.variant("tr-43-blue"), "EUR") == 8499


def test_a_product_with_an_implicit_variant_round_trips():
    p = product_from_dict("mug", {"name": "Mug", "price": {"amount": 1200, "currency": "JPY"}})
    assert round_trip(p) == p


PROMOTION_BODIES = {
    "percentage coupon": {
        "kind": "percentage", "value": 1000, "code": "save10", "description": "10 % off",
        "min_subtotal": 5000, "starts_at": "2026-11-27T00:00:00Z", "ends_at": T0,
        "usage_limit": 100, "per_customer_limit": 1, "customer_groups": ["vip", "staff"],
        "stackable": False, "priority": 5},
    "fixed per currency on a category": {
        "kind": "fixed",
        "values": [{"amount": 500, "currency": "USD"}, {"amount": 450, "currency": "EUR"}],
        "target": {"type": "categories", "ids": ["shoes"], "exclude_ids": ["gift-card"],
                   "exclude_categories": ["sale"]},
        "allocation": "each", "min_subtotal": [{"amount": 1000, "currency": "USD"}]},
    "fixed single currency": {"kind": "fixed", "value": 700, "currency": "GBP"},
    "free shipping": {"kind": "free_shipping", "code": "SHIP"},
    "buy two get one half off": {
        "kind": "buy_x_get_y", "buy_quantity": 2, "get_quantity": 1, "get_percent": 50,
        "target": {"type": "products", "ids": ["a", "b"]}},
    "membership": {"kind": "percentage", "value": 500, "customer_groups": ["gold"],
                   "membership": True},
    "capped percentage": {"kind": "percentage", "value": 2000,
                          "max_discount": [{"amount": 5000, "currency": "USD"},
                                           {"amount": 4500, "currency": "EUR"}]},
    "buy shoes get socks": {
        "kind": "buy_x_get_y", "buy_quantity": 2, "get_quantity": 1,
        "target": {"type": "categories", "ids": ["shoes"]},
        "get_target": {"type": "products", "ids": ["sock"], "exclude_ids": ["sock-silk"],
                       "exclude_categories": ["sale"]},
        "max_discount": {"amount": 1500, "currency": "USD"}},
}


@pytest.mark.parametrize("name", list(PROMOTION_BODIES))
def test_a_promotion_round_trips(name):
    p = promotion_from_dict("promo-1", PROMOTION_BODIES[name])
    back = round_trip(p)
    assert isinstance(back, Promotion)
    assert back == p


def test_a_promotion_with_sub_millisecond_times_round_trips():
    # regression: records once went through the admin JSON, whose RFC 3339 times keep ms only
    p = promotion_from_dict("promo-1", {"kind": "percentage", "value": 100,
                                        "starts_at": 1_800_000_000.0,
                                        "ends_at": 1_800_000_001.0005})
    assert round_trip(p) == p


def test_a_promotion_accepted_by_the_admin_api_can_always_be_decoded():
    # regression: a sub-millisecond window was truncated to an empty one and failed validation
    p = promotion_from_dict("promo-1", {"kind": "percentage", "value": 100,
                                        "starts_at": 1_800_000_000.0004,
                                        "ends_at": 1_800_000_000.0008})
    assert round_trip(p) == p


def test_a_directly_built_promotion_round_trips_with_nested_tuples_and_sets():
    p = Promotion(promotion_id="p9", kind="fixed", value=500, currency="USD",
                  amounts=(("EUR", 450), ("USD", 500)), min_subtotals=(("USD", 2000),),
                  target=Target("variants", frozenset({"a", "b"}), frozenset({"c"})),
                  customer_groups=frozenset({"vip"}), starts_at=T0, ends_at=T0 + 0.0001)
    back = round_trip(p)
    assert back == p
    assert back.amounts == (("EUR", 450), ("USD", 500))
    assert isinstance(back.target.ids, frozenset)


def test_a_promotion_record_written_before_caps_and_get_targets_still_loads():
    payload = msgpack.unpackb(encode(Promotion("p1", "buy_x_get_y", buy_quantity=2,
                                               get_quantity=1)), raw=False)[2]
    # Unset, the new fields are not written: records stay as the build before wrote them.
    assert "max_discounts" not in payload and "get_target" not in payload
    back = decode(record(SCHEMA_VERSION, "promotion", payload))
    assert back.max_discounts == () and back.get_target is None


def test_a_cap_and_a_get_target_come_back_as_tuples_and_a_target():
    p = Promotion("p1", "buy_x_get_y", buy_quantity=2, get_quantity=1,
                  max_discounts=(("EUR", 450), ("USD", 500)),
                  get_target=Target("categories", frozenset({"socks"}), frozenset({"silk"})))
    back = round_trip(p)
    assert back == p
    assert back.max_discounts == (("EUR", 450), ("USD", 500))
    assert isinstance(back.get_target, Target) and isinstance(back.get_target.ids, frozenset)


def test_a_promotion_record_with_an_unknown_field_is_refused():
    payload = msgpack.unpackb(encode(Promotion("p1", "percentage", value=100)), raw=False)[2]
    payload["new_field_from_a_later_build"] = 1
    with pytest.raises(SnapshotVersionError):
        decode(record(SCHEMA_VERSION, "promotion", payload))


# -- plain data ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    {"a": 1, "b": [1, 2, {"c": None}], "d": 1.5, "e": True, "f": "x"},
    [1, "two", 3.0, None, False],
    "text", 0, -7, 10**15, 1.25, None, b"\x00\xff", {},
    {1: "int keys are kept"},
])
def test_plain_data_round_trips(value):
    assert round_trip(value) == value


def test_plain_tuples_come_back_as_lists():
    assert round_trip((1, 2)) == [1, 2]


def test_every_record_is_version_tag_payload():
    version, tag, payload = msgpack.unpackb(encode(make_line()), raw=False)
    assert (version, tag) == (SCHEMA_VERSION, "line")
    assert payload["line_id"] == "ln_1"
    assert msgpack.unpackb(encode({"x": 1}), raw=False) == [SCHEMA_VERSION, "raw", {"x": 1}]


# -- refusing what this build cannot read --------------------------------------------------

@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0, -1, "1", None])
def test_an_unknown_schema_version_is_refused(version):
    payload = msgpack.unpackb(encode(make_cart()), raw=False)[2]
    with pytest.raises(SnapshotVersionError):
        decode(record(version, "cart", payload))


def test_an_unknown_schema_version_is_refused_even_for_plain_data():
    with pytest.raises(SnapshotVersionError):
        decode(record(SCHEMA_VERSION + 1, "raw", {"x": 1}))


@pytest.mark.parametrize("tag", ["basket", "Cart", "", None, 3])
def test_an_unknown_tag_is_refused(tag):
    with pytest.raises(SnapshotVersionError):
        decode(record(SCHEMA_VERSION, tag, {"cart_id": "c1"}))


@pytest.mark.parametrize("data", [
    b"",
    b"\xc1",
    b"hello world",
    b"\xff" * 16,
    bytes(range(256)),
    b"\x93\x01",                                     # truncated array
    msgpack.packb(5),                                # not an array
    msgpack.packb([1, "cart"]),                      # too short
    msgpack.packb([1, "cart", {}, "extra"]),         # too long
    msgpack.packb([1, "cart", {}])[:-1],             # cut short
])
def test_garbage_bytes_are_refused(data):
    with pytest.raises(SnapshotVersionError):
        decode(data)
