"""Reference data every host reads locally: the catalog and the promotions.

Read-mostly data is replicated instead of asked for: each host (and the gateway) holds a
replica, loaded from the store at start and refreshed by broadcast when an admin writes a
product or promotion, so adding to a cart costs one message, not two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.catalog import Catalog, Product
from engine.promotions import Promotion


class ReferenceData:
    """Catalog and promotions (by id and by upper-case coupon code)."""

    def __init__(self) -> None:
        self.catalog = Catalog()
        self.promotions: dict[str, Promotion] = {}
        self.by_code: dict[str, Promotion] = {}
        self._automatic: list[Promotion] | None = None
        #: Bumped by every change (a product or promotion put or deleted): what was priced
        #: against an older version may be stale.
        self.version = 0
        #: Called with ``(kind, value)`` after each `apply` (the cart event hub watches prices).
        self.listeners: list[Callable[[str, Any], None]] = []

    def apply(self, kind: str, value: Any) -> None:
        """Install a product (``kind="product"``) or promotion (``"promotion"``); a promotion
        value ``{"deleted": promotion_id}`` removes that promotion (``DELETE``)."""
        if kind == "product":
            self.put_product(value)
        elif kind == "promotion" and isinstance(value, dict) and "deleted" in value:
            self.delete_promotion(value["deleted"])
        elif kind == "promotion":
            self.put_promotion(value)
        else:
            raise ValueError(f"unknown reference kind {kind!r}")
        for listener in self.listeners:
            listener(kind, value)

    def put_product(self, product: Product) -> None:
        self.catalog.put(product)
        self.version += 1

    def put_promotion(self, promo: Promotion) -> None:
        old = self.promotions.get(promo.promotion_id)
        if old is not None and old.code is not None:
            self.by_code.pop(old.code, None)
        self.promotions[promo.promotion_id] = promo
        if promo.code is not None:
            self.by_code[promo.code] = promo
        self._automatic = None
        self.version += 1

    def delete_promotion(self, promotion_id: str) -> None:
        """Forget a promotion (its store record is a tombstone ``{"deleted": id}``)."""
        old = self.promotions.pop(promotion_id, None)
        if old is not None and old.code is not None and self.by_code.get(old.code) is old:
            del self.by_code[old.code]
        self._automatic = None
        self.version += 1

    def automatic(self) -> list[Promotion]:
        """Promotions without a coupon code, ordered by id (deterministic)."""
        if self._automatic is None:
            self._automatic = [p for _, p in sorted(self.promotions.items()) if p.code is None]
        return self._automatic
