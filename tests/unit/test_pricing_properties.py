"""Properties of pricing over random carts and promotions (hypothesis).

Never negative, no discount larger than what it discounts, allocations that sum exactly, a
result independent of line and code order, the best deal among exclusive promotions, and caps
(``max_discount``) that are never exceeded.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.cart import Cart, LineItem
from engine.pricing import (
    PricedCart,
    PricingContext,
    ShippingPolicy,
    TaxPolicy,
    _price_promoted,
    price_cart,
)
from engine.promotions import Promotion, Target

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
PRODUCTS = ("a", "b", "c", "d")
CATEGORIES = ("tops", "shoes", "socks", "")
GROUPS = ("gold", "silver")


# -- strategies ----------------------------------------------------------------------------

@st.composite
def lines(draw: st.DrawFn) -> list[LineItem]:
    n = draw(st.integers(0, 6))
    out = []
    for i in range(n):
        pid = draw(st.sampled_from(PRODUCTS))
        out.append(LineItem(
            line_id=f"ln_{i + 1}", product_id=pid, variant_id=f"{pid}-{i % 2}", sku=pid,
            name=pid.upper(), quantity=draw(st.integers(1, 20)),
            unit_price=draw(st.integers(0, 100_000)), options={}, added_at=0.0, updated_at=0.0,
            category=draw(st.sampled_from(CATEGORIES))))
    return out


def _subset(pool: tuple[str, ...], min_size: int = 0) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(pool), min_size=min_size, max_size=len(pool))


@st.composite
def targets(draw: st.DrawFn, kind: str) -> Target:
    if kind == "free_shipping":
        return Target("shipping")
    types = ["cart", "products", "variants", "categories"] + \
        (["shipping"] if kind in ("percentage", "fixed") else [])
    ttype = draw(st.sampled_from(types))
    if ttype == "shipping":
        return Target("shipping")
    variants = tuple(f"{p}-{k}" for p in PRODUCTS for k in (0, 1))
    ids: frozenset[str] = frozenset()
    if ttype == "products":
        ids = draw(_subset(PRODUCTS, 1))
    elif ttype == "variants":
        ids = draw(_subset(variants, 1))
    elif ttype == "categories":
        ids = draw(_subset(CATEGORIES[:3], 1))
    return Target(ttype, ids, draw(_subset(PRODUCTS + variants[:2])),
                  draw(_subset(CATEGORIES[:3])))


@st.composite
def promotions(draw: st.DrawFn, promotion_id: str) -> Promotion:
    kind = draw(st.sampled_from(("percentage", "fixed", "free_shipping", "buy_x_get_y")))
    target = draw(targets(kind))
    fields: dict[str, Any] = {
        "target": target,
        "stackable": draw(st.booleans()),
        "priority": draw(st.integers(-2, 2)),
        "min_subtotal": draw(st.sampled_from((0, 0, 5_000, 50_000))),
        "min_quantity": draw(st.sampled_from((0, 0, 3))),
    }
    if kind == "percentage":
        fields["value"] = draw(st.integers(1, 10_000))
    elif kind == "fixed":
        fields["amounts"] = (("USD", draw(st.integers(1, 200_000))),)
        if target.type != "shipping":
            fields["allocation"] = draw(st.sampled_from(("across", "each")))
    elif kind == "buy_x_get_y":
        fields["buy_quantity"] = draw(st.integers(1, 4))
        fields["get_quantity"] = draw(st.integers(1, 3))
        fields["value"] = draw(st.sampled_from((10_000, 5_000, 1)))
        if draw(st.booleans()):
            fields["get_target"] = draw(targets(kind).filter(lambda t: t.type != "cart"))
    if kind != "free_shipping" and draw(st.booleans()):
        # A USD cap (the carts are USD) or one in another currency only: then uncapped.
        fields["max_discounts"] = ((draw(st.sampled_from(("USD", "USD", "EUR"))),
                                    draw(st.integers(1, 50_000))),)
    if kind in ("percentage", "fixed") and target.type == "cart" \
            and fields.get("allocation", "across") == "across" and draw(st.booleans()):
        fields["membership"] = True
        fields["customer_groups"] = frozenset({"gold"})
    if draw(st.booleans()):
        fields["code"] = promotion_id.upper()
    return Promotion(promotion_id, kind, **fields)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[LineItem], list[Promotion], PricingContext]:
    items = draw(lines())
    promos = [draw(promotions(f"p{i}")) for i in range(draw(st.integers(0, 5)))]
    shipping = draw(st.sampled_from((ShippingPolicy(), ShippingPolicy(flat={}, free_over={}),
                                     ShippingPolicy(flat={"USD": 999}, free_over={}))))
    tax = TaxPolicy(rate_bp=draw(st.integers(0, 2_500)),
                    prices_include_tax=draw(st.booleans()), tax_shipping=draw(st.booleans()))
    ctx = PricingContext(
        now=NOW, promotions={p.code: p for p in promos if p.code},
        automatic=[p for p in promos if p.code is None], shipping=shipping, tax=tax,
        customer_groups=draw(_subset(GROUPS)))
    return items, promos, ctx


def make_cart(items: list[LineItem], codes: list[str]) -> Cart:
    cart = Cart(cart_id="c1", owner="alice", currency="USD", created_at=0.0, updated_at=0.0,
                expires_at=1e12)
    for ln in items:
        cart.lines[ln.line_id] = ln
    cart.codes = list(codes)
    return cart


def codes_of(promos: list[Promotion]) -> list[str]:
    return [p.code for p in promos if p.code]


def snapshot(priced: PricedCart) -> tuple[Any, ...]:
    return (priced.totals(), priced.discounts, priced.lines, priced.hints,
            {c: (e.code, e.message) for c, e in priced.code_errors.items()},
            priced.promotion_ids, priced.shipping_discount)


# -- properties ----------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_nothing_is_ever_negative(scenario: tuple[list[LineItem], list[Promotion],
                                                  PricingContext]) -> None:
    items, promos, ctx = scenario
    priced = price_cart(make_cart(items, codes_of(promos)), ctx)
    for amount in (priced.subtotal, priced.discount, priced.shipping, priced.tax, priced.total,
                   priced.shipping_discount):
        assert amount >= 0
    for pl in priced.lines.values():
        assert pl.total >= 0 and pl.discount >= 0
        assert all(d["amount"]["amount"] > 0 for d in pl.discounts)
    assert all(d["amount"]["amount"] >= 0 for d in priced.discounts)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_no_discount_is_larger_than_what_it_discounts(
        scenario: tuple[list[LineItem], list[Promotion], PricingContext]) -> None:
    items, promos, ctx = scenario
    priced = price_cart(make_cart(items, codes_of(promos)), ctx)
    assert priced.discount <= priced.subtotal
    for pl in priced.lines.values():
        assert pl.discount <= pl.subtotal
        for d in pl.discounts:
            assert d["amount"]["amount"] <= pl.subtotal
    shipping_before = priced.shipping + priced.shipping_discount
    for d in priced.discounts:
        limit = shipping_before if d["applies_to"] == "shipping" else priced.subtotal
        assert d["amount"]["amount"] <= limit


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_allocations_sum_exactly_to_the_discounted_subtotal(
        scenario: tuple[list[LineItem], list[Promotion], PricingContext]) -> None:
    items, promos, ctx = scenario
    priced = price_cart(make_cart(items, codes_of(promos)), ctx)
    assert priced.subtotal == sum(ln.unit_price * ln.quantity for ln in items)
    assert sum(pl.subtotal for pl in priced.lines.values()) == priced.subtotal
    assert sum(pl.total for pl in priced.lines.values()) == priced.subtotal - priced.discount
    for pl in priced.lines.values():
        assert pl.total == pl.subtotal - pl.discount
        assert sum(d["amount"]["amount"] for d in pl.discounts) == pl.discount
    item_entries = [d for d in priced.discounts if d["applies_to"] == "items"]
    assert sum(d["amount"]["amount"] for d in item_entries) == priced.discount
    ship_entries = [d for d in priced.discounts if d["applies_to"] == "shipping"]
    assert sum(d["amount"]["amount"] for d in ship_entries) == priced.shipping_discount
    tax_added = 0 if priced.prices_include_tax else priced.tax
    assert priced.total == priced.subtotal - priced.discount + priced.shipping + tax_added


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_the_result_does_not_depend_on_line_or_code_order(
        scenario: tuple[list[LineItem], list[Promotion], PricingContext], rnd: Any) -> None:
    items, promos, ctx = scenario
    codes = codes_of(promos)
    first = price_cart(make_cart(items, codes), ctx)
    shuffled_items, shuffled_codes = list(items), list(codes)
    rnd.shuffle(shuffled_items)
    rnd.shuffle(shuffled_codes)
    automatic = list(ctx.automatic)
    rnd.shuffle(automatic)
    ctx2 = PricingContext(now=ctx.now, promotions=ctx.promotions, automatic=automatic,
                          shipping=ctx.shipping, tax=ctx.tax,
                          customer_groups=ctx.customer_groups)
    again = price_cart(make_cart(shuffled_items, shuffled_codes), ctx2)
    assert snapshot(again) == snapshot(first)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_the_chosen_deal_is_at_least_as_good_as_any_other_allowed_deal(
        scenario: tuple[list[LineItem], list[Promotion], PricingContext]) -> None:
    items, promos, ctx = scenario
    cart = make_cart(items, codes_of(promos))
    best = price_cart(cart, ctx)

    def only(allowed: list[Promotion]) -> int:
        keep = {p.promotion_id for p in allowed}
        sub = PricingContext(
            now=ctx.now, promotions={c: p for c, p in ctx.promotions.items()
                                     if p.promotion_id in keep},
            automatic=[p for p in ctx.automatic if p.promotion_id in keep],
            shipping=ctx.shipping, tax=ctx.tax, customer_groups=ctx.customer_groups)
        return price_cart(cart, sub).total

    assert best.total <= only([p for p in promos if p.stackable])
    for p in promos:
        if not p.stackable:
            assert best.total <= only([p])


@settings(max_examples=200, deadline=None)
@given(lines(), st.integers(1, 10_000))
def test_a_lone_cart_percentage_is_that_percentage_of_the_subtotal_rounded_half_up(
        items: list[LineItem], bp: int) -> None:
    promo = Promotion("p", "percentage", bp)
    ctx = PricingContext(now=NOW, automatic=[promo], shipping=ShippingPolicy(flat={}))
    priced = price_cart(make_cart(items, []), ctx)
    subtotal = priced.subtotal
    assert priced.discount == (subtotal * bp * 2 + 10_000) // 20_000


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_caps_are_never_exceeded_and_each_discount_is_its_lines_exactly(
        scenario: tuple[list[LineItem], list[Promotion], PricingContext]) -> None:
    items, promos, ctx = scenario
    priced = price_cart(make_cart(items, codes_of(promos)), ctx)
    by_id = {p.promotion_id: p for p in promos}
    assert priced.total >= 0
    for d in priced.discounts:
        amount = d["amount"]["amount"]
        cap = by_id[d["promotion_id"]].cap_in("USD")
        assert cap is None or amount <= cap
        if "capped" in d["reason"]:
            assert cap is not None and amount == cap
        if d["applies_to"] == "items":
            shares = [x["amount"]["amount"] for pl in priced.lines.values()
                      for x in pl.discounts if x["promotion_id"] == d["promotion_id"]]
            assert sum(shares) == amount


@settings(max_examples=200, deadline=None)
@given(lines(), st.integers(1, 10_000), st.integers(1, 200_000))
def test_a_lone_capped_cart_percentage_is_the_smaller_of_the_percentage_and_the_cap(
        items: list[LineItem], bp: int, cap: int) -> None:
    promo = Promotion("p", "percentage", bp, max_discounts=(("USD", cap),))
    ctx = PricingContext(now=NOW, automatic=[promo], shipping=ShippingPolicy(flat={}))
    priced = price_cart(make_cart(items, []), ctx)
    uncapped = (priced.subtotal * bp * 2 + 10_000) // 20_000
    assert priced.discount == min(uncapped, cap)
    assert sum(pl.discount for pl in priced.lines.values()) == priced.discount
    assert all(pl.total >= 0 for pl in priced.lines.values())
    if priced.discounts:
        assert ("capped" in priced.discounts[0]["reason"]) == (uncapped > cap)


@settings(max_examples=400, deadline=None)
@given(lines(), st.data())
def test_a_cart_without_promotions_is_priced_as_the_promotion_pipeline_prices_it(
        items: list[LineItem], data: st.DataObject) -> None:
    # `price_cart` skips the pipeline when no code is on the cart and nothing is automatic
    # (`_price_plain`): every field the same, lines in the same order, whatever the shipping
    # and tax policies and the prices of today
    shipping = data.draw(st.sampled_from((
        ShippingPolicy(), ShippingPolicy(flat={}, free_over={}),
        ShippingPolicy(flat={"USD": 999}, free_over={}),
        ShippingPolicy(flat={"USD": 599}, free_over={"USD": 5_000}))))
    tax = TaxPolicy(rate_bp=data.draw(st.integers(0, 2_500)),
                    prices_include_tax=data.draw(st.booleans()),
                    tax_shipping=data.draw(st.booleans()))
    current = {ln.variant_id: data.draw(st.sampled_from((None, ln.unit_price, ln.unit_price + 1)))
               for ln in items if data.draw(st.booleans())}
    ctx = PricingContext(now=NOW, shipping=shipping, tax=tax, current_prices=current,
                         country=data.draw(st.sampled_from((None, "US", "DE"))))
    cart = make_cart(items, [])
    plain = price_cart(cart, ctx)
    assert plain == _price_promoted(cart, ctx)
    assert list(plain.lines) == list(_price_promoted(cart, ctx).lines)
