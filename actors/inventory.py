"""Inventory actor: one per variant; serializes every reservation of that variant's stock.

Being one actor per variant is what makes overselling impossible: reservations of a variant
are turns of one actor, one at a time, each checked against ``available``. Persistence is
O(change): the ledger header is one field and each reservation its own field.

A variant with a waitlist is *watched* (field ``w``): whenever units come back (a release,
a lapsed reservation, a restock, more on hand) the inventory tells the variant's waitlist
actor without waiting for it (`_poke`): the waitlist then asks this inventory for the units
in a turn of its own, so no turn of one waits on a turn of the other. A poke lost to a crash
is made up by the waitlist's own periodic deadline. Replies of ``status``, ``restock`` and
``adjust`` carry ``waitlist: true`` for a watched variant, so a caller outside this actor
(an order being cancelled, an admin restock) can also ask the waitlist itself and wait for
the offers to be made.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actors import business
from actors.runtime import Actor
from engine.errors import Conflict, DomainError
from engine.events import STOCK_DEPLETED, event
from engine.stock import StockLedger

log = logging.getLogger(__name__)


class InventoryActor(Actor):
    """Stock ledger of one variant. Messages answer ``{on_hand, reserved, available, sold}``."""

    kind = "inv"
    idempotent = frozenset({"reserve", "release", "renew", "commit", "commit_part", "status",
                            "initialize"})
    __slots__ = ("ledger", "watched")

    def __init__(self, key: str, ctx: Any) -> None:
        super().__init__(key, ctx)
        self.ledger = StockLedger(key)
        self.watched = False

    def load(self, fields: dict[str, Any]) -> None:
        meta = fields.get("meta")
        reservations = {f[2:]: r for f, r in fields.items() if f.startswith("r:")}
        committed = sorted(((f[2:], (int(v[0]), float(v[1]))) for f, v in fields.items()
                            if f.startswith("k:")), key=lambda kv: kv[1][1])
        self.ledger = StockLedger(self.key, on_hand=meta.on_hand if meta else 0,
                                  sold=meta.sold if meta else 0, reservations=reservations,
                                  committed=dict(committed))
        self.watched = bool(fields.get("w"))

    def field_value(self, name: str) -> Any:
        if name == "meta":
            return self.ledger
        if name.startswith("k:"):  # a committed id remembered: [units, forget at]
            done = self.ledger.committed.get(name[2:])
            return None if done is None else list(done)
        if name == "w":
            return True if self.watched else None
        return self.ledger.reservations.get(name[2:])

    def _poke(self, before: int) -> None:
        """Units came back: tell the waitlist, without waiting (see the module docstring)."""
        if not self.watched or self.ledger.available <= before:
            return

        async def tell() -> None:
            try:
                await self.ctx.ask("wait", self.key, "poke", {})
            except (DomainError, Exception):  # noqa: BLE001 - the waitlist's deadline retries
                log.debug("waitlist poke of %s failed", self.key, exc_info=True)

        asyncio.ensure_future(tell())

    def exists(self) -> bool:
        s = self.ledger
        return bool(s.on_hand or s.sold or s.reservations)

    def deadline(self) -> float | None:
        return self.ledger.next_expiry()

    async def on_deadline(self) -> None:
        before = self.ledger.available
        expired = self.ledger.expire(self.now)
        for r in expired:
            self.mark(f"r:{r.reservation_id}")
        business.reservations_expired(expired)
        self._poke(before)

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
        try:
            r = self.ledger.reserve(reservation_id, quantity, self.now + ttl, owner)
        except Conflict as e:
            if self.watched and e.details:  # a waitlist may hold units on offer for the buyer
                e.details[0]["waitlist"] = True
            raise
        if r.committed:  # sold to this id already: a retried checkout
            return {"reservation_id": reservation_id, "quantity": r.quantity,
                    "expires_at": r.expires_at, "committed": True, **self.ledger.snapshot()}
        self.mark(f"r:{reservation_id}")
        self._after_take(before)
        return {"reservation_id": reservation_id, "quantity": r.quantity,
                "expires_at": r.expires_at, **self.ledger.snapshot()}

    async def release(self, reservation_id: str) -> dict[str, Any]:
        """Give a reservation's units back (idempotent)."""
        before = self.ledger.available
        r = self.ledger.release(reservation_id)
        if r is not None:
            self.mark(f"r:{reservation_id}")
            self._poke(before)
        return {"released": r is not None, **self.ledger.snapshot()}

    async def commit(self, reservation_id: str) -> dict[str, Any]:
        """The reservation's units are sold (idempotent for `COMMITTED_MEMORY` seconds).
        Raises NotFound ``reservation_not_found``."""
        if not self.ledger.commit(reservation_id, self.now).committed:
            self.mark(f"r:{reservation_id}", "meta", f"k:{reservation_id}")
            self.mark(*(f"k:{rid}" for rid in self.ledger.forget_committed(self.now)))
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
        done = self.ledger.committed.get(reservation_id)
        if r is None:
            return 0 if done is None else done[0]
        await self.commit(reservation_id)
        return r.quantity

    async def restock(self, quantity: int) -> dict[str, Any]:
        """Sold units come back on hand (a failed checkout's compensation, a cancelled or
        refunded order)."""
        before = self.ledger.available
        self.ledger.on_hand += quantity
        self.ledger.sold -= quantity
        self.mark("meta")
        self._poke(before)
        return await self.status()

    async def adjust(self, set: int | None = None, delta: int | None = None) -> dict[str, Any]:
        """Admin stock change: ``set`` the on-hand count or add ``delta``.

        Raises ValidationFailed ``invalid_stock``, Conflict ``stock_below_reserved``.
        """
        before = self.ledger.available
        if set is not None:
            self.ledger.set_on_hand(set)
        elif delta is not None:
            self.ledger.adjust(delta)
        if set is not None or delta:
            self.mark("meta")
            self._poke(before)
        return await self.status()

    async def watch(self) -> bool:
        """The variant has a waitlist: tell it when units come back (idempotent)."""
        if not self.watched:
            self.watched = True
            self.mark("w")
        return True

    async def transfer(self, from_id: str, to_id: str, quantity: int, ttl: float,
                       owner: str) -> dict[str, Any]:
        """Move the units of reservation ``from_id`` (a waitlist offer) to ``to_id`` (a cart
        line), resized to ``quantity`` and renewed for ``ttl`` seconds, in one turn: no other
        buyer can take them in between.

        Raises NotFound ``reservation_not_found`` (the offer lapsed), Conflict
        ``out_of_stock`` (more than the offer and what is available; nothing changes).
        """
        held = self.ledger.reservations.get(from_id)
        if held is None:
            from engine.errors import NotFound

            raise NotFound("reservation_not_found", f"no open reservation {from_id!r}")
        self.ledger.release(from_id)
        try:
            r = self.ledger.reserve(to_id, quantity, self.now + ttl, owner)
        except Conflict:
            self.ledger.reserve(from_id, held.quantity, held.expires_at, held.owner)
            raise
        self.mark(f"r:{from_id}", f"r:{to_id}")
        return {"reservation_id": to_id, "quantity": r.quantity, "expires_at": r.expires_at,
                **self.ledger.snapshot()}

    async def initialize(self, on_hand: int) -> dict[str, int]:
        """Set the on-hand count only if this ledger has never held stock (catalog loads at
        start-up must not reset stock that shoppers have since bought)."""
        if not self.exists():
            self.ledger.set_on_hand(on_hand)
            self.mark("meta")
        return self.ledger.snapshot()

    async def status(self) -> dict[str, Any]:
        """``{on_hand, reserved, available, sold}``, and ``waitlist: true`` when watched."""
        out: dict[str, Any] = self.ledger.snapshot()
        if self.watched:
            out["waitlist"] = True
        return out
