"""Catalog: products, variants (SKUs), attributes and prices.

A product sells through one or more variants; a product with no variants has one implicit
variant whose id is the product id (API.md). Prices are integer minor units per ISO 4217
currency; a variant without its own price sells at the product's price in that currency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import NotFound, ValidationFailed
from engine.limits import MAX_ID_LENGTH, check_id
from engine.money import MAX_AMOUNT, check_currency
from engine.purchase import LimitScope

#: Largest purchase limit a product or variant may carry, units.
MAX_PURCHASE_LIMIT = 10**6


@dataclass(frozen=True, slots=True)
class Variant:
    """One sellable SKU of a product.

    ``prices`` maps an ISO 4217 code to minor units; empty means "the product's price".
    ``hold_ttl`` (seconds) turns on hold-on-add for flash-sale items: adding the variant to a
    cart reserves stock for that long, renewed on cart activity. ``shards`` is how many stock
    shards the variant's inventory is split into (hot SKUs). ``purchase_limit``: units of
    this variant one customer may buy (cart plus paid and pending orders; a guest: per cart);
    ``account_required``: guests cannot add it (`engine.purchase`). ``offer_ttl``: seconds a
    waitlist offer holds returned units for the next customer in line.
    """

    variant_id: str
    sku: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    prices: Mapping[str, int] = field(default_factory=dict)
    hold_ttl: float | None = None
    shards: int = 1
    purchase_limit: int | None = None
    account_required: bool = False
    offer_ttl: float = 300.0


@dataclass(frozen=True, slots=True)
class Product:
    """A catalog product. ``prices``: currency -> minor units; ``variants``: at least one."""

    product_id: str
    name: str
    description: str
    category: str
    prices: Mapping[str, int]
    variants: tuple[Variant, ...]
    #: Units of all its variants together one customer may buy (`engine.purchase`).
    purchase_limit: int | None = None
    #: Guests cannot add any of its variants.
    account_required: bool = False

    def limits_of(self, variant: Variant) -> list[LimitScope]:
        """The purchase limits that count units of ``variant``: its own, then the product's."""
        out = []
        if variant.purchase_limit is not None:
            out.append(LimitScope(f"v:{variant.variant_id}", variant.purchase_limit,
                                  frozenset((variant.variant_id,))))
        if self.purchase_limit is not None:
            out.append(LimitScope(f"p:{self.product_id}", self.purchase_limit,
                                  frozenset(v.variant_id for v in self.variants)))
        return out

    def requires_account(self, variant: Variant) -> bool:
        return self.account_required or variant.account_required

    def variant(self, variant_id: str | None) -> Variant:
        """The variant ``variant_id``; ``None`` is allowed only for a single-variant product.

        Raises:
            NotFound: ``variant_not_found`` for an unknown id.
            ValidationFailed: ``variant_required`` when the product has several variants.
        """
        if variant_id is None:
            if len(self.variants) == 1:
                return self.variants[0]
            raise ValidationFailed(
                "variant_required",
                f"product {self.product_id!r} has {len(self.variants)} variants; name one",
                [{"field": "variant_id"}],
            )
        for v in self.variants:
            if v.variant_id == variant_id:
                return v
        raise NotFound(
            "variant_not_found",
            f"product {self.product_id!r} has no variant {variant_id!r}",
            [{"field": "variant_id", "value": variant_id}],
        )

    def price_of(self, variant: Variant, currency: str) -> int:
        """Unit price of ``variant`` in ``currency``, in minor units.

        Raises:
            ValidationFailed: ``no_price_in_currency`` when neither the variant nor the product
            has a price in that currency.
        """
        price = variant.prices.get(currency)
        if price is None:
            price = self.prices.get(currency)
        if price is None:
            raise ValidationFailed(
                "no_price_in_currency",
                f"{self.product_id!r} has no price in {currency}",
                [{"product_id": self.product_id, "variant_id": variant.variant_id,
                  "currency": currency}],
            )
        return price


def _prices_from(body: Mapping[str, Any], where: str) -> dict[str, int]:
    """Read ``price`` (one Money) and/or ``prices`` (a list of Money) into currency -> amount."""
    out: dict[str, int] = {}
    entries: list[Any] = []
    if body.get("price") is not None:
        entries.append(body["price"])
    entries.extend(body.get("prices") or [])
    for m in entries:
        if not isinstance(m, Mapping):
            raise ValidationFailed("invalid_price", f"{where}: a price is an object")
        amount, currency = m.get("amount"), m.get("currency")
        if type(amount) is not int or not 0 <= amount <= MAX_AMOUNT:
            raise ValidationFailed(
                "invalid_price",
                f"{where}: price amount must be an integer of minor units in 0..{MAX_AMOUNT}",
            )
        if not isinstance(currency, str):
            raise ValidationFailed("invalid_price", f"{where}: price currency is required")
        out[check_currency(currency)] = amount
    return out


def product_from_dict(product_id: str, body: Mapping[str, Any]) -> Product:
    """Build a :class:`Product` from the API.md product body (also one catalog-file entry).

    Raises:
        ValidationFailed: on a missing name or price, bad ids, duplicate variant ids, or
        a variant that has no price in any currency.
    """
    check_id(product_id, "product_id")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValidationFailed("invalid_product", "a product needs a non-empty name",
                               [{"field": "name"}])
    prices = _prices_from(body, f"product {product_id}")
    raw_variants = body.get("variants") or []
    variants: list[Variant] = []
    seen: set[str] = set()
    for i, rv in enumerate(raw_variants):
        if not isinstance(rv, Mapping):
            raise ValidationFailed("invalid_product", f"variants[{i}] must be an object")
        vid = rv.get("variant_id")
        check_id(vid, f"variants[{i}].variant_id")
        assert isinstance(vid, str)
        if vid in seen:
            raise ValidationFailed("invalid_product", f"duplicate variant id {vid!r}")
        seen.add(vid)
        variants.append(_variant_from_dict(vid, rv, prices, f"variant {vid}"))
    if not variants:
        variants.append(_variant_from_dict(product_id, body, prices, f"product {product_id}",
                                           own_prices=False))
    return Product(
        product_id=product_id,
        name=name.strip(),
        description=str(body.get("description") or ""),
        category=str(body.get("category") or ""),
        prices=prices,
        variants=tuple(variants),
        purchase_limit=_purchase_limit(body, f"product {product_id}") if raw_variants else None,
        account_required=_flag(body, "account_required", f"product {product_id}"),
    )


def _purchase_limit(body: Mapping[str, Any], where: str) -> int | None:
    limit = body.get("purchase_limit")
    if limit is not None and (type(limit) is not int or not 1 <= limit <= MAX_PURCHASE_LIMIT):
        raise ValidationFailed("invalid_product",
                               f"{where}: purchase_limit is units in 1..{MAX_PURCHASE_LIMIT}",
                               [{"field": "purchase_limit"}])
    return limit


def _flag(body: Mapping[str, Any], name: str, where: str) -> bool:
    value = body.get(name, False)
    if type(value) is not bool:
        raise ValidationFailed("invalid_product", f"{where}: {name} is true or false",
                               [{"field": name}])
    return value


def _variant_from_dict(vid: str, rv: Mapping[str, Any], product_prices: Mapping[str, int],
                       where: str, own_prices: bool = True) -> Variant:
    vprices = _prices_from(rv, where) if own_prices else {}
    if not vprices and not product_prices:
        raise ValidationFailed("invalid_product", f"{where} has no price",
                               [{"variant_id": vid}])
    attrs = rv.get("attributes") or {}
    if not isinstance(attrs, Mapping):
        raise ValidationFailed("invalid_product", f"{where}: attributes must be an object")
    hold_ttl = rv.get("hold_ttl")
    if hold_ttl is not None and (type(hold_ttl) not in (int, float) or
                                 not 0 < hold_ttl <= 86400):
        raise ValidationFailed("invalid_product", f"{where}: hold_ttl is seconds in (0, 86400]")
    shards = rv.get("shards", 1)
    if type(shards) is not int or not 1 <= shards <= 64:
        raise ValidationFailed("invalid_product", f"{where}: shards is an integer in 1..64")
    offer_ttl = rv.get("offer_ttl", 300)
    if type(offer_ttl) not in (int, float) or not 0 < offer_ttl <= 86400:
        raise ValidationFailed("invalid_product", f"{where}: offer_ttl is seconds in (0, 86400]")
    sku = rv.get("sku") or vid
    if not isinstance(sku, str) or len(sku) > MAX_ID_LENGTH:
        raise ValidationFailed("invalid_product", f"{where}: bad sku")
    return Variant(
        variant_id=vid,
        sku=sku,
        attributes={str(k): str(v) for k, v in attrs.items()},
        prices=vprices,
        hold_ttl=float(hold_ttl) if hold_ttl is not None else None,
        shards=shards,
        purchase_limit=_purchase_limit(rv, where),
        account_required=_flag(rv, "account_required", where),
        offer_ttl=float(offer_ttl),
    )


def product_to_dict(product: Product, available: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The API.md Product shape. ``available`` maps variant id -> units available, if known."""
    first_currency = next(iter(product.prices), None)

    def money(prices: Mapping[str, int]) -> dict[str, Any] | None:
        cur = first_currency if first_currency in prices else next(iter(prices), None)
        return None if cur is None else {"amount": prices[cur], "currency": cur}

    out_variants = []
    for v in product.variants:
        vp = dict(product.prices)
        vp.update(v.prices)
        entry: dict[str, Any] = {
            "variant_id": v.variant_id,
            "sku": v.sku,
            "attributes": dict(v.attributes),
            "price": money(vp),
            "prices": [{"amount": a, "currency": c} for c, a in vp.items()],
            "hold_ttl": v.hold_ttl,
            "shards": v.shards,
        }
        # The commerce fields appear when set, so products without them keep their shape.
        if v.purchase_limit is not None:
            entry["purchase_limit"] = v.purchase_limit
        if v.account_required:
            entry["account_required"] = True
        if v.offer_ttl != 300.0:
            entry["offer_ttl"] = v.offer_ttl
        if available is not None:
            entry["available"] = available.get(v.variant_id, 0)
        out_variants.append(entry)
    out: dict[str, Any] = {
        "product_id": product.product_id,
        "name": product.name,
        "description": product.description,
        "category": product.category,
        "price": money(product.prices) if product.prices else out_variants[0]["price"],
        "prices": [{"amount": a, "currency": c} for c, a in product.prices.items()],
        "variants": out_variants,
    }
    if product.purchase_limit is not None:
        out["purchase_limit"] = product.purchase_limit
    if product.account_required:
        out["account_required"] = True
    return out


class Catalog:
    """An in-memory catalog: products by id and an index from variant id to product.

    A plain replica: each host and the gateway hold one, refreshed when a product is written.
    """

    __slots__ = ("_products", "_by_variant")

    def __init__(self, products: Iterable[Product] = ()) -> None:
        self._products: dict[str, Product] = {}
        self._by_variant: dict[str, str] = {}
        for p in products:
            self.put(p)

    def put(self, product: Product) -> None:
        """Create or replace ``product``; variant ids must be unique across the catalog.

        Raises:
            ValidationFailed: ``variant_id_taken`` (see :meth:`check`).
        """
        self.check(product)
        old = self._products.get(product.product_id)
        if old is not None:
            for v in old.variants:
                self._by_variant.pop(v.variant_id, None)
        self._products[product.product_id] = product
        for v in product.variants:
            self._by_variant[v.variant_id] = product.product_id

    def check(self, product: Product) -> None:
        """Whether ``product`` can be put: none of its variant ids belongs to another product.

        Raises:
            ValidationFailed: ``variant_id_taken``.
        """
        for v in product.variants:
            owner = self._by_variant.get(v.variant_id)
            if owner is not None and owner != product.product_id:
                raise ValidationFailed(
                    "variant_id_taken",
                    f"variant {v.variant_id!r} already belongs to product {owner!r}",
                )

    def get(self, product_id: str) -> Product:
        """The product ``product_id``.

        Raises:
            NotFound: ``product_not_found``.
        """
        p = self._products.get(product_id)
        if p is None:
            raise NotFound("product_not_found", f"no product {product_id!r}",
                           [{"field": "product_id", "value": product_id}])
        return p

    def find(self, product_id: str) -> Product | None:
        return self._products.get(product_id)

    def product_of_variant(self, variant_id: str) -> Product | None:
        pid = self._by_variant.get(variant_id)
        return None if pid is None else self._products[pid]

    def page(self, limit: int, cursor: str | None) -> tuple[list[Product], str | None]:
        """Products ordered by id after ``cursor`` (exclusive), at most ``limit``, and the
        next cursor (None on the last page)."""
        ids = sorted(self._products)
        start = 0
        if cursor:
            import bisect

            start = bisect.bisect_right(ids, cursor)
        chunk = ids[start:start + limit]
        nxt = chunk[-1] if start + limit < len(ids) and chunk else None
        return [self._products[i] for i in chunk], nxt

    def __len__(self) -> int:
        return len(self._products)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._products.values())
