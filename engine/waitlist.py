"""A waitlist for a sold-out variant: first come, first served offers of returned units.

Customers join in order (one entry per customer and variant). When units come back, the
first waiting entries get an *offer*: units held for them for the variant's ``offer_ttl``
seconds. Each entry is offered at most what it asked for, in queue order, so every unit is
offered to one customer at a time. An offer is *claimed* (the units go into the customer's
cart) or it *lapses* and the units go to the next in line. Times are epoch seconds passed in;
quantities are units.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import Conflict, NotFound

WAITING = "waiting"
OFFERED = "offered"
CLAIMED = "claimed"
LAPSED = "lapsed"
#: Entries one variant's waitlist keeps (waiting, offered or finished) before refusing joins.
MAX_ENTRIES = 100_000


@dataclass(slots=True)
class WaitEntry:
    """One customer's place in a variant's line."""

    customer: str
    quantity: int
    seq: int
    joined_at: float
    state: str = WAITING
    offered: int = 0
    offer_expires_at: float | None = None

    @property
    def in_line(self) -> bool:
        return self.state in (WAITING, OFFERED)


@dataclass(slots=True)
class Waitlist:
    """The line for one variant. ``entries``: customer -> entry; ``seq``: last number given."""

    variant_id: str
    entries: dict[str, WaitEntry]
    seq: int = 0

    def join(self, customer: str, quantity: int, now: float) -> WaitEntry:
        """Join (or, while still waiting, change the quantity of) ``customer``'s entry.

        Raises Conflict ``already_waiting`` for an entry with a live offer,
        ``waitlist_full``.
        """
        e = self.entries.get(customer)
        if e is not None and e.in_line:
            if e.state == OFFERED:
                raise Conflict("already_waiting", "units are on offer for you: add them to "
                               "your cart", [{"variant_id": self.variant_id}])
            e.quantity = quantity
            return e
        if len(self.entries) >= MAX_ENTRIES:
            raise Conflict("waitlist_full", "this waitlist is full")
        self.seq += 1
        e = WaitEntry(customer, quantity, self.seq, now)
        self.entries[customer] = e
        return e

    def leave(self, customer: str) -> WaitEntry:
        """Remove the entry (its offer, if any, must be released by the caller).

        Raises NotFound ``not_waiting``.
        """
        e = self.entries.pop(customer, None)
        if e is None:
            raise NotFound("not_waiting", f"you are not on the waitlist of {self.variant_id!r}")
        return e

    def line(self) -> list[WaitEntry]:
        """Entries still in line (waiting or offered), first come first."""
        return sorted((e for e in self.entries.values() if e.in_line), key=lambda e: e.seq)

    def position(self, customer: str) -> int | None:
        """1-based place in line, or None when not in line."""
        for i, e in enumerate(self.line(), 1):
            if e.customer == customer:
                return i
        return None

    def plan_offers(self, available: int) -> list[tuple[WaitEntry, int]]:
        """Who gets how many of ``available`` returned units: waiting entries in queue order,
        each at most its quantity, until the units run out (a plan: nothing changes)."""
        plan = []
        for e in self.line():
            if available <= 0:
                break
            if e.state != WAITING:
                continue
            units = min(e.quantity, available)
            plan.append((e, units))
            available -= units
        return plan

    def offer(self, e: WaitEntry, units: int, expires_at: float) -> None:
        e.state, e.offered, e.offer_expires_at = OFFERED, units, expires_at

    def lapsed(self, now: float) -> list[WaitEntry]:
        """Mark offers whose time has passed as lapsed (out of line); return them."""
        out = []
        for e in self.entries.values():
            if e.state == OFFERED and e.offer_expires_at is not None and \
                    e.offer_expires_at <= now:
                e.state = LAPSED
                out.append(e)
        return out

    def claim(self, customer: str, now: float) -> WaitEntry:
        """The customer takes their offer. Raises NotFound ``no_offer`` without a live one."""
        e = self.entries.get(customer)
        if e is None or e.state != OFFERED or e.offer_expires_at is None or \
                e.offer_expires_at <= now:
            raise NotFound("no_offer", f"no live offer of {self.variant_id!r} for you")
        e.state = CLAIMED
        return e

    def next_offer_expiry(self) -> float | None:
        return min((e.offer_expires_at for e in self.entries.values()
                    if e.state == OFFERED and e.offer_expires_at is not None), default=None)
