"""Promotion-usage actor: one per promotion with a usage limit; its global and per-customer
counters, never overrun under concurrency.

A checkout *reserves* a use (a hold with a TTL, keyed by order id), *commits* it when the
payment succeeds and *releases* it when it fails, so N concurrent checkouts of a code limited
to K uses give exactly K uses. Fields: ``meta`` (used count), ``h:{order_id}`` per hold,
``c:{customer}`` per customer's count: persistence is O(change).
"""

from __future__ import annotations

from typing import Any

from actors.runtime import Actor
from engine.errors import Conflict


class PromotionUsageActor(Actor):
    kind = "promo"
    idempotent = frozenset({"usage", "reserve", "commit", "release"})
    __slots__ = ("used", "holds", "customers")

    def __init__(self, key: str, ctx: Any) -> None:
        super().__init__(key, ctx)
        self.used = 0
        self.holds: dict[str, list[Any]] = {}  # order_id -> [customer | None, expires_at]
        self.customers: dict[str, int] = {}

    def load(self, fields: dict[str, Any]) -> None:
        self.used = int((fields.get("meta") or {}).get("used", 0))
        self.holds = {f[2:]: v for f, v in fields.items() if f.startswith("h:")}
        self.customers = {f[2:]: int(v) for f, v in fields.items() if f.startswith("c:")}

    def field_value(self, name: str) -> Any:
        if name == "meta":
            return {"used": self.used}
        if name.startswith("h:"):
            return self.holds.get(name[2:])
        return self.customers.get(name[2:])

    def exists(self) -> bool:
        return bool(self.used or self.holds)

    def deadline(self) -> float | None:
        return min((h[1] for h in self.holds.values()), default=None)

    async def on_deadline(self) -> None:
        now = self.now
        for oid, (_, expires_at) in list(self.holds.items()):
            if expires_at <= now:
                del self.holds[oid]
                self.mark(f"h:{oid}")

    def _customer_uses(self, customer: str | None) -> int:
        if customer is None:
            return 0
        held = sum(1 for c, _ in self.holds.values() if c == customer)
        return self.customers.get(customer, 0) + held

    async def usage(self, customer: str | None = None) -> dict[str, Any]:
        """``{used, held, customer_uses}`` (customer_uses counts held uses too)."""
        return {"used": self.used, "held": len(self.holds),
                "customer_uses": self._customer_uses(customer)}

    async def reserve(self, order_id: str, customer: str | None, usage_limit: int | None,
                      per_customer_limit: int | None, ttl: float) -> dict[str, Any]:
        """Hold one use for ``order_id`` (idempotent on it).

        Raises Conflict ``usage_limit_reached`` (details ``scope``: global or customer).
        """
        if order_id not in self.holds:
            if usage_limit is not None and self.used + len(self.holds) >= usage_limit:
                raise Conflict("usage_limit_reached",
                               f"promotion {self.key!r} has been used up",
                               [{"promotion_id": self.key, "scope": "global"}])
            if per_customer_limit is not None and \
                    self._customer_uses(customer) >= per_customer_limit:
                raise Conflict("usage_limit_reached",
                               f"you have already used promotion {self.key!r} "
                               f"{per_customer_limit} time(s)",
                               [{"promotion_id": self.key, "scope": "customer"}])
            self.holds[order_id] = [customer, self.now + ttl]
            self.mark(f"h:{order_id}")
        return await self.usage(customer)

    async def commit(self, order_id: str) -> dict[str, Any]:
        """The order paid: the held use counts for good (idempotent)."""
        hold = self.holds.pop(order_id, None)
        if hold is not None:
            self.used += 1
            customer = hold[0]
            if customer is not None:
                self.customers[customer] = self.customers.get(customer, 0) + 1
                self.mark(f"c:{customer}")
            self.mark("meta", f"h:{order_id}")
        return await self.usage()

    async def release(self, order_id: str) -> dict[str, Any]:
        """The checkout failed: give the use back (idempotent)."""
        if self.holds.pop(order_id, None) is not None:
            self.mark(f"h:{order_id}")
        return await self.usage()
