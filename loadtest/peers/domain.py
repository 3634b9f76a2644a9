"""The pure part of the baseline peers: catalog, cart, totals, stock ledger, orders, payment.

Shared by every peer so that they differ only in where state lives (a dict, Redis hashes, one
Ray actor per cart). Nothing here does I/O; times come in as RFC 3339 UTC strings.

Money is an integer amount of minor units (ISO 4217 exponent; the peers price everything in one
currency per product and carts in USD unless the first line says otherwise). Quantities are
integer units.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

#: Largest quantity of one line, in units.
MAX_QUANTITY = 999
#: Largest number of lines in one cart.
MAX_LINES = 100
#: A cart's inactivity timeout (reported in `expires_at`; the peers do not expire carts).
CART_TTL = timedelta(minutes=30)


class ApiError(Exception):
    """A failure with its HTTP status and the API.md error body (`code`, `message`, `details`).

    The arguments are kept in `args` so the error pickles (it crosses Ray process boundaries).
    """

    def __init__(
        self, status: int, code: str, message: str, details: list[Any] | None = None
    ) -> None:
        super().__init__(status, code, message, details)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        """The API.md error body."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def utc_now() -> str:
    """The current time as an RFC 3339 UTC string with second precision."""
    return format_time(datetime.now(UTC))


def format_time(moment: datetime) -> str:
    """`moment` (timezone-aware) as an RFC 3339 UTC string, e.g. 2026-11-22T01:14:44Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def money(amount: int, currency: str) -> dict[str, Any]:
    """The API.md money object: `amount` in minor units of `currency`."""
    return {"amount": amount, "currency": currency}


def new_id(prefix: str) -> str:
    """A random opaque id such as `cart_3f2a...` (128 random bits)."""
    return f"{prefix}_{uuid.uuid4().hex}"


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True, slots=True)
class Variant:
    """A sellable variant: its product, display name and unit price in minor units."""

    product_id: str
    variant_id: str
    name: str
    sku: str
    attributes: Mapping[str, str]
    price: int
    currency: str


class Catalog:
    """Products by id (API.md product bodies) and an index of their variants."""

    def __init__(self) -> None:
        self._products: dict[str, dict[str, Any]] = {}
        self._variants: dict[str, Variant] = {}

    @classmethod
    def from_entries(cls, entries: Iterable[Mapping[str, Any]]) -> tuple[Catalog, dict[str, int]]:
        """A catalog from catalog-file entries (each a product body with `product_id`).

        Returns the catalog and the initial stock (variant id -> units) the entries carry.
        """
        catalog, stock = cls(), {}
        for entry in entries:
            product_id = entry.get("product_id") or entry.get("id")
            if not isinstance(product_id, str):
                raise ValueError("every catalog entry needs a string product_id")
            stock.update(catalog.put(product_id, entry))
        return catalog, stock

    def put(self, product_id: str, body: Mapping[str, Any]) -> dict[str, int]:
        """Create or replace a product; returns the stock (variant -> units) it carries."""
        variants = body.get("variants") or [{"variant_id": product_id}]
        old = self._products.get(product_id)
        for variant in (old or {}).get("variants") or [{"variant_id": product_id}]:
            self._variants.pop(variant["variant_id"], None)
        self._products[product_id] = dict(body, variants=list(variants))
        stock: dict[str, int] = {}
        for raw in variants:
            price = raw.get("price") or body["price"]
            self._variants[raw["variant_id"]] = Variant(
                product_id=product_id,
                variant_id=raw["variant_id"],
                name=str(body["name"]),
                sku=str(raw.get("sku") or raw["variant_id"]),
                attributes=dict(raw.get("attributes") or {}),
                price=int(price["amount"]),
                currency=str(price["currency"]),
            )
            if raw.get("stock") is not None:
                stock[raw["variant_id"]] = int(raw["stock"])
        return stock

    def variant(self, product_id: str, variant_id: str | None) -> Variant:
        """The variant to sell; a product with one variant may omit `variant_id`.

        Raises ApiError 404 `product_not_found` / `variant_not_found`, 422 `variant_required`.
        """
        product = self._products.get(product_id)
        if product is None:
            raise ApiError(404, "product_not_found", f"no product {product_id!r}")
        if variant_id is None:
            if len(product["variants"]) != 1:
                raise ApiError(422, "variant_required", f"{product_id!r} has several variants")
            variant_id = product["variants"][0]["variant_id"]
        found = self._variants.get(variant_id)
        if found is None or found.product_id != product_id:
            raise ApiError(404, "variant_not_found", f"{product_id!r} has no {variant_id!r}")
        return found

    def variant_ids(self, product_id: str) -> list[str]:
        """The variant ids of a product (empty for an unknown product)."""
        product = self._products.get(product_id, {"variants": []})
        return [raw["variant_id"] for raw in product["variants"]]

    def page(self, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        """Up to `limit` product ids after `cursor` in id order, and the next cursor."""
        ids = sorted(pid for pid in self._products if cursor is None or pid > cursor)
        chosen = ids[:limit]
        return chosen, (chosen[-1] if len(ids) > limit else None)

    def product_json(self, product_id: str, available: Mapping[str, int]) -> dict[str, Any]:
        """The API.md Product; `available` maps variant id -> units available."""
        body = self._products[product_id]
        variants = [self._variants[raw["variant_id"]] for raw in body["variants"]]
        return {
            "product_id": product_id,
            "name": body["name"],
            "description": body.get("description", ""),
            "category": body.get("category", ""),
            "price": body["price"],
            "variants": [
                {
                    "variant_id": v.variant_id,
                    "sku": v.sku,
                    "attributes": dict(v.attributes),
                    "price": money(v.price, v.currency),
                    "available": available.get(v.variant_id, 0),
                }
                for v in variants
            ],
        }


# --------------------------------------------------------------------------- cart


def line_id_for(variant_id: str, options: Mapping[str, str]) -> str:
    """The stable line id of a variant with options: the same pair always maps to one line."""
    key = json.dumps([variant_id, sorted(options.items())], separators=(",", ":"))
    return "ln_" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Line:
    """One cart line: `quantity` units of a variant at `unit_price` minor units each."""

    line_id: str
    product_id: str
    variant_id: str
    name: str
    quantity: int
    unit_price: int
    currency: str
    options: dict[str, str]
    added_at: str
    updated_at: str

    def to_record(self) -> dict[str, Any]:
        """The line as plain data (for storage)."""
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Line:
        """The line stored by `to_record`."""
        return cls(**record)

    def to_json(self) -> dict[str, Any]:
        """The API.md cart line."""
        return {
            "line_id": self.line_id,
            "product_id": self.product_id,
            "variant_id": self.variant_id,
            "name": self.name,
            "quantity": self.quantity,
            "unit_price": money(self.unit_price, self.currency),
            "options": self.options,
            "added_at": self.added_at,
            "updated_at": self.updated_at,
            "line_total": money(self.unit_price * self.quantity, self.currency),
            "discounts": [],
        }


@dataclass(slots=True)
class Cart:
    """A cart and its lines; mutations check the status, bump `version` and `updated_at`."""

    cart_id: str
    owner: str
    created_at: str
    updated_at: str
    expires_at: str
    currency: str = "USD"
    status: str = "active"
    version: int = 1
    lines: dict[str, Line] = field(default_factory=dict)

    @classmethod
    def new(cls, cart_id: str, owner: str, now: datetime) -> Cart:
        """An empty active cart created at `now` (timezone-aware)."""
        stamp = format_time(now)
        return cls(cart_id, owner, stamp, stamp, format_time(now + CART_TTL))

    def add_item(self, variant: Variant, quantity: int, options: dict[str, str], now: str) -> None:
        """Add `quantity` units of `variant`; the same variant and options grow one line."""
        self._require_active()
        if self.lines and variant.currency != self.currency:
            raise ApiError(422, "currency_mismatch", f"the cart is in {self.currency}")
        line_id = line_id_for(variant.variant_id, options)
        line = self.lines.get(line_id)
        if line is None:
            if len(self.lines) >= MAX_LINES:
                raise ApiError(422, "too_many_lines", f"a cart holds at most {MAX_LINES} lines")
            self.currency = variant.currency
            line = Line(line_id, variant.product_id, variant.variant_id, variant.name, 0,
                        variant.price, variant.currency, dict(options), now, now)
            self.lines[line_id] = line
        _check_quantity(line.quantity + quantity)
        line.quantity += quantity
        line.updated_at = now
        self._touch(now)

    def set_quantity(self, line_id: str, quantity: int, now: str) -> None:
        """Set a line's quantity; 0 removes the line."""
        if quantity == 0:
            self.remove_line(line_id, now)
            return
        self._require_active()
        _check_quantity(quantity)
        line = self._line(line_id)
        line.quantity = quantity
        line.updated_at = now
        self._touch(now)

    def remove_line(self, line_id: str, now: str) -> None:
        """Remove a line."""
        self._require_active()
        self._line(line_id)
        del self.lines[line_id]
        self._touch(now)

    def set_status(self, status: str, now: str) -> None:
        """Move the cart to `status` (checkout takes it to checked_out and maybe back)."""
        self.status = status
        self._touch(now)

    def quantities(self) -> dict[str, int]:
        """Units wanted per variant id."""
        wanted: dict[str, int] = {}
        for line in self.lines.values():
            wanted[line.variant_id] = wanted.get(line.variant_id, 0) + line.quantity
        return wanted

    def totals(self) -> dict[str, Any]:
        """Subtotal, discount, shipping, tax and total in minor units (no promotions here)."""
        subtotal = sum(line.unit_price * line.quantity for line in self.lines.values())
        zero = money(0, self.currency)
        return {
            "subtotal": money(subtotal, self.currency),
            "discount": zero,
            "shipping": zero,
            "tax": zero,
            "total": money(subtotal, self.currency),
        }

    def to_json(self) -> dict[str, Any]:
        """The API.md Cart."""
        return {
            "cart_id": self.cart_id,
            "owner": self.owner,
            "status": self.status,
            "currency": self.currency,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "lines": [line.to_json() for line in self.lines.values()],
            "discounts": [],
            "totals": self.totals(),
        }

    def _line(self, line_id: str) -> Line:
        line = self.lines.get(line_id)
        if line is None:
            raise ApiError(404, "line_not_found", f"no line {line_id!r} in this cart")
        return line

    def _require_active(self) -> None:
        if self.status != "active":
            raise ApiError(409, "cart_not_active", f"the cart is {self.status}")

    def _touch(self, now: str) -> None:
        self.version += 1
        self.updated_at = now


#: A cart mutation: applied to the cart in place, raising ApiError to refuse.
CartOp = Callable[[Cart], None]


def _check_quantity(quantity: int) -> None:
    if not 0 < quantity <= MAX_QUANTITY:
        raise ApiError(422, "invalid_quantity", f"a line holds 1..{MAX_QUANTITY} units")


# --------------------------------------------------------------------------- stock and orders


def out_of_stock(shortfalls: list[dict[str, Any]]) -> ApiError:
    """The 409 answer for lines the stock cannot cover (`variant_id`, `requested`, `available`)."""
    return ApiError(409, "out_of_stock", "not enough stock for some lines", shortfalls)


def stock_level(variant_id: str, on_hand: int) -> dict[str, Any]:
    """The admin stock answer; the peers capture at checkout, so nothing is ever reserved."""
    return {"variant_id": variant_id, "on_hand": on_hand, "reserved": 0, "available": on_hand}


class StockLedger:
    """Units on hand per variant, never below zero; takes are all-or-nothing."""

    def __init__(self) -> None:
        self.on_hand: dict[str, int] = {}

    def seed(self, stock: Mapping[str, int]) -> None:
        """Set the stock of variants not yet known (a restart keeps what it has)."""
        for variant_id, units in stock.items():
            self.on_hand.setdefault(variant_id, units)

    def adjust(self, variant_id: str, set_to: int | None, delta: int | None) -> dict[str, Any]:
        """Set or shift the units of a variant; a negative delta below zero on hand is a 409."""
        current = self.on_hand.get(variant_id, 0)
        target = set_to if set_to is not None else current + (delta or 0)
        if target < 0 and target < current:
            raise ApiError(409, "stock_floor", f"{variant_id!r} has {current} units on hand")
        self.on_hand[variant_id] = target
        return stock_level(variant_id, target)

    def take(self, wanted: Mapping[str, int]) -> list[dict[str, Any]]:
        """Take every wanted unit, or none: returns the shortfalls (empty when taken)."""
        short = [
            {"variant_id": v, "requested": n, "available": self.on_hand.get(v, 0)}
            for v, n in wanted.items()
            if self.on_hand.get(v, 0) < n
        ]
        if not short:
            for variant_id, units in wanted.items():
                self.on_hand[variant_id] -= units
        return short

    def give_back(self, wanted: Mapping[str, int]) -> None:
        """Return units taken by `take` (a failed payment)."""
        for variant_id, units in wanted.items():
            self.on_hand[variant_id] = self.on_hand.get(variant_id, 0) + units

    def levels(self, variant_ids: Iterable[str]) -> dict[str, int]:
        """Units on hand per variant id."""
        return {v: self.on_hand.get(v, 0) for v in variant_ids}


class OrderBook:
    """Orders in memory, found again by (cart id, Idempotency-Key)."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.by_key: dict[tuple[str, str], str] = {}

    def save(self, order: dict[str, Any], key: str) -> None:
        """Keep `order` and remember it as the answer to `key` on its cart."""
        self.orders[order["order_id"]] = order
        self.by_key[(order["cart_id"], key)] = order["order_id"]

    def find(self, cart_id: str, key: str) -> dict[str, Any] | None:
        """The order an earlier checkout of `cart_id` with `key` created, if any."""
        order_id = self.by_key.get((cart_id, key))
        return None if order_id is None else self.orders[order_id]


class InMemoryOrders:
    """Backend part keeping orders in an :class:`OrderBook` (the memory and Ray peers)."""

    orders: OrderBook

    async def find_order(self, cart_id: str, key: str) -> dict[str, Any] | None:
        return self.orders.find(cart_id, key)

    async def save_order(self, order: dict[str, Any], key: str) -> None:
        self.orders.save(order, key)


def build_order(cart: Cart, order_id: str, now: str) -> dict[str, Any]:
    """The API.md Order of a paid checkout of `cart`."""
    totals = cart.totals()
    return {
        "order_id": order_id,
        "cart_id": cart.cart_id,
        "owner": cart.owner,
        "status": "paid",
        "lines": [line.to_json() for line in cart.lines.values()],
        "totals": totals,
        "payment": {"provider": "test", "status": "captured", "amount": totals["total"]},
        "created_at": now,
    }


def payment_outcome(token: str) -> ApiError | None:
    """The test provider's answer to a payment token: None for success, else the error.

    `tok_ok` and `tok_slow` succeed (the caller adds tok_slow's delay), `tok_error` is a 503,
    anything else is declined (402).
    """
    if token in ("tok_ok", "tok_slow"):
        return None
    if token == "tok_error":
        return ApiError(503, "payment_unavailable", "the payment provider failed")
    return ApiError(402, "payment_declined", "the payment was declined")
