"""A flash sale simulated in process, on the manual clock, through the embedding API.

No servers: one :class:`~actors.service.CartService` over a ``MemoryStore`` and a
``ManualClock``. Buyers arrive over simulated time; each makes a cart, adds the sale item
(a hold on add when ``hold_ttl`` is set), thinks, then abandons or checks out (a share of
them with a card that is declined). With ``purchase_limit`` the sale item carries a purchase
limit (units per customer): a share of buyers (``over_limit_share``) first ask for
``over_limit_units`` beyond it, are refused, take the most the limit allows, and after paying
come back once for more (refused again: the limit counts their paid orders). With
``waitlist_share`` a share of the buyers refused at sell-out join the item's waitlist; when
units come back (a declined card, a lapsed hold) the waitlist offers them for ``offer_ttl``
seconds, and a share (``offer_take_share``) of those offered add the item within
``offer_response`` seconds on average and check out; the other offers lapse and go to the next
in line. Simulated time moves in ticks of ``tick`` seconds: the
buyers due in a tick act concurrently (one inventory actor still serializes every
reservation), then the clock advances and fires the timers that fell due (hold, reservation
and cart expiries).

What is checked at the end, after the clock has passed every expiry:

* oversold: units sold beyond the units put on sale, or paid orders for more units than that;
* lost: units that are neither on hand nor sold, units still reserved, or a gap between the
  units the inventory counts as sold and the units of the paid orders the buyers were
  answered (an acknowledged order the ledger does not know, or a sale without an order), or
  an ``order.paid`` event missing for a paid order;
* over the limit: a customer whose paid orders hold more units than ``purchase_limit``
  (read back from the engine's own order index, and from the orders the buyers were told of).

Usage::

    result = await simulate(Scenario(units=1000, buyers=100_000))
    print(result.report["sold"], result.ok)

Times are simulated seconds from the start of the sale; money is integer minor units.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import json
import math
import random
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hdrh.histogram import HdrHistogram
from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors import business
from actors.clock import ManualClock
from actors.service import CartOp, CartService
from actors.settings import EngineSettings
from engine.errors import DomainError
from engine.events import ORDER_PAID, STOCK_OFFERED
from snapshots.memory_store import MemoryStore

__all__ = ["Scenario", "SimulationResult", "load_scenario", "simulate"]

PRODUCT_ID = "flash-item"
# agenda steps of a buyer
ARRIVE, DECIDE, TAKE_OFFER, COME_BACK = 0, 1, 2, 3
VARIANT_ID = "flash-item-std"
#: Epoch seconds at which every simulation starts (2026-09-21), so runs are reproducible.
START = 1_790_000_000.0


class Scenario(BaseModel):
    """A flash sale: what is sold, who comes, when, and how they behave.

    Seconds are simulated seconds; ``price`` is minor units of ``currency`` (ISO 4217).
    Shares are fractions in 0..1. ``rate_curve`` is a list of ``[t_seconds, relative_rate]``
    points (linear in between, 0 outside), used when ``arrival`` is ``"curve"``.
    """

    model_config = ConfigDict(extra="forbid")

    units: int = Field(1000, ge=0, le=10**9, description="units on sale")
    buyers: int = Field(10_000, ge=0, le=10_000_000)
    duration: float = Field(3600.0, gt=0, le=7 * 86400, description="arrival window, s")
    arrival: Literal["poisson", "curve"] = "poisson"
    rate_curve: list[tuple[float, float]] | None = None
    quantity: int = Field(1, ge=1, le=999, description="units each buyer wants")
    abandon_share: float = Field(0.1, ge=0, le=1)
    think_time: float = Field(30.0, ge=0, description="mean seconds before deciding")
    payment_failure_share: float = Field(0.02, ge=0, le=1)
    hold_ttl: float | None = Field(None, gt=0, description="hold on add, seconds")
    shards: int = Field(1, ge=1, le=64, description="inventory shards of the sale item")
    price: int = Field(4999, ge=0, le=10**12)
    currency: str = Field("USD", pattern="^[A-Z]{3}$")
    cart_ttl: float = Field(1800.0, gt=0)
    reservation_ttl: float = Field(600.0, gt=0)
    tick: float = Field(1.0, gt=0, le=3600, description="simulated-time resolution, s")
    sample_every: float = Field(10.0, gt=0, description="seconds between stock samples")
    hosts: int = Field(2, ge=1, le=64)
    seed: int = 1
    purchase_limit: int | None = Field(None, ge=1, le=999,
                                       description="units per customer of the sale item")
    over_limit_share: float = Field(0.0, ge=0, le=1,
                                    description="buyers who first ask beyond the limit")
    over_limit_units: int | None = Field(None, ge=1, le=999,
                                         description="units they ask for (default limit + 1)")
    waitlist_share: float = Field(0.0, ge=0, le=1,
                                  description="buyers refused at sell-out who join the waitlist")
    offer_ttl: float = Field(300.0, gt=0, description="seconds a waitlist offer is held")
    offer_take_share: float = Field(1.0, ge=0, le=1,
                                    description="buyers offered units who take them")
    offer_response: float = Field(60.0, ge=0,
                                  description="mean seconds before a taker adds the offer")

    @model_validator(mode="after")
    def _curve(self) -> Scenario:
        if self.arrival == "curve":
            pts = self.rate_curve
            if not pts or len(pts) < 2:
                raise ValueError("arrival 'curve' needs rate_curve with at least 2 points")
            ts = [t for t, _ in pts]
            if ts != sorted(ts) or len(set(ts)) != len(ts) or ts[0] < 0:
                raise ValueError("rate_curve times must be >= 0 and strictly increasing")
            if any(r < 0 for _, r in pts) or not any(r > 0 for _, r in pts):
                raise ValueError("rate_curve rates must be >= 0, one of them > 0")
        lim = self.purchase_limit
        if lim is None:
            if self.over_limit_share or self.over_limit_units is not None:
                raise ValueError("over_limit_share / over_limit_units need purchase_limit")
        else:
            if self.quantity > lim:
                raise ValueError(f"quantity {self.quantity} is above purchase_limit {lim}")
            if self.over_limit_units is not None and self.over_limit_units <= lim:
                raise ValueError("over_limit_units must be above purchase_limit")
        if self.waitlist_share and self.shards > 1:
            raise ValueError("waitlist_share needs shards = 1 (a sharded variant has no "
                             "waitlist)")
        return self

    @property
    def asks_over_limit(self) -> int:
        """Units an over-limit buyer first asks for."""
        assert self.purchase_limit is not None
        return self.over_limit_units or self.purchase_limit + 1


def load_scenario(path: str | Path, **overrides: Any) -> Scenario:
    """A scenario from a ``.toml`` or ``.json`` file, with ``overrides`` (not None) on top.

    Raises ``ValueError`` (pydantic ``ValidationError`` is one) on unknown or bad fields.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a scenario is a table / object")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return Scenario.model_validate(data)


def arrival_times(s: Scenario, rng: random.Random) -> list[float]:
    """Sorted arrival times (s) of the ``s.buyers`` buyers.

    ``poisson``: a homogeneous Poisson process over ``duration`` conditioned on exactly
    ``buyers`` arrivals, i.e. sorted uniform draws. ``curve``: an inhomogeneous Poisson
    process whose intensity follows ``rate_curve``, conditioned the same way (inverse
    transform over the curve's cumulative area, one-second bins).
    """
    if s.arrival == "poisson":
        return sorted(rng.uniform(0.0, s.duration) for _ in range(s.buyers))
    assert s.rate_curve is not None
    pts = s.rate_curve
    end = pts[-1][0]
    bins = max(1, math.ceil(end))
    width = end / bins
    cum, total = [], 0.0
    xs = [t for t, _ in pts]
    for i in range(bins):
        mid = (i + 0.5) * width
        j = bisect.bisect_right(xs, mid) - 1
        if j < 0 or j >= len(pts) - 1:
            rate = 0.0
        else:
            (t0, r0), (t1, r1) = pts[j], pts[j + 1]
            rate = r0 + (r1 - r0) * (mid - t0) / (t1 - t0)
        total += rate * width
        cum.append(total)
    out = []
    for _ in range(s.buyers):
        i = bisect.bisect_left(cum, rng.uniform(0.0, total))
        out.append((min(i, bins - 1) + rng.random()) * width)
    out.sort()
    return out


@dataclass(slots=True)
class _Buyer:
    owner: str
    think: float
    abandons: bool
    card: str
    quantity: int = 1       # units in the cart (an over-limit buyer: the limit, after a refusal)
    over_limit: bool = False
    cart_id: str = ""
    line_id: str = ""
    holds: bool = False
    waited: bool = False    # joined the waitlist (once at most)
    offered: float | None = None  # the offer's expiry, epoch seconds
    came_back: bool = False


@dataclass
class SimulationResult:
    """What a simulation saw: ``report`` (the figures), ``samples`` (the timeline),
    ``latency`` (per operation, microseconds of wall time), ``problems`` (why not ok)."""

    scenario: Scenario
    report: dict[str, Any]
    samples: list[dict[str, float]]
    latency: dict[str, dict[str, float]]
    problems: list[str]
    histograms: dict[str, HdrHistogram] = field(repr=False, default_factory=dict)

    @property
    def ok(self) -> bool:
        """Nothing oversold and nothing lost."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario.model_dump(), "ok": self.ok,
                "problems": self.problems, "report": self.report,
                "latency_us": self.latency, "samples": self.samples}


_PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class _Timer:
    """Wall-clock latency of each operation kind, in microseconds (HdrHistogram)."""

    def __init__(self) -> None:
        self.hist: dict[str, HdrHistogram] = {}

    def record(self, kind: str, seconds: float) -> None:
        h = self.hist.get(kind)
        if h is None:
            h = self.hist[kind] = HdrHistogram(1, 60_000_000, 3)
        h.record_value(max(1, int(seconds * 1e6)))

    def summary(self) -> dict[str, dict[str, float]]:
        return {k: {"count": h.get_total_count(), "mean": round(h.get_mean_value(), 1),
                    **{f"p{p:g}": h.get_value_at_percentile(p) for p in _PERCENTILES},
                    "max": h.get_max_value()} for k, h in sorted(self.hist.items())}


async def simulate(s: Scenario,
                   progress: Callable[[float, int], None] | None = None) -> SimulationResult:
    """Run the flash sale of ``s`` to its end and check it; ``progress(t, done)`` is called
    after each tick with the simulated time (s) and the buyers who have finished."""
    rng = random.Random(s.seed)
    clock = ManualClock(start=START)
    # The store's deadline sweep recovers deadlines after a restart; a simulation never
    # restarts and its clock fires every timer, so one sweep a simulated day is plenty (the
    # in-memory sweep scans every deadline: every 5 s it cost a tenth of the run).
    # No stream reads ``cart.updated`` here: without them the in-memory outbox stays small.
    settings = EngineSettings(cart_ttl=s.cart_ttl, reservation_ttl=s.reservation_ttl,
                              sweep_interval=86400.0, cart_update_events=False)
    store = MemoryStore()
    shop = await CartService.in_process(store=store, clock=clock, settings=settings,
                                        hosts=s.hosts)
    try:
        return await _Sale(s, rng, clock, shop, store, progress).run()
    finally:
        await shop.close()


class _Sale:
    def __init__(self, s: Scenario, rng: random.Random, clock: ManualClock, shop: CartService,
                 store: MemoryStore, progress: Callable[[float, int], None] | None) -> None:
        self.s, self.rng, self.clock, self.shop, self.progress = s, rng, clock, shop, progress
        self.store = store
        # (time, seq, step, buyer): see ARRIVE .. COME_BACK
        self.agenda: list[tuple[float, int, int, _Buyer]] = []
        self.seq = 0
        self.next_sample = 0.0
        self.outbox_seen = 0
        self.to_join: list[_Buyer] = []
        self.waiting_offers: dict[str, _Buyer] = {}  # customer -> buyer in the waitlist
        self.paid_units_by_owner: dict[str, int] = {}
        self.over_limit_buyers: list[str] = []
        self.decided = 0  # buyers who had the item in their cart and came to a decision
        self.timer = _Timer()
        self.counts = {"arrived": 0, "carts": 0, "refused_at_add": 0, "abandoned": 0,
                       "checkouts": 0, "paid": 0, "refused_at_checkout": 0,
                       "payment_failed": 0, "other_errors": 0, "holds_taken": 0,
                       "abandoned_holding": 0, "cart_expired": 0,
                       "refused_by_limit": 0, "came_back": 0, "waitlist_joined": 0,
                       "offers_made": 0, "offers_taken": 0, "offers_lapsed": 0}
        self.units_paid = 0
        self.revenue: dict[str, int] = {}
        self.paid_orders: set[str] = set()
        self.sold_out_at: float | None = None
        self.first_unavailable_at: float | None = None
        self.samples: list[dict[str, float]] = []
        self.errors: dict[str, int] = {}
        self.finished = 0

    async def _timed(self, kind: str, coro: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await coro
        finally:
            self.timer.record(kind, time.perf_counter() - t0)

    def _elapsed(self) -> float:
        return self.clock.now() - START

    async def run(self) -> SimulationResult:
        s = self.s
        body: dict[str, Any] = {"name": "Flash sale item", "category": "flash",
                                "price": {"amount": s.price, "currency": s.currency},
                                "variants": [{"variant_id": VARIANT_ID, "sku": "FLASH-1",
                                              "stock": s.units, "shards": s.shards}]}
        if s.hold_ttl is not None:
            body["variants"][0]["hold_ttl"] = s.hold_ttl
        if s.purchase_limit is not None:
            body["variants"][0]["purchase_limit"] = s.purchase_limit
        if s.waitlist_share:
            body["variants"][0]["offer_ttl"] = s.offer_ttl
        await self.shop.put_product(PRODUCT_ID, body)
        arrivals = arrival_times(s, self.rng)
        for i, t in enumerate(arrivals):
            over = self.rng.random() < s.over_limit_share
            b = _Buyer(owner=f"buyer-{i}",
                       think=self.rng.expovariate(1.0 / s.think_time) if s.think_time else 0.0,
                       abandons=self.rng.random() < s.abandon_share,
                       card="tok_declined" if self.rng.random() < s.payment_failure_share
                       else "tok_ok", quantity=s.quantity, over_limit=over)
            self.agenda.append((t, i, ARRIVE, b))
        heapq.heapify(self.agenda)
        self.seq = len(self.agenda)
        wall0 = time.perf_counter()
        self.expired0 = business.snapshot()["reservations_expired"]
        await self._sample()
        self.next_sample = s.sample_every
        horizon = max(s.cart_ttl, s.reservation_ttl, s.hold_ttl or 0.0,
                      s.offer_ttl if s.waitlist_share else 0.0) + s.tick
        while True:
            await self._play_agenda()
            # Let every hold, reservation, offer and cart deadline pass, sampling on the way;
            # a lapsed offer goes to the next in line, whose answer puts buyers back on the
            # agenda.
            end = self._elapsed() + horizon
            while self.next_sample <= end and not self.agenda:
                await self._advance_to(self.next_sample)
                await self._sample()
                self.next_sample += s.sample_every
                self._take_offers()
            if self.agenda:
                continue
            await self._advance_to(end)
            self._take_offers()
            if self.agenda:
                continue
            await self._sample()
            if not self.waiting_offers or self.samples[-1]["reserved"] == 0:
                break
        wall = time.perf_counter() - wall0
        return await self._result(wall)

    def _push(self, at: float, step: int, b: _Buyer) -> None:
        self.seq += 1
        heapq.heappush(self.agenda, (at, self.seq, step, b))

    async def _play_agenda(self) -> None:
        """Play the agenda tick by tick until it is empty."""
        s, agenda = self.s, self.agenda
        while agenda:
            tick_end = (math.floor(agenda[0][0] / s.tick) + 1) * s.tick
            due: list[tuple[int, _Buyer]] = []
            while agenda and agenda[0][0] < tick_end:
                _, _, step, b = heapq.heappop(agenda)
                due.append((step, b))
            start = tick_end - s.tick
            await self._advance_to(start)
            thinking = await self._arrive([b for step, b in due if step == ARRIVE])
            await self._decide([b for step, b in due if step == DECIDE])
            await self._take([b for step, b in due if step == TAKE_OFFER])
            await self._come_back([b for step, b in due if step == COME_BACK])
            for b in thinking:
                self._push(start + b.think, DECIDE, b)
            await self._join_waitlist()
            while self.next_sample <= tick_end:
                await self._advance_to(self.next_sample)
                await self._sample()
                self.next_sample += s.sample_every
            await self._advance_to(tick_end)
            self._take_offers()
            if self.progress is not None:
                self.progress(tick_end, self.finished)

    async def _advance_to(self, t: float) -> None:
        gap = t - self._elapsed()
        if gap > 0:
            await self.clock.advance(gap)

    async def _sample(self) -> None:
        st = await self.shop.stock(VARIANT_ID)
        t = self._elapsed()
        self.samples.append({"t": round(t, 3), "on_hand": st["on_hand"],
                             "reserved": st["reserved"], "available": st["available"],
                             "sold": st["sold"], "paid_orders": self.counts["paid"],
                             "buyers_done": self.finished,
                             "waitlist_waiting": len(self.waiting_offers),
                             "offers_made": self.counts["offers_made"]})
        if st["available"] == 0 and self.first_unavailable_at is None and self.s.units:
            self.first_unavailable_at = t

    def _error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    async def _carts(self, buyers: list[_Buyer]) -> list[_Buyer]:
        """Each buyer's active cart (made when none); those who got one."""
        carts = await asyncio.gather(*(self._timed("create_cart", self.shop.active_cart(
            b.owner)) for b in buyers), return_exceptions=True)
        ready = []
        for b, c in zip(buyers, carts, strict=True):
            if isinstance(c, DomainError):
                self._error(c.code)
                self.counts["other_errors"] += 1
            elif isinstance(c, BaseException):
                raise c
            else:
                b.cart_id = c["cart"]["cart_id"]
                ready.append(b)
        return ready

    async def _add(self, buyers: list[_Buyer], quantities: list[int]) -> list[tuple[str, Any]]:
        """One batch of adds (one per buyer), as concurrent requests would be."""
        t0 = time.perf_counter()
        replies = await self.shop.apply([CartOp(b.cart_id, b.owner, "add", PRODUCT_ID, q,
                                                VARIANT_ID)
                                         for b, q in zip(buyers, quantities, strict=True)])
        # One batch for the tick: each add waited for the whole batch, as concurrent
        # requests would.
        per_add = time.perf_counter() - t0
        for _ in buyers:
            self.timer.record("add_item", per_add)
        return replies

    async def _arrive(self, buyers: list[_Buyer]) -> list[_Buyer]:
        """Each buyer makes a cart and adds the sale item; those who got it go on to think.

        An over-limit buyer first asks for more than the purchase limit, is refused, and
        asks for the limit itself.
        """
        if not buyers:
            return []
        self.counts["arrived"] += len(buyers)
        ready = await self._carts(buyers)
        self.finished += len(buyers) - len(ready)
        self.counts["carts"] += len(ready)
        greedy = [b for b in ready if b.over_limit]
        plain = [b for b in ready if not b.over_limit]
        thinking: list[_Buyer] = []
        if greedy:
            self.over_limit_buyers += [b.owner for b in greedy]
            replies = await self._add(greedy, [self.s.asks_over_limit] * len(greedy))
            retry = []
            for b, (status, value) in zip(greedy, replies, strict=True):
                code = value.get("code", "?") if status != "ok" and isinstance(value, dict) \
                    else None
                if code == "purchase_limit_exceeded":
                    self._error(code)
                    self.counts["refused_by_limit"] += 1
                    b.quantity = self.s.purchase_limit or b.quantity
                    retry.append(b)
                else:  # the limit let it through: the check at the end tells
                    plain.append(b)
            if retry:
                replies = await self._add(retry, [b.quantity for b in retry])
                thinking += self._added(retry, replies)
        if plain:
            replies = await self._add(plain, [b.quantity for b in plain])
            thinking += self._added(plain, replies)
        return thinking

    def _added(self, buyers: list[_Buyer], replies: list[tuple[str, Any]]) -> list[_Buyer]:
        """Count the answers of the buyers' adds; those whose add was taken."""
        ok = []
        for b, (status, value) in zip(buyers, replies, strict=True):
            if status == "ok":
                b.line_id = value
                b.holds = self.s.hold_ttl is not None
                self.counts["holds_taken"] += b.holds
                ok.append(b)
                continue
            self.finished += 1
            code = value.get("code", "?") if isinstance(value, dict) else "?"
            self._error(code)
            if code == "out_of_stock":
                self.counts["refused_at_add"] += 1
                self._maybe_wait(b)
            elif code == "purchase_limit_exceeded":
                self.counts["refused_by_limit"] += 1
            else:
                self.counts["other_errors"] += 1
        return ok

    def _maybe_wait(self, b: _Buyer) -> None:
        """A buyer refused at sell-out joins the waitlist (``waitlist_share`` of them)."""
        if self.s.waitlist_share and not b.waited and not b.came_back and \
                self.rng.random() < self.s.waitlist_share:
            b.waited = True
            self.to_join.append(b)

    async def _join_waitlist(self) -> None:
        """The buyers refused this tick who want to wait join the line (a refused checkout
        first takes the sold-out line out of the cart)."""
        if not self.to_join:
            return
        buyers, self.to_join = self.to_join, []
        clear = [b for b in buyers if b.line_id]
        if clear:
            await self.shop.apply([CartOp(b.cart_id, b.owner, "remove", b.line_id)
                                   for b in clear])
            for b in clear:
                b.line_id = ""
        joined = await asyncio.gather(*(self._timed("join_waitlist", self.shop.join_waitlist(
            b.owner, VARIANT_ID, b.quantity)) for b in buyers), return_exceptions=True)
        for b, j in zip(buyers, joined, strict=True):
            if isinstance(j, DomainError):
                self._error(f"waitlist_{j.code}")
                self.counts["other_errors"] += 1
            elif isinstance(j, BaseException):
                raise j
            else:
                self.counts["waitlist_joined"] += 1
                self.waiting_offers[b.owner] = b

    def _take_offers(self) -> None:
        """Read the offers the waitlist made since the last look (``stock.offered`` events
        in the outbox); a taker acts on theirs after ``offer_response`` seconds on average,
        the others let it lapse."""
        outbox = self.store.outbox
        new, self.outbox_seen = outbox[self.outbox_seen:], len(outbox)
        now = self._elapsed()
        for e in new:
            if e["type"] != STOCK_OFFERED or e.get("variant_id") != VARIANT_ID:
                continue
            b = self.waiting_offers.pop(e["customer"], None)
            if b is None:
                continue
            self.counts["offers_made"] += 1
            b.offered = float(e["expires_at"])
            if self.rng.random() < self.s.offer_take_share:
                wait = self.rng.expovariate(1.0 / self.s.offer_response) \
                    if self.s.offer_response else 0.0
                self._push(now + wait, TAKE_OFFER, b)
            else:
                self.counts["offers_lapsed"] += 1

    async def _take(self, buyers: list[_Buyer]) -> None:
        """Offered buyers add the item (the cart claims the offer) and check out at once;
        one who comes after the offer's expiry finds it lapsed."""
        if not buyers:
            return
        ready = await self._carts(buyers)
        replies = await self._add(ready, [b.quantity for b in ready])
        taking = []
        for b, (status, value) in zip(ready, replies, strict=True):
            if status == "ok":
                b.line_id = value
                self.counts["offers_taken"] += 1
                taking.append(b)
            else:
                self._error(f"offer_{value.get('code', '?') if isinstance(value, dict) else '?'}")
                self.counts["offers_lapsed"] += 1
        self.counts["offers_lapsed"] += len(buyers) - len(ready)
        await self._checkout(taking)

    async def _come_back(self, buyers: list[_Buyer]) -> None:
        """Over-limit buyers who paid come back for more: refused by the limit, which
        counts their paid orders; one the limit lets through checks out."""
        if not buyers:
            return
        self.counts["came_back"] += len(buyers)
        ready = await self._carts(buyers)
        replies = await self._add(ready, [self.s.quantity] * len(ready))
        again = []
        for b, (status, value) in zip(ready, replies, strict=True):
            if status == "ok":
                b.line_id = value
                again.append(b)
                continue
            code = value.get("code", "?") if isinstance(value, dict) else "?"
            self._error(code)
            if code == "purchase_limit_exceeded":
                self.counts["refused_by_limit"] += 1
            elif code != "out_of_stock":
                self.counts["other_errors"] += 1
        await self._checkout(again)

    async def _decide(self, buyers: list[_Buyer]) -> None:
        """Each buyer abandons the cart or checks out."""
        checking = []
        for b in buyers:
            if b.abandons:
                self.counts["abandoned"] += 1
                self.counts["abandoned_holding"] += b.holds  # nobody releases it: it lapses
                self.finished += 1
            else:
                checking.append(b)
        self.decided += len(buyers)
        self.finished += len(checking)
        await self._checkout(checking)

    async def _checkout(self, buyers: list[_Buyer]) -> None:
        """Check the buyers' carts out (concurrently) and count the answers."""
        if not buyers:
            return
        self.counts["checkouts"] += len(buyers)
        orders = await asyncio.gather(*(self._timed("checkout", self.shop.checkout(
            b.owner, b.cart_id, payment_token=b.card,
            idempotency_key=f"sim-{b.owner}-{b.cart_id}")) for b in buyers),
            return_exceptions=True)
        for b, order in zip(buyers, orders, strict=True):
            if isinstance(order, DomainError):
                self._error(order.code)
                if order.code == "out_of_stock":
                    self.counts["refused_at_checkout"] += 1
                    self._maybe_wait(b)
                elif order.code == "payment_declined":
                    self.counts["payment_failed"] += 1
                elif order.code == "cart_not_active":  # thought past the cart's expiry
                    self.counts["cart_expired"] += 1
                elif order.code == "purchase_limit_exceeded":
                    self.counts["refused_by_limit"] += 1
                else:
                    self.counts["other_errors"] += 1
                continue
            if isinstance(order, BaseException):
                raise order
            if order["status"] != "paid":
                self._error(f"order_{order['status']}")
                self.counts["other_errors"] += 1
                continue
            self.counts["paid"] += 1
            self.paid_orders.add(order["order_id"])
            units = sum(ln["quantity"] for ln in order["lines"])
            self.units_paid += units
            self.paid_units_by_owner[b.owner] = self.paid_units_by_owner.get(b.owner, 0) + units
            total = order["totals"]["total"]
            self.revenue[total["currency"]] = \
                self.revenue.get(total["currency"], 0) + total["amount"]
            if b.over_limit and not b.came_back:
                b.came_back = True
                self._push(self._elapsed() + b.think, COME_BACK, b)
        if self.sold_out_at is None and self.s.units and self.units_paid >= self.s.units:
            self.sold_out_at = self._elapsed()

    async def _limit_problems(self) -> list[str]:
        """Customers whose paid orders hold more units than the purchase limit: from the
        orders the buyers were told of, and read back from the engine's order index for
        every buyer who paid or asked beyond the limit."""
        lim = self.s.purchase_limit
        if lim is None:
            return []
        told = sorted(o for o, n in self.paid_units_by_owner.items() if n > lim)
        owners = sorted(set(self.paid_units_by_owner) | set(self.over_limit_buyers))
        over = []
        for i in range(0, len(owners), 500):
            chunk = owners[i:i + 500]
            pages = await asyncio.gather(*(self._paid_units(o) for o in chunk))
            over += [o for o, n in zip(chunk, pages, strict=True) if n > lim]
        out = []
        if told:
            out.append(f"{len(told)} customer(s) were told of paid orders above the purchase "
                       f"limit of {lim}: {', '.join(told[:5])}")
        if over:
            out.append(f"{len(over)} customer(s) hold paid orders above the purchase limit "
                       f"of {lim} in the engine: {', '.join(over[:5])}")
        return out

    async def _paid_units(self, owner: str) -> int:
        """Units of the sale item in ``owner``'s paid orders, read from the engine."""
        units, cursor = 0, None
        while True:
            page = await self.shop.list_orders(owner, cursor=cursor, limit=50)
            units += sum(ln["quantity"] for o in page["items"] if o["status"] == "paid"
                         for ln in o["lines"] if ln.get("variant_id") == VARIANT_ID)
            cursor = page["next_cursor"]
            if cursor is None:
                return units

    async def _result(self, wall: float) -> SimulationResult:
        s, c = self.s, self.counts
        final = await self.shop.stock(VARIANT_ID)
        paid_events = {e["order_id"] for e in await self.shop.events(10**9)
                       if e["type"] == ORDER_PAID}
        problems = []
        oversold = max(0, final["sold"] - s.units, self.units_paid - s.units)
        if oversold:
            problems.append(f"oversold {oversold} unit(s): sold {final['sold']}, "
                            f"paid orders for {self.units_paid}, on sale {s.units}")
        if final["on_hand"] + final["sold"] != s.units:
            problems.append(f"units lost: on hand {final['on_hand']} + sold {final['sold']}"
                            f" != {s.units} put on sale")
        if final["reserved"]:
            problems.append(f"{final['reserved']} unit(s) still reserved after every expiry")
        if final["sold"] != self.units_paid:
            problems.append(f"ledger gap: inventory sold {final['sold']}, paid orders hold "
                            f"{self.units_paid} unit(s)")
        if missing := self.paid_orders - paid_events:
            problems.append(f"{len(missing)} paid order(s) without an order.paid event")
        if extra := paid_events - self.paid_orders:
            problems.append(f"{len(extra)} order.paid event(s) for orders no buyer was told of")
        problems += await self._limit_problems()
        if self.finished != s.buyers:
            problems.append(f"{s.buyers - self.finished} buyer(s) never got an answer")
        refused = c["refused_at_add"] + c["refused_at_checkout"]
        # the inventory's own count of reservations that lapsed (holds, here: a checkout's
        # reservation lives within its turn); counted per process, so a simulation running
        # beside another in one process would see both
        expired = business.snapshot()["reservations_expired"] - self.expired0
        decided = self.decided
        report = {
            "units": s.units, "buyers": s.buyers, "sold": final["sold"],
            "unsold": final["on_hand"], "oversold": oversold,
            "paid_orders": c["paid"], "refused": refused, **c, "holds_expired": expired,
            # of the buyers who had the item in their cart and came to a decision
            "abandonment": round(c["abandoned"] / decided, 4) if decided else 0.0,
        "over_limit_buyers": len(self.over_limit_buyers),
        "waitlist_waiting_at_end": len(self.waiting_offers),
        "max_units_per_customer": max(self.paid_units_by_owner.values(), default=0),
            "sold_out_at": self.sold_out_at,
            "first_unavailable_at": self.first_unavailable_at,
            "revenue": dict(sorted(self.revenue.items())),
            "errors": dict(sorted(self.errors.items())),
            "simulated_seconds": round(self._elapsed(), 3),
            "wall_seconds": round(wall, 3),
            "buyers_per_wall_second": round(s.buyers / wall, 1) if wall > 0 else None,
        }
        return SimulationResult(s, report, self.samples, self.timer.summary(), problems,
                                self.timer.hist)
