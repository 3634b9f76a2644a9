"""The cart aggregate: line items, coupon codes, status and inactivity deadline.

A cart belongs to one owner (a user id or a guest id) and has one currency. Each line item
keeps the product, variant, quantity, the unit price captured when it was added (minor units),
options, and when it was added and last updated (seconds since the epoch, from the caller's
clock). Adding the same variant with the same options adds to that line.

Every command checks everything before it changes anything: a raised error means the cart is
as it was. Times come in as ``now`` arguments; the engine never reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.catalog import Product, Variant
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.limits import (
    MAX_CODES_PER_CART,
    MAX_LINES_PER_CART,
    MAX_OPTION_LENGTH,
    MAX_OPTIONS,
    MAX_QUANTITY_PER_LINE,
    check_quantity,
)


class CartStatus(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    CHECKED_OUT = "checked_out"
    MERGED = "merged"


@dataclass(slots=True)
class LineItem:
    """One line of a cart. ``unit_price`` is minor units of the cart's currency, captured on add."""

    line_id: str
    product_id: str
    variant_id: str
    sku: str
    name: str
    quantity: int
    unit_price: int
    options: dict[str, str]
    added_at: float
    updated_at: float
    category: str = ""
    #: Until when (epoch seconds) stock is held for this line at its inventory actor
    #: (hold-on-add variants); None when nothing is held.
    hold_until: float | None = None

    def same_item(self, variant_id: str, options: Mapping[str, str]) -> bool:
        return self.variant_id == variant_id and self.options == options


@dataclass(slots=True)
class Cart:
    """A shopping cart. Times are epoch seconds; ``expires_at`` is the inactivity deadline."""

    cart_id: str
    owner: str
    currency: str
    created_at: float
    updated_at: float
    expires_at: float
    status: CartStatus = CartStatus.ACTIVE
    version: int = 0
    lines: dict[str, LineItem] = field(default_factory=dict)
    codes: list[str] = field(default_factory=list)
    line_seq: int = 0
    order_id: str | None = None
    merged_into: str | None = None
    #: The owner's membership tiers (from the identity token), for group-only promotions.
    customer_groups: tuple[str, ...] = ()
    #: Guest carts already merged into this one (a repeated merge changes nothing).
    merged_from: tuple[str, ...] = ()

    # -- queries ---------------------------------------------------------------------------
    def line(self, line_id: str) -> LineItem:
        """The line ``line_id``.

        Raises:
            NotFound: ``line_not_found``.
        """
        ln = self.lines.get(line_id)
        if ln is None:
            raise NotFound("line_not_found", f"cart has no line {line_id!r}",
                           [{"field": "line_id", "value": line_id}])
        return ln

    def find_line(self, variant_id: str, options: Mapping[str, str]) -> LineItem | None:
        for ln in self.lines.values():
            if ln.same_item(variant_id, options):
                return ln
        return None

    @property
    def is_active(self) -> bool:
        return self.status is CartStatus.ACTIVE

    def ensure_active(self) -> None:
        """Raises: Conflict ``cart_not_active`` unless the cart is active."""
        if self.status is not CartStatus.ACTIVE:
            raise Conflict("cart_not_active", f"cart is {self.status.value}",
                           [{"status": self.status.value}])

    def check_version(self, expected: int | None) -> None:
        """Optimistic concurrency (RFC 7232 If-Match): Raises Conflict ``version_mismatch``."""
        if expected is not None and expected != self.version:
            raise Conflict("version_mismatch",
                           f"cart is at version {self.version}, not {expected}",
                           [{"expected": expected, "actual": self.version}])

    # -- commands --------------------------------------------------------------------------
    def add_item(self, product: Product, variant: Variant, quantity: int,
                 options: Mapping[str, str] | None, unit_price: int, now: float,
                 ttl: float) -> LineItem:
        """Add ``quantity`` of ``variant`` at ``unit_price`` minor units; merge into an equal line.

        Raises:
            Conflict: ``cart_not_active``.
            ValidationFailed: ``invalid_quantity`` (also when the merged line would pass 999),
            ``invalid_options``, ``too_many_lines`` (more than 100 lines).
        """
        self.ensure_active()
        check_quantity(quantity)
        opts = normalize_options(options)
        existing = self.find_line(variant.variant_id, opts)
        if existing is not None:
            total = existing.quantity + quantity
            if total > MAX_QUANTITY_PER_LINE:
                raise ValidationFailed(
                    "invalid_quantity",
                    f"line would hold {total}; at most {MAX_QUANTITY_PER_LINE} per line",
                    [{"line_id": existing.line_id, "quantity": existing.quantity}],
                )
            existing.quantity = total
            existing.updated_at = now
            self.touch(now, ttl)
            return existing
        if len(self.lines) >= MAX_LINES_PER_CART:
            raise ValidationFailed("too_many_lines",
                                   f"a cart holds at most {MAX_LINES_PER_CART} lines")
        self.line_seq += 1
        ln = LineItem(
            line_id=f"ln_{self.line_seq}", product_id=product.product_id,
            variant_id=variant.variant_id, sku=variant.sku, name=product.name,
            quantity=quantity, unit_price=unit_price, options=opts, added_at=now,
            updated_at=now, category=product.category,
        )
        self.lines[ln.line_id] = ln
        self.touch(now, ttl)
        return ln

    def set_quantity(self, line_id: str, quantity: int, now: float, ttl: float) -> LineItem | None:
        """Set a line's quantity; 0 removes the line (and returns None).

        Raises:
            Conflict ``cart_not_active``; NotFound ``line_not_found``;
            ValidationFailed ``invalid_quantity``.
        """
        self.ensure_active()
        check_quantity(quantity, allow_zero=True)
        ln = self.line(line_id)
        if quantity == 0:
            del self.lines[line_id]
            self.touch(now, ttl)
            return None
        ln.quantity = quantity
        ln.updated_at = now
        self.touch(now, ttl)
        return ln

    def remove_line(self, line_id: str, now: float, ttl: float) -> LineItem:
        """Remove a line and return it.

        Raises Conflict ``cart_not_active``, NotFound ``line_not_found``.
        """
        self.ensure_active()
        ln = self.line(line_id)
        del self.lines[line_id]
        self.touch(now, ttl)
        return ln

    def add_code(self, code: str, now: float, ttl: float) -> str:
        """Attach a coupon code (stored upper-case; codes are case-insensitive).

        Raises:
            Conflict ``cart_not_active``; ValidationFailed ``too_many_codes`` (more than 10),
            ``invalid_code``.
        """
        self.ensure_active()
        norm = normalize_code(code)
        if norm in self.codes:
            return norm
        if len(self.codes) >= MAX_CODES_PER_CART:
            raise ValidationFailed("too_many_codes",
                                   f"a cart takes at most {MAX_CODES_PER_CART} codes")
        self.codes.append(norm)
        self.touch(now, ttl)
        return norm

    def remove_code(self, code: str, now: float, ttl: float) -> None:
        """Raises Conflict ``cart_not_active``; NotFound ``code_not_applied``."""
        self.ensure_active()
        norm = normalize_code(code)
        if norm not in self.codes:
            raise NotFound("code_not_applied", f"code {norm!r} is not on this cart")
        self.codes.remove(norm)
        self.touch(now, ttl)

    def touch(self, now: float, ttl: float) -> None:
        """Record activity: bump the version, move ``updated_at`` and the inactivity deadline."""
        self.version += 1
        self.updated_at = now
        self.expires_at = now + ttl

    def expire(self, now: float) -> list[LineItem]:
        """Mark the cart expired; return the lines that held stock (to be released)."""
        return self._finish(CartStatus.EXPIRED, now)

    def check_out(self, order_id: str, now: float) -> None:
        """Mark the cart checked out by order ``order_id`` (its holds became the order's)."""
        self._finish(CartStatus.CHECKED_OUT, now)
        self.order_id = order_id

    def mark_merged(self, into_cart_id: str, now: float) -> None:
        """Mark the cart merged into ``into_cart_id`` (its holds are released by the caller)."""
        self._finish(CartStatus.MERGED, now)
        self.merged_into = into_cart_id

    def _finish(self, status: CartStatus, now: float) -> list[LineItem]:
        """End an active cart in ``status``: clear every hold; return the lines that held.

        Raises Conflict ``cart_not_active``.
        """
        self.ensure_active()
        held = [ln for ln in self.lines.values() if ln.hold_until is not None]
        for ln in held:
            ln.hold_until = None
        self.status = status
        self.version += 1
        self.updated_at = now
        return held

def normalize_code(code: object) -> str:
    """Coupon codes are case-insensitive: strip and upper-case.

    Raises ValidationFailed ``invalid_code``.
    """
    if not isinstance(code, str) or not 0 < len(code.strip()) <= 64:
        raise ValidationFailed("invalid_code", "a code is 1..64 characters", [{"field": "code"}])
    return code.strip().upper()


def normalize_options(options: Mapping[str, Any] | None) -> dict[str, str]:
    """Line options (gift wrap, engraving...) as a string -> string dict, sorted by key.

    Raises:
        ValidationFailed: ``invalid_options`` (more than 10, non-string, longer than 200).
    """
    if not options:
        return {}
    if not isinstance(options, Mapping) or len(options) > MAX_OPTIONS:
        raise ValidationFailed("invalid_options",
                               f"options is an object of at most {MAX_OPTIONS} entries")
    out: dict[str, str] = {}
    if not all(isinstance(k, str) for k in options):
        raise ValidationFailed("invalid_options", "option names are strings")
    for k, v in sorted(options.items()):
        if not isinstance(v, str | int | bool) or \
                len(k) > MAX_OPTION_LENGTH or len(str(v)) > MAX_OPTION_LENGTH:
            raise ValidationFailed(
                "invalid_options",
                f"option names and values are strings of at most {MAX_OPTION_LENGTH} characters",
            )
        out[k] = str(v)
    return out
