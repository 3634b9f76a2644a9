"""Order actor: one per order; owns the order record, its state machine and what follows it.

After checkout the order finishes what concerns it alone: a payment confirmed or refused by
webhook (3-D Secure), shipment (with capture when the setting says so), cancellation (void or
refund, restock, give back the purchase-limit units) and refunds. Calls go one way: order ->
inventory / promotion usage / purchase limit, none of which asks an order, so no two turns
wait on each other (the checkout saga lists a new order in its customer's order index).
Each transition happens once and emits its event once: a repeated ship, cancel or
confirmation finds the order already there and changes nothing (and a repeated request with
its Idempotency-Key answers the first reply).
"""

from __future__ import annotations

import asyncio
from typing import Any

from actors import business
from actors.runtime import Actor
from actors.stock_client import StockClient, shards_of
from actors.views import order_view
from engine.analytics import sale_fields
from engine.checkout import Order, OrderStatus
from engine.errors import Conflict, DomainError, Forbidden, NotFound
from engine.events import (
    ORDER_CANCELLED,
    ORDER_CREATED,
    ORDER_PAID,
    ORDER_PAYMENT_FAILED,
    ORDER_REFUNDED,
    ORDER_SHIPPED,
    event,
)

#: The caller name that may see and change any order or cart (admin routes, internal calls).
ADMIN = "@admin"


class OrderActor(Actor):
    kind = "order"
    idempotent = frozenset({"get", "settled", "create", "mark_paid"})
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
        waiting = (OrderStatus.PENDING, OrderStatus.REQUIRES_ACTION)
        return o.expires_at if o is not None and o.status in waiting else None

    async def on_deadline(self) -> None:
        # The checkout never finished, or the customer never confirmed the payment: the
        # reservations lapse at the same time; holds of uses and limits are given back.
        o = self.order
        assert o is not None
        if o.status is OrderStatus.REQUIRES_ACTION:
            await self._release_holds(o)
            await self.ctx.payments.void(o.payment.get("reference", ""), f"{o.order_id}:void")
            self._move(OrderStatus.CANCELLED, ORDER_CANCELLED, reason="payment_not_confirmed")
            return
        self._move(OrderStatus.CANCELLED, ORDER_CANCELLED, reason="checkout_abandoned")

    def _own(self, caller: str) -> Order:
        if self.order is None or (caller != ADMIN and caller != self.order.owner):
            raise NotFound("order_not_found", f"no order {self.key!r}")
        return self.order

    def _move(self, to: OrderStatus, kind: str, **data: Any) -> None:
        """Transition and emit ``kind``; nothing at all when the order is already there."""
        assert self.order is not None
        if self.order.status is to:
            return
        self.order.transition(to, self.now)
        self.mark("meta")
        self.emit(event(kind, self.now, order_id=self.key, cart_id=self.order.cart_id,
                        owner=self.order.owner, **data))

    @property
    def stock(self) -> StockClient:
        return StockClient(self.ctx.ask, shards_of(self.ctx.catalog))

    async def _release_holds(self, o: Order) -> None:
        """Give back what a checkout holds: reservations, promotion uses, limit units."""
        await asyncio.gather(
            *(self.stock.release(vid, rid) for rid, vid, _ in o.reservations),
            *(self.ctx.ask("promo", pid, "release", {"order_id": o.order_id})
              for pid in o.promotion_uses),
            *(self.ctx.ask("limit", k, "release", {"order_id": o.order_id})
              for k in o.limit_holds))

    async def _capture(self, o: Order) -> None:
        """Capture the order's total (idempotent: the provider's key is the order's)."""
        if o.captured or not o.payment.get("reference"):
            return
        total = o.totals["total"]["amount"]
        out = await self.ctx.payments.capture(o.payment["reference"], total, o.currency,
                                              f"{o.order_id}:capture")
        o.captured = total
        o.payment = {**o.payment, "status": out.get("status", "captured")}
        self.mark("meta")

    async def _restock(self, o: Order) -> None:
        if o.restocked:
            return
        await asyncio.gather(*(self.stock.restock(vid, q) for _, vid, q in o.reservations))
        o.restocked = True
        self.mark("meta")

    # -- messages --------------------------------------------------------------------------
    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create the order ``pending`` (idempotent: an existing order is returned as is).

        A ``payment_failed`` order is the same checkout retried after a transient failure
        (the provider was down, so no reply was recorded): it is pending again, with the
        cart as it is now. The checkout saga lists the order in its owner's order index
        beside this (`actors.checkout_saga.CheckoutSaga._list_order`).
        """
        if self.order is not None and self.order.status is OrderStatus.PAYMENT_FAILED:
            o = self.order
            o.transition(OrderStatus.PENDING, self.now)
            o.lines, o.totals, o.discounts = data["lines"], data["totals"], data["discounts"]
            o.expires_at, o.reservations = data["expires_at"], data["reservations"]
            o.promotion_uses, o.failure_reason = data["promotion_uses"], None
            o.limit_holds = data.get("limit_holds", [])
            o.payment = {}
            self.mark("meta")
        if self.order is None:
            now = self.now
            self.order = Order(order_id=self.key, created_at=now, updated_at=now, **data)
            self.mark("meta")
            self.emit(event(ORDER_CREATED, now, order_id=self.key, cart_id=self.order.cart_id,
                            owner=self.order.owner, total=self.order.totals["total"],
                            **_sale(self.order)))
        return order_view(self.order)

    async def mark_paid(self, payment: dict[str, Any]) -> dict[str, Any]:
        o = self._own(ADMIN)
        if o.status is not OrderStatus.PAID:
            o.payment = payment
            if payment.get("status") == "captured":
                o.captured = o.totals["total"]["amount"]
            self._move(OrderStatus.PAID, ORDER_PAID, total=o.totals["total"], **_sale(o))
            business.order_paid(o.currency, o.totals["total"]["amount"], o.discounts)
        return order_view(o)

    async def mark_requires_action(self, payment: dict[str, Any]) -> dict[str, Any]:
        """The provider waits for the customer: the stock stays reserved until a webhook
        (`confirm_payment`) or the order's deadline."""
        o = self._own(ADMIN)
        if o.status is OrderStatus.PENDING:
            o.payment = payment
            o.transition(OrderStatus.REQUIRES_ACTION, self.now)
            self.mark("meta")
        return order_view(o)

    async def mark_failed(self, reason: str, code: str) -> dict[str, Any]:
        o = self._own(ADMIN)
        o.failure_reason = reason
        o.payment = {"status": "failed", "error": code}
        self._move(OrderStatus.PAYMENT_FAILED, ORDER_PAYMENT_FAILED, reason=reason, error=code)
        return order_view(o)

    async def settled(self) -> dict[str, Any] | None:
        """The order if its payment went through (paid or later), else None: a checkout
        retried after its reply was lost finishes with it instead of buying again."""
        o = self.order
        if o is None or o.status in (OrderStatus.PENDING, OrderStatus.PAYMENT_FAILED):
            return None
        return order_view(o)

    async def confirm_payment(self, succeeded: bool, event_id: str,
                              reason: str | None = None) -> dict[str, Any]:
        """The provider's verdict on a ``requires_action`` order (a verified webhook).

        Succeeded: the reservations are committed (sold), uses and limit units count, the
        payment is captured when the setting says so, the order is ``paid``. Failed (or the
        reservations lapsed meanwhile): everything held goes back, ``payment_failed``.
        Exactly once: an order no longer waiting answers as it is, changing nothing
        (``{order, changed}``).
        """
        o = self._own(ADMIN)
        if o.status is not OrderStatus.REQUIRES_ACTION:
            return {"order": order_view(o), "changed": False}
        if succeeded:
            results = await asyncio.gather(*(self.stock.commit(vid, rid, q)
                                             for rid, vid, q in o.reservations),
                                           return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            for r in failed:
                if not isinstance(r, DomainError):
                    raise r
            if failed:
                succeeded = False
                reason = "a reservation expired before the payment was confirmed"
                # Lines already committed were sold: they go back on hand.
                await asyncio.gather(*(self.stock.restock(vid, q) for (_, vid, q), r
                                       in zip(o.reservations, results, strict=True)
                                       if not isinstance(r, BaseException)))
        if not succeeded:
            await self._release_holds(o)
            await self.ctx.payments.void(o.payment.get("reference", ""), f"{o.order_id}:void")
            o.failure_reason = reason or "the payment was not confirmed"
            o.payment = {**o.payment, "status": "failed", "event_id": event_id}
            self._move(OrderStatus.PAYMENT_FAILED, ORDER_PAYMENT_FAILED,
                       reason=o.failure_reason, error="payment_failed")
            return {"order": order_view(o), "changed": True}
        await asyncio.gather(
            *(self.ctx.ask("promo", pid, "commit", {"order_id": o.order_id})
              for pid in o.promotion_uses),
            *(self.ctx.ask("limit", k, "commit", {"order_id": o.order_id})
              for k in o.limit_holds))
        o.payment = {**o.payment, "status": "authorized", "event_id": event_id}
        o.payment.pop("next_action", None)
        if self.ctx.settings.payment_capture == "immediate":
            await self._capture(o)
        self._move(OrderStatus.PAID, ORDER_PAID, total=o.totals["total"], **_sale(o))
        return {"order": order_view(o), "changed": True}

    async def get(self, caller: str) -> dict[str, Any]:
        return order_view(self._own(caller))

    async def ship(self, caller: str) -> dict[str, Any]:
        """Admin: mark a paid order shipped, capturing the payment first when capture waits
        for shipment. A shipped order answers as it is (no second event).

        Raises Forbidden ``admin_only``, Conflict ``invalid_order_transition``.
        """
        if caller != ADMIN:
            raise Forbidden("admin_only", "only an admin may ship orders")
        o = self._own(caller)
        if o.status is OrderStatus.PAID:
            await self._capture(o)
        self._move(OrderStatus.SHIPPED, ORDER_SHIPPED)
        return order_view(o)

    async def cancel(self, caller: str, reason: str | None = None) -> dict[str, Any]:
        """Cancel an order before it ships (its owner or an admin): void the authorization
        or refund what was captured, put the units back in stock, give back purchase-limit
        units; ``order.cancelled`` once. A cancelled order answers as it is.

        Raises NotFound ``order_not_found``, Conflict ``order_shipped`` /
        ``invalid_order_transition`` (a checkout still running or failed).
        """
        o = self._own(caller)
        if o.status is OrderStatus.CANCELLED:
            return order_view(o)
        if o.status is OrderStatus.SHIPPED:
            raise Conflict("order_shipped", "a shipped order cannot be cancelled; refund it")
        if o.status not in (OrderStatus.PAID, OrderStatus.REQUIRES_ACTION):
            raise Conflict("invalid_order_transition",
                           f"an order cannot go from {o.status.value} to cancelled")
        ref = o.payment.get("reference", "")
        refund = None
        previous, returned, voided = o.status, 0, 0
        if o.status is OrderStatus.REQUIRES_ACTION:
            await self._release_holds(o)
            await self.ctx.payments.void(ref, f"{o.order_id}:void")
        else:
            if o.refundable() > 0:
                amount = o.refundable()
                refund = await self.ctx.payments.refund(ref, amount, o.currency,
                                                        f"{o.order_id}:cancel")
                o.refunded += amount
                returned = amount
            elif not o.captured:
                await self.ctx.payments.void(ref, f"{o.order_id}:void")
                voided = o.totals["total"]["amount"]
            await self._restock(o)
            await asyncio.gather(*(self.ctx.ask("limit", k, "release", {"order_id": o.order_id})
                                   for k in o.limit_holds))
        o.payment = {**o.payment, "status": "refunded" if refund else "voided"}
        self._move(OrderStatus.CANCELLED, ORDER_CANCELLED,
                   reason=reason or ("by_admin" if caller == ADMIN else "by_customer"),
                   refunded=o.refunded, previous_status=previous.value, currency=o.currency,
                   refund={"amount": returned, "currency": o.currency},
                   voided={"amount": voided, "currency": o.currency},
                   lines=_sale(o)["lines"])
        return order_view(o)

    async def refund(self, caller: str, amount: int | None = None,
                     restock: bool | None = None) -> dict[str, Any]:
        """Admin: refund ``amount`` minor units (all that is left when None) of what was
        captured; ``order.refunded`` each time. ``restock`` puts the order's units back in
        stock (once per order); by default it does for a refund of everything that is left.

        Raises Forbidden ``admin_only``, ValidationFailed ``invalid_amount``, Conflict
        ``refund_exceeds_capture`` (details: refundable).
        """
        if caller != ADMIN:
            raise Forbidden("admin_only", "only an admin may refund orders")
        o = self._own(caller)
        value = o.check_refund(amount)
        full = value == o.refundable()
        out = await self.ctx.payments.refund(o.payment.get("reference", ""), value,
                                             o.currency,
                                             f"{o.order_id}:refund:{o.refunded}:{value}")
        o.refunded += value
        o.payment = {**o.payment, "refunded": {"amount": o.refunded, "currency": o.currency}}
        self.mark("meta")
        if restock if restock is not None else full:
            await self._restock(o)
        self.emit(event(ORDER_REFUNDED, self.now, order_id=self.key, cart_id=o.cart_id,
                        owner=o.owner, amount={"amount": value, "currency": o.currency},
                        refund_id=out.get("refund_id"), restocked=o.restocked))
        return order_view(o)


def _sale(o: Order) -> dict[str, Any]:
    """What order events carry for sales analytics (`engine.analytics.sale_fields`)."""
    return sale_fields(o.currency, o.lines, o.discounts, o.totals)
