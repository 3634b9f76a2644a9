"""Domain events: past-tense facts written to the outbox in the same commit as their cause.

Each event is a plain dict ``{"type", "at", ...data}`` (``at`` in epoch seconds) so that it can
be appended to a Redis Stream by the snapshot store without the engine knowing about Redis.
"""

from __future__ import annotations

from typing import Any

ORDER_CREATED = "order.created"
ORDER_PAID = "order.paid"
ORDER_PAYMENT_FAILED = "order.payment_failed"
ORDER_SHIPPED = "order.shipped"
ORDER_CANCELLED = "order.cancelled"
ORDER_REFUNDED = "order.refunded"
CART_CREATED = "cart.created"
CART_CHECKED_OUT = "cart.checked_out"
CART_EXPIRED = "cart.expired"
CART_MERGED = "cart.merged"
#: A turn changed the cart: ``{cart_id, version}`` (what real-time subscribers refresh on).
CART_UPDATED = "cart.updated"
STOCK_DEPLETED = "stock.depleted"
STOCK_OFFERED = "stock.offered"


def event(kind: str, at: float, **data: Any) -> dict[str, Any]:
    """An event record: ``{"type": kind, "at": at, **data}``."""
    return {"type": kind, "at": at, **data}
