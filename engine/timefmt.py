"""RFC 3339 rendering of epoch seconds (API.md: times are RFC 3339 strings in UTC)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from math import modf

#: Instants from 1970-01-01 up to the end of 9999 are rendered by arithmetic; others (none
#: a cart holds) through `datetime`.
_LAST = 253_402_300_800.0
_EPOCH = date(1970, 1, 1)


def rfc3339(ts: float | None) -> str | None:
    """``1795000000.25`` -> ``"2026-11-18T11:06:40.250Z"``; None stays None. Reads no clock.

    Milliseconds, truncated from the microsecond `datetime.fromtimestamp` rounds to (half
    to even); no fraction when that microsecond is 0.
    """
    if ts is None:
        return None
    return _format(ts)


#: A cart shows the same few instants in every view: two per line and three of its own, so
#: 65,536 entries (about 10 MB) keep those of some 5,000 busy carts of 6 lines formatted.
@lru_cache(maxsize=65_536)
def _format(ts: float) -> str:
    if not 0.0 <= ts < _LAST:
        return _by_datetime(ts)
    frac, whole = modf(ts)
    us = round(frac * 1e6)  # as datetime.fromtimestamp rounds: half to even
    seconds = int(whole)
    if us >= 1_000_000:
        seconds += 1
        us -= 1_000_000
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    head = f"{_day(days)}T{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{head}.{us // 1000:03d}Z" if us else f"{head}Z"


@lru_cache(maxsize=4_096)
def _day(days: int) -> str:
    """``YYYY-MM-DD`` of the day ``days`` after 1970-01-01."""
    return (_EPOCH + timedelta(days=days)).isoformat()


def _by_datetime(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
