"""Purchase-limit actor: one per (customer, limit scope); the customer's units under a limit.

Key ``{customer}/{scope}`` (`actors.cart_keys.limit_key`; scope ``v:{variant_id}`` or
``p:{product_id}``, `engine.purchase.LimitScope`). Being one actor per customer and scope is
what makes the limit atomic: the checkouts of one customer on several carts or devices
reserve their units here one turn at a time, so together they never exceed the limit.

Like a promotion use, a checkout *reserves* its units (a hold keyed by order id, with the
reservation TTL), *commits* them when the order is paid and *releases* them when the payment
fails or the order is cancelled. ``usage`` counts held and committed units: pending orders
count as the issue asks. Nothing here asks another actor (calls end here: cart -> limit,
order -> limit). Fields: ``o:{order_id}`` = ``[units, expires_at or None once committed]``.
"""

from __future__ import annotations

from typing import Any

from actors.runtime import Actor
from engine.purchase import LimitScope, check_purchase_limit


class PurchaseLimitActor(Actor):
    kind = "limit"
    __slots__ = ("orders",)

    def __init__(self, key: str, ctx: Any) -> None:
        super().__init__(key, ctx)
        self.orders: dict[str, list[Any]] = {}

    def load(self, fields: dict[str, Any]) -> None:
        self.orders = {f[2:]: v for f, v in fields.items() if f.startswith("o:")}

    def field_value(self, name: str) -> Any:
        return self.orders.get(name[2:])

    def exists(self) -> bool:
        return bool(self.orders)

    def deadline(self) -> float | None:
        return min((o[1] for o in self.orders.values() if o[1] is not None), default=None)

    async def on_deadline(self) -> None:
        now = self.now
        for oid, (_, until) in list(self.orders.items()):
            if until is not None and until <= now:
                del self.orders[oid]
                self.mark(f"o:{oid}")

    def _used(self, but: str | None = None) -> int:
        return sum(q for oid, (q, _) in self.orders.items() if oid != but)

    # -- messages --------------------------------------------------------------------------
    async def usage(self) -> dict[str, int]:
        """``{used, committed, held}``: units of the customer's paid and pending orders."""
        committed = sum(q for q, until in self.orders.values() if until is None)
        used = self._used()
        return {"used": used, "committed": committed, "held": used - committed}

    async def reserve(self, order_id: str, quantity: int, limit: int,
                      ttl: float) -> dict[str, int]:
        """Hold ``quantity`` units for ``order_id`` (idempotent on it: sets its units).

        Raises Conflict ``purchase_limit_exceeded`` (details: scope, limit, already,
        requested), holding nothing.
        """
        scope = LimitScope(self.key.rpartition("/")[2], limit, frozenset())
        current = self.orders.get(order_id)
        if current is not None and current[1] is None:
            return await self.usage()  # already committed: a retried checkout
        check_purchase_limit(scope, quantity, self._used(but=order_id))
        self.orders[order_id] = [quantity, self.now + ttl]
        self.mark(f"o:{order_id}")
        return await self.usage()

    async def commit(self, order_id: str) -> dict[str, int]:
        """The order is paid: its units count for good (idempotent)."""
        entry = self.orders.get(order_id)
        if entry is not None and entry[1] is not None:
            entry[1] = None
            self.mark(f"o:{order_id}")
        return await self.usage()

    async def release(self, order_id: str) -> dict[str, int]:
        """The payment failed or the order was cancelled: the units no longer count
        (idempotent)."""
        if self.orders.pop(order_id, None) is not None:
            self.mark(f"o:{order_id}")
        return await self.usage()
