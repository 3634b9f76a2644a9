"""Rules on what one cart or customer may take of a variant: stock on add, purchase limits.

Adding to a cart (or raising a line's quantity) is checked against the units available
(on hand minus reserved) at that moment: a check, not a hold, so checkout still reserves
(`engine.stock.StockLedger.reserve`). A purchase limit caps the units one customer buys of a
variant (or of a product, over all its variants), counting the cart and every paid or pending
order of the customer; a guest is limited per cart. Quantities are units; nothing here reads
a clock or does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.errors import Conflict, Forbidden


def check_available(variant_id: str, wanted: int, available: int) -> None:
    """Whether a cart may hold ``wanted`` units of ``variant_id`` when ``available`` are free.

    ``wanted`` counts every unit of the variant in the cart after the change that is not
    already held for it. Raises Conflict ``out_of_stock`` (details: variant_id, requested,
    available), changing nothing.
    """
    if wanted > available:
        raise Conflict("out_of_stock",
                       f"only {max(available, 0)} of {variant_id!r} available",
                       [{"variant_id": variant_id, "requested": wanted,
                         "available": max(available, 0)}])


@dataclass(frozen=True, slots=True)
class LimitScope:
    """One purchase limit that applies to a line: ``scope`` is ``v:{variant_id}`` for a
    variant's own limit or ``p:{product_id}`` for a product's (all its variants together);
    ``limit`` units per customer; ``variant_ids`` the variants it counts."""

    scope: str
    limit: int
    variant_ids: frozenset[str]

    def in_cart(self, lines: Iterable[tuple[str, int]]) -> int:
        """Units of ``lines`` (``(variant_id, quantity)`` pairs) this limit counts."""
        return sum(q for v, q in lines if v in self.variant_ids)


def check_purchase_limit(scope: LimitScope, in_cart: int, already: int) -> None:
    """Whether ``in_cart`` units (the cart after the change) plus ``already`` (the customer's
    paid and pending orders; 0 for a guest) stay within ``scope.limit``.

    Raises Conflict ``purchase_limit_exceeded`` (details: scope, limit, already, requested),
    changing nothing.
    """
    if in_cart + already > scope.limit:
        raise Conflict("purchase_limit_exceeded",
                       f"at most {scope.limit} per customer; you already have {already} "
                       "in orders" if already else
                       f"at most {scope.limit} per customer",
                       [{"scope": scope.scope, "limit": scope.limit, "already": already,
                         "requested": in_cart}])


def check_account(account_required: bool, customer_id: str | None, variant_id: str) -> None:
    """A variant that requires an account cannot go into a guest's cart.

    Raises Forbidden ``account_required`` (HTTP 403).
    """
    if account_required and customer_id is None:
        raise Forbidden("account_required", f"sign in to buy {variant_id!r}",
                        [{"variant_id": variant_id}])
