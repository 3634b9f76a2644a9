"""Sales analytics over real Redis: a known sequence of orders, refunds, cancellations and
carts folded by the consumer gives every figure; a consumer killed between applying a batch
and acknowledging it (or before applying it) and restarted counts nothing twice; the lease
keeps a second consumer from applying. Collected on a Redis Cluster too
(`test_redis_cluster`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from snapshots.analytics_store import (
    APPLY_CHUNK,
    GROUP,
    READ_COUNT,
    LeaseLost,
    RedisAnalytics,
    analytics_report,
)
from snapshots.redis_store import RedisStore
from snapshots.store import NEW_EPOCH, PARTITIONS, Write
from tests.unit.test_analytics import T0, expired, paid

pytestmark = pytest.mark.integration


def _cancelled(at: float, lines: list[tuple[str, str, int, int]], refund: int = 0,
               voided: int = 0, previous: str = "paid") -> dict[str, Any]:
    return {"type": "order.cancelled", "at": at, "previous_status": previous,
            "currency": "USD", "refund": {"amount": refund, "currency": "USD"},
            "voided": {"amount": voided, "currency": "USD"},
            "lines": [{"product_id": p, "variant_id": v, "quantity": q, "unit_price": u,
                       "line_total": q * u} for p, v, q, u in lines]}


def known_sequence() -> list[dict[str, Any]]:
    """A day's events (times from T0, a UTC midnight): 5 carts created, 3 checked out,
    4 orders paid (3 USD, 1 EUR), a partial refund, a paid order cancelled with a refund, a
    3-D Secure order cancelled unpaid, 2 carts expired with lines and 1 empty."""
    return [
        *({"type": "cart.created", "at": T0 + 60 * i, "cart_id": f"c{i}"} for i in range(5)),
        paid(T0 + 600, "o1", [("tee", "tee-m", 2, 1000)], discounts=[("p10", "SAVE10", 200)],
             shipping=500),
        {"type": "cart.checked_out", "at": T0 + 600, "cart_id": "c0", "order_id": "o1"},
        paid(T0 + 3700, "o2", [("cap", "cap-1", 1, 500), ("tee", "tee-l", 1, 1000)],
             discounts=[("auto5", None, 75)]),
        {"type": "cart.checked_out", "at": T0 + 3700, "cart_id": "c1", "order_id": "o2"},
        paid(T0 + 3800, "o3", [("mug", "mug-1", 3, 700)], cur="EUR"),
        {"type": "cart.checked_out", "at": T0 + 3800, "cart_id": "c2", "order_id": "o3"},
        paid(T0 + 3900, "o4", [("tee", "tee-m", 1, 1000)]),
        {"type": "order.refunded", "at": T0 + 4000, "order_id": "o1",
         "amount": {"amount": 300, "currency": "USD"}},
        _cancelled(T0 + 4100, [("tee", "tee-m", 1, 1000)], refund=1000),
        _cancelled(T0 + 4200, [("hat", "hat-1", 1, 900)], previous="requires_action"),
        expired(T0 + 7300, [("tee", "tee-m", 1, 1000), ("cap", "cap-1", 2, 500)]),
        expired(T0 + 7400, [("mug", "mug-1", 1, 700)], cur="EUR"),
        expired(T0 + 7500, []),
        {"type": "stock.depleted", "at": T0 + 7600, "variant_id": "tee-m"},
    ]


#: Every figure of `known_sequence` over [T0, T0 + 3 h) by hour.
EXPECTED: dict[str, Any] = {
    "sales": [
        {"currency": "EUR", "orders": 1, "orders_cancelled": 0, "revenue": 2100,
         "refunded": 0, "net_revenue": 2100, "average_order_value": 2100,
         "discount_given": 0},
        {"currency": "USD", "orders": 3, "orders_cancelled": 1,
         "revenue": 2300 + 1425 + 1000, "refunded": 300 + 1000,
         "net_revenue": 4725 - 1300, "average_order_value": 1575, "discount_given": 275}],
    "conversion": {"carts_created": 5, "carts_checked_out": 3, "rate": 0.6},
    "abandonment": {"carts": 2, "units": 4, "value": [{"amount": 700, "currency": "EUR"},
                                                      {"amount": 2000, "currency": "USD"}]},
    "top_sellers": {
        "by_units": [{"product_id": "mug", "variant_id": "mug-1", "units": 3},
                     {"product_id": "tee", "variant_id": "tee-m", "units": 2},
                     {"product_id": "cap", "variant_id": "cap-1", "units": 1},
                     {"product_id": "tee", "variant_id": "tee-l", "units": 1}],
        "by_revenue": [{"product_id": "mug", "variant_id": "mug-1",
                        "revenue": {"amount": 2100, "currency": "EUR"}},
                       {"product_id": "tee", "variant_id": "tee-m",
                        "revenue": {"amount": 2000, "currency": "USD"}},
                       {"product_id": "tee", "variant_id": "tee-l",
                        "revenue": {"amount": 1000, "currency": "USD"}},
                       {"product_id": "cap", "variant_id": "cap-1",
                        "revenue": {"amount": 500, "currency": "USD"}}]},
    "promotions": [{"promotion_id": "auto5", "code": None, "uses": 1,
                    "discount": [{"amount": 75, "currency": "USD"}]},
                   {"promotion_id": "p10", "code": "SAVE10", "uses": 1,
                    "discount": [{"amount": 200, "currency": "USD"}]}],
}


async def feed(store: RedisStore, events: list[dict[str, Any]], tag: str = "") -> None:
    """Write ``events`` to the outbox as actors do (one commit each, spread over the
    partitions: several land in one stream, in order)."""
    writes = [Write(key=f"test:{tag}{i}", epoch=NEW_EPOCH, partition=(7 * i) % PARTITIONS,
                    events=[e]) for i, e in enumerate(events)]
    assert all(isinstance(x, int) for x in await store.commit(writes))


async def figures(an: RedisAnalytics) -> dict[str, Any]:
    r = await analytics_report(an, T0, T0 + 3 * 3600, "hour")
    return {k: r[k] for k in EXPECTED} | {"orders_by_hour": [b["orders"] for b in r["series"]]}


async def pending(store: RedisStore) -> int:
    pipe = store.r.pipeline(transaction=False)
    for key in store.event_streams():
        pipe.xpending(key, GROUP)
    return sum(p["pending"] for p in await pipe.execute())


async def test_the_consumer_folds_a_known_sequence_into_every_figure(
        redis_store: RedisStore) -> None:
    an = RedisAnalytics(redis_store)
    await feed(redis_store, known_sequence())
    assert await an.catch_up() == len(known_sequence())
    got = await figures(an)
    assert got == EXPECTED | {"orders_by_hour": [1, 3, 0]}
    # Buckets by minute and by day answer the same totals.
    day = await analytics_report(an, T0, T0 + 86400, "day")
    minutes = await analytics_report(an, T0, T0 + 3 * 3600, "minute")
    for r in (day, minutes):
        assert {k: r[k] for k in EXPECTED} == EXPECTED
    assert sum(b["orders"] for b in minutes["series"]) == 4 and len(minutes["series"]) == 180
    assert await an.catch_up() == 0  # nothing new: nothing read


async def test_a_read_that_fills_no_stream_is_caught_up_however_much_it_read(
        redis_store: RedisStore) -> None:
    # The running consumer waits `PACE` after a caught-up read and reads a backlog at once:
    # a backlog is a stream that gave a full READ_COUNT, not a large read over many streams.
    an = RedisAnalytics(redis_store)
    assert await an.hold_lease()
    await an.join()

    def created(tag: str, i: int, partition: int) -> Write:
        return Write(key=f"test:{tag}{i}", epoch=NEW_EPOCH, partition=partition,
                     events=[{"type": "cart.created", "at": T0, "cart_id": f"{tag}{i}"}])

    spread = 3 * READ_COUNT
    await redis_store.commit([created("s", i, i % 150) for i in range(spread)])
    assert await an.consume_once() == spread and an.behind is False
    await redis_store.commit([created("b", i, 3) for i in range(READ_COUNT + 20)])
    assert await an.consume_once() == READ_COUNT and an.behind is True
    assert await an.consume_once() == 20 and an.behind is False
    assert an.applied == spread + READ_COUNT + 20


async def test_a_consumer_killed_after_applying_and_before_acking_counts_nothing_twice(
        redis_store: RedisStore) -> None:
    events = known_sequence()
    first, second = events[:12], events[12:]

    class Killed(Exception):
        pass

    async def crash() -> None:
        raise Killed

    await feed(redis_store, first, "a")
    dying = RedisAnalytics(redis_store, after_apply=crash)
    with pytest.raises(Killed):
        await dying.catch_up()
    assert dying.applied == len(first)
    assert await pending(redis_store) == len(first)  # applied, never acknowledged
    # The second half comes while it is down.
    await feed(redis_store, second, "b")
    await redis_store.r.delete(dying.lease_key)  # its lease lapses
    successor = RedisAnalytics(redis_store)
    assert await successor.catch_up() == len(events)  # every pending one re-read, and the new
    assert successor.applied == len(second)
    assert await pending(redis_store) == 0
    assert await figures(successor) == EXPECTED | {"orders_by_hour": [1, 3, 0]}
    # A third restart replaying the whole history (group rewound) counts nothing again.
    for key in redis_store.event_streams():
        await redis_store.r.xgroup_setid(key, GROUP, id="0")
    again = RedisAnalytics(redis_store)
    await redis_store.r.delete(successor.lease_key)
    assert await again.catch_up() == len(events) and again.applied == 0
    assert await figures(again) == EXPECTED | {"orders_by_hour": [1, 3, 0]}


async def test_entries_read_but_not_applied_before_a_crash_are_applied_on_restart(
        redis_store: RedisStore) -> None:
    an = RedisAnalytics(redis_store)
    await an.join()
    await feed(redis_store, known_sequence())
    # A consumer that died right after reading: the entries are its pending ones.
    assert len(await RedisAnalytics(redis_store)._read(pending=False, block_ms=None)) == \
        len(known_sequence())
    assert await pending(redis_store) == len(known_sequence())
    assert await an.catch_up() == len(known_sequence())
    assert an.applied == len(known_sequence())
    assert await figures(an) == EXPECTED | {"orders_by_hour": [1, 3, 0]}


async def test_a_second_consumer_applies_nothing_while_the_first_holds_the_lease(
        redis_store: RedisStore) -> None:
    holder, other = RedisAnalytics(redis_store), RedisAnalytics(redis_store)
    assert await holder.hold_lease()
    await feed(redis_store, known_sequence()[:3])
    with pytest.raises(LeaseLost):
        await other.catch_up()
    assert other.applied == 0
    assert (await figures(holder))["conversion"]["carts_created"] == 0
    # Fenced in the script as well: a batch sent by a consumer that lost its lease is refused.
    await other.join()
    with pytest.raises(LeaseLost):
        await other.consume_once()
    await holder.catch_up()
    assert (await figures(holder))["conversion"]["carts_created"] == 3


async def test_the_running_consumer_counts_events_as_they_come_and_hands_over_on_stop(
        redis_store: RedisStore) -> None:
    first = RedisAnalytics(redis_store, poll=0.05)
    first.start()
    await feed(redis_store, known_sequence())

    await asyncio.wait_for(first.wait_applied(len(known_sequence())), 20)
    await first.stop()  # gives the lease back
    second = RedisAnalytics(redis_store, poll=0.05)
    second.start()
    await feed(redis_store, [{"type": "cart.created", "at": T0 + 5}], "late")
    await asyncio.wait_for(second.wait_applied(1), 20)
    await second.stop()
    got = await figures(second)
    assert got["conversion"]["carts_created"] == 6 and got["sales"] == EXPECTED["sales"]


async def test_a_batch_mixing_counted_and_new_entries_counts_only_the_new_ones(
        redis_store: RedisStore) -> None:
    events = known_sequence()
    # Every event in one stream, so one batch holds counted and new entries of one stream.
    writes = [Write(key=f"test:one{i}", epoch=NEW_EPOCH, partition=3, events=[e])
              for i, e in enumerate(events)]
    first = RedisAnalytics(redis_store)
    await first.join()
    assert all(isinstance(x, int) for x in await redis_store.commit(writes[:9]))
    assert await first.catch_up() == 9
    assert all(isinstance(x, int) for x in await redis_store.commit(writes[9:]))
    await redis_store.r.xgroup_setid(redis_store.events_key(3), GROUP, id="0")  # a replay
    assert await first.catch_up() == len(events)
    assert first.applied == len(events)  # the first 9 once, the others once
    assert await figures(first) == EXPECTED | {"orders_by_hour": [1, 3, 0]}


async def test_a_replay_larger_than_one_script_call_counts_each_event_once(
        redis_store: RedisStore) -> None:
    # More than APPLY_CHUNK events in one read, some counted before: the event-by-event
    # script runs in several calls, and the figures count every cart once.
    total, early = 2 * APPLY_CHUNK + 50, APPLY_CHUNK // 2
    writes = [Write(key=f"test:r{i}", epoch=NEW_EPOCH, partition=(7 * i) % PARTITIONS,
                    events=[{"type": "cart.created", "at": T0 + i, "cart_id": f"r{i}"}])
              for i in range(total)]
    an = RedisAnalytics(redis_store)
    await an.join()
    assert all(isinstance(x, int) for x in await redis_store.commit(writes[:early]))
    assert await an.catch_up() == early
    assert all(isinstance(x, int) for x in await redis_store.commit(writes[early:]))
    for key in redis_store.event_streams():  # a replay of everything
        await redis_store.r.xgroup_setid(key, GROUP, id="0")
    assert await an.catch_up() == total
    assert an.applied == total  # the early ones once, the others once
    report = await analytics_report(an, T0, T0 + 3600, "hour")
    assert report["conversion"]["carts_created"] == total


async def test_a_report_taken_while_the_consumer_applies_is_of_one_instant(
        redis_store: RedisStore) -> None:
    # Every order sells one unit: in any report, orders (counters) and units (rankings) agree.
    an = RedisAnalytics(redis_store)
    assert await an.hold_lease()
    await an.join()
    done = asyncio.Event()

    async def sell() -> None:
        try:
            for i in range(30):
                await feed(redis_store, [paid(T0 + 60 * i, f"o{i}", [("tee", "tee-m", 1,
                                                                      1000)])], f"s{i}-")
                assert await an.hold_lease()  # renewed, as the running consumer does
                await an.consume_once()
        finally:
            done.set()

    reports = 0

    async def read() -> None:
        nonlocal reports
        while not done.is_set():
            r = await analytics_report(an, T0, T0 + 3 * 3600, "hour")
            orders = sum(s["orders"] for s in r["sales"])
            units = sum(u["units"] for u in r["top_sellers"]["by_units"])
            assert orders == units, (orders, units)
            reports += 1

    await asyncio.gather(sell(), read())
    assert reports > 0 and an.applied == 30
