"""``python -m loadtest.engine_bench`` runs each of its figures (at toy sizes) and reports them."""

from __future__ import annotations

import uuid

import pytest
import redis

from loadtest.engine_bench import (
    bench_analytics,
    bench_apply,
    bench_group_commit,
    bench_line_cost,
    bench_memory,
    bench_ops,
    bench_persistence,
    bench_view_cost,
)
from snapshots.memory_store import MemoryStore

pytestmark = pytest.mark.integration


async def test_the_operation_figures_count_every_operation_they_ran() -> None:
    row = await bench_ops(carts=50, ops=3000, store=MemoryStore(), label="memory store")
    assert row["ops"] == 3000 and row["value"] > 0
    # bench_apply raises if any operation of a batch failed
    row = await bench_apply(carts=50, ops=2000, per_cart=10, store=MemoryStore(),
                            label="memory store")
    assert row["ops"] >= 2000 and row["per_cart"] == 10 and row["value"] > 0


async def test_the_memory_figure_extrapolates_to_a_million_carts() -> None:
    row = await bench_memory(carts=2000)
    assert row["carts"] == 2000 and row["unit"] == "B"
    # the projection is the baseline plus a million times the measured bytes per cart
    projected = (row["baseline_rss_mb"] * 2**20 + row["value"] * 1_000_000) / 2**30
    assert abs(row["projected_rss_1m_carts_gb"] - projected) <= 0.01


async def test_the_persistence_figure_compares_both_ledgers_and_leaves_redis_clean(
        redis_url: str) -> None:
    prefix = "t" + uuid.uuid4().hex[:10]
    rows = await bench_persistence(redis_url, open_reservations=300, rounds=3, samples=10,
                                   prefix=prefix)
    empty, full, ratio = rows
    assert "0 already open" in empty["figure"] and "300 already open" in full["figure"]
    assert empty["value"] > 0 and full["value"] > 0 and ratio["value"] > 0
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(f"{prefix}*")) == []
    client.close()


async def test_the_line_cost_figure_compares_a_big_cart_with_a_one_line_cart() -> None:
    small, big, ratio = await bench_line_cost(big=12, rounds=3, samples=5)
    assert small["figure"] == "add a line to a 1-line cart"
    assert big["figure"] == "add a line to a 12-line cart"
    assert small["value"] > 0 and big["value"] > 0
    assert ratio["unit"] == "x" and ratio["value"] == pytest.approx(
        big["value"] / small["value"], rel=0.1)


async def test_the_view_cost_figures_time_changed_views_and_pricing() -> None:
    view, price = await bench_view_cost(lines=3, views=200)
    assert view["figure"] == "changed view of a 3-line cart (priced, dicts, JSON)"
    assert price["figure"] == "pricing a 3-line cart"
    assert view["unit"] == price["unit"] == "us CPU" and view["views"] == 200
    assert view["value"] > 0 and price["value"] > 0


async def test_the_group_commit_figures_are_per_write_and_leave_redis_clean(
        redis_url: str) -> None:
    prefix = "t" + uuid.uuid4().hex[:10]
    rows = await bench_group_commit(redis_url, writes=5, flushes=20, prefix=prefix)
    assert [r["figure"] for r in rows] == [
        "group commit of 5: client CPU per write", "group commit of 5: Redis CPU per write",
        "group commit of 5: wall time per write"]
    assert all(r["unit"] == "us" and r["flushes"] == 20 for r in rows)
    assert rows[0]["value"] > 0 and rows[2]["value"] > 0 and rows[1]["value"] >= 0
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(f"{prefix}*")) == []
    client.close()


async def test_the_analytics_figures_count_every_event_and_leave_redis_clean(
        redis_url: str) -> None:
    prefix = "t" + uuid.uuid4().hex[:10]
    rows = await bench_analytics(redis_url, events=120, batches=2, prefix=prefix)
    assert [r["figure"] for r in rows] == [
        "analytics consumer, 120 events a batch: CPU per event",
        "analytics consumer, 120 events a batch: wall time per event"]
    assert all(r["unit"] == "us" and r["batches"] == 2 and r["value"] > 0 for r in rows)
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(f"{prefix}*")) == []
    client.close()
