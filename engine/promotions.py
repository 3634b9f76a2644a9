"""Promotions and coupon codes: what a promotion is, whom and what it applies to.

A promotion is activated by a coupon code (case-insensitive, stored upper-case) or
automatically (``code`` None). The math is the ``kind``:

- ``percentage``: ``value`` basis points off (1000 = 10 %) of what the target covers;
- ``fixed``: an amount off, in minor units *per currency* (``amounts``; a cart in a currency
  with no amount is not eligible: ``currency_mismatch``);
- ``free_shipping``: the shipping charge drops to 0;
- ``buy_x_get_y``: for every ``buy_quantity + get_quantity`` eligible units, the
  ``get_quantity`` cheapest get ``value`` basis points off (10000 = free); with a
  ``get_target``, every ``buy_quantity`` units of the target earn ``get_quantity`` units of the
  get target ("buy 2 shoes, get a pair of socks free").

``max_discounts`` optionally caps what one promotion takes off a cart, per currency ("20 %
off, up to 50.00 USD"); a cart in a currency without a cap is uncapped.

The ``target`` says what is discounted: the whole cart, listed products, variants or
categories (each with exclusions), or shipping. Line targets (and ``buy_x_get_y``, and
``allocation="each"``) are *line promotions*; a cart target is a *cart promotion*, spread over
the lines; ``membership=True`` marks a group-only cart promotion applied after the other cart
promotions. Pricing (``engine.pricing``) applies them in that order; this module only holds
the data, the admin JSON parser and small queries. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.cart import LineItem, normalize_code
from engine.errors import DomainError, ValidationFailed
from engine.limits import MAX_ID_LENGTH, MAX_QUANTITY_PER_LINE, check_id
from engine.money import MAX_AMOUNT, check_currency
from engine.timefmt import rfc3339

KINDS = ("percentage", "fixed", "free_shipping", "buy_x_get_y")
TARGET_TYPES = ("cart", "products", "variants", "categories", "shipping")
LINE_TARGET_TYPES = ("products", "variants", "categories")
ALLOCATIONS = ("across", "each")

#: Priorities are small integers; higher applies first and wins ties.
MAX_PRIORITY = 1_000_000
MAX_DESCRIPTION = 500
MAX_TARGET_IDS = 1_000
MAX_GROUPS = 100

_FIELDS = frozenset({
    "promotion_id", "kind", "value", "currency", "values", "code", "description", "target",
    "allocation", "buy_quantity", "get_quantity", "get_percent", "min_subtotal", "min_quantity",
    "starts_at", "ends_at", "usage_limit", "per_customer_limit", "customer_groups",
    "stackable", "priority", "membership", "max_discount", "get_target", "active",
})


@dataclass(frozen=True, slots=True)
class Target:
    """What a promotion discounts.

    ``type``: ``cart`` (every line), ``products`` / ``variants`` / ``categories`` (lines whose
    product id / variant id / category is in ``ids``) or ``shipping``. Whatever the type, a line
    whose product id or variant id is in ``exclude_ids``, or whose category is in
    ``exclude_categories``, is never discounted (e.g. "20 % off everything but gift cards").
    """

    type: str = "cart"
    ids: frozenset[str] = frozenset()
    exclude_ids: frozenset[str] = frozenset()
    exclude_categories: frozenset[str] = frozenset()

    def matches(self, line: LineItem) -> bool:
        """Whether ``line`` is discounted by a promotion with this target (never for shipping)."""
        if self.type == "shipping":
            return False
        if line.product_id in self.exclude_ids or line.variant_id in self.exclude_ids:
            return False
        if line.category and line.category in self.exclude_categories:
            return False
        if self.type == "cart":
            return True
        if self.type == "products":
            return line.product_id in self.ids
        if self.type == "variants":
            return line.variant_id in self.ids
        return bool(line.category) and line.category in self.ids

    def describe(self) -> str:
        """Words for explanations: ``"the cart"``, ``"category shoes"``, ``"shipping"``..."""
        if self.type == "cart":
            what = "the cart"
        elif self.type == "shipping":
            return "shipping"
        else:
            noun = {"products": "product", "variants": "item", "categories": "category"}[self.type]
            ids = sorted(self.ids)
            shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            what = f"{noun}{'s' if len(ids) > 1 else ''} {shown}"
        excluded = sorted(self.exclude_ids | self.exclude_categories)
        if excluded:
            what += f" (except {', '.join(excluded[:3])}{' and more' if len(excluded) > 3 else ''})"
        return what


@dataclass(frozen=True, slots=True)
class Promotion:
    """A promotion or coupon. Amounts are minor units, rates basis points, times epoch seconds.

    ``value``: basis points for ``percentage`` and ``buy_x_get_y`` (10000 = free), minor units
    of ``currency`` for ``fixed`` (legacy single-currency form; ``amounts`` holds
    ``(currency, minor units)`` pairs for every currency). ``min_subtotal`` applies in every
    currency unless ``min_subtotals`` names that currency. Validity is
    ``starts_at <= now < ends_at``. ``usage_limit`` is global (counted by the promotion-usage
    actor, which tells pricing through ``PricingContext.usage_exhausted``);
    ``per_customer_limit`` counts a customer's past uses (``PricingContext.customer_uses``).
    ``customer_groups`` empty means everyone. ``stackable=False`` makes the promotion
    exclusive: it applies alone or not at all. Higher ``priority`` applies first and wins ties.

    ``max_discounts``: ``(currency, minor units)`` pairs, each > 0: the most this promotion
    takes off one cart in that currency (items, or shipping for a shipping target); a currency
    without a pair is uncapped. ``get_target`` (``buy_x_get_y`` only, a line target): the units
    rewarded, when they differ from the units bought (``target``); None = the same units.
    """

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
    amounts: tuple[tuple[str, int], ...] = ()
    target: Target = field(default_factory=Target)
    allocation: str = "across"
    buy_quantity: int = 0
    get_quantity: int = 0
    min_quantity: int = 0
    min_subtotals: tuple[tuple[str, int], ...] = ()
    per_customer_limit: int | None = None
    customer_groups: frozenset[str] = frozenset()
    stackable: bool = True
    priority: int = 0
    membership: bool = False
    max_discounts: tuple[tuple[str, int], ...] = ()
    get_target: Target | None = None
    #: False: kept but not applied; its code answers ``code_inactive``.
    active: bool = True

    def amount_in(self, currency: str) -> int | None:
        """Fixed amount in ``currency`` (minor units), or None when it has none there."""
        for cur, amount in self.amounts:
            if cur == currency:
                return amount
        if self.currency == currency:
            return self.value
        return None

    def cap_in(self, currency: str) -> int | None:
        """Most this promotion takes off a cart in ``currency`` (minor units); None: no cap."""
        for cur, amount in self.max_discounts:
            if cur == currency:
                return amount
        return None

    def minimum_in(self, currency: str) -> int:
        """Minimum cart subtotal (before discounts) in ``currency``, minor units."""
        for cur, amount in self.min_subtotals:
            if cur == currency:
                return amount
        return self.min_subtotal

    @property
    def percent_bp(self) -> int:
        """Basis points off for ``percentage`` and ``buy_x_get_y`` (default 10000: free)."""
        if self.kind == "buy_x_get_y" and self.value == 0:
            return 10_000
        return self.value

    @property
    def stage(self) -> str:
        """Pipeline stage: ``line``, ``cart``, ``membership`` or ``shipping``."""
        if self.kind == "free_shipping" or self.target.type == "shipping":
            return "shipping"
        if self.kind == "buy_x_get_y" or self.target.type in LINE_TARGET_TYPES \
                or self.allocation == "each":
            return "line"
        return "membership" if self.membership else "cart"

    def is_active(self, now: float) -> bool:
        """Whether ``now`` (epoch seconds) is inside ``[starts_at, ends_at)``."""
        return (self.starts_at is None or now >= self.starts_at) and \
            (self.ends_at is None or now < self.ends_at)


def sort_key(p: Promotion) -> tuple[int, str]:
    """Application order and tie-break: higher ``priority`` first, then ``promotion_id``."""
    return (-p.priority, p.promotion_id)


# -- admin JSON ----------------------------------------------------------------------------

def _fail(field_name: str, message: str) -> ValidationFailed:
    return ValidationFailed("invalid_promotion", message, [{"field": field_name}])


def _int(body: Mapping[str, Any], name: str, low: int, high: int, default: int) -> int:
    v = body.get(name)
    if v is None:
        return default
    if type(v) is not int or not low <= v <= high:
        raise _fail(name, f"{name} must be a whole number from {low} to {high}")
    return v


def _opt_int(body: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    if body.get(name) is None:
        return None
    return _int(body, name, low, high, 0)


def _bool(body: Mapping[str, Any], name: str, default: bool) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise _fail(name, f"{name} must be true or false")
    return v


def _time(body: Mapping[str, Any], name: str) -> float | None:
    """Epoch seconds, or an RFC 3339 string with a UTC offset (``2026-11-27T00:00:00Z``)."""
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool):
        raise _fail(name, f"{name} is epoch seconds or an RFC 3339 time")
    if isinstance(v, int | float):
        if not math.isfinite(v) or v < 0:
            raise _fail(name, f"{name} must be a finite, non-negative number of seconds")
        return float(v)
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.strip())
        except ValueError:
            raise _fail(name, f"{name} is not an RFC 3339 time: {v!r}") from None
        if dt.tzinfo is None:
            raise _fail(name, f"{name} needs a UTC offset (e.g. 'Z'): {v!r}")
        return dt.timestamp()
    raise _fail(name, f"{name} is epoch seconds or an RFC 3339 time")


def _money_list(raw: object, name: str, low: int = 0) -> tuple[tuple[str, int], ...]:
    """A Money or a list of Money -> sorted ``(currency, amount)`` pairs; one per currency.

    Each amount is minor units in ``low..MAX_AMOUNT``; the currency an ISO 4217 code.
    """
    entries = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(entries, list | tuple):
        raise _fail(name, f"{name} is a money object or a list of them")
    out: dict[str, int] = {}
    for m in entries:
        if not isinstance(m, Mapping):
            raise _fail(name, f"{name}: each amount is {{amount, currency}}")
        amount, currency = m.get("amount"), m.get("currency")
        if type(amount) is not int or not low <= amount <= MAX_AMOUNT:
            raise _fail(name, f"{name}: amount is an integer of minor units in "
                              f"{low}..{MAX_AMOUNT}")
        if not isinstance(currency, str):
            raise _fail(name, f"{name}: currency is required")
        try:
            check_currency(currency)
        except DomainError as e:
            raise _fail(name, e.message) from None
        if currency in out and out[currency] != amount:
            raise _fail(name, f"{name}: two different amounts for {currency}")
        out[currency] = amount
    return tuple(sorted(out.items()))


def _strings(raw: object, name: str, ids: bool, limit: int) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list | tuple) or len(raw) > limit:
        raise _fail(name, f"{name} is a list of at most {limit} strings")
    out = set()
    for i, v in enumerate(raw):
        if ids:
            try:
                check_id(v, f"{name}[{i}]")
            except DomainError:
                raise _fail(name, f"{name}[{i}] is not a valid id") from None
        elif not isinstance(v, str) or not 0 < len(v.strip()) <= MAX_ID_LENGTH:
            raise _fail(name, f"{name}[{i}] must be a non-empty string of at most "
                              f"{MAX_ID_LENGTH} characters")
        assert isinstance(v, str)
        out.add(v if ids else v.strip())
    return frozenset(out)


def _target(raw: object, kind: str, name: str = "target") -> Target:
    """The ``target`` (or ``get_target``, by ``name``) object; errors name ``name.field``."""
    if raw is None:
        return Target("shipping" if kind == "free_shipping" else "cart")
    if not isinstance(raw, Mapping):
        raise _fail(name, f"{name} is an object {{type, ids?, exclude_ids?, exclude_categories?}}")
    unknown = set(raw) - {"type", "ids", "exclude_ids", "exclude_categories"}
    if unknown:
        raise _fail(name, f"{name} has unknown fields: {', '.join(sorted(unknown))}")
    ttype = raw.get("type", "cart")
    if ttype not in TARGET_TYPES:
        raise _fail(f"{name}.type", f"{name}.type must be one of {', '.join(TARGET_TYPES)}")
    ids = _strings(raw.get("ids"), f"{name}.ids", ttype != "categories", MAX_TARGET_IDS)
    if ttype in LINE_TARGET_TYPES and not ids:
        raise _fail(f"{name}.ids", f"a {ttype} target needs at least one id")
    if ttype in ("cart", "shipping") and ids:
        raise _fail(f"{name}.ids", f"a {ttype} target takes no ids")
    excl = _strings(raw.get("exclude_ids"), f"{name}.exclude_ids", True, MAX_TARGET_IDS)
    excl_cat = _strings(raw.get("exclude_categories"), f"{name}.exclude_categories", False,
                        MAX_TARGET_IDS)
    if ttype == "shipping" and (excl or excl_cat):
        raise _fail(name, "a shipping target takes no exclusions")
    if kind == "free_shipping" and ttype != "shipping":
        raise _fail(f"{name}.type", "free_shipping applies to shipping only")
    if kind == "buy_x_get_y" and ttype == "shipping":
        raise _fail(f"{name}.type", "buy_x_get_y applies to items, not shipping")
    return Target(ttype, ids, excl, excl_cat)


def promotion_from_dict(promotion_id: str, body: Mapping[str, Any]) -> Promotion:
    """Build a promotion from the admin API body (``PUT /v1/admin/promotions/{promotion_id}``).

    Body (JSON; amounts in minor units, rates in basis points, 1000 = 10 %)::

        {"kind": "percentage" | "fixed" | "free_shipping" | "buy_x_get_y",
         "value": int,                 # percentage: 1..10000 bp; fixed: minor units of
                                       # "currency"; buy_x_get_y: bp off the free units
                                       # (default 10000 = free); free_shipping: omit
         "currency": "USD",            # fixed, with "value"
         "values": [Money, ...],       # fixed: one amount per currency (with or instead of
                                       # value + currency)
         "code": "SAVE10",             # optional; absent = automatic promotion
         "description": "str",         # shown to shoppers; generated when absent
         "target": {"type": "cart" | "products" | "variants" | "categories" | "shipping",
                    "ids": [...], "exclude_ids": [product or variant ids],
                    "exclude_categories": [...]},   # default cart (shipping for free_shipping)
         "allocation": "across" | "each",  # fixed: once, spread over the targeted lines
                                           # (default), or off each targeted unit
         "buy_quantity": X, "get_quantity": Y,     # buy_x_get_y, 1..999 each
         "get_percent": 1..100,        # buy_x_get_y alias of value in whole percent
         "get_target": {"type": "products" | "variants" | "categories", "ids": [...],
                        "exclude_ids": [...], "exclude_categories": [...]},
                                       # buy_x_get_y: the units rewarded, when not the
                                       # target's own (buy 2 shoes, get socks); see pricing
         "max_discount": Money | [Money],  # most taken off one cart, per currency, each
                                           # 1..MAX_AMOUNT; no amount in the cart's
                                           # currency = uncapped; not for free_shipping
         "min_subtotal": int | Money | [Money],   # int: any currency; before discounts
         "min_quantity": int,          # eligible units in the cart
         "starts_at": epoch seconds | RFC 3339, "ends_at": same  (valid starts_at <= now < ends_at)
         "usage_limit": int >= 1,      # all customers together
         "per_customer_limit": int >= 1,   # needs a known customer
         "customer_groups": ["gold", ...], # membership tiers; empty = everyone
         "stackable": bool (default true), # false = exclusive: applies alone
         "priority": int (default 0),      # higher applies first and wins ties
         "membership": bool (default false)}   # cart-wide group discount applied after
                                               # the other cart promotions

    Unknown fields are refused, so that a misspelt condition cannot silently widen a promotion.
    ``max_discount`` caps ``percentage`` and ``buy_x_get_y`` (the usual "20 % off, up to 50.00
    USD") and ``fixed`` too (it bites on ``allocation="each"``: "2.00 USD off each, up to
    20.00 USD"); ``free_shipping`` refuses it (use ``fixed`` on a shipping target instead).

    Raises:
        ValidationFailed: ``invalid_promotion`` with ``details[0]["field"]`` naming the field.
    """
    try:
        check_id(promotion_id, "promotion_id")
    except DomainError:
        raise _fail("promotion_id", "promotion_id is not a valid id") from None
    if not isinstance(body, Mapping):
        raise _fail("body", "a promotion is a JSON object")
    unknown = set(body) - _FIELDS
    if unknown:
        raise _fail(sorted(unknown)[0], f"unknown fields: {', '.join(sorted(unknown))}")
    if body.get("promotion_id") not in (None, promotion_id):
        raise _fail("promotion_id", "promotion_id in the body differs from the path")
    kind = body.get("kind")
    if kind not in KINDS:
        raise _fail("kind", f"kind must be one of {', '.join(KINDS)}")
    assert isinstance(kind, str)

    value = body.get("value")
    currency = body.get("currency")
    amounts: tuple[tuple[str, int], ...] = ()
    if value is not None and (type(value) is not int or value < 0):
        raise _fail("value", "value must be a whole number >= 0")
    if kind == "percentage":
        if value is None or not 0 < value <= 10_000:
            raise _fail("value", "a percentage value is basis points from 1 to 10000")
    elif kind == "fixed":
        pairs: dict[str, int] = dict(_money_list(body["values"], "values")) \
            if body.get("values") is not None else {}
        if value is not None or currency is not None:
            if value is None or not isinstance(currency, str):
                raise _fail("currency", "a fixed value needs a currency (or use values)")
            try:
                check_currency(currency)
            except DomainError as e:
                raise _fail("currency", e.message) from None
            if not 0 < value <= MAX_AMOUNT:
                raise _fail("value", f"a fixed value is minor units from 1 to {MAX_AMOUNT}")
            if pairs.get(currency, value) != value:
                raise _fail("values", f"values and value disagree on {currency}")
            pairs[currency] = value
        if not pairs or not all(a > 0 for a in pairs.values()):
            raise _fail("values", "a fixed promotion needs an amount > 0 in at least one currency")
        amounts = tuple(sorted(pairs.items()))
        if currency is None:
            currency, value = amounts[0]
    elif kind == "buy_x_get_y":
        pct = body.get("get_percent")
        if pct is not None:
            if type(pct) is not int or not 0 < pct <= 100:
                raise _fail("get_percent", "get_percent is a whole percent from 1 to 100")
            if value is not None and value != pct * 100:
                raise _fail("value", "value and get_percent disagree")
            value = pct * 100
        if value is None:
            value = 10_000
        if not 0 < value <= 10_000:
            raise _fail("value", "buy_x_get_y value is basis points off from 1 to 10000")
    else:
        if value:
            raise _fail("value", "free_shipping takes no value")
        value = 0
    if kind != "fixed" and body.get("values") is not None:
        raise _fail("values", "values (per-currency amounts) are for fixed promotions")
    if kind != "fixed" and currency is not None:
        raise _fail("currency", "currency is for fixed promotions")
    assert isinstance(value, int)

    target = _target(body.get("target"), kind)
    allocation = body.get("allocation", "across")
    if allocation not in ALLOCATIONS:
        raise _fail("allocation", "allocation is 'across' or 'each'")
    if allocation == "each" and (kind != "fixed" or target.type == "shipping"):
        raise _fail("allocation", "allocation 'each' is for fixed promotions on items")

    buy_q = _int(body, "buy_quantity", 1, MAX_QUANTITY_PER_LINE, 0)
    get_q = _int(body, "get_quantity", 1, MAX_QUANTITY_PER_LINE, 0)
    if kind == "buy_x_get_y" and not (buy_q and get_q):
        raise _fail("buy_quantity", "buy_x_get_y needs buy_quantity and get_quantity")
    if kind != "buy_x_get_y" and (buy_q or get_q or body.get("get_percent") is not None):
        raise _fail("buy_quantity", "buy_quantity/get_quantity are for buy_x_get_y")
    get_target: Target | None = None
    if body.get("get_target") is not None:
        if kind != "buy_x_get_y":
            raise _fail("get_target", "get_target is for buy_x_get_y promotions")
        get_target = _target(body["get_target"], kind, "get_target")
        if get_target.type not in LINE_TARGET_TYPES:
            raise _fail("get_target.type",
                        f"get_target.type must be one of {', '.join(LINE_TARGET_TYPES)}")

    max_discounts: tuple[tuple[str, int], ...] = ()
    if body.get("max_discount") is not None:
        if kind == "free_shipping":
            raise _fail("max_discount", "free_shipping takes no max_discount (use a fixed "
                                        "amount off a shipping target)")
        max_discounts = _money_list(body["max_discount"], "max_discount", low=1)
        if not max_discounts:
            raise _fail("max_discount", "max_discount needs an amount in at least one currency")

    raw_min = body.get("min_subtotal")
    min_subtotal = 0
    min_subtotals: tuple[tuple[str, int], ...] = ()
    if isinstance(raw_min, Mapping | list | tuple):
        min_subtotals = _money_list(raw_min, "min_subtotal")
    elif raw_min is not None:
        min_subtotal = _int(body, "min_subtotal", 0, MAX_AMOUNT, 0)
    min_quantity = _int(body, "min_quantity", 0, 100 * MAX_QUANTITY_PER_LINE, 0)

    starts_at, ends_at = _time(body, "starts_at"), _time(body, "ends_at")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise _fail("ends_at", "ends_at must be after starts_at")

    code = body.get("code")
    norm_code: str | None = None
    if code is not None:
        try:
            norm_code = normalize_code(code)
        except DomainError:
            raise _fail("code", "a code is 1..64 characters") from None
    description = body.get("description") or ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise _fail("description", f"description is a string of at most {MAX_DESCRIPTION}")

    groups = _strings(body.get("customer_groups"), "customer_groups", False, MAX_GROUPS)
    membership = _bool(body, "membership", False)
    if membership and (not groups or target.type != "cart" or kind not in ("percentage", "fixed")
                       or allocation != "across"):
        raise _fail("membership", "a membership discount is a percentage or fixed amount off "
                                  "the cart for named customer_groups")
    return Promotion(
        promotion_id=promotion_id, kind=kind, value=value,
        currency=currency if kind == "fixed" else None, code=norm_code,
        description=description.strip(), min_subtotal=min_subtotal,
        starts_at=starts_at, ends_at=ends_at,
        usage_limit=_opt_int(body, "usage_limit", 1, 10**9),
        amounts=amounts, target=target, allocation=allocation,
        buy_quantity=buy_q, get_quantity=get_q, min_quantity=min_quantity,
        min_subtotals=min_subtotals,
        per_customer_limit=_opt_int(body, "per_customer_limit", 1, 10**6),
        customer_groups=groups, stackable=_bool(body, "stackable", True),
        priority=_int(body, "priority", -MAX_PRIORITY, MAX_PRIORITY, 0), membership=membership,
        max_discounts=max_discounts, get_target=get_target,
        active=_bool(body, "active", True),
    )


def _target_to_dict(t: Target) -> dict[str, Any]:
    return {"type": t.type, "ids": sorted(t.ids), "exclude_ids": sorted(t.exclude_ids),
            "exclude_categories": sorted(t.exclude_categories)}


def promotion_to_dict(p: Promotion) -> dict[str, Any]:
    """The admin JSON of ``p`` (times as RFC 3339); ``promotion_from_dict`` reads it back."""
    out: dict[str, Any] = {"promotion_id": p.promotion_id, "kind": p.kind}
    if p.kind == "fixed":
        if p.currency is not None:
            out["value"], out["currency"] = p.value, p.currency
        pairs = dict(p.amounts)
        if p.currency is not None:
            pairs.setdefault(p.currency, p.value)
        out["values"] = [{"amount": a, "currency": c} for c, a in sorted(pairs.items())]
    elif p.kind != "free_shipping":
        out["value"] = p.percent_bp
    out["code"] = p.code
    out["description"] = p.description
    out["target"] = _target_to_dict(p.target)
    out["allocation"] = p.allocation
    if p.kind == "buy_x_get_y":
        out["buy_quantity"], out["get_quantity"] = p.buy_quantity, p.get_quantity
        out["get_target"] = _target_to_dict(p.get_target) if p.get_target else None
    out["max_discount"] = [{"amount": a, "currency": c} for c, a in p.max_discounts] \
        if p.max_discounts else None
    out["min_subtotal"] = [{"amount": a, "currency": c} for c, a in p.min_subtotals] \
        if p.min_subtotals else p.min_subtotal
    out["min_quantity"] = p.min_quantity
    out["starts_at"] = rfc3339(p.starts_at)
    out["ends_at"] = rfc3339(p.ends_at)
    out["usage_limit"] = p.usage_limit
    out["per_customer_limit"] = p.per_customer_limit
    out["customer_groups"] = sorted(p.customer_groups)
    out["stackable"] = p.stackable
    out["priority"] = p.priority
    out["membership"] = p.membership
    out["active"] = p.active
    return out


def codes_index(promotions: Iterable[Promotion]) -> dict[str, Promotion]:
    """Code -> promotion for the promotions that have a code (what ``PricingContext`` wants)."""
    return {p.code: p for p in promotions if p.code is not None}
