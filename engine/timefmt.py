"""RFC 3339 rendering of epoch seconds (API.md: times are RFC 3339 strings in UTC)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


def rfc3339(ts: float | None) -> str | None:
    """``1795000000.25`` -> ``"2026-11-18T11:06:40.250Z"``; None stays None. Reads no clock."""
    if ts is None:
        return None
    return _format(ts)


#: A cart shows the same few instants in every view: two per line and three of its own, so
#: 65,536 entries (about 10 MB) keep those of some 5,000 busy carts of 6 lines formatted.
@lru_cache(maxsize=65_536)
def _format(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
