"""Inventory actor: one per variant; serializes every reservation of that variant's stock.

Being one actor per variant is what makes overselling impossible: reservations of a variant
are turns of one actor, one at a time, each checked against ``available``. Persistence is
O(change): the ledger header is one field and each reservation its own field.
"""

from __future__ import annotations

from typing import Any

from actors import business
from actors.runtime import Actor
from engine.events import STOCK_DEPLETED, event
from engine.stock import StockLedger


class InventoryActor(Actor):
    """Stock ledger of one variant. Messages answer ``{on_hand, reserved, available, sold}``."""

    kind = "inv"
    __slots__ = ("ledger",)

    def __init__(self, key: str, ctx: Any) -> None:
        super().__init__(key, ctx)
        self.ledger = StockLedger(key)

    def load(self, fields: dict[str, Any]) -> None:
        meta = fields.get("meta")
        reservations = {f[2:]: r for f, r in fields.items() if f.startswith("r:")}
        self.ledger = StockLedger(self.key, on_hand=meta.on_hand if meta else 0,
                                  sold=meta.sold if meta else 0, reservations=reservations)

    def field_value(self, name: str) -> Any:
        if name == "meta":
            return self.ledger
        return self.ledger.reservations.get(name[2:])

    def exists(self) -> bool:
        s = self.ledger
        return bool(s.on_hand or s.sold or s.reservations)

    def deadline(self) -> float | None:
        return self.ledger.next_expiry()

    async def on_deadline(self) -> None:
        expired = self.ledger.expire(self.now)
        for r in expired:
            self.mark(f"r:{r.reservation_id}")
        business.reservations_expired(expired)

    def _after_take(self, before: int) -> None:
        if before > 0 and self.ledger.available == 0:
            self.emit(event(STOCK_DEPLETED, self.now, variant_id=self.key))

    # -- messages --------------------------------------------------------------------------
    async def reserve(self, reservation_id: str, quantity: int, ttl: float,
                      owner: str) -> dict[str, Any]:
        """Reserve (or resize and renew) ``reservation_id`` for ``ttl`` seconds.

        Raises Conflict ``out_of_stock`` (details: requested, available).
        """
        before = self.ledger.available
        r = self.ledger.reserve(reservation_id, quantity, self.now + ttl, owner)
        self.mark(f"r:{reservation_id}")
        self._after_take(before)
        return {"reservation_id": reservation_id, "quantity": r.quantity,
                "expires_at": r.expires_at, **self.ledger.snapshot()}

    async def release(self, reservation_id: str) -> dict[str, Any]:
        """Give a reservation's units back (idempotent)."""
        r = self.ledger.release(reservation_id)
        if r is not None:
            self.mark(f"r:{reservation_id}")
        return {"released": r is not None, **self.ledger.snapshot()}

    async def commit(self, reservation_id: str) -> dict[str, Any]:
        """The reservation's units are sold. Raises NotFound ``reservation_not_found``."""
        self.ledger.commit(reservation_id)
        self.mark(f"r:{reservation_id}", "meta")
        return self.ledger.snapshot()

    async def renew(self, reservation_id: str, ttl: float,
                    detail: bool = False) -> Any:
        """Extend an open reservation to ``now + ttl`` (never shortens it); its quantity
        (0 if there is none), or ``{quantity, expires_at}`` with ``detail``."""
        r = self.ledger.reservations.get(reservation_id)
        if r is not None and ttl > 0:
            self.ledger.reserve(reservation_id, r.quantity, self.now + ttl, r.owner)
            self.mark(f"r:{reservation_id}")
        quantity = r.quantity if r is not None else 0
        if detail:
            return {"quantity": quantity, "expires_at": r.expires_at if r else None}
        return quantity

    async def commit_part(self, reservation_id: str) -> int:
        """Commit the reservation if it is open; the units sold (0 if there was none)."""
        r = self.ledger.reservations.get(reservation_id)
        if r is None:
            return 0
        await self.commit(reservation_id)
        return r.quantity

    async def restock(self, quantity: int) -> dict[str, int]:
        """Compensation: units committed by a checkout that failed come back on hand."""
        self.ledger.on_hand += quantity
        self.ledger.sold -= quantity
        self.mark("meta")
        return self.ledger.snapshot()

    async def adjust(self, set: int | None = None, delta: int | None = None) -> dict[str, int]:
        """Admin stock change: ``set`` the on-hand count or add ``delta``.

        Raises ValidationFailed ``invalid_stock``, Conflict ``stock_below_reserved``.
        """
        if set is not None:
            self.ledger.set_on_hand(set)
        elif delta is not None:
            self.ledger.adjust(delta)
        if set is not None or delta:
            self.mark("meta")
        return self.ledger.snapshot()

    async def initialize(self, on_hand: int) -> dict[str, int]:
        """Set the on-hand count only if this ledger has never held stock (catalog loads at
        start-up must not reset stock that shoppers have since bought)."""
        if not self.exists():
            self.ledger.set_on_hand(on_hand)
            self.mark("meta")
        return self.ledger.snapshot()

    async def status(self) -> dict[str, int]:
        return self.ledger.snapshot()
