"""In-memory snapshot store for unit tests of actors and for embedded simulations.

Same semantics as the Redis store (fencing, deadlines, outbox), and records go through the
same codec, so a test that restarts the runtime over one ``MemoryStore`` reads back exactly
what a Redis restart would. Partitions matter only to ``due`` (a host sweeps its own); the
outbox keeps one global order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from snapshots.codec import decode, encode
from snapshots.store import NEW_EPOCH, Write


class MemoryStore:
    """A dict-backed :class:`~snapshots.store.SnapshotStore`."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, bytes]] = {}
        self.epochs: dict[str, int] = {}
        #: deadline member -> (epoch seconds, partition)
        self.deadlines: dict[str, tuple[float, int]] = {}
        self.outbox: list[dict[str, Any]] = []
        self.reference: dict[str, dict[str, bytes]] = {}
        self.commits = 0
        self.fail_next: Exception | None = None

    async def activate(self, key: str, partition: int) -> tuple[int, dict[str, Any]]:
        if key not in self.hashes:
            return NEW_EPOCH, {}
        self.epochs[key] += 1
        return self.epochs[key], {f: decode(v) for f, v in self.hashes[key].items()}

    async def commit(self, writes: list[Write]) -> list[int | None | Exception]:
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        self.commits += 1
        out: list[int | None | Exception] = []
        for w in writes:
            try:  # encoded first: a write the codec cannot hold fails alone, changing nothing
                fields = {f: encode(v) for f, v in w.hset.items()}
                events = [json.loads(json.dumps(e)) for e in w.events]
            except Exception as e:  # noqa: BLE001 - as the Redis store does
                out.append(e)
                continue
            cur = self.epochs.get(w.key)
            if w.epoch == NEW_EPOCH:
                if cur is not None:
                    out.append(None)
                    continue
                self.epochs[w.key] = cur = 1
                self.hashes[w.key] = {}
            elif cur != w.epoch:
                out.append(None)
                continue
            h = self.hashes[w.key]
            h.update(fields)
            for f in w.hdel:
                h.pop(f, None)
            if w.deadline is not None:
                member, when = w.deadline
                if when is None:
                    self.deadlines.pop(member, None)
                else:
                    self.deadlines[member] = (when, w.partition)
            self.outbox.extend(events)
            out.append(cur)
        return out

    async def due(self, now: float, limit: int,
                  partitions: Sequence[int] | None = None) -> list[tuple[str, float]]:
        wanted = None if partitions is None else set(partitions)
        due = sorted((t, m) for m, (t, p) in self.deadlines.items()
                     if t <= now and (wanted is None or p in wanted))[:limit]
        return [(m, t) for t, m in due]

    async def put_reference(self, kind: str, ref_id: str, value: Any) -> None:
        self.reference.setdefault(kind, {})[ref_id] = encode(value)

    async def load_reference(self, kind: str) -> dict[str, Any]:
        return {k: decode(v) for k, v in self.reference.get(kind, {}).items()}

    async def events(self, count: int = 1000) -> list[dict[str, Any]]:
        return self.outbox[-count:]

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
