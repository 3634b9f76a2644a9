"""Orders and the checkout state machine.

An order is created ``pending`` when the checkout saga has reserved every line; it moves to
``paid`` when the payment is authorized, or ``payment_failed`` when it is not (every
reservation is then released: compensation); a failed order goes back to ``pending`` when
the same checkout (same Idempotency-Key) is retried after a transient failure. A paid
order may be ``shipped`` or ``cancelled``; a pending one that never completes is
``cancelled`` when its reservations' deadline passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.errors import Conflict


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


#: Allowed transitions of the order state machine.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset(
        {OrderStatus.PAID, OrderStatus.PAYMENT_FAILED, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELLED}),
    # A checkout retried with the same Idempotency-Key after a provider outage tries again.
    OrderStatus.PAYMENT_FAILED: frozenset({OrderStatus.PENDING}),
    OrderStatus.SHIPPED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


@dataclass(slots=True)
class Order:
    """An order. ``lines`` and ``totals``: the priced cart at checkout (API shapes, minor units)."""

    order_id: str
    cart_id: str
    owner: str
    currency: str
    lines: list[dict[str, Any]]
    totals: dict[str, Any]
    discounts: list[dict[str, Any]]
    created_at: float
    updated_at: float
    expires_at: float
    status: OrderStatus = OrderStatus.PENDING
    payment: dict[str, Any] = field(default_factory=dict)
    reservations: list[list[Any]] = field(default_factory=list)
    promotion_uses: list[str] = field(default_factory=list)
    #: Purchase-limit actors holding this order's units (`actors.purchase_limits`).
    limit_holds: list[str] = field(default_factory=list)
    failure_reason: str | None = None
    shipping_address: dict[str, Any] | None = None

    def transition(self, to: OrderStatus, now: float) -> None:
        """Move to ``to``. Raises Conflict ``invalid_order_transition``."""
        if to == self.status:
            return
        if to not in TRANSITIONS[self.status]:
            raise Conflict("invalid_order_transition",
                           f"an order cannot go from {self.status.value} to {to.value}")
        self.status = to
        self.updated_at = now
