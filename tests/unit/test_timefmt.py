"""`engine.timefmt.rfc3339` renders by arithmetic what `datetime` would render."""

from __future__ import annotations

import random

import pytest

from engine.timefmt import _by_datetime, _format, rfc3339


def test_none_stays_none_and_a_known_instant_renders() -> None:
    assert rfc3339(None) is None
    assert rfc3339(1795000000.25) == "2026-11-18T11:06:40.250Z"
    assert rfc3339(1795000000.0) == "2026-11-18T11:06:40Z"
    assert rfc3339(0.0) == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize("ts", [
    0.0005, 0.0000005, 0.0000015, 0.9999995, 0.99999949, 86_399.9999999, 951_782_400.0,
    1795000000.9999996, 253_402_300_799.5, -1.5])
def test_edges_match_datetime(ts: float) -> None:
    # Rounding to the microsecond (half to even), a carry into the next second and day,
    # a leap day, and the instants outside the arithmetic range (through datetime).
    assert _format.__wrapped__(ts) == _by_datetime(ts)


def test_random_instants_match_datetime() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        whole = rng.randrange(0, 4_000_000_000)
        for ts in (rng.uniform(0, 4e9), whole + rng.randrange(0, 2_001) * 0.0005,
                   whole + rng.randrange(0, 2_000_001) * 0.0000005):
            assert _format.__wrapped__(ts) == _by_datetime(ts), ts
