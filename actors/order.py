"""Order actor: one per order; owns the order record and its state machine."""

from __future__ import annotations

from typing import Any

from actors import business
from actors.runtime import Actor
from actors.views import order_view
from engine.checkout import Order, OrderStatus
from engine.errors import Forbidden, NotFound
from engine.events import (
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_PAID,
    ORDER_PAYMENT_FAILED,
    ORDER_SHIPPED,
    event,
)

#: The caller name that may see and change any order or cart (admin routes, internal calls).
ADMIN = "@admin"


class OrderActor(Actor):
    kind = "order"
    __slots__ = ("order",)

    def __init__(self, key: str, ctx: Any) -> None:
        super().__init__(key, ctx)
        self.order: Order | None = None

    def load(self, fields: dict[str, Any]) -> None:
        self.order = fields.get("meta")

    def field_value(self, name: str) -> Any:
        return self.order

    def exists(self) -> bool:
        return self.order is not None

    def deadline(self) -> float | None:
        o = self.order
        return o.expires_at if o is not None and o.status is OrderStatus.PENDING else None

    async def on_deadline(self) -> None:
        # The checkout that created it never finished: its reservations lapse at the same time.
        assert self.order is not None
        self._move(OrderStatus.CANCELLED, ORDER_CANCELLED, reason="checkout_abandoned")

    def _own(self, caller: str) -> Order:
        if self.order is None or (caller != ADMIN and caller != self.order.owner):
            raise NotFound("order_not_found", f"no order {self.key!r}")
        return self.order

    def _move(self, to: OrderStatus, kind: str, **data: Any) -> None:
        assert self.order is not None
        self.order.transition(to, self.now)
        self.mark("meta")
        self.emit(event(kind, self.now, order_id=self.key, cart_id=self.order.cart_id,
                        owner=self.order.owner, **data))

    # -- messages --------------------------------------------------------------------------
    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create the order ``pending`` (idempotent: an existing order is returned as is).

        A ``payment_failed`` order is the same checkout retried after a transient failure
        (the provider was down, so no reply was recorded): it is pending again, with the
        cart as it is now.
        """
        if self.order is not None and self.order.status is OrderStatus.PAYMENT_FAILED:
            o = self.order
            o.transition(OrderStatus.PENDING, self.now)
            o.lines, o.totals, o.discounts = data["lines"], data["totals"], data["discounts"]
            o.expires_at, o.reservations = data["expires_at"], data["reservations"]
            o.promotion_uses, o.failure_reason = data["promotion_uses"], None
            o.payment = {}
            self.mark("meta")
        if self.order is None:
            now = self.now
            self.order = Order(order_id=self.key, created_at=now, updated_at=now, **data)
            self.mark("meta")
            self.emit(event(ORDER_CREATED, now, order_id=self.key, cart_id=self.order.cart_id,
                            owner=self.order.owner, total=self.order.totals["total"]))
        return order_view(self.order)

    async def mark_paid(self, payment: dict[str, Any]) -> dict[str, Any]:
        o = self._own(ADMIN)
        if o.status is not OrderStatus.PAID:
            o.payment = payment
            self._move(OrderStatus.PAID, ORDER_PAID, total=o.totals["total"])
            business.order_paid(o.currency, o.totals["total"]["amount"], o.discounts)
        return order_view(o)

    async def mark_failed(self, reason: str, code: str) -> dict[str, Any]:
        o = self._own(ADMIN)
        o.failure_reason = reason
        o.payment = {"status": "failed", "error": code}
        self._move(OrderStatus.PAYMENT_FAILED, ORDER_PAYMENT_FAILED, reason=reason, error=code)
        return order_view(o)

    async def get(self, caller: str) -> dict[str, Any]:
        return order_view(self._own(caller))

    async def ship(self, caller: str) -> dict[str, Any]:
        """Admin: mark a paid order shipped.

        Raises Forbidden ``admin_only``, Conflict ``invalid_order_transition``.
        """
        if caller != ADMIN:
            raise Forbidden("admin_only", "only an admin may ship orders")
        self._own(caller)
        self._move(OrderStatus.SHIPPED, ORDER_SHIPPED)
        return order_view(self.order)  # type: ignore[arg-type]
