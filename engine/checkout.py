"""Orders and the checkout state machine.

An order is created ``pending`` when the checkout saga has reserved every line; it moves to
``paid`` when the payment is authorized, or ``payment_failed`` when it is not (every
reservation is then released: compensation), or ``requires_action`` while the provider
waits for the customer (3-D Secure), until a webhook says paid or failed; a failed order
goes back to ``pending`` when the same checkout (same Idempotency-Key) is retried after a
transient failure. A paid order may be ``shipped`` or ``cancelled`` (voided or refunded,
restocked); a pending or unconfirmed one that never completes is ``cancelled`` when its
reservations' deadline passes. Refunds (up to what was captured) leave the status as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.errors import Conflict, ValidationFailed


class OrderStatus(StrEnum):
    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


#: Allowed transitions of the order state machine.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset(
        {OrderStatus.PAID, OrderStatus.PAYMENT_FAILED, OrderStatus.CANCELLED,
         OrderStatus.REQUIRES_ACTION}),
    # The provider waits for the customer (3-D Secure): a webhook decides, or the deadline.
    OrderStatus.REQUIRES_ACTION: frozenset(
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
    #: Minor units captured and refunded so far; whether the units went back to stock.
    captured: int = 0
    refunded: int = 0
    restocked: bool = False

    def refundable(self) -> int:
        """Minor units that may still be refunded (captured minus refunded)."""
        return self.captured - self.refunded

    def check_refund(self, amount: int | None) -> int:
        """The refund to make: ``amount`` minor units, or all that is left when None.

        Raises ValidationFailed ``invalid_amount`` (not a whole positive number), Conflict
        ``refund_exceeds_capture`` (more than captured minus refunded; details: refundable).
        """
        if amount is None:
            amount = self.refundable()
            if amount <= 0:
                raise Conflict("refund_exceeds_capture", "nothing captured is left to refund",
                               [{"refundable": 0}])
            return amount
        if type(amount) is not int or amount <= 0:
            raise ValidationFailed("invalid_amount", "a refund is a positive whole number of "
                                   "minor units", [{"field": "amount"}])
        if amount > self.refundable():
            raise Conflict("refund_exceeds_capture",
                           f"at most {self.refundable()} minor units can be refunded",
                           [{"refundable": self.refundable()}])
        return amount

    def transition(self, to: OrderStatus, now: float) -> None:
        """Move to ``to``. Raises Conflict ``invalid_order_transition``."""
        if to == self.status:
            return
        if to not in TRANSITIONS[self.status]:
            raise Conflict("invalid_order_transition",
                           f"an order cannot go from {self.status.value} to {to.value}")
        self.status = to
        self.updated_at = now
