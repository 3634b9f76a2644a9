"""Cart pricing: sale price -> line promotions -> cart promotions -> membership -> shipping -> tax.

All amounts are integer minor units of the cart's one currency; rates are basis points.

Pipeline (the order the promotions issue specifies):

1. **Sale price**: each line's ``unit_price`` (captured from the catalog when added) times its
   quantity is the line subtotal.
2. **Line promotions** (targets products / variants / categories, ``buy_x_get_y``, fixed
   ``allocation="each"``), in application order (higher ``priority`` first, then
   ``promotion_id``). Each works on what is left of each line after the previous ones
   (discounts compound, so nothing ever goes below zero). Percentages round half up per line.
3. **Cart promotions** (target ``cart``), same order: a percentage of, or a fixed amount off,
   the remaining amount of the eligible lines, rounded half up once, then spread over those
   lines by largest remainder (``engine.money.allocate``, weights = what is left of each line)
   so that line totals always sum exactly to the discounted subtotal.
4. **Membership discounts** (cart promotions with ``membership=True``), the same way.
5. **Shipping**: the :class:`~engine.policies.ShippingQuoter` quotes on the discounted
   subtotal; free-shipping and shipping-target promotions then reduce the quote.
6. **Tax** on the discounted amount (plus shipping when the policy taxes shipping), by the
   :class:`~engine.policies.TaxCalculator`; rounded half up once per cart.

Caps: a promotion with a ``max_discount`` in the cart's currency takes at most that much off
(minor units). When the cap bites, the capped amount is spread over the lines in proportion to
their uncapped shares by largest remainder (so no line gets more than it would have without
the cap, and the lines sum exactly to the cap), and the discount's ``reason`` says it was
capped. A cap on a shipping-target promotion caps what it takes off shipping.

Combination: every stackable promotion that is eligible applies; an exclusive promotion
(``stackable=False``) applies alone. When there are exclusive ones, pricing prices each
possible deal (all stackable promotions together; each exclusive one alone) and keeps the
lowest total for the customer; ties go to the deal whose leading promotion has the higher
priority, then the smaller ``promotion_id``. Codes of the deals not kept are reported as
``not_combinable`` in ``code_errors``.

Pure: no I/O and no clock (``PricingContext.now`` is epoch seconds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from engine.cart import Cart, LineItem
from engine.errors import DomainError, NotFound, ValidationFailed
from engine.limits import MAX_CODES_PER_CART
from engine.money import allocate, format_amount, percent_of, round_half_up
from engine.policies import (
    FlatRateShipping,
    ShippingPolicy,
    ShippingQuoter,
    TaxCalculator,
    TaxPolicy,
)
from engine.promotions import Promotion, sort_key

__all__ = [
    "FlatRateShipping", "PricedCart", "PricedLine", "PricingContext", "ShippingPolicy",
    "ShippingQuoter", "TaxCalculator", "TaxPolicy", "check_code", "describe_promotion",
    "price_cart",
]

@dataclass(frozen=True, slots=True)
class PricingContext:
    """What pricing needs beside the cart.

    - ``now``: epoch seconds (validity windows).
    - ``promotions``: upper-case code -> promotion, for the codes on carts.
    - ``automatic``: promotions applied without a code (every entry is treated as automatic).
    - ``current_prices``: variant id -> today's unit price in the cart's currency (None when
      the variant is gone), to flag lines whose price moved; a missing variant is unchanged.
    - ``shipping`` / ``tax``: the policies (:mod:`engine.policies`).
    - ``customer_id``: the signed-in customer, None for a guest (per-customer limits need one).
    - ``customer_groups``: the customer's membership tiers (``{"gold"}``).
    - ``customer_uses``: promotion id -> how many times this customer has used it (orders).
    - ``usage_exhausted``: ids of promotions whose global ``usage_limit`` is used up (the
      promotion-usage actor knows; pricing only needs the answer).
    - ``country`` / ``region``: the destination (ISO 3166-1 ``"US"``, ISO 3166-2 ``"US-CA"`` or
      ``"CA"``), for tax rates and shipping quotes.
    """

    now: float
    promotions: Mapping[str, Promotion] = field(default_factory=dict)
    automatic: Sequence[Promotion] = ()
    current_prices: Mapping[str, int | None] = field(default_factory=dict)
    shipping: ShippingQuoter = field(default_factory=ShippingPolicy)
    tax: TaxCalculator = field(default_factory=TaxPolicy)
    customer_id: str | None = None
    customer_groups: frozenset[str] = frozenset()
    customer_uses: Mapping[str, int] = field(default_factory=dict)
    usage_exhausted: frozenset[str] = frozenset()
    country: str | None = None
    region: str | None = None


@dataclass(slots=True)
class PricedLine:
    """One priced line (minor units): ``total = subtotal - discount``.

    ``current_unit_price`` is set only when the catalog price differs from the captured unit
    price. ``discounts``: ``[{code, promotion_id, amount: Money, description, reason}]``, the
    line's share of each promotion (only shares above zero).
    """

    line_id: str
    subtotal: int
    discount: int
    total: int
    current_unit_price: int | None
    discounts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def price_changed(self) -> bool:
        """True exactly when the catalog price moved since the line was added."""
        return self.current_unit_price is not None


@dataclass(slots=True)
class PricedCart:
    """Totals in minor units and the explanation of each discount.

    ``discount`` is the item discount (``subtotal - discount`` = the discounted subtotal = the
    sum of the line totals); ``shipping`` is what is charged after shipping promotions, and
    ``shipping_discount`` what they saved. ``total = subtotal - discount + shipping + tax``
    with tax-exclusive prices, ``subtotal - discount + shipping`` with tax-inclusive prices
    (``tax`` is then the tax contained in the total).

    ``discounts``: one entry per applied promotion, ``{code (None when automatic),
    promotion_id, amount: Money, description, reason, applies_to: "items" | "shipping"}``;
    the ``items`` amounts sum to ``discount``. ``hints``: sentences such as
    ``"add 12.00 USD more for free shipping"``. ``code_errors``: code -> why it does not apply.
    ``promotion_ids``: the promotions applied (checkout reserves a use of each).
    """

    currency: str
    lines: dict[str, PricedLine]
    discounts: list[dict[str, Any]]
    subtotal: int
    discount: int
    shipping: int
    tax: int
    total: int
    hints: list[str] = field(default_factory=list)
    code_errors: dict[str, DomainError] = field(default_factory=dict)
    shipping_discount: int = 0
    prices_include_tax: bool = False
    promotion_ids: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, dict[str, Any]]:
        """API.md totals: ``{subtotal, discount, shipping, tax, total}`` as Money dicts."""
        def m(a: int) -> dict[str, Any]:
            return {"amount": a, "currency": self.currency}
        return {"subtotal": m(self.subtotal), "discount": m(self.discount),
                "shipping": m(self.shipping), "tax": m(self.tax), "total": m(self.total)}


# -- words ---------------------------------------------------------------------------------

def _pct(bp: int) -> str:
    whole, frac = divmod(bp, 100)
    return f"{whole}%" if not frac else f"{whole}.{frac:02d}".rstrip("0") + "%"


def describe_promotion(p: Promotion, currency: str) -> str:
    """What ``p`` gives, in words: its admin ``description``, else generated from its rules.

    A cap in ``currency`` adds ``", up to 50.00 USD off"``.
    """
    if p.description:
        return p.description
    text = _describe_rules(p, currency)
    cap = p.cap_in(currency)
    if cap is not None and p.kind != "free_shipping":
        text += f", up to {format_amount(cap, currency)} off"
    return text


def _describe_rules(p: Promotion, currency: str) -> str:
    target = p.target.describe()
    if p.kind == "free_shipping":
        return "free shipping"
    if p.kind == "percentage":
        return f"{_pct(p.value)} off {target}"
    if p.kind == "fixed":
        amount = p.amount_in(currency)
        money = format_amount(amount, currency) if amount is not None else "an amount"
        if p.allocation == "each":
            return f"{money} off each unit of " + \
                ("every item" if p.target.type == "cart" else target)
        return f"{money} off {target}"
    got = "free" if p.percent_bp >= 10_000 else f"at {_pct(p.percent_bp)} off"
    if p.get_target is not None:
        of = "items" if p.target.type == "cart" else f"of {target}"
        return f"buy {p.buy_quantity} {of}, get {p.get_quantity} of " \
            f"{p.get_target.describe()} {got}"
    on = "" if p.target.type == "cart" else f" on {target}"
    return f"buy {p.buy_quantity} get {p.get_quantity} {got}{on}"


def _reason(p: Promotion, code: str | None, currency: str, capped: bool = False) -> str:
    """Why ``p`` applied, in words: how it was activated, the conditions it met, its cap."""
    parts = [f"code {code}" if code else "automatic promotion"]
    minimum = p.minimum_in(currency)
    if minimum:
        parts.append(f"subtotal of at least {format_amount(minimum, currency)}")
    if p.min_quantity:
        parts.append(f"at least {p.min_quantity} eligible items")
    if p.customer_groups:
        parts.append(f"for {', '.join(sorted(p.customer_groups))} members")
    if not p.stackable:
        parts.append("exclusive: not combined with other promotions")
    cap = p.cap_in(currency)
    if capped and cap is not None:
        parts.append(f"capped at its maximum discount of {format_amount(cap, currency)}")
    return "; ".join(parts)


def _label(p: Promotion, code: str | None) -> str:
    return f"code {code}" if code else f"promotion {p.promotion_id}"


def _items_word(p: Promotion, matching: Sequence[LineItem]) -> str:
    names = {ln.name for ln in matching}
    if len(names) == 1:
        return next(iter(names))
    if p.target.type == "cart":
        return "items"
    return f"items of {p.target.describe()}"


def _get_words(p: Promotion) -> str:
    return "free" if p.percent_bp >= 10_000 else f"at {_pct(p.percent_bp)} off"


def _get_items_word(p: Promotion, lines: Sequence[LineItem], n: int) -> str:
    """``n`` reward units of a ``get_target`` promotion: a line's name, or the target's words."""
    assert p.get_target is not None
    names = {ln.name for ln in lines if p.get_target.matches(ln)}
    if len(names) == 1:
        return next(iter(names))
    return f"item{'' if n == 1 else 's'} of {p.get_target.describe()}"


# -- buy X get Y with a get target ---------------------------------------------------------

def _bxgy_best(buy_only: int, both: int, gets: int, b: int, g: int) -> tuple[int, int]:
    """``(groups, units rewarded)`` of the best split of the units, counts only.

    ``buy_only`` units match the target only, ``both`` match both targets, ``gets`` is every
    unit matching the get target (``both`` included). ``groups`` complete groups count
    ``groups * b`` units as bought, the target-only ones first, then ``max(0, groups * b -
    buy_only)`` of the ``both`` ones; the rest of the get units can be rewarded, up to
    ``groups * g``. Kept: the most units rewarded, then the fewest groups.
    """
    def rewarded(groups: int) -> int:
        return min(groups * g, gets - max(0, groups * b - buy_only))
    most = (buy_only + both) // b
    # rewarded() is the minimum of a rising and a falling function of groups: its maximum is
    # where they cross, at one of these points or the next one.
    candidates = {0, most} | {min(most, c + d) for c in (buy_only // b, gets // g,
                                                       (gets + buy_only) // (b + g))
                              for d in (0, 1)}
    groups = max(sorted(candidates), key=rewarded)  # the first maximum: the fewest groups
    return groups, rewarded(groups)


@dataclass(frozen=True, slots=True)
class _Plan:
    """A ``get_target`` promotion's split of a cart's units (counts are units).

    ``rewards``: line index -> units rewarded. ``counts``: ``(buy_only, both, gets)`` as
    :func:`_bxgy_best` takes them.
    """

    rewards: dict[int, int]
    counts: tuple[int, int, int]


def _bxgy_plan(p: Promotion, lines: Sequence[LineItem], rem: Sequence[int]) -> _Plan:
    """Which units a ``buy_x_get_y`` promotion with a ``get_target`` rewards.

    Buy units match ``target``, get units ``get_target``; a unit never counts both as bought
    and as rewarded. Every complete group of ``buy_quantity`` bought units earns
    ``get_quantity`` reward units, given to the cheapest get units not counted as bought.
    Units matching only the target count as bought first; units matching both targets are
    bought dearest first, so that the cheapest stay to be rewarded. Of all the ways to split
    the units, the one rewarding the most units is kept, then the one buying the fewest. A
    unit's price is what is left of its line (``rem``) over its quantity; ties go to the
    smaller line id.
    """
    assert p.get_target is not None
    buy_idx = [i for i, ln in enumerate(lines) if p.target.matches(ln)]
    get_idx = [i for i, ln in enumerate(lines) if p.get_target.matches(ln)]
    get_set = set(get_idx)
    both_idx = [i for i in buy_idx if i in get_set]
    buy_only = sum(lines[i].quantity for i in buy_idx if i not in get_set)
    both = sum(lines[i].quantity for i in both_idx)
    gets = sum(lines[i].quantity for i in get_idx)
    groups, rewarded = _bxgy_best(buy_only, both, gets, p.buy_quantity, p.get_quantity)

    def unit_price(i: int) -> Fraction:
        return Fraction(rem[i], lines[i].quantity)

    left = {i: lines[i].quantity for i in get_idx}
    to_buy = max(0, groups * p.buy_quantity - buy_only)
    for i in sorted(both_idx, key=lambda i: (-unit_price(i), lines[i].line_id)):
        k = min(to_buy, left[i])
        left[i] -= k
        to_buy -= k
    rewards: dict[int, int] = {}
    for i in sorted(get_idx, key=lambda i: (unit_price(i), lines[i].line_id)):
        k = min(rewarded, left[i])
        if k:
            rewards[i] = k
            rewarded -= k
    return _Plan(rewards, (buy_only, both, gets))


def _bxgy_shortage(p: Promotion, lines: Sequence[LineItem]) -> tuple[str, int, int, str] | None:
    """Why a ``get_target`` promotion rewards nothing: ``(side, short, have, words)``, or None.

    ``side`` is ``"buy"`` when adding ``short`` more target units would earn a reward (``have``
    of them are there), else ``"get"``: ``short`` get units are missing. ``words``: "add 1
    more Shoe to get 1 Socks free".
    """
    plan = _bxgy_plan(p, lines, [ln.unit_price * ln.quantity for ln in lines])
    if plan.rewards:
        return None
    buy_only, both, gets = plan.counts
    b, g = p.buy_quantity, p.get_quantity
    get_word = _get_items_word(p, lines, g)
    for more in range(1, b + 1):
        if _bxgy_best(buy_only + more, both, gets, b, g)[1]:
            buy_word = _items_word(p, [ln for ln in lines if p.target.matches(ln)])
            return ("buy", more, buy_only + both,
                    f"add {more} more {buy_word} to get {g} {get_word} {_get_words(p)}")
    return ("get", g, 0, f"add {g} {get_word} to get {'it' if g == 1 else 'them'} "
                         f"{_get_words(p)}")


# -- eligibility ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Who:
    customer_id: str | None
    groups: frozenset[str]
    uses: Mapping[str, int]
    exhausted: frozenset[str]


def _who(ctx: PricingContext | None) -> _Who:
    if ctx is None:
        return _Who(None, frozenset(), {}, frozenset())
    return _Who(ctx.customer_id, ctx.customer_groups, ctx.customer_uses, ctx.usage_exhausted)


def _ineligible(p: Promotion, code: str | None, subtotal: int, currency: str, now: float,
                who: _Who, lines: Sequence[LineItem] | None) -> DomainError | None:
    """Why ``p`` cannot apply to this cart now, or None. ``lines`` None skips the line checks.

    Order of checks: validity window, global usage, customer (sign-in, groups, own uses),
    currency, minimum subtotal (before discounts), then, with lines, eligible items and
    minimum quantity (and a full buy-X-get-Y group; with a ``get_target``, at least one unit
    rewarded: ``details`` then also say ``short_of`` ``"buy"`` or ``"get"`` units).
    """
    label = _label(p, code)
    det: dict[str, Any] = {"code": code, "promotion_id": p.promotion_id}
    if not p.active:
        return ValidationFailed("code_inactive", f"{label} is not active",
                                [{**det, "reason": "inactive"}])
    if p.starts_at is not None and now < p.starts_at:
        return ValidationFailed("code_not_yet_valid", f"{label} is not valid yet",
                                [{**det, "starts_at": p.starts_at}])
    if p.ends_at is not None and now >= p.ends_at:
        return ValidationFailed("code_expired", f"{label} has expired",
                                [{**det, "ends_at": p.ends_at}])
    if p.promotion_id in who.exhausted:
        return ValidationFailed("usage_limit_reached", f"{label} has been used up",
                                [{**det, "scope": "global", "limit": p.usage_limit}])
    if p.per_customer_limit is not None:
        if who.customer_id is None:
            return ValidationFailed("customer_not_eligible", f"sign in to use {label}",
                                    [{**det, "reason": "sign_in_required"}])
        used = who.uses.get(p.promotion_id, 0)
        if used >= p.per_customer_limit:
            return ValidationFailed(
                "usage_limit_reached",
                f"you have already used {label} {used} time{'s' if used != 1 else ''}",
                [{**det, "scope": "customer", "limit": p.per_customer_limit, "used": used}])
    if p.customer_groups and not (p.customer_groups & who.groups):
        return ValidationFailed(
            "customer_not_eligible",
            f"{label} is for {', '.join(sorted(p.customer_groups))} members only",
            [{**det, "customer_groups": sorted(p.customer_groups)}])
    if p.kind == "fixed" and p.amount_in(currency) is None:
        return ValidationFailed("currency_mismatch", f"{label} does not apply to {currency} carts",
                                [{**det, "currency": currency}])
    minimum = p.minimum_in(currency)
    if subtotal < minimum:
        short = minimum - subtotal
        return ValidationFailed(
            "minimum_not_met", f"add {format_amount(short, currency)} more to use {label}",
            [{**det, "minimum": minimum, "subtotal": subtotal, "short": short}])
    if lines is None or p.stage == "shipping":
        return None
    matching = [ln for ln in lines if p.target.matches(ln)]
    if not matching:
        return ValidationFailed("no_eligible_items",
                                f"{label} applies to {p.target.describe()}: none in the cart",
                                [det])
    units = sum(ln.quantity for ln in matching)
    if units < p.min_quantity:
        need = p.min_quantity - units
        return ValidationFailed(
            "minimum_not_met",
            f"add {need} more {_items_word(p, matching)} to use {label}",
            [{**det, "min_quantity": p.min_quantity, "quantity": units, "short_quantity": need}])
    if p.kind == "buy_x_get_y" and p.get_target is not None:
        lacking = _bxgy_shortage(p, lines)
        if lacking is not None:
            side, need, have, words = lacking
            return ValidationFailed(
                "minimum_not_met", f"{words} with {label}",
                [{**det, "min_quantity": have + need, "quantity": have, "short_quantity": need,
                  "short_of": side}])
    elif p.kind == "buy_x_get_y" and units < p.buy_quantity + p.get_quantity:
        need = p.buy_quantity + p.get_quantity - units
        return ValidationFailed(
            "minimum_not_met",
            f"add {need} more {_items_word(p, matching)} to get {p.get_quantity} "
            f"{_get_words(p)} with {label}",
            [{**det, "min_quantity": p.buy_quantity + p.get_quantity, "quantity": units,
              "short_quantity": need}])
    return None


def _combination_error(p: Promotion, code: str, others: Sequence[Promotion]) -> DomainError | None:
    others = [o for o in others if o.promotion_id != p.promotion_id]
    if len(others) >= MAX_CODES_PER_CART:
        return ValidationFailed("too_many_codes",
                                f"a cart takes at most {MAX_CODES_PER_CART} codes",
                                [{"code": code}])
    if not others:
        return None
    clash = others if not p.stackable else [o for o in others if not o.stackable]
    if not clash:
        return None
    names = ", ".join(sorted(o.code or o.promotion_id for o in clash))
    why = ("it cannot be combined with other codes" if not p.stackable
           else f"{names} cannot be combined with other codes")
    return ValidationFailed(
        "not_combinable", f"code {code} cannot be used with {names}: {why}; remove one first",
        [{"code": code, "conflicts_with": sorted(o.code or o.promotion_id for o in clash)}])


def check_code(promo: Promotion | None, code: str, subtotal: int, currency: str, now: float,
               *, cart: Cart | None = None, ctx: PricingContext | None = None,
               others: Sequence[Promotion] | None = None) -> Promotion:
    """Whether ``code`` can be added to a cart now; returns its promotion.

    ``subtotal`` is the cart subtotal before discounts, minor units of ``currency``; ``now``
    epoch seconds. With ``cart``, the line rules are checked too (eligible items, minimum
    quantity) and the cart's size; with ``ctx``, the customer rules (groups, per-customer and
    global usage). ``others``: promotions of the codes already on the cart (default: looked up
    from ``cart.codes`` in ``ctx.promotions``). Without ``ctx`` the shopper counts as a guest
    in no group, so group-only and per-customer promotions are refused (safe default).

    Combination rule (refused at apply time, so the shopper learns at once instead of seeing
    a code silently not apply): an exclusive code cannot join a cart that already has a code,
    and no code can join a cart holding an exclusive code. Automatic promotions never block a
    code; pricing then keeps whichever deal is better for the customer.

    Raises:
        NotFound: ``unknown_code``.
        ValidationFailed: ``too_many_codes``, ``code_not_yet_valid``, ``code_expired``,
        ``usage_limit_reached`` (details ``scope``: ``global`` or ``customer``),
        ``customer_not_eligible``, ``currency_mismatch``, ``minimum_not_met`` (details
        ``short`` in minor units or ``short_quantity`` in units), ``no_eligible_items``,
        ``not_combinable``.
    """
    if promo is None:
        raise NotFound("unknown_code", f"no promotion has code {code!r}", [{"code": code}])
    if others is None:
        others = []
        if cart is not None and ctx is not None:
            others = [ctx.promotions[c] for c in cart.codes
                      if c != code and c in ctx.promotions]
    if cart is not None and code not in cart.codes and len(cart.codes) >= MAX_CODES_PER_CART:
        raise ValidationFailed("too_many_codes",
                               f"a cart takes at most {MAX_CODES_PER_CART} codes",
                               [{"code": code}])
    lines = _canonical(cart) if cart is not None else None
    err = _ineligible(promo, code, subtotal, currency, now, _who(ctx), lines) or \
        _combination_error(promo, code, others)
    if err is not None:
        raise err
    return promo


# -- the pipeline --------------------------------------------------------------------------

def _canonical(cart: Cart) -> list[LineItem]:
    """Lines in line-id order, so that results never depend on insertion order."""
    return sorted(cart.lines.values(), key=lambda ln: ln.line_id)


@dataclass(slots=True)
class _Applied:
    promo: Promotion
    code: str | None
    amount: int
    per_line: dict[int, int]
    applies_to: str
    capped: bool = False


@dataclass(slots=True)
class _Outcome:
    remaining: list[int]
    applied: list[_Applied]
    shipping_before: int
    shipping: int
    tax: int
    total: int


def _line_stage(p: Promotion, lines: Sequence[LineItem], rem: list[int],
                currency: str) -> dict[int, int]:
    """Per-line discounts of a line promotion on what is left of each line (``rem``)."""
    idx = [i for i, ln in enumerate(lines) if p.target.matches(ln)]
    out: dict[int, int] = {}
    if p.kind == "percentage":
        for i in idx:
            # Rounding rule: half up, per line, on what is left of the line.
            out[i] = percent_of(rem[i], p.value)
    elif p.kind == "fixed" and p.allocation == "each":
        each = p.amount_in(currency) or 0
        for i in idx:
            out[i] = min(rem[i], each * lines[i].quantity)
    elif p.kind == "fixed":
        base = sum(rem[i] for i in idx)
        amount = min(p.amount_in(currency) or 0, base)
        # Largest remainder over what is left of each targeted line: parts never exceed it.
        for i, part in zip(idx, allocate(amount, [rem[i] for i in idx]), strict=True):
            out[i] = part
    elif p.kind == "buy_x_get_y" and p.get_target is not None:
        for i, k in _bxgy_plan(p, lines, rem).rewards.items():
            out[i] = _units_off(p, lines[i], rem[i], k)
    elif p.kind == "buy_x_get_y":
        units = sum(lines[i].quantity for i in idx)
        free = units // (p.buy_quantity + p.get_quantity) * p.get_quantity
        # The cheapest units are the "get" units (the usual merchant-safe rule; the admin cannot
        # be made to give away the dearest unit). Ties by line id, for order independence.
        for i in sorted(idx, key=lambda i: (Fraction(rem[i], lines[i].quantity), lines[i].line_id)):
            if free <= 0:
                break
            k = min(free, lines[i].quantity)
            free -= k
            out[i] = _units_off(p, lines[i], rem[i], k)
    return out


def _units_off(p: Promotion, line: LineItem, rem: int, k: int) -> int:
    """``p.percent_bp`` off ``k`` units of ``line``, of which ``rem`` minor units are left."""
    # Rounding rule: half up, on the k units' share of what is left of the line.
    return min(rem, round_half_up(rem * k * p.percent_bp, line.quantity * 10_000))


def _capped(p: Promotion, parts: dict[int, int], currency: str) -> tuple[dict[int, int], bool]:
    """``parts`` (line index -> minor units) within ``p``'s cap in ``currency``; whether it bit.

    A biting cap is spread over the lines by largest remainder, weighted by their uncapped
    parts: no line gets more than before and the parts sum exactly to the cap.
    """
    cap = p.cap_in(currency)
    if cap is None or sum(parts.values()) <= cap:
        return parts, False
    keys = sorted(parts)
    return dict(zip(keys, allocate(cap, [parts[i] for i in keys]), strict=True)), True


def _cart_stage(p: Promotion, lines: Sequence[LineItem], rem: list[int],
                currency: str) -> dict[int, int]:
    """A cart promotion: one amount on the eligible remainder, spread by largest remainder."""
    idx = [i for i, ln in enumerate(lines) if p.target.matches(ln)]
    base = sum(rem[i] for i in idx)
    if p.kind == "percentage":
        # Rounding rule: half up, once, on the eligible remainder of the whole cart.
        amount = percent_of(base, p.value)
    else:
        amount = min(p.amount_in(currency) or 0, base)
    return dict(zip(idx, allocate(amount, [rem[i] for i in idx]), strict=True))


def _shipping_saved(p: Promotion, shipping: int, currency: str) -> int:
    if p.kind == "free_shipping":
        return shipping
    if p.kind == "percentage":
        # Rounding rule: half up on the shipping charge left.
        return percent_of(shipping, p.value)
    return min(p.amount_in(currency) or 0, shipping)


def _run(lines: Sequence[LineItem], subs: Sequence[int], deal: Sequence[tuple[str | None,
         Promotion]], ctx: PricingContext, currency: str) -> _Outcome:
    rem = list(subs)
    applied: list[_Applied] = []
    ordered = sorted(deal, key=lambda cp: sort_key(cp[1]))
    for stage in ("line", "cart", "membership"):
        for code, p in ordered:
            if p.stage != stage:
                continue
            parts, capped = _capped(
                p, (_line_stage if stage == "line" else _cart_stage)(p, lines, rem, currency),
                currency)
            for i, d in parts.items():
                rem[i] -= d
            applied.append(_Applied(p, code, sum(parts.values()),
                                    {i: d for i, d in parts.items() if d}, "items", capped))
    discounted = sum(rem)
    shipping_before = ctx.shipping.quote(currency, discounted, bool(lines), ctx.country,
                                         ctx.region)
    shipping = shipping_before
    for code, p in ordered:
        if p.stage == "shipping":
            saved = _shipping_saved(p, shipping, currency)
            cap = p.cap_in(currency)
            capped = cap is not None and saved > cap
            saved = min(saved, cap) if cap is not None else saved
            shipping -= saved
            applied.append(_Applied(p, code, saved, {}, "shipping", capped))
    tax, total = _tax_and_total(discounted, shipping, ctx)
    return _Outcome(rem, applied, shipping_before, shipping, tax, total)


def _tax_and_total(discounted: int, shipping: int, ctx: PricingContext) -> tuple[int, int]:
    """Tax on the discounted subtotal (and shipping, where the policy taxes it) and the
    total to pay (minor units); a tax-inclusive total leaves the tax out, as it is inside."""
    taxable = discounted + (shipping if ctx.tax.tax_shipping else 0)
    tax = ctx.tax.tax(taxable, ctx.country, ctx.region)
    return tax, discounted + shipping + (0 if ctx.tax.prices_include_tax else tax)


def _priced_line(ln: LineItem, subtotal: int, total: int, ctx: PricingContext,
                 discounts: list[dict[str, Any]]) -> PricedLine:
    """``ln`` priced: its subtotal and total after discounts; today's unit price where it
    differs from the one captured when the line was added."""
    current = ctx.current_prices.get(ln.variant_id, ln.unit_price)
    return PricedLine(ln.line_id, subtotal, subtotal - total, total,
                      current if current is not None and current != ln.unit_price else None,
                      discounts)


def _shipping_hint(has_lines: bool, shipping: int, discounted: int, ctx: PricingContext,
                   currency: str) -> str | None:
    """"add 12.00 USD more for free shipping" while shipping is charged below the policy's
    free-shipping threshold; None otherwise."""
    threshold = ctx.shipping.free_shipping_threshold(currency, ctx.country, ctx.region)
    if has_lines and shipping and threshold is not None and discounted < threshold:
        return f"add {format_amount(threshold - discounted, currency)} more for free shipping"
    return None


def _price_plain(cart: Cart, ctx: PricingContext) -> PricedCart:
    """`price_cart` of a cart without codes where no promotion is automatic: what the
    promotion pipeline answers then (no discount, no hint of a promotion, no code error),
    without running it. Lines in line-id order, as there."""
    cur = cart.currency
    priced_lines: dict[str, PricedLine] = {}
    subtotal = 0
    for ln in _canonical(cart):
        sub = ln.unit_price * ln.quantity
        subtotal += sub
        priced_lines[ln.line_id] = _priced_line(ln, sub, sub, ctx, [])
    shipping = ctx.shipping.quote(cur, subtotal, bool(priced_lines), ctx.country, ctx.region)
    tax, total = _tax_and_total(subtotal, shipping, ctx)
    hint = _shipping_hint(bool(priced_lines), shipping, subtotal, ctx, cur)
    return PricedCart(currency=cur, lines=priced_lines, discounts=[], subtotal=subtotal,
                      discount=0, shipping=shipping, tax=tax, total=total,
                      hints=[hint] if hint else [], code_errors={}, shipping_discount=0,
                      prices_include_tax=ctx.tax.prices_include_tax, promotion_ids=[])


def _lead(deal: Sequence[tuple[str | None, Promotion]]) -> tuple[int, int, str]:
    if not deal:
        return (1, 0, "")
    prio, pid = min(sort_key(p) for _, p in deal)
    return (0, prio, pid)


def price_cart(cart: Cart, ctx: PricingContext) -> PricedCart:
    """Price ``cart``: line subtotals, discounts (allocated to lines), shipping, tax, total.

    Codes that cannot apply right now (expired, minimum not met, used up, not combinable...)
    contribute nothing and are reported in ``code_errors`` (the same errors as
    :func:`check_code`) instead of raising; automatic promotions that do not apply are
    silent, except for a hint when only the minimum stands in the way. Never raises for
    promotion reasons.

    A cart without codes where no promotion is automatic (most carts of a shop running no
    sale) skips the promotion pipeline (`_price_plain`): the same answer, about half the
    CPU (`python -m loadtest.engine_bench viewcost`, a 6-line cart priced with its context:
    9.3-10.2 us against 16.2-19.0, 2026-12-01).
    """
    if not cart.codes and not ctx.automatic:
        return _price_plain(cart, ctx)
    return _price_promoted(cart, ctx)


def _price_promoted(cart: Cart, ctx: PricingContext) -> PricedCart:
    """`price_cart` through the promotion pipeline (any cart)."""
    cur = cart.currency
    lines = _canonical(cart)
    subs = [ln.unit_price * ln.quantity for ln in lines]
    subtotal = sum(subs)
    who = _who(ctx)
    errors: dict[str, DomainError] = {}
    hints: list[str] = []
    eligible: list[tuple[str | None, Promotion]] = []
    seen: set[str] = set()
    # Sorted, so that hints and the code credited for a promotion never depend on code order.
    for code in sorted(set(cart.codes)):
        promo = ctx.promotions.get(code)
        if promo is None:
            errors[code] = NotFound("unknown_code", f"no promotion has code {code!r}",
                                    [{"code": code}])
            continue
        if promo.promotion_id in seen:
            continue
        err = _ineligible(promo, code, subtotal, cur, ctx.now, who, lines)
        if err is not None:
            errors[code] = err
            if err.code == "minimum_not_met":
                hints.append(err.message)
            continue
        seen.add(promo.promotion_id)
        eligible.append((code, promo))
    for promo in sorted(ctx.automatic, key=sort_key):
        if promo.promotion_id in seen:
            continue
        err = _ineligible(promo, None, subtotal, cur, ctx.now, who, lines)
        if err is not None:
            if err.code == "minimum_not_met":
                _automatic_hint(promo, err, lines, cur, hints)
            continue
        seen.add(promo.promotion_id)
        eligible.append((None, promo))

    deals: list[list[tuple[str | None, Promotion]]] = [[cp for cp in eligible if cp[1].stackable]]
    deals += [[cp] for cp in eligible if not cp[1].stackable]
    outcomes = [_run(lines, subs, deal, ctx, cur) for deal in deals]
    best = min(range(len(deals)), key=lambda k: (outcomes[k].total, _lead(deals[k])))
    deal, out = deals[best], outcomes[best]
    winners = ", ".join(sorted(f"code {c}" if c else describe_promotion(p, cur)
                               for c, p in deal)) or "no promotion"
    kept = {p.promotion_id for _, p in deal}
    for maybe_code, p in eligible:
        if maybe_code is not None and p.promotion_id not in kept:
            errors[maybe_code] = ValidationFailed(
                "not_combinable",
                f"code {maybe_code} cannot be combined with {winners}; the better deal for you "
                f"was applied", [{"code": maybe_code, "promotion_id": p.promotion_id,
                                  "applied": sorted(kept)}])

    discounts: list[dict[str, Any]] = []
    line_discounts: list[list[dict[str, Any]]] = [[] for _ in lines]
    for a in out.applied:
        description = describe_promotion(a.promo, cur)
        reason = _reason(a.promo, a.code, cur, a.capped)
        discounts.append({"code": a.code, "promotion_id": a.promo.promotion_id,
                          "amount": {"amount": a.amount, "currency": cur},
                          "description": description, "reason": reason,
                          "applies_to": a.applies_to})
        for i, d in sorted(a.per_line.items()):
            line_discounts[i].append({"code": a.code, "promotion_id": a.promo.promotion_id,
                                      "amount": {"amount": d, "currency": cur},
                                      "description": description, "reason": reason})
        if a.promo.kind == "buy_x_get_y":
            _bxgy_hint(a.promo, a.code, lines, hints)

    priced_lines = {ln.line_id: _priced_line(ln, subs[i], out.remaining[i], ctx,
                                             line_discounts[i])
                    for i, ln in enumerate(lines)}
    discounted = sum(out.remaining)
    hint = _shipping_hint(bool(lines), out.shipping, discounted, ctx, cur)
    if hint:
        hints.append(hint)
    return PricedCart(
        currency=cur, lines=priced_lines, discounts=discounts, subtotal=subtotal,
        discount=subtotal - discounted, shipping=out.shipping, tax=out.tax, total=out.total,
        hints=list(dict.fromkeys(hints)), code_errors=errors,
        shipping_discount=out.shipping_before - out.shipping,
        prices_include_tax=ctx.tax.prices_include_tax,
        promotion_ids=[p.promotion_id for _, p in sorted(deal, key=lambda cp: sort_key(cp[1]))],
    )


def _automatic_hint(p: Promotion, err: DomainError, lines: Sequence[LineItem], currency: str,
                    hints: list[str]) -> None:
    """"add 12.00 USD more to get free shipping" for an automatic promotion just out of reach."""
    d = err.details[0] if err.details else {}
    if "short" in d:
        hints.append(f"add {format_amount(d['short'], currency)} more to get "
                     f"{describe_promotion(p, currency)}")
    elif "short_quantity" in d and p.kind == "buy_x_get_y" and p.get_target is not None:
        short = _bxgy_shortage(p, lines)
        if short is not None:
            hints.append(short[3])
    elif "short_quantity" in d:
        items = _items_word(p, [ln for ln in lines if p.target.matches(ln)])
        what = f"{p.get_quantity} {_get_words(p)}" if p.kind == "buy_x_get_y" \
            else describe_promotion(p, currency)
        hints.append(f"add {d['short_quantity']} more {items} to get {what}")


def _bxgy_hint(p: Promotion, code: str | None, lines: Sequence[LineItem],
               hints: list[str]) -> None:
    """"add 1 more T-shirt to get 1 free" when the last group of units is incomplete.

    With a ``get_target``: "add 1 more Socks to get it free" when more get units would be
    rewarded (the groups earned more than the get units there), else "add 1 more Shoe to get 1
    Socks free" when more target units would reward get units already in the cart.
    """
    if p.get_target is not None:
        plan = _bxgy_plan(p, lines, [ln.unit_price * ln.quantity for ln in lines])
        rewarded = sum(plan.rewards.values())
        b, g = p.buy_quantity, p.get_quantity
        buy_only, both, gets = plan.counts
        # With get units to spare, every earned reward goes to one: what is still missing.
        spare = (buy_only + both) // b * g
        n = _bxgy_best(buy_only, both, gets + spare, b, g)[1] - rewarded
        if n > 0:
            hints.append(f"add {n} more {_get_items_word(p, lines, n)} to get "
                         f"{'it' if n == 1 else 'them'} {_get_words(p)}")
            return
        for more in range(1, b + 1):
            extra = _bxgy_best(buy_only + more, both, gets, b, g)[1] - rewarded
            if extra > 0:
                buy_word = _items_word(p, [ln for ln in lines if p.target.matches(ln)])
                hints.append(f"add {more} more {buy_word} to get {extra} "
                             f"{_get_items_word(p, lines, extra)} {_get_words(p)}")
                return
        return
    matching = [ln for ln in lines if p.target.matches(ln)]
    group = p.buy_quantity + p.get_quantity
    left = sum(ln.quantity for ln in matching) % group
    if left:
        hints.append(f"add {group - left} more {_items_word(p, matching)} to get "
                     f"{p.get_quantity} {_get_words(p)}")

