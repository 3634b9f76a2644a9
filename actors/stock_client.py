"""Stock operations on a variant, whether its inventory is one actor or split into shards.

A flash-sale variant can be split into N stock shards (``Variant.shards``), each its own
inventory actor ``{variant_id}#{k}``, placed on hosts by the usual hash, so N actors take
reservations in parallel instead of one. A buyer starts at the shard its cart hashes to; when
that shard cannot cover the quantity, the reservation is spread over the shards that still
hold stock (parts ``{reservation_id}@{k}``), so no buyer is refused while any shard holds
stock. An unsharded variant is one actor keyed by the variant id: one message per operation.
"""

from __future__ import annotations

import asyncio
import weakref
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from engine.errors import Conflict, DomainError, NotFound
from engine.money import allocate

Ask = Callable[[str, str, str, dict[str, Any]], Awaitable[Any]]
#: Attempts at spreading a reservation when other buyers race for the same shards.
SPREAD_ATTEMPTS = 4


class StockClient:
    """Reserve / release / commit / count stock of variants through their inventory actors."""

    def __init__(self, ask: Ask, shards_of: Callable[[str], int]) -> None:
        self.ask = ask
        self.shards_of = shards_of

    def _keys(self, variant_id: str) -> list[str]:
        n = self.shards_of(variant_id)
        return [variant_id] if n <= 1 else [f"{variant_id}#{k}" for k in range(n)]

    # -- reservations ----------------------------------------------------------------------
    async def reserve(self, variant_id: str, reservation_id: str, quantity: int, ttl: float,
                      owner: str, fresh: bool = False) -> float:
        """Reserve (or resize and renew) ``quantity`` units for ``ttl`` seconds; the deadline.

        ``fresh``: no earlier reservation exists under this id (skips looking for parts).
        Raises Conflict ``out_of_stock`` (details: variant_id, requested, available).
        """
        keys = self._keys(variant_id)
        if len(keys) == 1:
            r = await self.ask("inv", keys[0], "reserve", {
                "reservation_id": reservation_id, "quantity": quantity, "ttl": ttl,
                "owner": owner})
            return float(r["expires_at"])
        return await self._reserve_spread(variant_id, keys, reservation_id, quantity, ttl,
                                          owner, fresh)

    async def _reserve_spread(self, variant_id: str, keys: list[str], rid: str, quantity: int,
                              ttl: float, owner: str, fresh: bool) -> float:
        start = zlib.crc32(owner.encode()) % len(keys)
        order = keys[start:] + keys[:start]
        have: dict[str, int] = {}
        if not fresh:
            renewed = await asyncio.gather(*(self.ask("inv", k, "renew", {
                "reservation_id": f"{rid}@{k}", "ttl": ttl}) for k in keys))
            have = {k: q for k, q in zip(keys, renewed, strict=True) if q}
            if sum(have.values()) > quantity:  # a smaller line: start over
                await self.release(variant_id, rid)
                have = {}
        if sum(have.values()) == quantity:
            return await self._deadline(keys, rid)
        if not have:  # the common case: the buyer's own shard covers it in one message
            try:
                await self.ask("inv", order[0], "reserve", {
                    "reservation_id": f"{rid}@{order[0]}", "quantity": quantity, "ttl": ttl,
                    "owner": owner})
                return await self._deadline([order[0]], rid)
            except Conflict:
                pass
        for _ in range(SPREAD_ATTEMPTS):
            need = quantity - sum(have.values())
            if need <= 0:
                return await self._deadline(keys, rid)
            avail = await asyncio.gather(*(self.ask("inv", k, "status", {}) for k in order))
            plan: dict[str, int] = {}
            for k, st in zip(order, avail, strict=True):
                take = min(st["available"], need - sum(plan.values()))
                if take > 0:
                    plan[k] = take
            if sum(plan.values()) < need:
                await self.release(variant_id, rid)
                total = sum(st["available"] for st in avail) + sum(have.values())
                raise Conflict("out_of_stock", f"only {total} of {variant_id!r} available",
                               [{"variant_id": variant_id, "requested": quantity,
                                 "available": total}])
            results = await asyncio.gather(*(self.ask("inv", k, "reserve", {
                "reservation_id": f"{rid}@{k}", "quantity": have.get(k, 0) + t, "ttl": ttl,
                "owner": owner}) for k, t in plan.items()), return_exceptions=True)
            for (k, t), res in zip(plan.items(), results, strict=True):
                if not isinstance(res, BaseException):
                    have[k] = have.get(k, 0) + t
                elif not isinstance(res, DomainError):
                    raise res
        await self.release(variant_id, rid)
        raise Conflict("out_of_stock", f"{variant_id!r} is selling too fast; try again",
                       [{"variant_id": variant_id, "requested": quantity, "available": 0}])

    async def _deadline(self, keys: list[str], rid: str) -> float:
        parts = await asyncio.gather(*(self.ask("inv", k, "renew", {
            "reservation_id": f"{rid}@{k}", "ttl": 0.0, "detail": True}) for k in keys))
        return min(p["expires_at"] for p in parts if p["quantity"])  # type: ignore[no-any-return]

    async def release(self, variant_id: str, reservation_id: str) -> None:
        """Give a reservation's units back, on every shard (idempotent)."""
        keys = self._keys(variant_id)
        ids = [reservation_id] if len(keys) == 1 else [f"{reservation_id}@{k}" for k in keys]
        await asyncio.gather(*(self.ask("inv", k, "release", {"reservation_id": i})
                               for k, i in zip(keys, ids, strict=True)))

    async def commit(self, variant_id: str, reservation_id: str, quantity: int) -> None:
        """The reserved units are sold. Raises NotFound ``reservation_not_found`` (nothing
        is sold then: parts already committed are put back)."""
        keys = self._keys(variant_id)
        if len(keys) == 1:
            await self.ask("inv", keys[0], "commit", {"reservation_id": reservation_id})
            return
        done = await asyncio.gather(*(self.ask("inv", k, "commit_part", {
            "reservation_id": f"{reservation_id}@{k}"}) for k in keys))
        if sum(done) != quantity:
            await asyncio.gather(*(self.ask("inv", k, "restock", {"quantity": q})
                                   for k, q in zip(keys, done, strict=True) if q))
            raise NotFound("reservation_not_found",
                           f"the reservation of {variant_id!r} lapsed before it was committed")

    async def restock(self, variant_id: str, quantity: int) -> None:
        """Sold units come back on hand (a cancelled or returned order), on the first shard;
        a waitlist of the variant makes its offers before this returns."""
        out = await self.ask("inv", self._keys(variant_id)[0], "restock",
                             {"quantity": quantity})
        await self.offer_returned(variant_id, out)

    async def offer_returned(self, variant_id: str, reply: dict[str, Any]) -> None:
        """Units of ``variant_id`` came back and ``reply`` (an inventory answer) says it has a
        waitlist: let the waitlist offer them now (`actors.waitlist`)."""
        if reply.get("waitlist"):
            await self.ask("wait", variant_id, "poke", {})

    # -- counts and admin ------------------------------------------------------------------
    async def status(self, variant_id: str) -> dict[str, int]:
        """``{on_hand, reserved, available, sold}`` summed over the variant's shards."""
        parts = await asyncio.gather(*(self.ask("inv", k, "status", {})
                                       for k in self._keys(variant_id)))
        out = {f: sum(p[f] for p in parts) for f in ("on_hand", "reserved", "available",
                                                     "sold")}
        if any(p.get("waitlist") for p in parts):
            out["waitlist"] = True
        return out

    async def adjust(self, variant_id: str, set: int | None = None,
                     delta: int | None = None, only_if_new: bool = False) -> dict[str, int]:
        """Admin stock change (``set`` or ``delta`` units), spread evenly over the shards on
        top of what each has reserved. ``only_if_new``: leave a variant that ever had stock.

        Raises ValidationFailed ``invalid_stock``, Conflict ``stock_below_reserved``.
        """
        keys = self._keys(variant_id)
        if len(keys) == 1:
            if only_if_new:
                return await self.ask("inv", keys[0], "initialize",  # type: ignore[no-any-return]
                                      {"on_hand": set})
            out = await self.ask("inv", keys[0], "adjust", {"set": set, "delta": delta})
            await self.offer_returned(variant_id, out)
            out.pop("waitlist", None)
            return out  # type: ignore[no-any-return]
        for _ in range(SPREAD_ATTEMPTS):
            parts = await asyncio.gather(*(self.ask("inv", k, "status", {}) for k in keys))
            if only_if_new and any(p["on_hand"] or p["sold"] or p["reserved"] for p in parts):
                break
            target = set if set is not None else sum(p["on_hand"] for p in parts) + (delta or 0)
            reserved = [p["reserved"] for p in parts]
            if target is None or target < sum(reserved):
                raise Conflict("stock_below_reserved",
                               f"{sum(reserved)} units are reserved; on hand cannot go below",
                               [{"reserved": sum(reserved)}])
            extra = allocate(target - sum(reserved), [1] * len(keys))
            try:
                await asyncio.gather(*(self.ask("inv", k, "adjust", {"set": r + e})
                                       for k, r, e in zip(keys, reserved, extra, strict=True)))
                break
            except Conflict:
                continue  # a reservation landed in between: read again
        return await self.status(variant_id)


#: Seconds an availability answer may be reused for a stock-on-add check (see
#: `AvailabilityReads`), and the units it must show beyond the add for that: near sell-out
#: every add reads the inventory afresh.
REUSE_FOR, PLENTY = 0.5, 50
#: An answer with more units to spare is reused for as long as the variant could not run
#: short selling `SELL_RATE` units a second, up to `MAX_REUSE_FOR` seconds.
SELL_RATE, MAX_REUSE_FOR = 2_000, 5.0


def reusable_for(spare: int) -> float:
    """Seconds an availability answer showing ``spare`` units beyond an add may serve that
    add's stock check: 0 below `PLENTY` (near sell-out every add asks), else `REUSE_FOR`, or
    longer where even `SELL_RATE` units a second could not use up ``spare`` sooner, at most
    `MAX_REUSE_FOR`."""
    if spare < PLENTY:
        return 0.0
    return min(MAX_REUSE_FOR, max(REUSE_FOR, spare / SELL_RATE))
#: Variants whose last answer a host keeps; past it the map starts over.
MAX_RECENT = 10_000


class AvailabilityReads:
    """Single-flight, briefly reused reads of a variant's stock for one host (stock on add).

    Concurrent adds of the same variant on one host share one ``status`` message to its
    inventory instead of one each: during a flash sale every add names the same hot SKU, and
    its inventory actor, which serializes the reservations, should spend its turns on
    reservations rather than on answering the same question many times. A read that joins
    one in flight sees a state no older than that message's turn (at most one round trip).

    An answer at most `REUSE_FOR` seconds old is reused by a check that asks for ``at_least``
    units when it showed `PLENTY` more than that and no waitlist: adding to a cart reserves
    nothing (checkout's reservation is what never oversells), and a variant with plenty in
    stock cannot be short by then unless more than `PLENTY` units left it in that half
    second. An answer with thousands of units to spare is reused longer (`reusable_for`: up
    to `MAX_REUSE_FOR` seconds, as long as selling `SELL_RATE` units a second could not use
    them up). So most adds of well-stocked SKUs cost no message to their inventory, which
    may live on another host, while near sell-out every add asks. Deciding is the caller's
    (its clock's ``now``); without ``now`` nothing is reused.
    """

    __slots__ = ("inflight", "recent")

    def __init__(self) -> None:
        self.inflight: dict[str, asyncio.Future[dict[str, int]]] = {}
        #: variant id -> (when its last read began, its answer)
        self.recent: dict[str, tuple[float, dict[str, int]]] = {}

    async def status(self, client: StockClient, variant_id: str, now: float | None = None,
                     at_least: int = 0) -> dict[str, int]:
        """``{on_hand, reserved, available, sold}`` of ``variant_id`` (all shards), maybe
        reused (see the class); ``now`` in epoch seconds, ``at_least`` in units. Callers
        must not change the answer."""
        if now is not None:
            hit = self.recent.get(variant_id)
            if hit is not None and not hit[1].get("waitlist") and \
                    now - hit[0] < reusable_for(hit[1]["available"] - at_least):
                return hit[1]
        fut = self.inflight.get(variant_id)
        if fut is None:
            fut = asyncio.ensure_future(client.status(variant_id))
            self.inflight[variant_id] = fut
            fut.add_done_callback(lambda f: self._done(variant_id, f))
        answer = await asyncio.shield(fut)
        if now is not None:
            if len(self.recent) >= MAX_RECENT:
                self.recent.clear()
            self.recent[variant_id] = (now, answer)
        return answer

    def _done(self, variant_id: str, fut: asyncio.Future[dict[str, int]]) -> None:
        if self.inflight.get(variant_id) is fut:
            del self.inflight[variant_id]
        if not fut.cancelled():
            fut.exception()  # retrieved here; each waiter gets it through shield


_READS: weakref.WeakKeyDictionary[Any, AvailabilityReads] = weakref.WeakKeyDictionary()


def availability_reads(host: Any) -> AvailabilityReads:
    """The single-flight availability reads of ``host`` (one per host, made on first use)."""
    reads = _READS.get(host)
    if reads is None:
        reads = _READS[host] = AvailabilityReads()
    return reads


def shards_of(catalog: Any) -> Callable[[str], int]:
    """``variant_id -> shard count`` over a catalog (1 for unknown variants)."""
    def count(variant_id: str) -> int:
        product = catalog.product_of_variant(variant_id)
        return product.variant(variant_id).shards if product is not None else 1  # type: ignore[no-any-return]
    return count
