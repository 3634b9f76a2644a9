"""Sales analytics: a pure fold of outbox events into counters, and the report built from them.

No I/O and no clock: `fold` maps one event to the increments it causes, `plan` says which
time buckets answer a range, `report` turns merged counters into the figures of
``GET /v1/admin/analytics``. A store (`snapshots.analytics_store`) keeps the counters per
bucket and applies each event once.

Commercial rules (all money in integer minor units, per ISO 4217 currency, never converted):
- An order counts when it is **paid** (``order.paid``, at its ``at``): one order, its total as
  gross revenue, its lines' units and ``line_total`` (after line discounts) for top sellers,
  its order-level discount as discount given, one use of each promotion it carries.
- Money going back lowers net revenue when it goes back: ``order.refunded`` (its
  ``amount``), and ``order.cancelled`` of a paid order (its ``refund``, money captured and
  returned, plus its ``voided``, an authorization released before capture). Such a
  cancellation also takes the order's lines off the top sellers and counts one cancelled
  order; the paid order, its discount and its promotion uses stay counted (the promotion
  usage actors keep a cancelled order's use too). A partial refund names no line, so top
  sellers keep its lines.
- Conversion: carts checked out (``cart.checked_out``) over carts created (``cart.created``)
  in the range. Abandonment: carts expired with lines (``cart.expired`` whose ``lines`` are
  not empty), their units and value (the lines at their captured unit prices, before
  discounts, tax and shipping).
- Average order value: gross revenue over paid orders, rounded half up to a minor unit.
Each figure falls in the bucket of the event that causes it (event time, not order time):
a range holding a cancellation but not the order's payment can show negative top-seller
units for that order's lines.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.errors import ValidationFailed

#: Bucket sizes in seconds, by name; buckets start at multiples of their size (UTC).
BUCKETS: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400}
#: Most buckets one query may answer (a day of minutes, two months of hours).
MAX_BUCKETS = 1500
#: Separates the parts of a counter name or a ranking member (ids never hold it).
SEP = "\x1f"

#: Ranking names: units sold by (product, variant); revenue by (currency, product, variant).
UNITS = "units"
REVENUE = "revenue"


@dataclass(slots=True)
class Increments:
    """What one event adds: ``counters`` (name -> delta) and ``ranks`` (ranking -> member ->
    delta), at event time ``at`` (epoch seconds)."""

    at: float
    counters: Counter[str] = field(default_factory=Counter)
    ranks: dict[str, Counter[str]] = field(default_factory=dict)

    def rank(self, ranking: str, member: str, delta: int) -> None:
        self.ranks.setdefault(ranking, Counter())[member] += delta

    def add(self, other: Increments) -> None:
        """Add ``other``'s deltas to these (``at`` unchanged): the events of one minute
        summed fall in the same buckets (`bucket_starts`)."""
        self.counters.update(other.counters)
        for ranking, members in other.ranks.items():
            self.ranks.setdefault(ranking, Counter()).update(members)


def _amount(value: Any) -> int:
    """Minor units of a Money dict ``{amount, currency}`` or a bare integer; 0 when absent."""
    if isinstance(value, dict):
        value = value.get("amount", 0)
    return value if type(value) is int else 0


def compact_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order or cart lines (API shapes) as events carry them: ``[{product_id, variant_id,
    quantity, unit_price, line_total}]``, amounts in minor units of the event's currency."""
    return [{"product_id": ln.get("product_id"), "variant_id": ln.get("variant_id"),
             "quantity": ln.get("quantity", 0), "unit_price": _amount(ln.get("unit_price")),
             "line_total": _amount(ln.get("line_total"))} for ln in lines]


def sale_fields(currency: str, lines: list[dict[str, Any]], discounts: list[dict[str, Any]],
                totals: dict[str, Any]) -> dict[str, Any]:
    """The fields order events carry for analytics: ``currency``, ``lines``
    (`compact_lines`), ``discounts`` (``[{promotion_id, code, amount}]``, minor units),
    ``codes`` (the coupon codes applied, sorted), ``subtotal`` and ``discount`` (minor units)."""
    ds = [{"promotion_id": d.get("promotion_id"), "code": d.get("code"),
           "amount": _amount(d.get("amount"))} for d in discounts]
    return {"currency": currency, "lines": compact_lines(lines), "discounts": ds,
            "codes": sorted({d["code"] for d in ds if d["code"]}),
            "subtotal": _amount(totals.get("subtotal")),
            "discount": _amount(totals.get("discount"))}


#: The event types `fold` counts; it folds every other one (``cart.updated``, most of the
#: outbox) to nothing.
COUNTED_TYPES = frozenset({"cart.created", "cart.checked_out", "cart.expired", "order.paid",
                           "order.refunded", "order.cancelled"})


def _member(*parts: Any) -> str:
    return SEP.join(str(p) for p in parts)


def fold(event: dict[str, Any]) -> Increments | None:
    """The increments ``event`` (an outbox record ``{"type", "at", ...}``) causes, or None
    for an event no figure counts (or one too old to carry what a figure needs).

    Counter names: ``carts_created``, ``carts_checked_out``, ``carts_abandoned``,
    ``abandoned_units``, ``abandoned_value␟<cur>``, ``orders␟<cur>``, ``revenue␟<cur>`` (gross),
    ``refunded␟<cur>``, ``cancelled␟<cur>``, ``discount␟<cur>``, ``units``,
    ``promo_uses␟<promotion_id>␟<code>``, ``promo_discount␟<promotion_id>␟<code>␟<cur>``
    (␟ is `SEP`; an automatic promotion's code is empty). Rankings: `UNITS` by
    ``<product>␟<variant>``, `REVENUE` by ``<cur>␟<product>␟<variant>``.
    """
    kind = event.get("type")
    at = event.get("at")
    if kind not in COUNTED_TYPES or not isinstance(at, int | float):
        return None
    inc = Increments(at=float(at))
    c = inc.counters
    if kind == "cart.created":
        c["carts_created"] += 1
    elif kind == "cart.checked_out":
        c["carts_checked_out"] += 1
    elif kind == "cart.expired":
        lines = event.get("lines")
        if not lines:
            return None  # an empty cart, or an event from before lines were carried
        c["carts_abandoned"] += 1
        c["abandoned_units"] += sum(int(ln.get("quantity", 0)) for ln in lines)
        value = event.get("value") or {}
        c[_member("abandoned_value", value.get("currency") or event.get("currency"))] += \
            _amount(value)
    elif kind == "order.paid":
        cur = event.get("currency")
        lines = event.get("lines")
        if cur is None or lines is None:
            return None
        c[_member("orders", cur)] += 1
        c[_member("revenue", cur)] += _amount(event.get("total"))
        c[_member("discount", cur)] += _amount(event.get("discount"))
        for ln in lines:
            _rank_line(inc, cur, ln, 1)
        for d in event.get("discounts") or []:
            pid, code = d.get("promotion_id") or "", d.get("code") or ""
            c[_member("promo_uses", pid, code)] += 1
            c[_member("promo_discount", pid, code, cur)] += _amount(d.get("amount"))
    elif kind == "order.refunded":
        amount = event.get("amount") or {}
        c[_member("refunded", amount.get("currency"))] += _amount(amount)
    elif kind == "order.cancelled":
        cur = event.get("currency")
        if event.get("previous_status") != "paid" or cur is None:
            return None  # never paid: no money moved, nothing counted to take back
        c[_member("cancelled", cur)] += 1
        c[_member("refunded", cur)] += _amount(event.get("refund")) + \
            _amount(event.get("voided"))
        for ln in event.get("lines") or []:
            _rank_line(inc, cur, ln, -1)
    else:
        return None
    return inc


def _rank_line(inc: Increments, cur: str, ln: dict[str, Any], sign: int) -> None:
    qty = int(ln.get("quantity", 0))
    item = _member(ln.get("product_id"), ln.get("variant_id"))
    inc.counters["units"] += sign * qty
    inc.rank(UNITS, item, sign * qty)
    inc.rank(REVENUE, _member(cur, item), sign * _amount(ln.get("line_total")))


# -- time buckets ---------------------------------------------------------------------------
def bucket_starts(at: float) -> list[tuple[str, int]]:
    """``[(bucket, start)]``: the minute, hour and day holding ``at`` (epoch seconds)."""
    t = int(at // 1)
    return [(name, t - t % size) for name, size in BUCKETS.items()]


def cover(start: int, end: int) -> list[tuple[str, int]]:
    """The fewest aligned buckets ``[(bucket, start)]`` exactly covering ``[start, end)``
    (whole minutes, epoch seconds): minutes up to the first whole hour, hours up to the
    first whole day, days, then hours and minutes again."""
    out: list[tuple[str, int]] = []
    t = start
    while t < end:
        for name in ("day", "hour", "minute"):
            size = BUCKETS[name]
            if t % size == 0 and t + size <= end:
                out.append((name, t))
                t += size
                break
        else:  # pragma: no cover - start and end are whole minutes
            raise ValueError("cover needs whole minutes")
    return out


@dataclass(frozen=True, slots=True)
class Plan:
    """A query: ``[start, end)`` in whole minutes and, per bucket of the series, its start,
    end and the stored buckets (`cover`) that make it up."""

    start: int
    end: int
    bucket: str
    series: list[tuple[int, int, list[tuple[str, int]]]]

    def stored(self) -> list[tuple[str, int]]:
        """Every stored bucket the series reads, once each."""
        return [b for _, _, parts in self.series for b in parts]

    def whole(self) -> list[tuple[str, int]]:
        """The fewest stored buckets covering the whole range (for the rankings: a day by
        minute reads one day's rankings, not 1,440 minutes')."""
        return cover(self.start, self.end)


def parse_time(text: str, name: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp (``2026-11-18T09:00:00Z``, an offset, or a
    naive time taken as UTC). Raises ValidationFailed ``invalid_time`` naming ``name``."""
    try:
        dt = datetime.fromisoformat(text.upper())  # RFC 3339 allows a lower-case t and z
        return (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)).timestamp()
    except (AttributeError, TypeError, ValueError, OverflowError):
        raise ValidationFailed("invalid_time", f"{name} is not an RFC 3339 timestamp",
                               [{"field": name, "value": str(text)[:64]}]) from None


def plan(start: float, end: float, bucket: str) -> Plan:
    """The buckets answering ``[start, end)`` (epoch seconds, rounded down to whole minutes)
    by ``bucket`` (minute, hour or day, UTC). A series bucket cut by the range counts only
    the part inside it, so the series adds up to the range's totals.

    Raises ValidationFailed ``invalid_bucket``, ``invalid_range`` (``to`` not after ``from``
    once rounded), ``range_too_large`` (more than `MAX_BUCKETS` buckets; details: limit).
    """
    if bucket not in BUCKETS:
        raise ValidationFailed("invalid_bucket", "bucket is one of minute, hour, day",
                               [{"field": "bucket", "allowed": list(BUCKETS)}])
    lo, hi = int(start // 60) * 60, int(end // 60) * 60
    if hi <= lo:
        raise ValidationFailed("invalid_range", "to must be at least a minute after from",
                               [{"field": "to"}])
    size = BUCKETS[bucket]
    first = lo - lo % size
    if (hi - first + size - 1) // size > MAX_BUCKETS:
        raise ValidationFailed("range_too_large",
                               f"at most {MAX_BUCKETS} buckets per query; widen the bucket",
                               [{"field": "bucket", "limit": MAX_BUCKETS}])
    series = []
    for b in range(first, hi, size):
        s, e = max(b, lo), min(b + size, hi)
        series.append((b, b + size, cover(s, e)))
    return Plan(lo, hi, bucket, series)


# -- figures --------------------------------------------------------------------------------
@dataclass(slots=True)
class Figures:
    """Counters and rankings summed over some buckets (what a store reads back)."""

    counters: Counter[str] = field(default_factory=Counter)
    ranks: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, other: Figures | Increments) -> None:
        self.counters.update(other.counters)
        for name, members in other.ranks.items():
            self.ranks.setdefault(name, Counter()).update(members)


def _split(name: str) -> list[str]:
    return name.split(SEP)


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


def _sales(counters: Counter[str]) -> list[dict[str, Any]]:
    by_cur: dict[str, dict[str, int]] = {}
    for name, n in counters.items():
        parts = _split(name)
        if len(parts) == 2 and parts[0] in ("orders", "revenue", "refunded", "cancelled",
                                            "discount"):
            by_cur.setdefault(parts[1], Counter())[parts[0]] += n
    out = []
    for cur in sorted(by_cur):
        f = by_cur[cur]
        orders, gross = f.get("orders", 0), f.get("revenue", 0)
        out.append({"currency": cur, "orders": orders, "orders_cancelled": f.get("cancelled", 0),
                    "revenue": gross, "refunded": f.get("refunded", 0),
                    "net_revenue": gross - f.get("refunded", 0),
                    "average_order_value": (2 * gross + orders) // (2 * orders) if orders
                    else None,
                    "discount_given": f.get("discount", 0)})
    return out


def report(p: Plan, per_bucket: list[Figures], top: int = 10,
           ranks: dict[str, Counter[str]] | None = None) -> dict[str, Any]:
    """The analytics answer for plan ``p``, given the figures of each series bucket (in
    ``p.series`` order). Shapes (amounts in minor units, times RFC 3339 by the caller):

    ``{start, end, bucket, sales: [{currency, orders, orders_cancelled, revenue, refunded,
    net_revenue, average_order_value, discount_given}], conversion: {carts_created,
    carts_checked_out, rate}, abandonment: {carts, units, value: [Money]}, top_sellers:
    {by_units: [{product_id, variant_id, units}], by_revenue: [{product_id, variant_id,
    revenue: Money}]}, promotions: [{promotion_id, code, uses, discount: [Money]}],
    series: [{start, end, orders, sales: [...]}]}`` with ``start``/``end`` epoch seconds.
    ``rate`` is a float (0 or more) or None with no cart created; ``by_units`` holds at most
    ``top`` entries with a positive figure, largest first (ties by id), from ``ranks`` (the
    rankings of the whole range: `Plan.whole`) or else the buckets' own; ``by_revenue`` as
    many per currency, by currency then largest first (amounts of two currencies are never
    compared).
    """
    total = Figures()
    series = []
    for (b, e, _), fig in zip(p.series, per_bucket, strict=True):
        total.add(fig)
        sales = _sales(fig.counters)
        series.append({"start": b, "end": e, "orders": sum(s["orders"] for s in sales),
                       "sales": sales})
    c = total.counters
    created, checked = c.get("carts_created", 0), c.get("carts_checked_out", 0)
    ranks = total.ranks if ranks is None else ranks
    units = ranks.get(UNITS, Counter())
    revenue = ranks.get(REVENUE, Counter())
    by_units = sorted(((n, m) for m, n in units.items() if n > 0), key=lambda x: (-x[0], x[1]))
    by_cur: dict[str, list[tuple[int, str]]] = {}
    for m, n in revenue.items():
        if n > 0:
            by_cur.setdefault(_split(m)[0], []).append((n, m))
    by_rev = [x for cur in sorted(by_cur)
              for x in sorted(by_cur[cur], key=lambda x: (-x[0], x[1]))[:top]]
    promos: dict[tuple[str, str], dict[str, Any]] = {}
    for name, n in sorted(c.items()):
        parts = _split(name)
        if parts[0] == "promo_uses" and len(parts) == 3:
            promos.setdefault((parts[1], parts[2]), {"uses": 0, "discount": {}})["uses"] += n
        elif parts[0] == "promo_discount" and len(parts) == 4:
            d = promos.setdefault((parts[1], parts[2]), {"uses": 0, "discount": {}})
            d["discount"][parts[3]] = d["discount"].get(parts[3], 0) + n
    return {
        "start": p.start, "end": p.end, "bucket": p.bucket,
        "sales": _sales(c),
        "conversion": {"carts_created": created, "carts_checked_out": checked,
                       "rate": checked / created if created else None},
        "abandonment": {"carts": c.get("carts_abandoned", 0),
                        "units": c.get("abandoned_units", 0),
                        "value": [_money(n, _split(name)[1]) for name, n in sorted(c.items())
                                  if name.startswith("abandoned_value" + SEP)]},
        "top_sellers": {
            "by_units": [{"product_id": _split(m)[0], "variant_id": _split(m)[1], "units": n}
                         for n, m in by_units[:top]],
            "by_revenue": [{"product_id": _split(m)[1], "variant_id": _split(m)[2],
                            "revenue": _money(n, _split(m)[0])} for n, m in by_rev]},
        "promotions": [{"promotion_id": pid, "code": code or None, "uses": v["uses"],
                        "discount": [_money(a, cur) for cur, a in sorted(v["discount"].items())]}
                       for (pid, code), v in sorted(promos.items(),
                                                    key=lambda kv: (-kv[1]["uses"], kv[0]))],
        "series": series,
    }
