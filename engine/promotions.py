"""Promotions and coupon codes (basic kinds; the full rule engine builds on this).

A promotion is activated by a coupon code (case-insensitive) or automatically (no code).
Kinds here: ``percentage`` (``value`` in basis points, 1000 = 10 %) and ``fixed``
(``value`` in minor units of ``currency``) off the cart subtotal, and ``free_shipping``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.cart import normalize_code
from engine.errors import ValidationFailed
from engine.limits import check_id
from engine.money import MAX_AMOUNT, check_currency

KINDS = ("percentage", "fixed", "free_shipping")


@dataclass(frozen=True, slots=True)
class Promotion:
    """A promotion. ``value``: basis points (percentage) or minor units (fixed)."""

    promotion_id: str
    kind: str
    value: int = 0
    currency: str | None = None
    code: str | None = None
    description: str = ""
    min_subtotal: int = 0
    starts_at: float | None = None
    ends_at: float | None = None
    usage_limit: int | None = None


def promotion_from_dict(promotion_id: str, body: Mapping[str, Any]) -> Promotion:
    """Build a promotion from the admin API body.

    Body: ``{kind, value, currency?, code?, description?, min_subtotal?, starts_at?, ends_at?,
    usage_limit?}``; times are epoch seconds.

    Raises:
        ValidationFailed: ``invalid_promotion`` with the field at fault.
    """
    check_id(promotion_id, "promotion_id")
    kind = body.get("kind")
    if kind not in KINDS:
        raise ValidationFailed("invalid_promotion", f"kind must be one of {', '.join(KINDS)}",
                               [{"field": "kind"}])
    value = body.get("value", 0)
    if type(value) is not int or value < 0 or value > MAX_AMOUNT or \
            (kind == "percentage" and not 0 < value <= 10_000):
        raise ValidationFailed("invalid_promotion",
                               "value is basis points 1..10000 for percentage, minor units for fixed",
                               [{"field": "value"}])
    currency = body.get("currency")
    if kind == "fixed":
        if not isinstance(currency, str):
            raise ValidationFailed("invalid_promotion", "a fixed promotion needs a currency",
                                   [{"field": "currency"}])
        check_currency(currency)
    code = body.get("code")
    min_subtotal = body.get("min_subtotal", 0)
    if type(min_subtotal) is not int or min_subtotal < 0:
        raise ValidationFailed("invalid_promotion", "min_subtotal is minor units >= 0",
                               [{"field": "min_subtotal"}])
    limit = body.get("usage_limit")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise ValidationFailed("invalid_promotion", "usage_limit is a whole number >= 1",
                               [{"field": "usage_limit"}])
    return Promotion(
        promotion_id=promotion_id, kind=kind, value=value, currency=currency,
        code=normalize_code(code) if code else None,
        description=str(body.get("description") or ""),
        min_subtotal=min_subtotal,
        starts_at=body.get("starts_at"), ends_at=body.get("ends_at"), usage_limit=limit,
    )
