"""engine.cart: line items, limits, coupon codes, status transitions, and atomic failures."""

from __future__ import annotations

import dataclasses

import pytest

from engine.cart import Cart, CartStatus, normalize_options
from engine.catalog import Product, Variant
from engine.errors import Conflict, DomainError, NotFound, ValidationFailed
from engine.limits import (
    MAX_CODES_PER_CART,
    MAX_LINES_PER_CART,
    MAX_OPTION_LENGTH,
    MAX_OPTIONS,
    MAX_QUANTITY_PER_LINE,
)

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
TTL = 3600.0


# -- builders ------------------------------------------------------------------------------

def make_product(product_id: str = "tee", variant_ids: tuple[str, ...] = ("tee-s", "tee-m"),
                 price: int = 2500, category: str = "apparel") -> Product:
    return Product(
        product_id=product_id, name=f"{product_id.title()} Shirt", description="",
        category=category, prices={"USD": price},
        variants=tuple(Variant(vid, sku=vid.upper()) for vid in variant_ids),
    )


TEE = make_product()


def new_cart(now: float = NOW, ttl: float = TTL) -> Cart:
    return Cart(cart_id="c1", owner="u1", currency="USD", created_at=now, updated_at=now,
                expires_at=now + ttl)


def add(cart: Cart, variant_id: str = "tee-s", quantity: int = 1, options=None,
        unit_price: int = 2500, now: float = NOW, ttl: float = TTL, product: Product = TEE):
    return cart.add_item(product, product.variant(variant_id), quantity, options, unit_price,
                         now, ttl)


def populated_cart() -> Cart:
    """An active cart with two lines and a code, at version 3."""
    cart = new_cart()
    add(cart, "tee-s", 2)
    add(cart, "tee-m", 1, {"gift_wrap": "yes"})
    cart.add_code("save10", NOW, TTL)
    return cart


def full_cart() -> Cart:
    """An active cart holding the maximum number of lines (same variant, distinct options)."""
    cart = new_cart()
    for i in range(MAX_LINES_PER_CART):
        add(cart, "tee-s", 1, {"n": str(i)})
    return cart


# -- add_item ------------------------------------------------------------------------------

def test_adding_an_item_creates_a_line_with_the_product_details():
    cart = new_cart()
    ln = add(cart, "tee-m", 3, unit_price=2700, now=NOW + 5)
    assert cart.lines == {ln.line_id: ln}
    assert ln.line_id == "ln_1"
    assert (ln.product_id, ln.variant_id, ln.sku, ln.name, ln.category) == \
        ("tee", "tee-m", "TEE-M", "Tee Shirt", "apparel")
    assert ln.quantity == 3
    assert ln.unit_price == 2700
    assert ln.options == {}
    assert ln.added_at == ln.updated_at == NOW + 5
    assert ln.hold_until is None


def test_adding_the_same_variant_and_options_adds_to_the_existing_line():
    cart = new_cart()
    first = add(cart, "tee-s", 2, {"engraving": "AB"}, now=NOW)
    again = add(cart, "tee-s", 3, {"engraving": "AB"}, now=NOW + 10)
    assert again is first
    assert len(cart.lines) == 1
    assert first.quantity == 5
    assert first.added_at == NOW
    assert first.updated_at == NOW + 10


def test_options_match_regardless_of_key_order_and_value_type():
    cart = new_cart()
    first = add(cart, "tee-s", 1, {"b": "1", "a": "x"})
    again = add(cart, "tee-s", 1, {"a": "x", "b": 1})
    assert again is first
    assert first.quantity == 2
    assert list(first.options) == ["a", "b"]


def test_no_options_and_empty_options_are_the_same_line():
    cart = new_cart()
    first = add(cart, "tee-s", 1, None)
    again = add(cart, "tee-s", 1, {})
    assert again is first
    assert len(cart.lines) == 1


def test_different_options_make_a_new_line():
    cart = new_cart()
    a = add(cart, "tee-s", 1, {"gift_wrap": "yes"})
    b = add(cart, "tee-s", 1, {"gift_wrap": "no"})
    c = add(cart, "tee-s", 1)
    assert len({a.line_id, b.line_id, c.line_id}) == 3
    assert len(cart.lines) == 3


def test_a_different_variant_makes_a_new_line():
    cart = new_cart()
    a = add(cart, "tee-s", 1)
    b = add(cart, "tee-m", 1)
    assert a.line_id != b.line_id
    assert {ln.variant_id for ln in cart.lines.values()} == {"tee-s", "tee-m"}


def test_the_unit_price_is_the_one_captured_when_the_line_was_added():
    cart = new_cart()
    ln = add(cart, "tee-s", 1, unit_price=2500)
    add(cart, "tee-s", 1, unit_price=3000)  # price went up since: the line keeps its price
    assert ln.unit_price == 2500
    assert ln.quantity == 2


def test_line_ids_are_never_reused_after_a_removal():
    cart = new_cart()
    a = add(cart, "tee-s", 1)
    cart.remove_line(a.line_id, NOW, TTL)
    b = add(cart, "tee-s", 1)
    assert b.line_id != a.line_id
    assert cart.line_seq == 2


def test_every_successful_command_bumps_the_version_and_moves_the_deadline():
    cart = new_cart()
    assert cart.version == 0
    ln = add(cart, now=NOW + 1, ttl=100.0)
    assert (cart.version, cart.updated_at, cart.expires_at) == (1, NOW + 1, NOW + 101)
    add(cart, now=NOW + 2, ttl=200.0)
    assert (cart.version, cart.updated_at, cart.expires_at) == (2, NOW + 2, NOW + 202)
    cart.set_quantity(ln.line_id, 7, NOW + 3, 300.0)
    assert (cart.version, cart.updated_at, cart.expires_at) == (3, NOW + 3, NOW + 303)
    cart.add_code("x", NOW + 4, 400.0)
    assert (cart.version, cart.updated_at, cart.expires_at) == (4, NOW + 4, NOW + 404)
    cart.remove_code("X", NOW + 5, 500.0)
    assert (cart.version, cart.updated_at, cart.expires_at) == (5, NOW + 5, NOW + 505)
    cart.remove_line(ln.line_id, NOW + 6, 600.0)
    assert (cart.version, cart.updated_at, cart.expires_at) == (6, NOW + 6, NOW + 606)
    assert cart.created_at == NOW


# -- set_quantity / remove_line ------------------------------------------------------------

def test_setting_a_quantity_replaces_it_and_updates_the_line():
    cart = new_cart()
    ln = add(cart, "tee-s", 2, now=NOW)
    out = cart.set_quantity(ln.line_id, 9, NOW + 30, TTL)
    assert out is ln
    assert ln.quantity == 9
    assert ln.updated_at == NOW + 30
    assert ln.added_at == NOW


def test_setting_a_quantity_to_zero_removes_the_line():
    cart = new_cart()
    a = add(cart, "tee-s", 2)
    b = add(cart, "tee-m", 1)
    assert cart.set_quantity(a.line_id, 0, NOW + 1, TTL) is None
    assert list(cart.lines) == [b.line_id]
    assert cart.version == 3


def test_setting_the_quantity_to_the_line_maximum_is_allowed():
    cart = new_cart()
    ln = add(cart)
    cart.set_quantity(ln.line_id, MAX_QUANTITY_PER_LINE, NOW, TTL)
    assert ln.quantity == MAX_QUANTITY_PER_LINE


def test_removing_a_line_returns_it():
    cart = new_cart()
    a = add(cart, "tee-s", 2)
    b = add(cart, "tee-m", 1)
    removed = cart.remove_line(a.line_id, NOW + 1, TTL)
    assert removed is a
    assert list(cart.lines) == [b.line_id]


def test_an_unknown_line_is_not_found():
    cart = new_cart()
    for command in (lambda: cart.set_quantity("ln_9", 1, NOW, TTL),
                    lambda: cart.remove_line("ln_9", NOW, TTL),
                    lambda: cart.line("ln_9")):
        with pytest.raises(NotFound) as e:
            command()
        assert e.value.code == "line_not_found"
        assert e.value.details == [{"field": "line_id", "value": "ln_9"}]


# -- limits --------------------------------------------------------------------------------

@pytest.mark.parametrize("quantity", [0, -1, MAX_QUANTITY_PER_LINE + 1, 1.0, "2", True, None])
def test_add_refuses_a_quantity_outside_1_to_999(quantity):
    cart = new_cart()
    with pytest.raises(ValidationFailed) as e:
        add(cart, "tee-s", quantity)
    assert e.value.code == "invalid_quantity"


def test_add_accepts_999_on_a_new_line():
    cart = new_cart()
    assert add(cart, "tee-s", MAX_QUANTITY_PER_LINE).quantity == MAX_QUANTITY_PER_LINE


def test_adding_to_a_line_cannot_take_it_past_999():
    cart = new_cart()
    ln = add(cart, "tee-s", 990)
    add(cart, "tee-s", 9)
    assert ln.quantity == MAX_QUANTITY_PER_LINE
    with pytest.raises(ValidationFailed) as e:
        add(cart, "tee-s", 1)
    assert e.value.code == "invalid_quantity"
    assert e.value.details == [{"line_id": ln.line_id, "quantity": MAX_QUANTITY_PER_LINE}]
    assert ln.quantity == MAX_QUANTITY_PER_LINE


@pytest.mark.parametrize("quantity", [-1, MAX_QUANTITY_PER_LINE + 1, 2.5, False])
def test_set_quantity_refuses_a_quantity_outside_0_to_999(quantity):
    cart = new_cart()
    ln = add(cart, "tee-s", 2)
    with pytest.raises(ValidationFailed) as e:
        cart.set_quantity(ln.line_id, quantity, NOW, TTL)
    assert e.value.code == "invalid_quantity"


def test_a_cart_holds_at_most_100_lines():
    cart = full_cart()
    assert len(cart.lines) == MAX_LINES_PER_CART
    with pytest.raises(ValidationFailed) as e:
        add(cart, "tee-m", 1)
    assert e.value.code == "too_many_lines"
    assert len(cart.lines) == MAX_LINES_PER_CART


def test_a_full_cart_still_accepts_more_of_an_existing_line():
    cart = full_cart()
    ln = add(cart, "tee-s", 4, {"n": "0"})
    assert ln.quantity == 5
    assert len(cart.lines) == MAX_LINES_PER_CART


def test_options_accept_ten_entries_of_200_characters():
    opts = {f"k{i}": "v" * MAX_OPTION_LENGTH for i in range(MAX_OPTIONS)}
    cart = new_cart()
    assert add(cart, "tee-s", 1, opts).options == opts


@pytest.mark.parametrize("options", [
    {f"k{i}": "v" for i in range(MAX_OPTIONS + 1)},
    {"engraving": "x" * (MAX_OPTION_LENGTH + 1)},
    {"k" * (MAX_OPTION_LENGTH + 1): "v"},
    {"engraving": None},
    {"engraving": 1.5},
    {"engraving": ["a"]},
    {1: "a"},
    ["not", "a", "mapping"],
    "gift",
])
def test_add_refuses_bad_options(options):
    cart = new_cart()
    with pytest.raises(ValidationFailed) as e:
        add(cart, "tee-s", 1, options)
    assert e.value.code == "invalid_options"
    assert cart.lines == {}


def test_option_values_are_stored_as_strings_sorted_by_key():
    assert normalize_options({"z": 3, "a": True, "m": "x"}) == {"a": "True", "m": "x", "z": "3"}
    assert list(normalize_options({"z": "1", "a": "2"})) == ["a", "z"]


def test_options_with_mixed_type_names_are_refused_as_invalid_options():
    with pytest.raises(ValidationFailed) as e:
        normalize_options({1: "a", "b": "c"})
    assert e.value.code == "invalid_options"


# -- coupon codes --------------------------------------------------------------------------

def test_codes_are_stored_upper_case_and_trimmed():
    cart = new_cart()
    assert cart.add_code("  Save10 ", NOW, TTL) == "SAVE10"
    assert cart.codes == ["SAVE10"]


def test_adding_a_code_twice_in_any_case_keeps_one_and_changes_nothing():
    cart = new_cart()
    cart.add_code("save10", NOW, TTL)
    before = dataclasses.asdict(cart)
    assert cart.add_code("SAVE10", NOW + 5, TTL) == "SAVE10"
    assert dataclasses.asdict(cart) == before


def test_codes_are_removed_case_insensitively():
    cart = new_cart()
    cart.add_code("SAVE10", NOW, TTL)
    cart.add_code("freeship", NOW, TTL)
    cart.remove_code("save10", NOW, TTL)
    assert cart.codes == ["FREESHIP"]


def test_a_cart_takes_at_most_ten_codes():
    cart = new_cart()
    for i in range(MAX_CODES_PER_CART):
        cart.add_code(f"code{i}", NOW, TTL)
    with pytest.raises(ValidationFailed) as e:
        cart.add_code("one-more", NOW, TTL)
    assert e.value.code == "too_many_codes"
    assert len(cart.codes) == MAX_CODES_PER_CART
    # re-adding a code already on a full cart is not a new code
    assert cart.add_code("CODE3", NOW, TTL) == "CODE3"


@pytest.mark.parametrize("code", ["", "   ", "x" * 65, None, 10])
def test_a_code_must_be_1_to_64_characters(code):
    cart = new_cart()
    with pytest.raises(ValidationFailed) as e:
        cart.add_code(code, NOW, TTL)
    assert e.value.code == "invalid_code"


def test_a_64_character_code_is_accepted():
    cart = new_cart()
    assert cart.add_code("a" * 64, NOW, TTL) == "A" * 64


def test_removing_a_code_that_is_not_applied_is_not_found():
    cart = new_cart()
    cart.add_code("SAVE10", NOW, TTL)
    with pytest.raises(NotFound) as e:
        cart.remove_code("nope", NOW, TTL)
    assert e.value.code == "code_not_applied"


# -- status transitions --------------------------------------------------------------------

def test_a_new_cart_is_active_at_version_zero():
    cart = new_cart()
    assert cart.status is CartStatus.ACTIVE
    assert cart.is_active
    assert cart.version == 0
    assert cart.expires_at == NOW + TTL


def test_expiring_returns_only_the_lines_that_held_stock_and_clears_their_holds():
    cart = new_cart()
    held = add(cart, "tee-s", 2)
    held.hold_until = NOW + 600
    plain = add(cart, "tee-m", 1)
    version, deadline = cart.version, cart.expires_at
    out = cart.expire(NOW + TTL)
    assert out == [held]
    assert held.hold_until is None
    assert plain.hold_until is None
    assert cart.status is CartStatus.EXPIRED
    assert not cart.is_active
    assert cart.version == version + 1
    assert cart.updated_at == NOW + TTL
    assert cart.expires_at == deadline
    assert set(cart.lines) == {held.line_id, plain.line_id}


def _mutations(cart: Cart, line_id: str):
    return {
        "add_item": lambda: add(cart, "tee-s", 1),
        "set_quantity": lambda: cart.set_quantity(line_id, 3, NOW, TTL),
        "remove_line": lambda: cart.remove_line(line_id, NOW, TTL),
        "add_code": lambda: cart.add_code("new", NOW, TTL),
        "remove_code": lambda: cart.remove_code("SAVE10", NOW, TTL),
        "expire": lambda: cart.expire(NOW),
        "check_out": lambda: cart.check_out("o2", NOW),
        "mark_merged": lambda: cart.mark_merged("c9", NOW),
    }


@pytest.mark.parametrize("end", ["expire", "check_out", "mark_merged"])
@pytest.mark.parametrize("command", list(_mutations(new_cart(), "ln_1")))
def test_a_cart_that_is_not_active_refuses_every_command(end, command):
    cart = populated_cart()
    line_id = next(iter(cart.lines))
    {"expire": lambda: cart.expire(NOW + 1),
     "check_out": lambda: cart.check_out("o1", NOW + 1),
     "mark_merged": lambda: cart.mark_merged("c2", NOW + 1)}[end]()
    before = dataclasses.asdict(cart)
    with pytest.raises(Conflict) as e:
        _mutations(cart, line_id)[command]()
    assert e.value.code == "cart_not_active"
    assert e.value.details == [{"status": cart.status.value}]
    assert dataclasses.asdict(cart) == before


def test_checking_out_records_the_order_and_clears_holds():
    cart = populated_cart()
    ln = next(iter(cart.lines.values()))
    ln.hold_until = NOW + 600
    version = cart.version
    cart.check_out("ord_1", NOW + 7)
    assert cart.status is CartStatus.CHECKED_OUT
    assert cart.order_id == "ord_1"
    assert cart.merged_into is None
    assert ln.hold_until is None
    assert cart.version == version + 1
    assert cart.updated_at == NOW + 7
    assert len(cart.lines) == 2


def test_marking_merged_records_the_target_cart_and_clears_holds():
    cart = populated_cart()
    ln = next(iter(cart.lines.values()))
    ln.hold_until = NOW + 600
    version = cart.version
    cart.mark_merged("c-user", NOW + 8)
    assert cart.status is CartStatus.MERGED
    assert cart.merged_into == "c-user"
    assert cart.order_id is None
    assert ln.hold_until is None
    assert cart.version == version + 1
    assert cart.updated_at == NOW + 8


# -- If-Match ------------------------------------------------------------------------------

def test_check_version_passes_on_the_current_version_or_none():
    cart = populated_cart()
    cart.check_version(None)
    cart.check_version(cart.version)


def test_check_version_refuses_a_stale_version():
    cart = populated_cart()
    with pytest.raises(Conflict) as e:
        cart.check_version(cart.version - 1)
    assert e.value.code == "version_mismatch"
    assert e.value.details == [{"expected": cart.version - 1, "actual": cart.version}]


# -- failing commands change nothing -------------------------------------------------------

FAILING_COMMANDS = {
    "add quantity 0": lambda c: add(c, "tee-s", 0),
    "add quantity 1000": lambda c: add(c, "tee-s", 1000),
    "add float quantity": lambda c: add(c, "tee-s", 1.0),
    "add past 999 on the line": lambda c: add(c, "tee-s", MAX_QUANTITY_PER_LINE - 1),
    "add too many options": lambda c: add(c, "tee-s", 1, {f"k{i}": "v" for i in range(11)}),
    "add long option": lambda c: add(c, "tee-m", 1, {"gift_wrap": "y" * 201}),
    "set unknown line": lambda c: c.set_quantity("ln_99", 2, NOW + 1, TTL),
    "set negative quantity": lambda c: c.set_quantity("ln_1", -1, NOW + 1, TTL),
    "set quantity 1000": lambda c: c.set_quantity("ln_1", 1000, NOW + 1, TTL),
    "remove unknown line": lambda c: c.remove_line("ln_99", NOW + 1, TTL),
    "add invalid code": lambda c: c.add_code("   ", NOW + 1, TTL),
    "remove code not applied": lambda c: c.remove_code("OTHER", NOW + 1, TTL),
    "stale If-Match": lambda c: c.check_version(c.version + 1),
}


@pytest.mark.parametrize("name", list(FAILING_COMMANDS))
def test_a_failing_command_leaves_the_cart_exactly_as_it_was(name):
    cart = populated_cart()
    before = dataclasses.asdict(cart)
    with pytest.raises(DomainError):
        FAILING_COMMANDS[name](cart)
    assert dataclasses.asdict(cart) == before


def test_a_refused_101st_line_leaves_the_full_cart_exactly_as_it_was():
    cart = full_cart()
    before = dataclasses.asdict(cart)
    with pytest.raises(ValidationFailed):
        add(cart, "tee-m", 1)
    assert dataclasses.asdict(cart) == before


def test_a_refused_11th_code_leaves_the_cart_exactly_as_it_was():
    cart = new_cart()
    for i in range(MAX_CODES_PER_CART):
        cart.add_code(f"c{i}", NOW, TTL)
    before = dataclasses.asdict(cart)
    with pytest.raises(ValidationFailed):
        cart.add_code("c10", NOW + 1, TTL)
    assert dataclasses.asdict(cart) == before
