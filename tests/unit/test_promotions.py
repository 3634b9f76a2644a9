"""Promotions: the admin JSON, targets, and the code checks a shopper meets when adding a code."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.errors import DomainError, NotFound, ValidationFailed
from engine.pricing import PricingContext, check_code
from engine.promotions import (
    Promotion,
    Target,
    codes_index,
    promotion_from_dict,
    promotion_to_dict,
    sort_key,
)
from tests.unit.builders import make_cart, make_line

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0



# -- builders ------------------------------------------------------------------------------

def parse(**body: Any) -> Promotion:
    return promotion_from_dict("promo-1", body)


def parse_error(**body: Any) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as e:
        parse(**body)
    assert e.value.code == "invalid_promotion"
    return e.value


def code_error(promo: Promotion | None, code: str = "SAVE", subtotal: int = 10_000,
               currency: str = "USD", now: float = NOW, **kw: Any) -> DomainError:
    with pytest.raises(DomainError) as e:
        check_code(promo, code, subtotal, currency, now, **kw)
    return e.value


# -- promotion_from_dict -------------------------------------------------------------------

def test_a_percentage_code_is_parsed_with_its_code_upper_cased():
    p = parse(kind="percentage", value=1000, code=" save10 ", description="10 % off")
    assert (p.kind, p.value, p.code, p.description) == ("percentage", 1000, "SAVE10", "10 % off")
    assert p.target == Target("cart")
    assert p.stackable and p.priority == 0 and p.stage == "cart"


def test_a_promotion_without_a_code_is_automatic():
    assert parse(kind="percentage", value=500).code is None


def test_a_fixed_promotion_takes_value_and_currency():
    p = parse(kind="fixed", value=500, currency="USD")
    assert (p.value, p.currency, p.amount_in("USD"), p.amount_in("EUR")) == (500, "USD", 500, None)


def test_a_fixed_promotion_takes_one_amount_per_currency():
    p = parse(kind="fixed", values=[{"amount": 500, "currency": "USD"},
                                    {"amount": 450, "currency": "EUR"}])
    assert p.amount_in("USD") == 500 and p.amount_in("EUR") == 450 and p.amount_in("GBP") is None


def test_value_and_values_must_agree():
    err = parse_error(kind="fixed", value=500, currency="USD",
                      values=[{"amount": 400, "currency": "USD"}])
    assert err.details[0]["field"] == "values"


def test_a_fixed_promotion_needs_an_amount():
    parse_error(kind="fixed")
    parse_error(kind="fixed", value=500)
    parse_error(kind="fixed", value=0, currency="USD")
    parse_error(kind="fixed", value=500, currency="XXX")


def test_percentages_are_basis_points_from_1_to_10000():
    for bad in (0, 10_001, -5, 12.5, True, None):
        parse_error(kind="percentage", value=bad)
    assert parse(kind="percentage", value=10_000).value == 10_000


def test_an_unknown_kind_is_refused():
    assert parse_error(kind="bogo").details[0]["field"] == "kind"


def test_unknown_fields_are_refused_so_a_typo_cannot_widen_a_promotion():
    err = parse_error(kind="percentage", value=1000, min_subtotl=5000)
    assert err.details[0]["field"] == "min_subtotl"


def test_free_shipping_targets_shipping_by_default():
    p = parse(kind="free_shipping", min_subtotal=5000)
    assert p.target.type == "shipping" and p.stage == "shipping"
    parse_error(kind="free_shipping", target={"type": "cart"})
    parse_error(kind="free_shipping", value=100)


def test_buy_x_get_y_defaults_to_free_units():
    p = parse(kind="buy_x_get_y", buy_quantity=2, get_quantity=1)
    assert (p.buy_quantity, p.get_quantity, p.percent_bp, p.stage) == (2, 1, 10_000, "line")


def test_buy_x_get_y_at_a_percentage_off():
    assert parse(kind="buy_x_get_y", buy_quantity=1, get_quantity=1, value=5000).percent_bp == 5000
    assert parse(kind="buy_x_get_y", buy_quantity=1, get_quantity=1,
                 get_percent=50).percent_bp == 5000
    parse_error(kind="buy_x_get_y", buy_quantity=1, get_quantity=1, get_percent=50, value=4000)
    parse_error(kind="buy_x_get_y", buy_quantity=1, get_quantity=1, get_percent=0)


def test_buy_x_get_y_needs_both_quantities_and_no_other_kind_takes_them():
    parse_error(kind="buy_x_get_y", buy_quantity=2)
    parse_error(kind="buy_x_get_y", buy_quantity=2, get_quantity=0)
    parse_error(kind="percentage", value=1000, buy_quantity=2, get_quantity=1)
    parse_error(kind="buy_x_get_y", buy_quantity=2, get_quantity=1, target={"type": "shipping"})


def test_targets_name_products_variants_or_categories_with_exclusions():
    p = parse(kind="percentage", value=2000,
              target={"type": "categories", "ids": ["Men's shoes"], "exclude_ids": ["clog"],
                      "exclude_categories": ["gift-cards"]})
    assert p.target == Target("categories", frozenset({"Men's shoes"}), frozenset({"clog"}),
                              frozenset({"gift-cards"}))
    assert p.stage == "line"


def test_a_line_target_needs_ids_and_a_cart_target_takes_none():
    parse_error(kind="percentage", value=1000, target={"type": "products"})
    parse_error(kind="percentage", value=1000, target={"type": "cart", "ids": ["x"]})
    parse_error(kind="percentage", value=1000, target={"type": "aisles", "ids": ["x"]})
    parse_error(kind="percentage", value=1000, target={"type": "products", "ids": ["bad id"]})
    parse_error(kind="percentage", value=1000, target={"type": "cart", "exclude": ["x"]})


def test_allocation_each_is_for_fixed_amounts_on_items():
    p = parse(kind="fixed", value=100, currency="USD", allocation="each")
    assert p.stage == "line"
    parse_error(kind="percentage", value=100, allocation="each")
    parse_error(kind="fixed", value=100, currency="USD", allocation="per_unit")


def test_times_are_epoch_seconds_or_rfc_3339_with_an_offset():
    p = parse(kind="percentage", value=1000, starts_at="2027-01-15T08:00:00Z", ends_at=1.9e9)
    assert p.starts_at == datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()
    assert parse(kind="percentage", value=1, starts_at="1970-01-01T00:00:10+00:00").starts_at \
        == 10.0
    assert p.ends_at == 1.9e9
    parse_error(kind="percentage", value=1000, starts_at="2027-01-15T08:00:00")  # naive
    parse_error(kind="percentage", value=1000, starts_at="next tuesday")
    parse_error(kind="percentage", value=1000, starts_at=True)
    parse_error(kind="percentage", value=1000, starts_at=200, ends_at=100)


def test_min_subtotal_is_minor_units_in_any_currency_or_per_currency_money():
    assert parse(kind="percentage", value=1, min_subtotal=5000).minimum_in("JPY") == 5000
    p = parse(kind="percentage", value=1, min_subtotal=[{"amount": 5000, "currency": "USD"},
                                                        {"amount": 700, "currency": "JPY"}])
    assert (p.minimum_in("USD"), p.minimum_in("JPY"), p.minimum_in("EUR")) == (5000, 700, 0)
    parse_error(kind="percentage", value=1, min_subtotal=-1)


def test_limits_groups_stacking_and_priority_are_parsed():
    p = parse(kind="percentage", value=1000, usage_limit=100, per_customer_limit=1,
              customer_groups=["gold", "platinum"], stackable=False, priority=5, min_quantity=3)
    assert p.usage_limit == 100 and p.per_customer_limit == 1
    assert p.customer_groups == frozenset({"gold", "platinum"})
    assert not p.stackable and p.priority == 5 and p.min_quantity == 3
    parse_error(kind="percentage", value=1000, usage_limit=0)
    parse_error(kind="percentage", value=1000, per_customer_limit=0)
    parse_error(kind="percentage", value=1000, stackable="no")
    parse_error(kind="percentage", value=1000, customer_groups="gold")


def test_a_membership_discount_is_a_cart_discount_for_named_groups():
    p = parse(kind="percentage", value=500, customer_groups=["gold"], membership=True)
    assert p.stage == "membership"
    parse_error(kind="percentage", value=500, membership=True)
    parse_error(kind="free_shipping", customer_groups=["gold"], membership=True)


def test_bad_ids_and_codes_are_invalid_promotion_errors():
    with pytest.raises(ValidationFailed) as e:
        promotion_from_dict("bad id", {"kind": "percentage", "value": 1})
    assert e.value.code == "invalid_promotion"
    parse_error(kind="percentage", value=1000, code="x" * 65)
    parse_error(kind="percentage", value=1000, promotion_id="other")


def test_a_promotion_survives_a_round_trip_through_its_admin_json():
    p = parse(kind="fixed", value=500, currency="USD",
              values=[{"amount": 450, "currency": "EUR"}], code="five",
              target={"type": "categories", "ids": ["tops"], "exclude_ids": ["tee"]},
              min_subtotal=[{"amount": 2000, "currency": "USD"}], starts_at=1_800_000_000,
              ends_at=1_900_000_000, usage_limit=5, per_customer_limit=1,
              customer_groups=["gold"], stackable=False, priority=3)
    assert promotion_from_dict("promo-1", promotion_to_dict(p)) == p
    b = parse(kind="buy_x_get_y", buy_quantity=3, get_quantity=1, value=5000)
    assert promotion_from_dict("promo-1", promotion_to_dict(b)) == b
    f = parse(kind="free_shipping")
    assert promotion_from_dict("promo-1", promotion_to_dict(f)) == f


# -- max_discount (a cap per currency) ------------------------------------------------------

def test_a_max_discount_is_one_money_or_a_list_of_them():
    p = parse(kind="percentage", value=2000, max_discount={"amount": 5000, "currency": "USD"})
    assert p.max_discounts == (("USD", 5000),)
    assert (p.cap_in("USD"), p.cap_in("EUR")) == (5000, None)
    q = parse(kind="percentage", value=2000, max_discount=[{"amount": 5000, "currency": "USD"},
                                                           {"amount": 4500, "currency": "EUR"}])
    assert (q.cap_in("USD"), q.cap_in("EUR"), q.cap_in("JPY")) == (5000, 4500, None)


def test_without_a_max_discount_a_promotion_is_uncapped():
    assert parse(kind="percentage", value=2000).cap_in("USD") is None


def test_buy_x_get_y_and_fixed_promotions_take_a_max_discount_but_free_shipping_does_not():
    cap = {"amount": 2000, "currency": "USD"}
    assert parse(kind="buy_x_get_y", buy_quantity=1, get_quantity=1,
                 max_discount=cap).cap_in("USD") == 2000
    assert parse(kind="fixed", value=200, currency="USD", allocation="each",
                 max_discount=cap).cap_in("USD") == 2000
    assert parse_error(kind="free_shipping", max_discount=cap).details[0]["field"] \
        == "max_discount"


@pytest.mark.parametrize("cap", [
    {"amount": -1, "currency": "USD"},
    {"amount": 0, "currency": "USD"},
    {"amount": 10**12 + 1, "currency": "USD"},
    {"amount": 12.5, "currency": "USD"},
    {"amount": True, "currency": "USD"},
    {"amount": 5000, "currency": "XXX"},
    {"amount": 5000},
    [{"amount": 5000, "currency": "USD"}, {"amount": 4000, "currency": "USD"}],
    [],
    5000,
    "50.00 USD",
])
def test_an_invalid_max_discount_is_an_invalid_promotion(cap: Any):
    err = parse_error(kind="percentage", value=2000, max_discount=cap)
    assert err.details[0]["field"] == "max_discount"
    assert "max_discount" in err.message or "currency" in err.message


def test_a_zero_or_negative_max_discount_says_the_allowed_range():
    err = parse_error(kind="percentage", value=2000, max_discount={"amount": 0, "currency": "USD"})
    assert "1..1000000000000" in err.message


# -- get_target (buy X get Y of something else) --------------------------------------------

def test_buy_x_get_y_takes_a_separate_get_target():
    p = parse(kind="buy_x_get_y", buy_quantity=2, get_quantity=1,
              target={"type": "categories", "ids": ["shoes"]},
              get_target={"type": "products", "ids": ["sock"], "exclude_ids": ["sock-silk"]})
    assert p.target == Target("categories", frozenset({"shoes"}))
    assert p.get_target == Target("products", frozenset({"sock"}), frozenset({"sock-silk"}))
    assert p.stage == "line"


def test_without_a_get_target_buy_x_get_y_rewards_its_own_target():
    assert parse(kind="buy_x_get_y", buy_quantity=2, get_quantity=1).get_target is None


def test_a_get_target_is_only_for_buy_x_get_y():
    err = parse_error(kind="percentage", value=1000, get_target={"type": "products", "ids": ["a"]})
    assert err.details[0]["field"] == "get_target"


@pytest.mark.parametrize("get_target", [
    {"type": "cart"},
    {"type": "shipping"},
    {"type": "products"},
    {"type": "products", "ids": ["bad id"]},
    {"type": "aisles", "ids": ["a"]},
    {"type": "products", "ids": ["a"], "exclude": ["b"]},
    "sock",
])
def test_an_invalid_get_target_is_an_invalid_promotion(get_target: Any):
    err = parse_error(kind="buy_x_get_y", buy_quantity=1, get_quantity=1, get_target=get_target)
    assert err.details[0]["field"].startswith("get_target")


def test_a_cap_and_a_get_target_survive_a_round_trip_through_the_admin_json():
    p = parse(kind="buy_x_get_y", buy_quantity=2, get_quantity=1, value=5000,
              target={"type": "categories", "ids": ["shoes"], "exclude_categories": ["sale"]},
              get_target={"type": "products", "ids": ["sock"], "exclude_ids": ["sock-silk"]},
              max_discount=[{"amount": 1500, "currency": "USD"},
                            {"amount": 200_000, "currency": "JPY"}])
    body = promotion_to_dict(p)
    assert body["max_discount"] == [{"amount": 200_000, "currency": "JPY"},
                                    {"amount": 1500, "currency": "USD"}]
    assert body["get_target"]["ids"] == ["sock"]
    assert promotion_from_dict("promo-1", body) == p
    plain = parse(kind="percentage", value=100)
    assert promotion_to_dict(plain)["max_discount"] is None
    assert promotion_from_dict("promo-1", promotion_to_dict(plain)) == plain


def test_codes_index_maps_codes_to_promotions_and_skips_automatic_ones():
    a, b = parse(kind="percentage", value=1, code="a"), parse(kind="percentage", value=1)
    assert codes_index([a, b]) == {"A": a}


def test_promotions_apply_in_priority_order_then_by_id():
    ps = [Promotion("b", "percentage", 1), Promotion("a", "percentage", 1),
          Promotion("c", "percentage", 1, priority=9)]
    assert [p.promotion_id for p in sorted(ps, key=sort_key)] == ["c", "a", "b"]


# -- Target --------------------------------------------------------------------------------

def test_a_cart_target_matches_every_line_but_the_excluded_ones():
    t = Target("cart", exclude_ids=frozenset({"gift"}), exclude_categories=frozenset({"sale"}))
    assert t.matches(make_line(product_id="shirt"))
    assert not t.matches(make_line(product_id="gift"))
    assert not t.matches(make_line(product_id="shirt", variant_id="gift"))
    assert not t.matches(make_line(category="sale"))


def test_product_variant_and_category_targets_match_their_ids():
    line = make_line(product_id="shirt", variant_id="shirt-red", category="tops")
    assert Target("products", frozenset({"shirt"})).matches(line)
    assert Target("variants", frozenset({"shirt-red"})).matches(line)
    assert not Target("variants", frozenset({"shirt"})).matches(line)
    assert Target("categories", frozenset({"tops"})).matches(line)
    assert not Target("categories", frozenset({"tops"}),
                      exclude_ids=frozenset({"shirt-red"})).matches(line)
    assert not Target("shipping").matches(line)


def test_a_category_target_never_matches_an_uncategorised_line():
    assert not Target("categories", frozenset({""})).matches(make_line(category=""))


# -- check_code ----------------------------------------------------------------------------

def test_an_unknown_code_is_not_found():
    err = code_error(None, "NOPE")
    assert isinstance(err, NotFound) and err.code == "unknown_code"


def test_a_valid_code_returns_its_promotion():
    p = Promotion("p", "percentage", 1000, code="SAVE")
    assert check_code(p, "SAVE", 100, "USD", NOW) is p


def test_a_code_is_valid_from_starts_at_up_to_but_not_including_ends_at():
    p = Promotion("p", "percentage", 1000, code="SAVE", starts_at=NOW, ends_at=NOW + 60)
    assert code_error(p, now=NOW - 1).code == "code_not_yet_valid"
    assert check_code(p, "SAVE", 100, "USD", NOW) is p
    assert check_code(p, "SAVE", 100, "USD", NOW + 59.9) is p
    assert code_error(p, now=NOW + 60).code == "code_expired"


def test_a_code_below_its_minimum_says_how_much_more_to_add():
    p = Promotion("p", "percentage", 1000, code="SAVE", min_subtotal=5000)
    err = code_error(p, subtotal=3800)
    assert err.code == "minimum_not_met"
    assert "add 12.00 USD more" in err.message
    assert err.details[0]["short"] == 1200
    assert check_code(p, "SAVE", 5000, "USD", NOW) is p


def test_a_fixed_code_without_an_amount_in_the_cart_currency_is_a_currency_mismatch():
    p = Promotion("p", "fixed", 500, currency="USD", code="SAVE")
    assert code_error(p, currency="EUR").code == "currency_mismatch"


def test_a_used_up_code_is_refused():
    p = Promotion("p", "percentage", 1000, code="SAVE", usage_limit=100)
    ctx = PricingContext(now=NOW, usage_exhausted=frozenset({"p"}))
    err = code_error(p, ctx=ctx)
    assert err.code == "usage_limit_reached" and err.details[0]["scope"] == "global"


def test_a_customer_cannot_use_a_code_more_than_their_limit():
    p = Promotion("p", "percentage", 1000, code="SAVE", per_customer_limit=1)
    used = PricingContext(now=NOW, customer_id="alice", customer_uses={"p": 1})
    err = code_error(p, ctx=used)
    assert err.code == "usage_limit_reached" and err.details[0]["scope"] == "customer"
    fresh = PricingContext(now=NOW, customer_id="bob", customer_uses={"other": 3})
    assert check_code(p, "SAVE", 100, "USD", NOW, ctx=fresh) is p


def test_a_per_customer_code_needs_a_signed_in_customer():
    p = Promotion("p", "percentage", 1000, code="SAVE", per_customer_limit=1)
    assert code_error(p, ctx=PricingContext(now=NOW)).code == "customer_not_eligible"
    assert code_error(p).code == "customer_not_eligible"


def test_a_group_code_is_only_for_members_of_the_group():
    p = Promotion("p", "percentage", 1000, code="SAVE", customer_groups=frozenset({"gold"}))
    assert code_error(p, ctx=PricingContext(now=NOW, customer_groups=frozenset({"silver"}))) \
        .code == "customer_not_eligible"
    gold = PricingContext(now=NOW, customer_groups=frozenset({"gold", "staff"}))
    assert check_code(p, "SAVE", 100, "USD", NOW, ctx=gold) is p


def test_with_the_cart_a_code_for_items_not_in_it_is_refused():
    p = Promotion("p", "percentage", 1000, code="SAVE",
                  target=Target("categories", frozenset({"shoes"})))
    cart = make_cart(make_line(category="tops"))
    assert code_error(p, cart=cart).code == "no_eligible_items"
    assert check_code(p, "SAVE", 1000, "USD", NOW) is p  # without the cart, not checked


def test_with_the_cart_a_minimum_quantity_is_checked():
    p = Promotion("p", "percentage", 1000, code="SAVE", min_quantity=3)
    err = code_error(p, cart=make_cart(make_line(quantity=2)))
    assert err.code == "minimum_not_met" and err.details[0]["short_quantity"] == 1
    assert "add 1 more Shirt" in err.message


def test_a_buy_2_get_1_code_with_two_units_says_add_one_more_to_get_one_free():
    p = Promotion("p", "buy_x_get_y", code="SAVE", buy_quantity=2, get_quantity=1)
    err = code_error(p, cart=make_cart(make_line(quantity=2, name="T-shirt")))
    assert err.code == "minimum_not_met"
    assert err.message.startswith("add 1 more T-shirt to get 1 free")


def shoes_get_socks(**extra: Any) -> Promotion:
    return Promotion("p", "buy_x_get_y", code="SAVE", buy_quantity=2, get_quantity=1,
                     target=Target("categories", frozenset({"shoes"})),
                     get_target=Target("categories", frozenset({"socks"})), **extra)


def test_a_get_target_code_with_too_few_units_bought_says_how_many_to_add():
    cart = make_cart(make_line("ln_1", "boot", unit_price=8000, category="shoes", name="Boot"),
                     make_line("ln_2", "sock", unit_price=500, category="socks", name="Sock"))
    err = code_error(shoes_get_socks(), cart=cart)
    assert err.code == "minimum_not_met"
    assert err.message == "add 1 more Boot to get 1 Sock free with code SAVE"
    assert err.details[0]["short_of"] == "buy" and err.details[0]["short_quantity"] == 1


def test_a_get_target_code_without_a_unit_to_reward_says_to_add_one():
    cart = make_cart(make_line("ln_1", "boot", quantity=2, unit_price=8000, category="shoes"))
    err = code_error(shoes_get_socks(), cart=cart)
    assert err.code == "minimum_not_met"
    assert err.message == "add 1 item of category socks to get it free with code SAVE"
    assert err.details[0]["short_of"] == "get"


def test_a_get_target_code_with_a_full_group_and_a_unit_to_reward_is_accepted():
    cart = make_cart(make_line("ln_1", "boot", quantity=2, unit_price=8000, category="shoes"),
                     make_line("ln_2", "sock", unit_price=500, category="socks"))
    promo = shoes_get_socks()
    assert check_code(promo, "SAVE", 16_500, "USD", NOW, cart=cart) is promo


def test_an_exclusive_code_cannot_join_a_cart_that_has_a_code():
    excl = Promotion("x", "percentage", 3000, code="BIG", stackable=False)
    other = Promotion("o", "percentage", 500, code="SMALL")
    err = code_error(excl, "BIG", others=[other])
    assert err.code == "not_combinable" and err.details[0]["conflicts_with"] == ["SMALL"]


def test_no_code_can_join_a_cart_that_holds_an_exclusive_code():
    excl = Promotion("x", "percentage", 3000, code="BIG", stackable=False)
    other = Promotion("o", "percentage", 500, code="SMALL")
    assert code_error(other, "SMALL", others=[excl]).code == "not_combinable"


def test_stackable_codes_combine_and_re_adding_a_code_is_not_a_conflict():
    a = Promotion("a", "percentage", 500, code="A")
    b = Promotion("b", "percentage", 500, code="B")
    assert check_code(a, "A", 100, "USD", NOW, others=[b]) is a
    excl = Promotion("x", "percentage", 3000, code="BIG", stackable=False)
    assert check_code(excl, "BIG", 100, "USD", NOW, others=[excl]) is excl


def test_the_other_codes_are_looked_up_from_the_cart_and_context():
    excl = Promotion("x", "percentage", 3000, code="BIG", stackable=False)
    other = Promotion("o", "percentage", 500, code="SMALL")
    ctx = PricingContext(now=NOW, promotions={"BIG": excl, "SMALL": other})
    cart = make_cart(make_line(), codes=("SMALL",))
    assert code_error(excl, "BIG", subtotal=1000, cart=cart, ctx=ctx).code == "not_combinable"


def test_an_eleventh_code_is_too_many():
    p = Promotion("p", "percentage", 1000, code="SAVE")
    cart = make_cart(make_line(), codes=tuple(f"C{i}" for i in range(10)))
    assert code_error(p, cart=cart).code == "too_many_codes"
    others = [Promotion(f"o{i}", "percentage", 1, code=f"C{i}") for i in range(10)]
    assert code_error(p, others=others).code == "too_many_codes"
