"""Cart pricing: subtotal -> discounts -> shipping -> tax -> total, all in minor units.

Pipeline order: the unit price captured on each line, coupon and automatic promotions on the
subtotal, flat-rate shipping (free over a threshold), then tax on the discounted amount.
Rounding: percentages and tax round half up (``engine.money.round_half_up``) once, on the
amount they apply to; a cart-level discount is spread over lines by largest remainder
(``engine.money.allocate``) so line totals sum exactly to the discounted subtotal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.cart import Cart
from engine.errors import DomainError, NotFound, ValidationFailed
from engine.money import allocate, format_amount, percent_of, round_half_up
from engine.promotions import Promotion


@dataclass(frozen=True, slots=True)
class ShippingPolicy:
    """Flat-rate shipping per currency (minor units), free from ``free_over`` subtotal on."""

    flat: Mapping[str, int] = field(default_factory=lambda: {"USD": 499, "EUR": 499})
    free_over: Mapping[str, int] = field(default_factory=lambda: {"USD": 5000, "EUR": 5000})

    def quote(self, currency: str, discounted_subtotal: int, has_lines: bool) -> int:
        if not has_lines:
            return 0
        threshold = self.free_over.get(currency)
        if threshold is not None and discounted_subtotal >= threshold:
            return 0
        return self.flat.get(currency, 0)


@dataclass(frozen=True, slots=True)
class TaxPolicy:
    """One tax rate in basis points (825 = 8.25 %), tax-exclusive prices."""

    rate_bp: int = 0

    def tax(self, taxable: int) -> int:
        return round_half_up(taxable * self.rate_bp, 10_000)


@dataclass(frozen=True, slots=True)
class PricingContext:
    """What pricing needs beside the cart.

    ``promotions`` maps an upper-case code to its promotion; ``automatic`` are promotions
    without a code; ``current_prices`` maps variant id -> today's unit price in the cart's
    currency (None when the variant is gone), to flag lines whose price moved.
    """

    now: float
    promotions: Mapping[str, Promotion] = field(default_factory=dict)
    automatic: Sequence[Promotion] = ()
    current_prices: Mapping[str, int | None] = field(default_factory=dict)
    shipping: ShippingPolicy = field(default_factory=ShippingPolicy)
    tax: TaxPolicy = field(default_factory=TaxPolicy)


@dataclass(slots=True)
class PricedLine:
    line_id: str
    subtotal: int
    discount: int
    total: int
    current_unit_price: int | None
    discounts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def price_changed(self) -> bool:
        return False if self.current_unit_price is None else True


@dataclass(slots=True)
class PricedCart:
    """Totals in minor units and the explanation of each discount."""

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

    def totals(self) -> dict[str, dict[str, Any]]:
        def m(a: int) -> dict[str, Any]:
            return {"amount": a, "currency": self.currency}
        return {"subtotal": m(self.subtotal), "discount": m(self.discount),
                "shipping": m(self.shipping), "tax": m(self.tax), "total": m(self.total)}


def check_code(promo: Promotion | None, code: str, subtotal: int, currency: str,
               now: float) -> Promotion:
    """Whether ``code`` can apply now. Raises NotFound ``unknown_code``, ValidationFailed
    ``code_expired`` / ``code_not_yet_valid`` / ``minimum_not_met`` / ``currency_mismatch``."""
    if promo is None:
        raise NotFound("unknown_code", f"no promotion has code {code!r}",
                       [{"code": code}])
    if promo.starts_at is not None and now < promo.starts_at:
        raise ValidationFailed("code_not_yet_valid", f"code {code!r} is not valid yet",
                               [{"code": code}])
    if promo.ends_at is not None and now >= promo.ends_at:
        raise ValidationFailed("code_expired", f"code {code!r} has expired", [{"code": code}])
    if promo.kind == "fixed" and promo.currency != currency:
        raise ValidationFailed("currency_mismatch",
                               f"code {code!r} is for {promo.currency} carts", [{"code": code}])
    if subtotal < promo.min_subtotal:
        short = promo.min_subtotal - subtotal
        raise ValidationFailed(
            "minimum_not_met",
            f"add {format_amount(short, currency)} more to use code {code!r}",
            [{"code": code, "minimum": promo.min_subtotal, "subtotal": subtotal}])
    return promo


def price_cart(cart: Cart, ctx: PricingContext) -> PricedCart:
    """Price ``cart``: per-line subtotals, discounts (allocated to lines), shipping, tax, total.

    Codes that cannot apply right now (expired, minimum not met) contribute nothing and are
    reported in ``code_errors`` instead of raising.
    """
    cur = cart.currency
    lines = list(cart.lines.values())
    line_subs = [ln.unit_price * ln.quantity for ln in lines]
    subtotal = sum(line_subs)
    applied: list[tuple[str | None, Promotion]] = []
    errors: dict[str, DomainError] = {}
    for code in cart.codes:
        try:
            applied.append((code, check_code(ctx.promotions.get(code), code, subtotal, cur,
                                             ctx.now)))
        except DomainError as e:
            errors[code] = e
    for p in ctx.automatic:
        try:
            applied.append((None, check_code(p, p.promotion_id, subtotal, cur, ctx.now)))
        except DomainError:
            continue
    discounts: list[dict[str, Any]] = []
    remaining = subtotal
    line_disc = [0] * len(lines)
    free_shipping = False
    for code, p in applied:
        if p.kind == "free_shipping":
            free_shipping = True
            amount = 0
        elif p.kind == "percentage":
            amount = min(remaining, percent_of(remaining, p.value))
        else:
            amount = min(remaining, p.value)
        remaining -= amount
        for i, part in enumerate(allocate(amount, line_subs)):
            line_disc[i] += part
        discounts.append({"code": code, "promotion_id": p.promotion_id,
                          "amount": {"amount": amount, "currency": cur},
                          "description": p.description or _describe(p, cur)})
    discount = subtotal - remaining
    shipping = 0 if free_shipping else ctx.shipping.quote(cur, remaining, bool(lines))
    tax = ctx.tax.tax(remaining + shipping)
    priced_lines = {}
    for ln, sub, d in zip(lines, line_subs, line_disc, strict=True):
        current = ctx.current_prices.get(ln.variant_id, ln.unit_price)
        priced_lines[ln.line_id] = PricedLine(
            ln.line_id, sub, d, sub - d,
            current if current is not None and current != ln.unit_price else None)
    hints = []
    threshold = ctx.shipping.free_over.get(cur)
    if lines and shipping and threshold is not None and remaining < threshold:
        hints.append(f"add {format_amount(threshold - remaining, cur)} more for free shipping")
    return PricedCart(cur, priced_lines, discounts, subtotal, discount, shipping, tax,
                      remaining + shipping + tax, hints, errors)


def _describe(p: Promotion, currency: str) -> str:
    if p.kind == "percentage":
        return f"{p.value / 100:g}% off the cart"
    if p.kind == "fixed":
        return f"{format_amount(p.value, currency)} off the cart"
    return "free shipping"
