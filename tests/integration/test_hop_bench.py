"""`loadtest.hop_bench` measures a real hop: a channel server in another process answers
every message, and the figures it reports are per message and per batch."""

from __future__ import annotations

import pytest

from loadtest.hop_bench import main

pytestmark = pytest.mark.integration


def test_hop_bench_reports_per_message_cpu_by_batch_size() -> None:
    rows = main(["--messages", "400", "--concurrency", "1,8", "--json"])
    one, eight = rows
    assert (one["concurrency"], one["messages"]) == (1, 400)
    assert (eight["concurrency"], eight["messages"]) == (8, 400)
    assert one["messages_per_batch"] == 1.0  # one at a time: a batch each
    assert 1.0 < eight["messages_per_batch"] <= 8.0  # concurrent messages share batches
    for r in rows:
        assert r["messages_per_s"] > 0 and r["caller_cpu_us"] > 0 and r["host_cpu_us"] >= 0
