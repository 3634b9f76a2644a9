"""Reading the outbox as it grows: one tail per process, for real-time fan-out.

An entry is ``(entry_id, event)``: ``entry_id`` is a Redis stream id ``"<ms>-<seq>"`` (the
in-memory outbox numbers its entries ``"0-<n>"``, n from 1), ``event`` the outbox record
``{"type", "at", ...}``. Ids compare as `parse_id` tuples; across the partitions' streams of
one Redis they follow its clock (milliseconds first), on a Redis Cluster each node's.

- `RedisTail` reads every partition stream (`RedisStore.event_streams`) on one connection:
  on one Redis one ``XREAD BLOCK`` over all 256 streams at a time; on a Redis Cluster (a
  command's keys must share a hash slot) one pipeline of ``XREAD`` per stream, which
  redis-py sends as one round trip per node, every `CLUSTER_POLL` seconds.
- `MemoryTail` reads `MemoryStore.outbox` (embedding, tests), polling its length.

`since` answers the entries after an id (a reconnecting client's ``Last-Event-ID``), or None
when the outbox no longer holds all of them (trimmed: `EVENTS_PER_PARTITION` per stream).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Protocol

from snapshots.memory_store import MemoryStore
from snapshots.redis_store import RedisStore

Entry = tuple[str, dict[str, Any]]

#: Seconds one blocking read waits for news (one Redis), and between polls (cluster, memory).
BLOCK = 1.0
CLUSTER_POLL = 0.2
MEMORY_POLL = 0.02
#: Entries read per stream per call.
COUNT = 512
#: Seconds a tail waits after a read that found entries, so that a busy outbox is read in
#: batches: an XREAD over 256 streams costs about 1 ms of client CPU (redis-py, measured on
#: the 2-core reference machine), so at most 1 / COALESCE of them a second, whatever the
#: write rate; events reach streams up to this much later.
COALESCE = 0.05

_ID = re.compile(r"(\d{1,20})-(\d{1,20})")


def parse_id(text: str | bytes | None) -> tuple[int, int] | None:
    """``"1790000000123-4"`` -> ``(1790000000123, 4)``; None for anything else."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    m = _ID.fullmatch(text or "")
    return (int(m[1]), int(m[2])) if m else None


class OutboxTail(Protocol):
    async def start(self) -> str:
        """Take the current end of the outbox as the tail's position; the newest entry id
        (``"0-0"`` when the outbox is empty)."""
        ...

    async def read(self) -> list[Entry]:
        """The entries past the position, oldest first (waiting up to about `BLOCK`
        seconds for one); moves the position past them."""
        ...

    async def since(self, after: str) -> list[Entry] | None:
        """Every entry after id ``after`` still kept, oldest first; None when some may be
        gone (the outbox was trimmed past ``after``) or ``after`` is not an id."""
        ...


def _decode(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    try:
        event = json.loads(fields[b"data"])
    except (KeyError, ValueError):
        event = {"type": (fields.get(b"type") or b"").decode(errors="replace")}
    return eid, event


class RedisTail:
    """Tails the partition streams of a `RedisStore` (one Redis or a Redis Cluster)."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.streams = store.event_streams()
        self.last: dict[str, str] = {}
        self._found = False

    async def start(self) -> str:
        pipe = self.store.r.pipeline(transaction=False)
        for key in self.streams:
            pipe.xrevrange(key, "+", "-", count=1)
        newest = (0, 0)
        for key, rows in zip(self.streams, await pipe.execute(), strict=True):
            eid = rows[0][0].decode() if rows else "0-0"
            self.last[key] = eid
            newest = max(newest, parse_id(eid) or (0, 0))
        return f"{newest[0]}-{newest[1]}"

    async def read(self) -> list[Entry]:
        r = self.store.r
        if self._found:
            await asyncio.sleep(COALESCE)
        if self.store.cluster:
            pipe = r.pipeline(transaction=False)
            for key in self.streams:
                pipe.xread({key: self.last[key]}, count=COUNT)
            replies = [part for reply in await pipe.execute() for part in reply or []]
            if not any(entries for _, entries in replies):
                await asyncio.sleep(CLUSTER_POLL)
        else:
            replies = await r.xread(self.last, count=COUNT, block=int(BLOCK * 1000)) or []
        out: list[Entry] = []
        for key, entries in replies:
            if not entries:
                continue
            self.last[key.decode() if isinstance(key, bytes) else key] = \
                entries[-1][0].decode()
            out.extend(_decode(eid, fields) for eid, fields in entries)
        out.sort(key=lambda e: parse_id(e[0]) or (0, 0))
        self._found = bool(out)
        return out

    async def since(self, after: str) -> list[Entry] | None:
        start = parse_id(after)
        if start is None:
            return None
        pipe = self.store.r.pipeline(transaction=False)
        for key in self.streams:
            pipe.xinfo_stream(key)
            pipe.xrange(key, f"({after}", "+", count=COUNT)
        replies = await pipe.execute(raise_on_error=False)
        out: list[Entry] = []
        for i in range(0, len(replies), 2):
            info, rows = replies[i], replies[i + 1]
            if isinstance(info, Exception):  # no such stream yet: nothing to miss there
                continue
            if isinstance(rows, Exception):
                raise rows
            if _trimmed_past(info, start) or len(rows) == COUNT:
                return None
            out.extend(_decode(eid, fields) for eid, fields in rows)
        out.sort(key=lambda e: parse_id(e[0]) or (0, 0))
        return out


def _trimmed_past(info: dict[Any, Any], start: tuple[int, int]) -> bool:
    """Whether a stream (``XINFO STREAM``) may have lost entries after ``start``: it lost
    some (entries added > length) and its oldest kept one is after ``start``."""
    def get(name: str) -> Any:
        return info.get(name, info.get(name.encode()))

    added, length = get("entries-added"), get("length") or 0
    if added is None or int(added) <= int(length):
        return False
    first = get("first-entry")
    first_id = parse_id(first[0]) if first else None
    return first_id is None or first_id > start


class MemoryTail:
    """Tails a `MemoryStore`'s outbox list (one process: embedding and tests)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.pos = 0

    async def start(self) -> str:
        self.pos = len(self.store.outbox)
        return f"0-{self.pos}"

    async def read(self) -> list[Entry]:
        outbox = self.store.outbox
        waited = 0.0
        while len(outbox) <= self.pos and waited < BLOCK:
            await asyncio.sleep(MEMORY_POLL)
            waited += MEMORY_POLL
        new = outbox[self.pos:]
        first, self.pos = self.pos, len(outbox)
        return [(f"0-{first + i + 1}", e) for i, e in enumerate(new)]

    async def since(self, after: str) -> list[Entry] | None:
        start = parse_id(after)
        outbox = self.store.outbox
        if start is None or start[0] != 0 or start[1] > len(outbox):
            return None
        return [(f"0-{i + 1}", outbox[i]) for i in range(start[1], len(outbox))]


def tail_for(store: Any) -> OutboxTail:
    """The tail of ``store``. Raises TypeError for a store it cannot read."""
    if isinstance(store, RedisStore):
        return RedisTail(store)
    if isinstance(store, MemoryStore):
        return MemoryTail(store)
    raise TypeError(f"no outbox tail for {type(store).__name__}")
