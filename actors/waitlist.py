"""Waitlist actor: one per variant; the line of customers waiting for returned units.

State (`engine.waitlist.Waitlist`): field ``meta`` (the last sequence number) and
``e:{customer}`` per entry: persisted, so the line and its offers survive restarts.

Offers are inventory reservations ``offer/{customer}`` made by this actor for the variant's
``offer_ttl``: the offered units are out of everyone else's reach until the customer adds
the variant to a cart (the cart asks `claim`, which moves the reservation to the cart line
in one inventory turn) or the offer lapses and the units go to the next in line.

Order of calls (no two turns wait on each other):
- gateway -> user -> waitlist -> inventory (join, leave, list);
- gateway -> cart -> waitlist -> inventory (claim, while adding to a cart);
- inventory -> waitlist only as a *poke* the inventory does not wait for (units came back);
  the waitlist then asks the inventory in a turn of its own;
- the waitlist's own deadline: the next offer expiry, and while anyone waits a poll every
  `POLL_INTERVAL` seconds, which makes up for a poke lost in a crash (the deadline is kept
  in the store, so it is honoured after a restart).
Only unsharded variants have a waitlist (the offer lives in the one inventory actor).
"""

from __future__ import annotations

from typing import Any

from actors.runtime import Actor
from engine.errors import Conflict, ValidationFailed
from engine.events import STOCK_OFFERED, event
from engine.limits import check_quantity
from engine.timefmt import rfc3339
from engine.waitlist import OFFERED, WaitEntry, Waitlist

#: Seconds between two looks at the stock while anyone waits (a lost poke's upper bound).
POLL_INTERVAL = 30.0


def offer_id(customer: str) -> str:
    """The inventory reservation holding ``customer``'s offer."""
    return f"offer/{customer}"


class WaitlistActor(Actor):
    kind = "wait"
    __slots__ = ("line", "_polled_at")

    def __init__(self, key: str, ctx: Any) -> None:
        super().__init__(key, ctx)
        self.line = Waitlist(key, {})
        self._polled_at = self.now

    def load(self, fields: dict[str, Any]) -> None:
        meta = fields.get("meta") or {}
        entries = {f[2:]: WaitEntry(**v) for f, v in fields.items() if f.startswith("e:")}
        self.line = Waitlist(self.key, entries, int(meta.get("seq", 0)))

    def field_value(self, name: str) -> Any:
        if name == "meta":
            return {"seq": self.line.seq}
        e = self.line.entries.get(name[2:])
        if e is None:
            return None
        return {"customer": e.customer, "quantity": e.quantity, "seq": e.seq,
                "joined_at": e.joined_at, "state": e.state, "offered": e.offered,
                "offer_expires_at": e.offer_expires_at}

    def exists(self) -> bool:
        return bool(self.line.entries)

    def deadline(self) -> float | None:
        nxt = self.line.next_offer_expiry()
        if any(e.state == "waiting" for e in self.line.entries.values()):
            poll = self._polled_at + POLL_INTERVAL
            nxt = poll if nxt is None else min(nxt, poll)
        return nxt

    async def on_deadline(self) -> None:
        await self._settle()

    # -- the work --------------------------------------------------------------------------
    async def _settle(self) -> None:
        """Lapse offers whose time passed (their units go back), then offer what is free."""
        now = self.now
        self._polled_at = now
        for e in self.line.lapsed(now):
            await self.ctx.ask("inv", self.key, "release", {"reservation_id": offer_id(e.customer)})
            self.mark(f"e:{e.customer}")
        if not any(e.state == "waiting" for e in self.line.entries.values()):
            return
        status = await self.ctx.ask("inv", self.key, "status", {})
        for e, units in self.line.plan_offers(status["available"]):
            ttl = self._offer_ttl()
            try:
                r = await self.ctx.ask("inv", self.key, "reserve", {
                    "reservation_id": offer_id(e.customer), "quantity": units, "ttl": ttl,
                    "owner": f"wait:{e.customer}"})
            except Conflict:
                break  # a buyer took them first: the next poke or poll tries again
            self.line.offer(e, units, r["expires_at"])
            self.mark(f"e:{e.customer}")
            self.emit(event(STOCK_OFFERED, now, variant_id=self.key, customer=e.customer,
                            quantity=units, expires_at=r["expires_at"], position=e.seq))

    def _offer_ttl(self) -> float:
        product = self.ctx.catalog.product_of_variant(self.key)
        return float(product.variant(self.key).offer_ttl) if product is not None else 300.0

    def _entry_view(self, e: WaitEntry | None) -> dict[str, Any] | None:
        if e is None:
            return None
        offer = None
        if e.state == OFFERED and e.offer_expires_at is not None:
            offer = {"quantity": e.offered, "expires_at": rfc3339(e.offer_expires_at)}
        return {"variant_id": self.key, "quantity": e.quantity, "state": e.state,
                "position": self.line.position(e.customer),
                "joined_at": rfc3339(e.joined_at), "offer": offer}

    # -- messages --------------------------------------------------------------------------
    async def join(self, customer: str, quantity: int) -> dict[str, Any]:
        """Join the line (one entry per customer; joining again while waiting changes the
        quantity). Answers the entry ``{variant_id, quantity, state, position, joined_at,
        offer}``; units free at once are offered at once.

        Raises ValidationFailed ``invalid_quantity`` / ``waitlist_unavailable`` (a sharded
        variant), NotFound ``variant_not_found``, Conflict ``already_waiting``.
        """
        check_quantity(quantity)
        product = self.ctx.catalog.product_of_variant(self.key)
        if product is None:
            from engine.errors import NotFound

            raise NotFound("variant_not_found", f"no variant {self.key!r} in the catalog")
        if product.variant(self.key).shards > 1:
            raise ValidationFailed("waitlist_unavailable",
                                   "a sharded variant has no waitlist", [{"variant_id": self.key}])
        fresh = customer not in self.line.entries
        self.line.join(customer, quantity, self.now)
        self.mark("meta", f"e:{customer}")
        if fresh:
            await self.ctx.ask("inv", self.key, "watch", {})
        await self._settle()
        out = self._entry_view(self.line.entries[customer])
        assert out is not None
        out["created"] = fresh
        return out

    async def leave(self, customer: str) -> dict[str, Any]:
        """Leave the line; an offer's units go to the next in line. Raises NotFound
        ``not_waiting``."""
        e = self.line.leave(customer)
        self.mark(f"e:{customer}")
        if e.state == OFFERED:
            await self.ctx.ask("inv", self.key, "release", {"reservation_id": offer_id(customer)})
            await self._settle()
        return {"variant_id": self.key, "left": True}

    async def entry(self, customer: str) -> dict[str, Any] | None:
        """The customer's entry (None when they have none)."""
        return self._entry_view(self.line.entries.get(customer))

    async def poke(self) -> None:
        """Units came back (told by the inventory): offer them to the next in line."""
        await self._settle()

    async def claim(self, customer: str, reservation_id: str, quantity: int, ttl: float,
                    owner: str) -> dict[str, Any]:
        """The customer adds the variant to a cart within their offer: the offered units
        become the cart line's reservation ``reservation_id`` (``quantity`` units in all,
        for ``ttl`` seconds). Answers ``{expires_at, quantity}``.

        Raises NotFound ``no_offer`` / ``reservation_not_found``, Conflict ``out_of_stock``
        (more than the offer and what is free).
        """
        self.line.claim(customer, self.now)
        try:
            r = await self.ctx.ask("inv", self.key, "transfer", {
                "from_id": offer_id(customer), "to_id": reservation_id, "quantity": quantity,
                "ttl": ttl, "owner": owner})
        except Exception:
            self.line.entries[customer].state = OFFERED  # nothing moved: the offer stands
            raise
        self.mark(f"e:{customer}")
        return {"expires_at": r["expires_at"], "quantity": r["quantity"]}
