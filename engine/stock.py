"""Stock ledger of one variant (or one shard of a hot variant).

``on_hand`` units are in the warehouse; reservations (checkout reservations and cart holds)
set units aside until they are committed (sold: they leave ``on_hand``), released, or expire.
``available = on_hand - reserved`` is never negative: nothing is ever oversold.
Times are epoch seconds passed in by the caller.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from engine.errors import Conflict, NotFound, ValidationFailed

#: Largest on-hand count one ledger accepts.
MAX_ON_HAND = 10**9
#: Seconds a committed reservation's id is remembered: a checkout retried within that time
#: (its reply was lost with a host that died after the commit) finds its units sold to it
#: instead of reserving again. Longer than any retry, and than the reservation TTL.
COMMITTED_MEMORY = 3600.0


def check_stock(on_hand: object) -> int:
    """Return ``on_hand`` if it is a whole number of units in 0..10**9.

    Raises:
        ValidationFailed: ``invalid_stock``.
    """
    if type(on_hand) is not int or not 0 <= on_hand <= MAX_ON_HAND:
        raise ValidationFailed("invalid_stock", f"stock is a whole number in 0..{MAX_ON_HAND}")
    return on_hand


@dataclass(slots=True)
class Reservation:
    """Units set aside for ``owner`` (a cart id) until ``expires_at`` (epoch seconds)."""

    reservation_id: str
    quantity: int
    expires_at: float
    owner: str
    #: A reservation already committed (sold) under this id, answered to a repeat.
    committed: bool = False


@dataclass(slots=True)
class StockLedger:
    """On-hand count, open reservations and units sold of one variant (shard)."""

    variant_id: str
    on_hand: int = 0
    sold: int = 0
    reservations: dict[str, Reservation] = field(default_factory=dict)
    #: Running sum of reservation quantities, so ``available`` is O(1) with many reservations.
    reserved: int = 0
    #: (expires_at, reservation_id) min-heap with lazy deletion: the next deadline in O(log n).
    _expiries: list[tuple[float, str]] = field(default_factory=list, repr=False)
    #: Recently committed reservation id -> (units, forget at, epoch seconds), oldest first.
    committed: dict[str, tuple[int, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reservations:
            self.reserved = sum(r.quantity for r in self.reservations.values())
            self._expiries = [(r.expires_at, r.reservation_id) for r in self.reservations.values()]
            heapq.heapify(self._expiries)

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def reserve(self, reservation_id: str, quantity: int, expires_at: float,
                owner: str) -> Reservation:
        """Reserve ``quantity`` units, or resize/renew reservation ``reservation_id``.

        Idempotent on ``reservation_id``: reserving again with the same id sets that
        reservation's quantity and extends its expiry (a renewal; a deadline never moves
        earlier) instead of adding a second one.

        Raises:
            ValidationFailed: ``invalid_quantity`` when ``quantity`` < 1.
            Conflict: ``out_of_stock`` with ``details=[{variant_id, requested, available}]``.
        """
        if type(quantity) is not int or quantity < 1:
            raise ValidationFailed("invalid_quantity", "reserve at least one unit")
        done = self.committed.get(reservation_id)
        if done is not None:  # sold already under this id: a retried checkout takes nothing
            return Reservation(reservation_id, done[0], expires_at, owner, committed=True)
        existing = self.reservations.get(reservation_id)
        have = existing.quantity if existing else 0
        if quantity - have > self.available:
            raise Conflict(
                "out_of_stock",
                f"only {self.available + have} of {self.variant_id!r} available",
                [{"variant_id": self.variant_id, "requested": quantity,
                  "available": self.available + have}],
            )
        if existing is not None:
            self.reserved += quantity - have
            existing.quantity = quantity
            if expires_at > existing.expires_at:
                existing.expires_at = expires_at
                heapq.heappush(self._expiries, (expires_at, reservation_id))
            return existing
        r = Reservation(reservation_id, quantity, expires_at, owner)
        self.reservations[reservation_id] = r
        self.reserved += quantity
        heapq.heappush(self._expiries, (expires_at, reservation_id))
        return r

    def release(self, reservation_id: str) -> Reservation | None:
        """Give reserved units back; None if there was no such reservation (idempotent)."""
        r = self.reservations.pop(reservation_id, None)
        if r is not None:
            self.reserved -= r.quantity
        return r

    def commit(self, reservation_id: str, now: float | None = None) -> Reservation:
        """The reserved units are sold: they leave ``on_hand`` and the reservation closes.

        With ``now`` the id is remembered for `COMMITTED_MEMORY` seconds: committing it again
        answers the same units (``committed=True``) and changes nothing (idempotent).

        Raises:
            NotFound: ``reservation_not_found`` (expired, released or never made).
        """
        done = self.committed.get(reservation_id)
        if done is not None:
            return Reservation(reservation_id, done[0], done[1], "", committed=True)
        r = self.reservations.pop(reservation_id, None)
        if r is None:
            raise NotFound("reservation_not_found",
                           f"no open reservation {reservation_id!r} on {self.variant_id!r}")
        self.reserved -= r.quantity
        self.on_hand -= r.quantity
        self.sold += r.quantity
        if now is not None:
            self.committed[reservation_id] = (r.quantity, now + COMMITTED_MEMORY)
        return r

    def forget_committed(self, now: float) -> list[str]:
        """Forget committed ids whose memory ran out by ``now``; the ids forgotten."""
        gone = []
        for rid, (_, until) in self.committed.items():
            if until > now:
                break
            gone.append(rid)
        for rid in gone:
            del self.committed[rid]
        return gone

    def expire(self, now: float) -> list[Reservation]:
        """Release every reservation whose ``expires_at`` <= ``now``; return them."""
        due = []
        while (nxt := self.next_expiry()) is not None and nxt <= now:
            _, rid = heapq.heappop(self._expiries)
            r = self.release(rid)
            if r is not None:
                due.append(r)
        return due

    def next_expiry(self) -> float | None:
        """Earliest reservation deadline (epoch seconds), or None. Amortized O(log n)."""
        heap = self._expiries
        while heap:
            at, rid = heap[0]
            r = self.reservations.get(rid)
            if r is not None and r.expires_at == at:
                return at
            heapq.heappop(heap)  # stale: released, committed or renewed since
        return None

    def set_on_hand(self, on_hand: int) -> None:
        """Set the warehouse count (admin ``{set: n}``).

        Raises:
            ValidationFailed: ``invalid_stock`` out of 0..10**9.
            Conflict: ``stock_below_reserved`` when fewer than the reserved units would remain.
        """
        check_stock(on_hand)
        if on_hand < self.reserved:
            raise Conflict("stock_below_reserved",
                           f"{self.reserved} units are reserved; on hand cannot go below that",
                           [{"reserved": self.reserved}])
        self.on_hand = on_hand

    def adjust(self, delta: int) -> None:
        """Add ``delta`` (may be negative) to on hand (admin ``{delta: n}``); same errors as set."""
        if type(delta) is not int:
            raise ValidationFailed("invalid_stock", "delta is a whole number")
        self.set_on_hand(self.on_hand + delta)

    def snapshot(self) -> dict[str, int]:
        """``{on_hand, reserved, available, sold}`` in units."""
        return {"on_hand": self.on_hand, "reserved": self.reserved,
                "available": self.available, "sold": self.sold}
