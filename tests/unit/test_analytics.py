"""The analytics fold, bucket plan and report: pure functions, no Redis, no clock."""

from __future__ import annotations

import pytest

from engine.analytics import (
    COUNTED_TYPES,
    MAX_BUCKETS,
    SEP,
    Figures,
    bucket_starts,
    cover,
    fold,
    parse_time,
    plan,
    report,
    sale_fields,
)
from engine.errors import ValidationFailed

pytestmark = pytest.mark.unit

DAY = 86400
T0 = 1_795_000_000 - 1_795_000_000 % DAY  # a UTC midnight


def paid(at: float, order_id: str, lines: list[tuple[str, str, int, int]], cur: str = "USD",
         discounts: list[tuple[str, str | None, int]] = (), shipping: int = 0) -> dict:
    """An ``order.paid`` event as the order actor writes it; lines (product, variant,
    quantity, unit price), discounts (promotion id, code, amount) off the order."""
    api_lines = [{"product_id": p, "variant_id": v, "quantity": q,
                  "unit_price": {"amount": u, "currency": cur},
                  "line_total": {"amount": q * u, "currency": cur}} for p, v, q, u in lines]
    subtotal = sum(q * u for _, _, q, u in lines)
    off = sum(a for _, _, a in discounts)
    total = {"amount": subtotal - off + shipping, "currency": cur}
    ds = [{"promotion_id": pid, "code": code, "amount": {"amount": a, "currency": cur}}
          for pid, code, a in discounts]
    totals = {"subtotal": {"amount": subtotal, "currency": cur},
              "discount": {"amount": off, "currency": cur}, "total": total}
    return {"type": "order.paid", "at": at, "order_id": order_id, "total": total,
            **sale_fields(cur, api_lines, ds, totals)}


def expired(at: float, lines: list[tuple[str, str, int, int]], cur: str = "USD") -> dict:
    compact = [{"product_id": p, "variant_id": v, "quantity": q, "unit_price": u,
                "line_total": q * u} for p, v, q, u in lines]
    return {"type": "cart.expired", "at": at, "cart_id": "c", "released": [], "currency": cur,
            "lines": compact, "value": {"amount": sum(q * u for *_, q, u in lines),
                                        "currency": cur}}


def test_a_paid_order_counts_one_order_its_total_its_lines_and_its_promotions() -> None:
    inc = fold(paid(T0 + 5, "o1", [("tee", "tee-m", 2, 1000), ("cap", "cap-1", 1, 500)],
                    discounts=[("p10", "SAVE10", 250)], shipping=400))
    assert inc is not None and inc.at == T0 + 5
    assert inc.counters[f"orders{SEP}USD"] == 1
    assert inc.counters[f"revenue{SEP}USD"] == 2500 - 250 + 400
    assert inc.counters[f"discount{SEP}USD"] == 250
    assert inc.counters["units"] == 3
    assert inc.counters[f"promo_uses{SEP}p10{SEP}SAVE10"] == 1
    assert inc.counters[f"promo_discount{SEP}p10{SEP}SAVE10{SEP}USD"] == 250
    assert inc.ranks["units"] == {f"tee{SEP}tee-m": 2, f"cap{SEP}cap-1": 1}
    assert inc.ranks["revenue"] == {f"USD{SEP}tee{SEP}tee-m": 2000, f"USD{SEP}cap{SEP}cap-1": 500}


def test_refunds_and_paid_cancellations_return_money_and_a_cancellation_takes_lines_back(
        ) -> None:
    refund = fold({"type": "order.refunded", "at": T0, "amount": {"amount": 300,
                                                                  "currency": "EUR"}})
    assert refund is not None and dict(refund.counters) == {f"refunded{SEP}EUR": 300}
    cancel = fold({"type": "order.cancelled", "at": T0, "previous_status": "paid",
                   "currency": "USD", "refund": {"amount": 700, "currency": "USD"},
                   "voided": {"amount": 0, "currency": "USD"},
                   "lines": [{"product_id": "tee", "variant_id": "tee-m", "quantity": 2,
                              "unit_price": 350, "line_total": 700}]})
    assert cancel is not None
    assert cancel.counters[f"refunded{SEP}USD"] == 700
    assert cancel.counters[f"cancelled{SEP}USD"] == 1
    assert cancel.ranks["units"] == {f"tee{SEP}tee-m": -2}
    # An order cancelled before it was paid moved no money.
    assert fold({"type": "order.cancelled", "at": T0, "previous_status": "requires_action",
                 "currency": "USD", "lines": []}) is None


def test_carts_created_checked_out_and_expired_with_lines_count_and_an_empty_one_does_not(
        ) -> None:
    assert dict(fold({"type": "cart.created", "at": T0}).counters) == {"carts_created": 1}
    assert dict(fold({"type": "cart.checked_out", "at": T0}).counters) == \
        {"carts_checked_out": 1}
    inc = fold(expired(T0, [("tee", "tee-m", 3, 1000)]))
    assert dict(inc.counters) == {"carts_abandoned": 1, "abandoned_units": 3,
                                  f"abandoned_value{SEP}USD": 3000}
    assert fold(expired(T0, [])) is None


def test_events_no_figure_needs_and_old_events_without_sale_fields_fold_to_nothing() -> None:
    assert fold({"type": "stock.depleted", "at": T0, "variant_id": "v"}) is None
    assert fold({"type": "order.paid", "at": T0, "total": {"amount": 1, "currency": "USD"}}) \
        is None
    assert fold({"type": "cart.created"}) is None  # no time
    assert fold({"type": "cart.updated", "at": T0, "cart_id": "c", "version": 2}) is None


def test_the_consumer_reads_the_json_only_of_entries_whose_type_may_count() -> None:
    """The analytics consumer skips the JSON of outbox entries of types no figure counts
    (``cart.updated``: most of the outbox); an entry without a type field is read."""
    from snapshots.analytics_store import _may_count

    assert not _may_count({b"type": b"cart.updated", b"data": b"{"})
    assert _may_count({b"type": b"order.paid", b"data": b"{}"})
    assert _may_count({b"data": b"{}"}) and _may_count(None)
    assert all(_may_count({b"type": t.encode(), b"data": b"{}"}) for t in COUNTED_TYPES)


def test_each_event_lands_in_its_minute_hour_and_day() -> None:
    assert bucket_starts(T0 + 3725.9) == [("minute", T0 + 3720), ("hour", T0 + 3600),
                                          ("day", T0)]


def test_cover_takes_the_fewest_aligned_buckets_for_a_range() -> None:
    start, end = T0 - 120, T0 + DAY + 3600 + 180
    assert cover(start, end) == [("minute", T0 - 120), ("minute", T0 - 60), ("day", T0),
                                 ("hour", T0 + DAY), ("minute", T0 + DAY + 3600),
                                 ("minute", T0 + DAY + 3660), ("minute", T0 + DAY + 3720)]


def test_a_series_bucket_cut_by_the_range_counts_only_its_inside() -> None:
    p = plan(T0 + 1800.5, T0 + 2 * 3600 + 60, "hour")
    assert p.start == T0 + 1800 and p.end == T0 + 7260
    assert [(b, e) for b, e, _ in p.series] == [(T0, T0 + 3600), (T0 + 3600, T0 + 7200),
                                                (T0 + 7200, T0 + 10800)]
    assert p.series[0][2] == [("minute", T0 + 1800 + 60 * i) for i in range(30)]
    assert p.series[1][2] == [("hour", T0 + 3600)]
    assert p.series[2][2] == [("minute", T0 + 7200)]


@pytest.mark.parametrize(("start", "end", "bucket", "code"), [
    (T0, T0 + 60, "week", "invalid_bucket"),
    (T0 + 60, T0 + 30, "minute", "invalid_range"),
    (T0, T0 + 59, "minute", "invalid_range"),
    (T0, T0 + 60 * (MAX_BUCKETS + 1), "minute", "range_too_large"),
])
def test_a_bad_query_is_refused_with_its_code(start: float, end: float, bucket: str,
                                              code: str) -> None:
    with pytest.raises(ValidationFailed) as e:
        plan(start, end, bucket)
    assert e.value.code == code


def test_times_are_rfc3339_and_anything_else_is_invalid_time() -> None:
    assert parse_time("2026-11-18T09:46:40Z", "from") == 1794995200.0
    assert parse_time("2026-11-18T10:46:40.5+01:00", "from") == 1794995200.5
    assert parse_time("2026-11-18T09:46:40", "from") == 1794995200.0  # naive: UTC
    with pytest.raises(ValidationFailed) as e:
        parse_time("yesterday", "to")
    assert e.value.code == "invalid_time" and e.value.details[0]["field"] == "to"


def _fold_into(events: list[dict], p) -> list[Figures]:
    per = []
    for b, e, _ in p.series:
        f = Figures()
        for ev in events:
            if b <= ev["at"] < e and p.start <= ev["at"] < p.end:
                f.add(fold(ev))
        per.append(f)
    return per


def test_the_report_gives_every_figure_of_a_known_day() -> None:
    events = [
        {"type": "cart.created", "at": T0 + 10}, {"type": "cart.created", "at": T0 + 20},
        {"type": "cart.created", "at": T0 + 30}, {"type": "cart.created", "at": T0 + 3700},
        paid(T0 + 100, "o1", [("tee", "tee-m", 2, 1000)], discounts=[("p10", "SAVE10", 200)]),
        {"type": "cart.checked_out", "at": T0 + 100},
        paid(T0 + 3800, "o2", [("cap", "cap-1", 1, 500), ("tee", "tee-l", 1, 1000)]),
        {"type": "cart.checked_out", "at": T0 + 3800},
        paid(T0 + 3900, "o3", [("mug", "mug-1", 3, 700)], cur="EUR"),
        {"type": "order.refunded", "at": T0 + 4000, "amount": {"amount": 500,
                                                               "currency": "USD"}},
        expired(T0 + 5000, [("tee", "tee-m", 1, 1000), ("cap", "cap-1", 2, 500)]),
    ]
    p = plan(T0, T0 + 3 * 3600, "hour")
    r = report(p, _fold_into(events, p), top=2)
    assert r["sales"] == [
        {"currency": "EUR", "orders": 1, "orders_cancelled": 0, "revenue": 2100,
         "refunded": 0, "net_revenue": 2100, "average_order_value": 2100,
         "discount_given": 0},
        {"currency": "USD", "orders": 2, "orders_cancelled": 0, "revenue": 1800 + 1500,
         "refunded": 500, "net_revenue": 2800, "average_order_value": 1650,
         "discount_given": 200}]
    assert r["conversion"] == {"carts_created": 4, "carts_checked_out": 2, "rate": 0.5}
    assert r["abandonment"] == {"carts": 1, "units": 3,
                                "value": [{"amount": 2000, "currency": "USD"}]}
    assert r["top_sellers"]["by_units"] == [
        {"product_id": "mug", "variant_id": "mug-1", "units": 3},
        {"product_id": "tee", "variant_id": "tee-m", "units": 2}]
    assert r["top_sellers"]["by_revenue"] == [
        {"product_id": "mug", "variant_id": "mug-1",
         "revenue": {"amount": 2100, "currency": "EUR"}},
        {"product_id": "tee", "variant_id": "tee-m",
         "revenue": {"amount": 2000, "currency": "USD"}},
        {"product_id": "tee", "variant_id": "tee-l",
         "revenue": {"amount": 1000, "currency": "USD"}}]
    assert r["promotions"] == [{"promotion_id": "p10", "code": "SAVE10", "uses": 1,
                                "discount": [{"amount": 200, "currency": "USD"}]}]
    assert [(s["start"] - T0, s["orders"]) for s in r["series"]] == [(0, 1), (3600, 2),
                                                                     (7200, 0)]
    assert r["series"][1]["sales"][1]["net_revenue"] == 1500 - 500


def test_average_order_value_rounds_half_up_to_a_minor_unit() -> None:
    p = plan(T0, T0 + 60, "minute")
    f = Figures()
    for i, amount in enumerate((100, 101)):
        f.add(fold(paid(T0 + i, f"o{i}", [("a", "a-1", 1, amount)])))
    assert report(p, [f])["sales"][0]["average_order_value"] == 101  # 100.5 -> 101
