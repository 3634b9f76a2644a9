"""The in-process gateway driver runs its cart loop through the real app."""

from __future__ import annotations

import pytest

from loadtest.gateway_bench import measure

pytestmark = pytest.mark.integration


async def test_the_gateway_driver_completes_its_loops_and_reports_cpu_per_request() -> None:
    # measure() raises unless every add / PATCH / DELETE / GET answered 200.
    per_request_us = await measure(3)
    assert 0 < per_request_us < 1_000_000


async def test_the_gateway_driver_keeps_the_other_lines_of_a_bigger_cart() -> None:
    # With --lines 6 the loop's line is added beside five others and found among them.
    assert 0 < await measure(2, lines=6) < 1_000_000
