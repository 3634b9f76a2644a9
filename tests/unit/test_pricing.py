"""Cart pricing: the pipeline, every promotion rule, combinations, explanations, shipping, tax."""

from __future__ import annotations

from typing import Any

import pytest

from engine.cart import Cart
from engine.catalog import Product, Variant
from engine.pricing import (
    PricedCart,
    PricingContext,
    ShippingPolicy,
    ShippingQuoter,
    TaxCalculator,
    TaxPolicy,
    price_cart,
)
from engine.promotions import (
    Promotion,
    Target,
    codes_index,
    promotion_from_dict,
    promotion_to_dict,
)
from tests.unit.builders import make_cart, make_line

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
NO_SHIPPING = ShippingPolicy(flat={}, free_over={})



# -- builders ------------------------------------------------------------------------------

def promo(promotion_id: str, **body: Any) -> Promotion:
    return promotion_from_dict(promotion_id, body)


def price(cart: Cart, *promos: Promotion, **ctx: Any) -> PricedCart:
    """Price with ``promos`` (coded ones by code, the others automatic); no shipping, no tax."""
    ctx.setdefault("shipping", NO_SHIPPING)
    return price_cart(cart, PricingContext(
        now=ctx.pop("now", NOW), promotions=codes_index(promos),
        automatic=[p for p in promos if p.code is None], **ctx))


def line_totals(priced: PricedCart) -> dict[str, int]:
    return {lid: pl.total for lid, pl in priced.lines.items()}


def assert_consistent(priced: PricedCart) -> None:
    assert sum(pl.total for pl in priced.lines.values()) == priced.subtotal - priced.discount
    assert sum(pl.discount for pl in priced.lines.values()) == priced.discount
    items = [d for d in priced.discounts if d["applies_to"] == "items"]
    assert sum(d["amount"]["amount"] for d in items) == priced.discount
    for pl in priced.lines.values():
        assert sum(d["amount"]["amount"] for d in pl.discounts) == pl.discount


# -- the basics ----------------------------------------------------------------------------

def test_a_cart_without_promotions_is_the_sum_of_its_lines_plus_shipping_and_tax():
    cart = make_cart(make_line("ln_1", quantity=2, unit_price=1250),
                     make_line("ln_2", "mug", unit_price=800))
    priced = price_cart(cart, PricingContext(now=NOW, tax=TaxPolicy(rate_bp=1000)))
    assert (priced.subtotal, priced.discount, priced.shipping) == (3300, 0, 499)
    assert priced.tax == 380  # 10 % of 3799 = 379.9, rounded half up
    assert priced.total == 3300 + 499 + 380
    assert line_totals(priced) == {"ln_1": 2500, "ln_2": 800}
    assert priced.totals() == {
        "subtotal": {"amount": 3300, "currency": "USD"},
        "discount": {"amount": 0, "currency": "USD"},
        "shipping": {"amount": 499, "currency": "USD"},
        "tax": {"amount": 380, "currency": "USD"},
        "total": {"amount": 4179, "currency": "USD"},
    }


def test_an_empty_cart_costs_nothing_not_even_shipping():
    priced = price_cart(make_cart(), PricingContext(now=NOW, tax=TaxPolicy(rate_bp=1000)))
    assert (priced.subtotal, priced.shipping, priced.tax, priced.total) == (0, 0, 0, 0)
    assert priced.hints == []


def test_a_cart_built_with_add_item_is_priced_from_the_captured_unit_price():
    product = Product("tee", "Tee", "", "tops", {"USD": 1500}, (Variant("tee-m", "TEE-M"),))
    cart = make_cart()
    cart.add_item(product, product.variants[0], 3, None, 1500, now=NOW, ttl=1800)
    priced = price(cart, current_prices={"tee-m": 1700})
    assert priced.subtotal == 4500
    line = priced.lines["ln_1"]
    assert line.current_unit_price == 1700 and line.price_changed


def test_price_changed_is_true_exactly_when_a_current_price_differs():
    cart = make_cart(make_line("ln_1", variant_id="a"), make_line("ln_2", variant_id="b"),
                     make_line("ln_3", variant_id="c"))
    priced = price(cart, current_prices={"a": 1000, "b": None})
    assert [priced.lines[i].price_changed for i in ("ln_1", "ln_2", "ln_3")] == [False] * 3


# -- kinds and targets ---------------------------------------------------------------------

def test_a_percentage_code_takes_its_share_off_the_cart_and_explains_itself():
    cart = make_cart(make_line("ln_1", unit_price=3000), make_line("ln_2", "mug", unit_price=1000),
                     codes=("SAVE10",))
    p = promo("p10", kind="percentage", value=1000, code="save10")
    priced = price(cart, p)
    assert priced.discount == 400
    assert line_totals(priced) == {"ln_1": 2700, "ln_2": 900}
    entry = priced.discounts[0]
    assert entry["code"] == "SAVE10" and entry["promotion_id"] == "p10"
    assert entry["amount"] == {"amount": 400, "currency": "USD"}
    assert entry["description"] == "10% off the cart"
    assert entry["reason"] == "code SAVE10"
    assert priced.lines["ln_1"].discounts[0]["amount"]["amount"] == 300
    assert priced.promotion_ids == ["p10"]
    assert_consistent(priced)


def test_codes_are_case_insensitive():
    cart = make_cart(make_line(unit_price=1000))
    cart.add_code(" save10 ", now=NOW, ttl=1800)
    assert price(cart, promo("p", kind="percentage", value=1000, code="Save10")).discount == 100


def test_the_admin_description_is_shown_when_given():
    cart = make_cart(make_line(), codes=("X",))
    priced = price(cart, promo("p", kind="percentage", value=1000, code="x",
                               description="Black Friday: 10 % off"))
    assert priced.discounts[0]["description"] == "Black Friday: 10 % off"


def test_a_cart_percentage_rounds_half_up_once_and_is_allocated_by_largest_remainder():
    cart = make_cart(make_line("ln_1", unit_price=333), make_line("ln_2", "b", unit_price=333),
                     make_line("ln_3", "c", unit_price=339))
    priced = price(cart, promo("p", kind="percentage", value=1500))  # 15 % of 1005 = 150.75
    assert priced.discount == 151
    assert sorted(pl.discount for pl in priced.lines.values()) == [50, 50, 51]
    assert_consistent(priced)


def test_a_fixed_amount_never_takes_the_cart_below_zero():
    cart = make_cart(make_line(unit_price=700), codes=("TEN",))
    priced = price(cart, promo("p", kind="fixed", value=1000, currency="USD", code="ten"))
    assert priced.discount == 700 and priced.total == 0
    assert priced.discounts[0]["amount"]["amount"] == 700


def test_a_fixed_promotion_uses_the_amount_in_the_cart_currency():
    p = promo("p", kind="fixed", code="FIVE", values=[{"amount": 500, "currency": "USD"},
                                                      {"amount": 60000, "currency": "JPY"}])
    jpy = make_cart(make_line(unit_price=100_000), codes=("FIVE",), currency="JPY")
    priced = price(jpy, p)
    assert priced.discount == 60000
    assert priced.discounts[0]["description"] == "60000 JPY off the cart"


def test_a_fixed_promotion_without_an_amount_in_the_cart_currency_does_not_apply():
    p = promo("p", kind="fixed", value=500, currency="USD", code="FIVE")
    priced = price(make_cart(make_line(), codes=("FIVE",), currency="EUR"), p)
    assert priced.discount == 0
    assert priced.code_errors["FIVE"].code == "currency_mismatch"


def test_a_product_target_discounts_only_that_product():
    cart = make_cart(make_line("ln_1", "shirt", unit_price=2000),
                     make_line("ln_2", "mug", unit_price=1000))
    p = promo("p", kind="percentage", value=2500, target={"type": "products", "ids": ["shirt"]})
    priced = price(cart, p)
    assert line_totals(priced) == {"ln_1": 1500, "ln_2": 1000}
    assert priced.lines["ln_2"].discounts == []
    assert priced.discounts[0]["description"] == "25% off product shirt"


def test_a_variant_target_discounts_only_that_variant():
    cart = make_cart(make_line("ln_1", "shirt", variant_id="shirt-red", unit_price=2000),
                     make_line("ln_2", "shirt", variant_id="shirt-blue", unit_price=2000))
    p = promo("p", kind="percentage", value=5000, target={"type": "variants", "ids": ["shirt-red"]})
    assert line_totals(price(cart, p)) == {"ln_1": 1000, "ln_2": 2000}


def test_a_category_target_honours_its_exclusions():
    cart = make_cart(make_line("ln_1", "runner", category="shoes", unit_price=10_000),
                     make_line("ln_2", "clog", category="shoes", unit_price=5000),
                     make_line("ln_3", "tee", category="tops", unit_price=2000))
    p = promo("p", kind="percentage", value=2000,
              target={"type": "categories", "ids": ["shoes"], "exclude_ids": ["clog"]})
    priced = price(cart, p)
    assert line_totals(priced) == {"ln_1": 8000, "ln_2": 5000, "ln_3": 2000}
    assert priced.discounts[0]["description"] == "20% off category shoes (except clog)"


def test_a_cart_target_with_an_excluded_category_spreads_only_over_the_other_lines():
    cart = make_cart(make_line("ln_1", "tee", unit_price=3000),
                     make_line("ln_2", "card", category="gift-cards", unit_price=5000))
    p = promo("p", kind="fixed", value=1000, currency="USD",
              target={"type": "cart", "exclude_categories": ["gift-cards"]})
    priced = price(cart, p)
    assert line_totals(priced) == {"ln_1": 2000, "ln_2": 5000}


def test_percentage_on_a_cart_target_with_exclusions_counts_only_eligible_lines():
    cart = make_cart(make_line("ln_1", "tee", unit_price=3000),
                     make_line("ln_2", "card", category="gift-cards", unit_price=5000))
    p = promo("p", kind="percentage", value=1000,
              target={"type": "cart", "exclude_categories": ["gift-cards"]})
    assert price(cart, p).discount == 300


def test_a_fixed_amount_on_a_category_is_spread_over_its_lines():
    cart = make_cart(make_line("ln_1", "a", category="shoes", unit_price=3000),
                     make_line("ln_2", "b", category="shoes", unit_price=1000),
                     make_line("ln_3", "c", category="tops", unit_price=9000))
    p = promo("p", kind="fixed", value=1000, currency="USD",
              target={"type": "categories", "ids": ["shoes"]})
    priced = price(cart, p)
    assert line_totals(priced) == {"ln_1": 2250, "ln_2": 750, "ln_3": 9000}
    assert_consistent(priced)


def test_a_fixed_amount_each_comes_off_every_unit_but_never_below_zero():
    cart = make_cart(make_line("ln_1", "a", quantity=3, unit_price=1000),
                     make_line("ln_2", "b", quantity=2, unit_price=150))
    p = promo("p", kind="fixed", value=200, currency="USD", allocation="each")
    priced = price(cart, p)
    assert line_totals(priced) == {"ln_1": 2400, "ln_2": 0}
    assert priced.discounts[0]["description"] == "2.00 USD off each unit of every item"


# -- buy X get Y ---------------------------------------------------------------------------

def b2g1(**extra: Any) -> Promotion:
    return promo("b2g1", kind="buy_x_get_y", buy_quantity=2, get_quantity=1, **extra)


def test_buy_2_get_1_free_makes_one_of_three_units_free():
    priced = price(make_cart(make_line(quantity=3, unit_price=1000)), b2g1())
    assert priced.discount == 1000
    assert priced.discounts[0]["description"] == "buy 2 get 1 free"


def test_buy_2_get_1_free_counts_whole_groups_only():
    assert price(make_cart(make_line(quantity=5, unit_price=1000)), b2g1()).discount == 1000
    assert price(make_cart(make_line(quantity=6, unit_price=1000)), b2g1()).discount == 2000


def test_buy_2_get_1_free_gives_the_cheapest_units():
    cart = make_cart(make_line("ln_1", "a", quantity=2, unit_price=3000),
                     make_line("ln_2", "b", quantity=1, unit_price=1200),
                     make_line("ln_3", "c", quantity=3, unit_price=2000))
    priced = price(cart, b2g1())  # 6 units, 2 free: the 12.00 one and one 20.00 one
    assert priced.discount == 3200
    assert line_totals(priced) == {"ln_1": 6000, "ln_2": 0, "ln_3": 4000}
    assert_consistent(priced)


def test_buy_1_get_1_at_half_price():
    p = promo("bogo", kind="buy_x_get_y", buy_quantity=1, get_quantity=1, get_percent=50)
    priced = price(make_cart(make_line(quantity=2, unit_price=1999)), p)
    assert priced.discount == 1000  # half of 19.99, rounded half up
    assert priced.discounts[0]["description"] == "buy 1 get 1 at 50% off"


def test_buy_x_get_y_counts_only_targeted_units():
    cart = make_cart(make_line("ln_1", "sock", quantity=3, unit_price=500),
                     make_line("ln_2", "shoe", quantity=1, unit_price=100))
    priced = price(cart, b2g1(target={"type": "products", "ids": ["sock"]}))
    assert line_totals(priced) == {"ln_1": 1000, "ln_2": 100}


def test_buy_2_get_1_hints_add_one_more_to_get_one_free():
    short = price(make_cart(make_line(quantity=2, name="T-shirt")), b2g1())
    assert short.discount == 0
    assert "add 1 more T-shirt to get 1 free" in short.hints
    partial = price(make_cart(make_line(quantity=5, name="T-shirt")), b2g1())
    assert partial.discount == 1000
    assert "add 1 more T-shirt to get 1 free" in partial.hints
    full = price(make_cart(make_line(quantity=6, name="T-shirt")), b2g1())
    assert not any("T-shirt" in h for h in full.hints)


# -- max_discount (caps) -------------------------------------------------------------------

USD_50 = {"amount": 5000, "currency": "USD"}


def twenty_off(**extra: Any) -> Promotion:
    return promo("p20", kind="percentage", value=2000, max_discount=USD_50, **extra)


def test_a_cap_that_bites_limits_the_discount_and_says_so():
    cart = make_cart(make_line("ln_1", quantity=2, unit_price=10_000),
                     make_line("ln_2", "mug", unit_price=10_000))
    priced = price(cart, twenty_off())  # 20 % of 300.00 is 60.00: capped at 50.00
    assert priced.discount == 5000
    entry = priced.discounts[0]
    assert entry["amount"] == {"amount": 5000, "currency": "USD"}
    assert entry["description"] == "20% off the cart, up to 50.00 USD off"
    assert entry["reason"] == "automatic promotion; capped at its maximum discount of 50.00 USD"
    assert priced.lines["ln_1"].discounts[0]["reason"] == entry["reason"]
    assert_consistent(priced)


def test_a_cap_that_does_not_bite_changes_nothing_but_the_words():
    priced = price(make_cart(make_line(unit_price=10_000)), twenty_off())
    assert priced.discount == 2000
    assert priced.discounts[0]["reason"] == "automatic promotion"
    assert priced.discounts[0]["description"] == "20% off the cart, up to 50.00 USD off"


def test_a_cap_of_exactly_the_discount_is_not_reported_as_capped():
    priced = price(make_cart(make_line(unit_price=25_000)), twenty_off())
    assert priced.discount == 5000
    assert "capped" not in priced.discounts[0]["reason"]


def test_a_cart_in_a_currency_without_a_cap_is_uncapped():
    cart = make_cart(make_line(quantity=3, unit_price=10_000), currency="EUR")
    priced = price(cart, twenty_off())
    assert priced.discount == 6000
    assert priced.discounts[0]["description"] == "20% off the cart"
    assert "capped" not in priced.discounts[0]["reason"]


def test_each_currency_has_its_own_cap():
    p = promo("p20", kind="percentage", value=2000,
              max_discount=[USD_50, {"amount": 3000, "currency": "EUR"}])
    eur = make_cart(make_line(quantity=3, unit_price=10_000), currency="EUR")
    assert price(eur, p).discount == 3000
    usd = make_cart(make_line(quantity=3, unit_price=10_000))
    assert price(usd, p).discount == 5000


def test_a_capped_discount_is_spread_in_proportion_to_the_uncapped_shares_and_sums_exactly():
    cart = make_cart(make_line("ln_1", "a", unit_price=3333),
                     make_line("ln_2", "b", unit_price=3333),
                     make_line("ln_3", "c", unit_price=3334))
    p = promo("p", kind="percentage", value=5000, max_discount={"amount": 100, "currency": "USD"})
    priced = price(cart, p)
    shares = {lid: pl.discount for lid, pl in priced.lines.items()}
    assert sum(shares.values()) == priced.discount == 100
    # Uncapped: 50.00 as 16.67 + 16.66 + 16.67; 1.00 over those is 0.3334, 0.3332, 0.3334
    # each, so 33 cents each and the cent left to the first largest remainder.
    assert shares == {"ln_1": 34, "ln_2": 33, "ln_3": 33}
    assert_consistent(priced)


def test_a_capped_line_promotion_never_gives_a_line_more_than_uncapped():
    cart = make_cart(make_line("ln_1", "a", quantity=3, unit_price=999, category="shoes"),
                     make_line("ln_2", "b", quantity=7, unit_price=1234, category="shoes"),
                     make_line("ln_3", "c", unit_price=5000, category="tops"))
    shoes = {"type": "categories", "ids": ["shoes"]}
    uncapped = price(cart, promo("p", kind="percentage", value=3000, target=shoes))
    capped = price(cart, promo("p", kind="percentage", value=3000, target=shoes,
                               max_discount={"amount": 1001, "currency": "USD"}))
    assert capped.discount == 1001 < uncapped.discount
    for lid, pl in capped.lines.items():
        assert pl.discount <= uncapped.lines[lid].discount
    assert capped.lines["ln_3"].discount == 0
    assert_consistent(capped)


def test_a_cap_limits_buy_x_get_y():
    cart = make_cart(make_line(quantity=4, unit_price=4000))
    p = promo("bogo", kind="buy_x_get_y", buy_quantity=1, get_quantity=1, max_discount=USD_50)
    priced = price(cart, p)  # two free units would be 80.00
    assert priced.discount == 5000
    assert "capped" in priced.discounts[0]["reason"]
    assert priced.discounts[0]["description"] == "buy 1 get 1 free, up to 50.00 USD off"
    assert_consistent(priced)


def test_a_cap_limits_a_fixed_amount_off_each_unit():
    p = promo("each", kind="fixed", value=200, currency="USD", allocation="each",
              max_discount={"amount": 1000, "currency": "USD"})
    priced = price(make_cart(make_line(quantity=8, unit_price=1000)), p)
    assert priced.discount == 1000  # 8 x 2.00 = 16.00, capped at 10.00


def test_a_cap_limits_a_percentage_off_shipping():
    p = promo("ship", kind="percentage", value=10_000, target={"type": "shipping"},
              max_discount={"amount": 300, "currency": "USD"})
    priced = price(make_cart(make_line(unit_price=1000)), p,
                   shipping=ShippingPolicy(flat={"USD": 999}, free_over={}))
    assert (priced.shipping, priced.shipping_discount) == (699, 300)
    assert "capped" in priced.discounts[0]["reason"]


def test_a_capped_promotion_still_compounds_with_the_next_one():
    cart = make_cart(make_line(quantity=10, unit_price=10_000))
    first = promo("a", kind="percentage", value=5000, max_discount=USD_50, priority=2)
    then = promo("b", kind="percentage", value=1000, priority=1)
    priced = price(cart, first, then)
    assert priced.discount == 5000 + 9500  # 10 % of what the capped one left
    assert_consistent(priced)


# -- buy X get Y with a get target ---------------------------------------------------------

def shoes_get_socks(**extra: Any) -> Promotion:
    extra.setdefault("get_target", {"type": "categories", "ids": ["socks"]})
    return promo("socks", kind="buy_x_get_y", buy_quantity=2, get_quantity=1,
                 target={"type": "categories", "ids": ["shoes"]}, **extra)


def shoe(line_id: str, quantity: int = 1, unit_price: int = 8000, pid: str = "boot") -> Any:
    return make_line(line_id, pid, quantity=quantity, unit_price=unit_price, category="shoes",
                     name=pid.title())


def sock(line_id: str, quantity: int = 1, unit_price: int = 500, pid: str = "sock") -> Any:
    return make_line(line_id, pid, quantity=quantity, unit_price=unit_price, category="socks",
                     name=pid.title())


def test_buying_two_shoes_rewards_the_cheapest_pair_of_socks():
    cart = make_cart(shoe("ln_1", 2), sock("ln_2", unit_price=900, pid="wool"),
                     sock("ln_3", unit_price=400, pid="cotton"))
    priced = price(cart, shoes_get_socks())
    assert priced.discount == 400
    assert line_totals(priced) == {"ln_1": 16_000, "ln_2": 900, "ln_3": 0}
    assert priced.discounts[0]["description"] == \
        "buy 2 of category shoes, get 1 of category socks free"
    assert_consistent(priced)


def test_the_shoes_bought_are_never_rewarded_even_when_cheaper_than_the_socks():
    cart = make_cart(shoe("ln_1", 2, unit_price=300), sock("ln_2", unit_price=900))
    priced = price(cart, shoes_get_socks())
    assert line_totals(priced) == {"ln_1": 600, "ln_2": 0}


def test_too_few_shoes_reward_nothing_and_say_how_many_to_add():
    cart = make_cart(shoe("ln_1"), sock("ln_2", 3), codes=("SOCKS",))
    priced = price(cart, shoes_get_socks(code="socks"))
    assert priced.discount == 0
    assert priced.code_errors["SOCKS"].code == "minimum_not_met"
    assert "add 1 more Boot to get 1 Sock free with code SOCKS" in priced.hints
    automatic = price(make_cart(shoe("ln_1"), sock("ln_2", 3)), shoes_get_socks())
    assert automatic.hints == ["add 1 more Boot to get 1 Sock free"]


def test_shoes_without_socks_reward_nothing():
    priced = price(make_cart(shoe("ln_1", 4)), shoes_get_socks())
    assert priced.discount == 0
    assert priced.discounts == []


def test_every_complete_group_of_shoes_earns_its_socks():
    cart = make_cart(shoe("ln_1", 5), sock("ln_2", 2, unit_price=700),
                     sock("ln_3", 2, unit_price=300, pid="cotton"))
    priced = price(cart, shoes_get_socks())  # 5 shoes: 2 groups, the 2 cheapest socks
    assert priced.discount == 600
    assert line_totals(priced) == {"ln_1": 40_000, "ln_2": 1400, "ln_3": 0}
    assert "add 1 more Boot to get 1 item of category socks free" in priced.hints


def test_groups_earn_no_more_than_the_socks_there_and_the_hint_says_to_add_socks():
    priced = price(make_cart(shoe("ln_1", 4), sock("ln_2")), shoes_get_socks())
    assert priced.discount == 500
    assert "add 1 more Sock to get it free" in priced.hints


def test_a_reward_at_a_percentage_off():
    cart = make_cart(shoe("ln_1", 2), sock("ln_2", unit_price=999))
    assert price(cart, shoes_get_socks(get_percent=50)).discount == 500  # 499.5 half up


def test_units_matching_both_targets_are_bought_dearest_first_and_rewarded_cheapest():
    # Buy 1 shoe, get 1 shoe or sock free: the boot is bought, the sneaker stays and the
    # sandal, the cheapest unit not bought, is free.
    p = promo("any", kind="buy_x_get_y", buy_quantity=1, get_quantity=1,
              target={"type": "products", "ids": ["boot", "sneaker"]},
              get_target={"type": "categories", "ids": ["shoes"]})
    cart = make_cart(shoe("ln_1", unit_price=5000, pid="boot"),
                     shoe("ln_2", unit_price=4000, pid="sneaker"),
                     shoe("ln_3", unit_price=3000, pid="sandal"))
    priced = price(cart, p)
    assert line_totals(priced) == {"ln_1": 5000, "ln_2": 4000, "ln_3": 0}


def test_a_unit_matching_both_targets_alone_is_not_both_bought_and_rewarded():
    p = promo("any", kind="buy_x_get_y", buy_quantity=1, get_quantity=1,
              target={"type": "products", "ids": ["boot"]},
              get_target={"type": "categories", "ids": ["shoes"]})
    assert price(make_cart(shoe("ln_1")), p).discount == 0
    two = price(make_cart(shoe("ln_1", 2, unit_price=5000)), p)
    assert two.discount == 5000  # one boot bought, the other free
    cheaper = price(make_cart(shoe("ln_1", unit_price=5000),
                              shoe("ln_2", unit_price=1000, pid="sandal")), p)
    assert line_totals(cheaper) == {"ln_1": 5000, "ln_2": 0}


def test_overlapping_units_are_split_to_reward_the_most_units():
    # Buy 2 boots, get 1 shoe free. 4 boots and a sandal reward one unit however they are
    # split (1 group: the sandal; 2 groups: the sandal again), so the fewest boots are bought
    # and the sandal is free. 5 boots: 2 groups bought, the fifth boot and the sandal free.
    p = promo("any", kind="buy_x_get_y", buy_quantity=2, get_quantity=1,
              target={"type": "products", "ids": ["boot"]},
              get_target={"type": "categories", "ids": ["shoes"]})
    four = price(make_cart(shoe("ln_1", 4, unit_price=5000),
                           shoe("ln_2", unit_price=1000, pid="sandal")), p)
    assert four.discount == 1000
    five = price(make_cart(shoe("ln_1", 5, unit_price=5000),
                           shoe("ln_2", unit_price=1000, pid="sandal")), p)
    assert five.discount == 1000 + 5000
    assert_consistent(five)


def test_the_get_target_honours_its_exclusions():
    p = shoes_get_socks(get_target={"type": "categories", "ids": ["socks"],
                                    "exclude_ids": ["silk"]})
    cart = make_cart(shoe("ln_1", 2), sock("ln_2", unit_price=300, pid="silk"),
                     sock("ln_3", unit_price=600))
    assert line_totals(price(cart, p)) == {"ln_1": 16_000, "ln_2": 300, "ln_3": 0}


def test_a_get_target_promotion_round_trips_through_its_admin_json_and_prices_the_same():
    p = shoes_get_socks(max_discount=USD_50)
    again = promotion_from_dict("socks", promotion_to_dict(p))
    assert again == p
    cart = make_cart(shoe("ln_1", 2), sock("ln_2"))
    assert price(cart, again).discounts == price(cart, p).discounts


# -- rules ---------------------------------------------------------------------------------

def test_a_code_below_its_minimum_is_reported_not_raised_with_a_hint():
    cart = make_cart(make_line(unit_price=3800), codes=("BIG",))
    priced = price(cart, promo("p", kind="percentage", value=1000, code="BIG", min_subtotal=5000))
    assert priced.discount == 0
    assert priced.code_errors["BIG"].code == "minimum_not_met"
    assert "add 12.00 USD more to use code BIG" in priced.hints


def test_the_minimum_is_measured_before_discounts():
    cart = make_cart(make_line(unit_price=5000), codes=("A",))
    first = promo("a", kind="fixed", value=1000, currency="USD", priority=1)
    gated = promo("b", kind="percentage", value=1000, code="A", min_subtotal=5000)
    assert price(cart, first, gated).discount == 1000 + 400


def test_an_automatic_promotion_just_out_of_reach_gives_a_hint():
    p = promo("fs", kind="free_shipping", min_subtotal=7500)
    priced = price(make_cart(make_line(unit_price=6300)), p)
    assert priced.discounts == []
    assert "add 12.00 USD more to get free shipping" in priced.hints


def test_a_minimum_quantity_counts_eligible_units():
    p = promo("p", kind="percentage", value=1000, min_quantity=3,
              target={"type": "categories", "ids": ["tops"]})
    two = make_cart(make_line("ln_1", quantity=2), make_line("ln_2", "mug", category="kitchen"))
    assert price(two, p).discount == 0
    three = make_cart(make_line("ln_1", quantity=3))
    assert price(three, p).discount == 300


def test_an_expired_or_future_code_is_reported_and_applies_nothing():
    cart = make_cart(make_line(), codes=("OLD", "SOON"))
    old = promo("old", kind="percentage", value=1000, code="OLD", ends_at=NOW)
    soon = promo("soon", kind="percentage", value=1000, code="SOON", starts_at=NOW + 1)
    priced = price(cart, old, soon)
    assert priced.discount == 0
    assert priced.code_errors["OLD"].code == "code_expired"
    assert priced.code_errors["SOON"].code == "code_not_yet_valid"


def test_an_expired_automatic_promotion_is_silently_skipped():
    priced = price(make_cart(make_line()), promo("p", kind="percentage", value=1, ends_at=NOW))
    assert priced.discounts == [] and priced.code_errors == {}


def test_an_unknown_code_on_the_cart_is_reported():
    priced = price(make_cart(make_line(), codes=("GONE",)))
    assert priced.code_errors["GONE"].code == "unknown_code"


def test_a_used_up_promotion_no_longer_applies():
    cart = make_cart(make_line(), codes=("SAVE",))
    code = promo("c", kind="percentage", value=1000, code="SAVE", usage_limit=10)
    auto = promo("a", kind="percentage", value=500, usage_limit=10)
    priced = price(cart, code, auto, usage_exhausted=frozenset({"c", "a"}))
    assert priced.discount == 0
    assert priced.code_errors["SAVE"].code == "usage_limit_reached"


def test_a_per_customer_limit_uses_the_customer_past_uses():
    cart = make_cart(make_line(), codes=("ONCE",))
    p = promo("once", kind="percentage", value=1000, code="ONCE", per_customer_limit=1)
    assert price(cart, p, customer_id="alice").discount == 100
    used = price(cart, p, customer_id="alice", customer_uses={"once": 1})
    assert used.code_errors["ONCE"].code == "usage_limit_reached"
    guest = price(cart, p)
    assert guest.code_errors["ONCE"].code == "customer_not_eligible"


def test_customer_groups_limit_a_promotion_to_members():
    p = promo("gold", kind="percentage", value=1000, customer_groups=["gold"])
    cart = make_cart(make_line())
    assert price(cart, p, customer_groups=frozenset({"gold"})).discount == 100
    assert price(cart, p, customer_groups=frozenset({"silver"})).discount == 0
    assert price(cart, p).discount == 0


# -- the pipeline and combinations ---------------------------------------------------------

def test_line_promotions_come_before_cart_promotions_and_compound():
    cart = make_cart(make_line(unit_price=10_000))
    line = promo("line", kind="percentage", value=1000,
                 target={"type": "products", "ids": ["shirt"]}, priority=-5)
    whole = promo("cart", kind="percentage", value=1000, priority=5)
    priced = price(cart, line, whole)
    assert priced.discount == 1900  # 10 % of 100.00, then 10 % of 90.00
    assert [d["promotion_id"] for d in priced.discounts] == ["line", "cart"]


def test_membership_discounts_come_after_cart_promotions():
    cart = make_cart(make_line(unit_price=10_000))
    member = promo("m", kind="percentage", value=1000, customer_groups=["gold"],
                   membership=True, priority=100)
    whole = promo("c", kind="fixed", value=2000, currency="USD")
    priced = price(cart, member, whole, customer_groups=frozenset({"gold"}))
    assert [d["promotion_id"] for d in priced.discounts] == ["c", "m"]
    assert priced.discount == 2000 + 800
    assert priced.discounts[1]["reason"] == "automatic promotion; for gold members"


def test_within_a_stage_higher_priority_applies_first():
    cart = make_cart(make_line(unit_price=10_000))
    pct = promo("pct", kind="percentage", value=5000)
    fixed = promo("fix", kind="fixed", value=2000, currency="USD")
    assert price(cart, pct, fixed).discount == 2000 + 4000  # "fix" < "pct" at equal priority
    pct_first = promo("pct", kind="percentage", value=5000, priority=1)
    assert price(cart, pct_first, fixed).discount == 5000 + 2000


def test_stackable_promotions_all_apply():
    cart = make_cart(make_line(unit_price=10_000), codes=("A", "B"))
    a = promo("a", kind="fixed", value=1000, currency="USD", code="A")
    b = promo("b", kind="fixed", value=500, currency="USD", code="B")
    auto = promo("auto", kind="fixed", value=100, currency="USD")
    priced = price(cart, a, b, auto)
    assert priced.discount == 1600 and priced.code_errors == {}
    assert sorted(priced.promotion_ids) == ["a", "auto", "b"]


def test_an_exclusive_code_that_is_the_better_deal_applies_alone():
    cart = make_cart(make_line(unit_price=10_000), codes=("BIG", "SMALL"))
    big = promo("big", kind="percentage", value=3000, code="BIG", stackable=False)
    small = promo("small", kind="percentage", value=1000, code="SMALL")
    auto = promo("auto", kind="percentage", value=500)
    priced = price(cart, big, small, auto)
    assert priced.discount == 3000 and priced.promotion_ids == ["big"]
    err = priced.code_errors["SMALL"]
    assert err.code == "not_combinable" and "better deal" in err.message
    assert "exclusive" in priced.discounts[0]["reason"]


def test_an_exclusive_code_that_is_the_worse_deal_is_not_applied():
    cart = make_cart(make_line(unit_price=10_000), codes=("MEH",))
    meh = promo("meh", kind="percentage", value=500, code="MEH", stackable=False)
    auto1 = promo("a1", kind="percentage", value=500)
    auto2 = promo("a2", kind="percentage", value=500)
    priced = price(cart, meh, auto1, auto2)
    assert sorted(priced.promotion_ids) == ["a1", "a2"]
    assert priced.code_errors["MEH"].code == "not_combinable"


def test_between_exclusive_deals_the_best_for_the_customer_wins_shipping_included():
    cart = make_cart(make_line(unit_price=3000), codes=("SHIP", "PCT"))
    ship = promo("ship", kind="free_shipping", code="SHIP", stackable=False)
    pct = promo("pct", kind="percentage", value=1000, code="PCT", stackable=False)
    priced = price(cart, ship, pct, shipping=ShippingPolicy())
    # free shipping saves 4.99; 10 % saves 3.00
    assert priced.promotion_ids == ["ship"] and priced.shipping == 0
    assert priced.code_errors["PCT"].code == "not_combinable"


def test_equal_exclusive_deals_are_broken_by_priority_then_promotion_id():
    cart = make_cart(make_line(unit_price=10_000))
    a = promo("a", kind="fixed", value=1000, currency="USD", stackable=False)
    b = promo("b", kind="fixed", value=1000, currency="USD", stackable=False)
    assert price(cart, b, a).promotion_ids == ["a"]
    b_first = promo("b", kind="fixed", value=1000, currency="USD", stackable=False, priority=1)
    assert price(cart, a, b_first).promotion_ids == ["b"]


def test_a_promotion_reached_by_code_and_automatically_applies_once():
    cart = make_cart(make_line(unit_price=1000), codes=("SAVE",))
    p = promo("p", kind="percentage", value=1000, code="SAVE")
    priced = price_cart(cart, PricingContext(now=NOW, promotions={"SAVE": p}, automatic=[p],
                                             shipping=NO_SHIPPING))
    assert priced.discount == 100 and len(priced.discounts) == 1


# -- shipping ------------------------------------------------------------------------------

def test_shipping_is_flat_below_the_threshold_with_a_hint_and_free_from_it():
    under = price(make_cart(make_line(unit_price=3800)), shipping=ShippingPolicy())
    assert under.shipping == 499
    assert "add 12.00 USD more for free shipping" in under.hints
    at = price(make_cart(make_line(unit_price=5000)), shipping=ShippingPolicy())
    assert at.shipping == 0 and at.hints == []


def test_the_free_shipping_threshold_is_measured_after_discounts():
    cart = make_cart(make_line(unit_price=5000))
    priced = price(cart, promo("p", kind="fixed", value=500, currency="USD"),
                   shipping=ShippingPolicy())
    assert priced.shipping == 499
    assert "add 5.00 USD more for free shipping" in priced.hints


def test_a_free_shipping_code_zeroes_shipping_and_says_how_much_it_saved():
    cart = make_cart(make_line(unit_price=1000), codes=("SHIP",))
    priced = price(cart, promo("fs", kind="free_shipping", code="SHIP"),
                   shipping=ShippingPolicy())
    assert (priced.shipping, priced.shipping_discount, priced.discount) == (0, 499, 0)
    entry = priced.discounts[0]
    assert entry["applies_to"] == "shipping" and entry["amount"]["amount"] == 499
    assert entry["description"] == "free shipping"
    assert not any("free shipping" in h for h in priced.hints)
    assert priced.total == 1000


def test_a_percentage_off_shipping_and_a_fixed_amount_off_shipping():
    cart = make_cart(make_line(unit_price=1000))
    half = promo("half", kind="percentage", value=5000, target={"type": "shipping"})
    priced = price(cart, half, shipping=ShippingPolicy())
    assert priced.shipping == 249  # 4.99 - 2.50 (2.495 rounded half up)
    assert priced.discounts[0]["description"] == "50% off shipping"
    big = promo("big", kind="fixed", value=2000, currency="USD", target={"type": "shipping"})
    assert price(cart, big, shipping=ShippingPolicy()).shipping == 0


def test_a_custom_shipping_quoter_plugs_in():
    class PerItem:
        def quote(self, currency: str, discounted_subtotal: int, has_lines: bool,
                  country: str | None = None, region: str | None = None) -> int:
            return 300 if country == "CA" else 100

        def free_shipping_threshold(self, currency: str, country: str | None = None,
                                    region: str | None = None) -> int | None:
            return None

    assert isinstance(PerItem(), ShippingQuoter)
    priced = price(make_cart(make_line()), shipping=PerItem(), country="CA")
    assert priced.shipping == 300 and priced.hints == []


# -- tax -----------------------------------------------------------------------------------

def test_tax_is_charged_on_the_discounted_amount_plus_shipping():
    cart = make_cart(make_line(unit_price=4000), codes=("TEN",))
    priced = price(cart, promo("p", kind="fixed", value=1000, currency="USD", code="TEN"),
                   shipping=ShippingPolicy(), tax=TaxPolicy(rate_bp=825))
    assert priced.tax == 289  # 8.25 % of (30.00 + 4.99) = 2.8867 -> 2.89
    assert priced.total == 3000 + 499 + 289


def test_tax_can_leave_shipping_out():
    priced = price(make_cart(make_line(unit_price=4000)), shipping=ShippingPolicy(),
                   tax=TaxPolicy(rate_bp=1000, tax_shipping=False))
    assert priced.tax == 400


def test_the_tax_rate_follows_the_destination_region_then_country():
    tax = TaxPolicy(rate_bp=0, rates={"US-CA": 725, "US": 500, "DE": 1900})
    cart = make_cart(make_line(unit_price=10_000))
    assert price(cart, tax=tax, country="US", region="CA").tax == 725
    assert price(cart, tax=tax, country="US", region="US-CA").tax == 725
    assert price(cart, tax=tax, country="US", region="NY").tax == 500
    assert price(cart, tax=tax, country="de").tax == 1900
    assert price(cart, tax=tax, country="FR").tax == 0
    assert price(cart, tax=tax).tax == 0


def test_with_tax_inclusive_prices_the_tax_is_contained_in_the_total():
    tax = TaxPolicy(rates={"DE": 1900}, prices_include_tax=True)
    assert isinstance(tax, TaxCalculator)
    priced = price(make_cart(make_line(unit_price=11_900), currency="EUR"), tax=tax, country="DE")
    assert priced.tax == 1900 and priced.total == 11_900 and priced.prices_include_tax


def test_with_tax_inclusive_prices_a_discount_lowers_the_contained_tax():
    tax = TaxPolicy(rates={"DE": 1900}, prices_include_tax=True)
    cart = make_cart(make_line(unit_price=11_900), currency="EUR")
    priced = price(cart, promo("p", kind="percentage", value=1000), tax=tax, country="DE")
    assert priced.total == 10_710
    assert priced.tax == 1710  # 10710 * 19 / 119


# -- explanations --------------------------------------------------------------------------

def test_every_discount_names_its_promotion_amount_and_why():
    cart = make_cart(make_line("ln_1", unit_price=6000), make_line("ln_2", "mug", unit_price=2000),
                     codes=("GOLD10",))
    p = promo("gold10", kind="percentage", value=1000, code="GOLD10", min_subtotal=5000,
              customer_groups=["gold"])
    priced = price(cart, p, customer_groups=frozenset({"gold"}))
    expected_reason = "code GOLD10; subtotal of at least 50.00 USD; for gold members"
    assert priced.discounts == [{
        "code": "GOLD10", "promotion_id": "gold10",
        "amount": {"amount": 800, "currency": "USD"}, "description": "10% off the cart",
        "reason": expected_reason, "applies_to": "items"}]
    assert priced.lines["ln_2"].discounts == [{
        "code": "GOLD10", "promotion_id": "gold10",
        "amount": {"amount": 200, "currency": "USD"}, "description": "10% off the cart",
        "reason": expected_reason}]


def test_an_automatic_promotion_says_so():
    priced = price(make_cart(make_line()), promo("p", kind="percentage", value=1250))
    assert priced.discounts[0]["code"] is None
    assert priced.discounts[0]["reason"] == "automatic promotion"
    assert priced.discounts[0]["description"] == "12.5% off the cart"


def test_totals_stay_consistent_with_many_promotions_at_once():
    cart = make_cart(make_line("ln_1", "a", quantity=3, unit_price=1999, category="tops"),
                     make_line("ln_2", "b", quantity=2, unit_price=4550, category="shoes"),
                     make_line("ln_3", "c", quantity=7, unit_price=333, category="socks"),
                     codes=("TEN", "SHIP"))
    priced = price(
        cart,
        promo("ten", kind="percentage", value=1000, code="TEN"),
        promo("ship", kind="free_shipping", code="SHIP"),
        b2g1(target={"type": "categories", "ids": ["socks"]}),
        promo("shoes", kind="fixed", value=777, currency="USD",
              target={"type": "categories", "ids": ["shoes"]}),
        promo("each", kind="fixed", value=100, currency="USD", allocation="each",
              target={"type": "products", "ids": ["a"]}),
        shipping=ShippingPolicy(), tax=TaxPolicy(rate_bp=825))
    assert_consistent(priced)
    assert priced.code_errors == {}
    assert priced.total == priced.subtotal - priced.discount + priced.shipping + priced.tax


def test_a_line_target_promotion_is_one_target_type_among_the_documented_ones():
    assert Target("cart").describe() == "the cart"
    assert Target("products", frozenset({"a", "b", "c", "d"})).describe() == \
        "products a, b, c and 1 more"
