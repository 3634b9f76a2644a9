"""Sales analytics kept in Redis: a consumer of the outbox streams, and the figures' reader.

The consumer is one consumer group, ``analytics``, over the `PARTITIONS` event streams
(`RedisStore.event_streams`), created at id ``0`` (the first start counts the events still
kept in the streams). Each batch it reads is folded (`engine.analytics.fold`) and applied by
one Lua script that, atomically, adds each event's increments and records its stream's
high-water id, skipping any event whose id is not above its stream's mark; then the entries
are acknowledged (XACK). A consumer that dies after applying and before XACK leaves the
entries pending: the next one re-reads them first (``XREADGROUP ... 0``), the script skips
them, and they are acknowledged: nothing is counted twice, nothing is lost.

Exactly one consumer applies at a time: it holds a lease (``SET NX PX``, renewed) and the
script refuses a batch unless the caller still holds it (a fence: a consumer paused past its
lease cannot apply late). Other processes (several ``serve`` on a cluster) stand by and take
over when the lease lapses. One consumer name is shared, so the taker re-reads the entries
its predecessor left pending.

Keys, all in hash slot ``{an}`` so that one script may touch them on a Redis Cluster (the
streams, one slot per partition, are only read and acknowledged, never touched by the
script; the figures live on one node, which takes one script call per batch):
  ``<prefix>:{an}:<bucket>:<start>``           hash: counters (`engine.analytics.fold`)
  ``<prefix>:{an}:<bucket>:<start>:units``     sorted set: units by product and variant
  ``<prefix>:{an}:<bucket>:<start>:revenue``   sorted set: line revenue by currency, item
  ``<prefix>:{an}:hw``                         hash: stream key -> last applied entry id
  ``<prefix>:{an}:lease``                      the consumer's lease (a random token)
``bucket`` is ``minute``, ``hour`` or ``day`` and ``start`` its epoch second (UTC); the keys
have no TTL (about 3 keys a minute with sales: a year of minutes is ~1.6M small keys).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import orjson
from redis.exceptions import ResponseError

from engine.analytics import (
    BUCKETS,
    COUNTED_TYPES,
    REVENUE,
    UNITS,
    Figures,
    Increments,
    bucket_starts,
    fold,
    plan,
    report,
)
from engine.errors import DomainError

log = logging.getLogger("cart_engine.analytics")

GROUP = "analytics"
#: The one consumer name (a lease makes one process at a time use it).
CONSUMER = "analytics"
#: Entries read per stream per call.
READ_COUNT = 100
#: Events per call of the event-by-event script (`_APPLY`, a replay). A read's batch goes
#: whole to the summing script (`_APPLY_SUM`), whose work is per stream and per counter, not
#: per event, with the events of each minute summed first: applied in chunks of 200 events,
#: each a script call with its own per-stream marks, the consumer spent 26-27 us of CPU per
#: event, now 9-17 (``python -m loadtest.engine_bench analytics --redis-url ...``, 3,000
#: events a batch, about a second of a flash sale's; 2026-11-30).
APPLY_CHUNK = 200
#: Seconds the consumer waits after a read that found it caught up, before the next: one
#: read of the 256 streams costs a 15 KB command and a pass over every stream in Redis, so
#: reading as each event lands cost a third of a core under churn (measured 2026-11-29);
#: figures lag the sale by about this much. A backlog is read at full speed.
PACE = 1.0

# Whether stream entry id ARGV-style ``id`` is above the high-water mark of ``stream``.
_FRESH = """
local function fresh(stream, id)
  local hw = redis.call('HGET', KEYS[1], stream)
  if not hw then return true end
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  local hms, hseq = string.match(hw, '^(%d+)-(%d+)$')
  ms, seq, hms, hseq = tonumber(ms), tonumber(seq), tonumber(hms), tonumber(hseq)
  return ms > hms or (ms == hms and seq > hseq)
end
local function op(i)
  local k = KEYS[tonumber(ARGV[i + 1])]
  if ARGV[i] == 'h' then redis.call('HINCRBY', k, ARGV[i + 2], ARGV[i + 3])
  else redis.call('ZINCRBY', k, ARGV[i + 3], ARGV[i + 2]) end
end
"""

# KEYS: high-water hash, lease, then every bucket key the batch touches.
# ARGV: lease token, nevents, then per event: stream, id, nops, (op, key index, field, n)*
# with op 'h' (HINCRBY) or 'z' (ZINCRBY). Answers how many events were applied, -1 when the
# lease is not the caller's.
_APPLY = _FRESH + """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local i = 2
local nev = tonumber(ARGV[i]); i = i + 1
local applied = 0
for _ = 1, nev do
  local stream, id, nops = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]); i = i + 3
  if fresh(stream, id) then
    for _ = 1, nops do op(i); i = i + 4 end
    redis.call('HSET', KEYS[1], stream, id)
    applied = applied + 1
  else
    i = i + 4 * nops
  end
end
return applied
"""

# The common case, every event of the batch new: their increments summed (a flash sale's
# thousand orders of one minute are one HINCRBY per counter, not a thousand).
# KEYS as `_APPLY`. ARGV: lease token, nstreams, (stream, first id, last id)*, nops,
# (op, key index, field, n)*. Answers 0 when applied, -1 without the lease, -2 (nothing
# done) when a stream's first id is not above its mark: then `_APPLY` goes event by event.
_APPLY_SUM = _FRESH + """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local ns = tonumber(ARGV[2])
for s = 0, ns - 1 do
  if not fresh(ARGV[3 + 3 * s], ARGV[4 + 3 * s]) then return -2 end
end
for s = 0, ns - 1 do redis.call('HSET', KEYS[1], ARGV[3 + 3 * s], ARGV[5 + 3 * s]) end
local i = 3 + 3 * ns
local nops = tonumber(ARGV[i]); i = i + 1
for _ = 1, nops do op(i); i = i + 4 end
return 0
"""

# KEYS: lease. ARGV: token, ttl in ms. 1 when the caller holds the lease (taken or renewed).
_LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class FigureSource(Protocol):
    """Where the figures of stored buckets are read from (Redis, or a memory outbox)."""

    async def figures(self, counted: Sequence[tuple[str, int]],
                      ranked: Sequence[tuple[str, int]]) -> tuple[list[Figures], list[Figures]]:
        """The counters of each ``(bucket, start)`` of ``counted`` and the counters and
        rankings of each of ``ranked``, in order, as stored at one instant: a report never
        mixes figures from before an apply with figures from after it."""
        ...


async def analytics_report(source: FigureSource, start: float, end: float, bucket: str,
                           top: int = 10) -> dict[str, Any]:
    """`engine.analytics.report` for ``[start, end)`` (epoch seconds) by ``bucket``, read
    from ``source``. Raises ValidationFailed (`engine.analytics.plan`)."""
    p = plan(start, end, bucket)
    stored = p.stored()
    counted, ranked = await source.figures(stored, p.whole())
    figs = dict(zip(stored, counted, strict=True))
    per_bucket = []
    for _, _, parts in p.series:
        f = Figures()
        for b in parts:
            f.add(figs[b])
        per_bucket.append(f)
    whole = Figures()
    for f in ranked:
        whole.add(f)
    return report(p, per_bucket, top, whole.ranks)


def decode_entry(fields: dict[bytes, bytes] | None) -> dict[str, Any] | None:
    """The event of a stream entry (field ``data``, JSON as the commit wrote it with orjson,
    read back with orjson), or None when it is gone (trimmed while pending) or unreadable."""
    if not fields or b"data" not in fields:
        return None
    try:
        event = orjson.loads(fields[b"data"])
    except ValueError:  # orjson.JSONDecodeError is one
        return None
    return event if isinstance(event, dict) else None


def _may_count(fields: dict[bytes, bytes] | None) -> bool:
    """Whether an entry may be an event `fold` counts: any but one whose ``type`` field (the
    commit writes it beside ``data``) names a type it does not (`COUNTED_TYPES`); those are
    acknowledged without their JSON read."""
    kind = fields.get(b"type") if fields else None
    return kind is None or kind.decode("utf-8", "replace") in COUNTED_TYPES


class RedisAnalytics:
    """The analytics consumer and reader over a `snapshots.redis_store.RedisStore`.

    ``run()`` consumes until cancelled (``start()`` / ``stop()`` run it as a task);
    ``catch_up()`` applies everything readable now (tests, tools); ``figures()`` reads.
    ``after_apply``: called after each apply, before XACK (tests crash there).
    """

    def __init__(self, store: Any, lease_ttl: float = 15.0, poll: float = 0.5,
                 after_apply: Callable[[], Awaitable[None]] | None = None,
                 pace: float = PACE) -> None:
        self.store = store
        self.r = store.r
        self.base = f"{store.prefix}:{{an}}"
        self.hw_key = f"{self.base}:hw"
        self.lease_key = f"{self.base}:lease"
        self.streams = store.event_streams()
        self.token = uuid.uuid4().hex
        self.lease_ttl = lease_ttl
        self.poll = poll
        self.pace = pace
        self.after_apply = after_apply
        self._apply = self.r.register_script(_APPLY)
        self._apply_sum = self.r.register_script(_APPLY_SUM)
        self._lease = self.r.register_script(_LEASE)
        self._release = self.r.register_script(_RELEASE)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._progress = asyncio.Event()
        self.applied = 0  # events applied by this consumer (a figure for logs and tests)
        #: Whether the last read filled a stream's `READ_COUNT`: more may be waiting.
        self.behind = False

    # -- keys ------------------------------------------------------------------------------
    def bucket_key(self, bucket: str, start: int) -> str:
        return f"{self.base}:{bucket}:{start}"

    # -- lease -----------------------------------------------------------------------------
    async def hold_lease(self) -> bool:
        """Take or renew the consumer lease; whether this consumer holds it."""
        return bool(await self._lease(keys=[self.lease_key],
                                      args=[self.token, int(self.lease_ttl * 1000)]))

    async def release_lease(self) -> None:
        await self._release(keys=[self.lease_key], args=[self.token])

    # -- consuming -------------------------------------------------------------------------
    async def join(self) -> None:
        """Create the group on every stream (from id 0), once; an existing one is kept."""
        pipe = self.r.pipeline(transaction=False)
        for key in self.streams:
            pipe.xgroup_create(key, GROUP, id="0", mkstream=True)
        for res in await pipe.execute(raise_on_error=False):
            if isinstance(res, Exception) and "BUSYGROUP" not in str(res):
                raise res

    async def _read(self, pending: bool, block_ms: int | None) -> list[tuple[str, bytes, Any]]:
        start = "0" if pending else ">"
        if self.store.cluster:  # keys of one command share a slot: one read per stream
            pipe = self.r.pipeline(transaction=False)
            for key in self.streams:
                pipe.xreadgroup(GROUP, CONSUMER, {key: start}, count=READ_COUNT)
            replies = [part for reply in await pipe.execute() for part in (reply or [])]
        else:
            replies = await self.r.xreadgroup(
                GROUP, CONSUMER, dict.fromkeys(self.streams, start), count=READ_COUNT,
                block=None if pending else block_ms) or []
        out = []
        self.behind = False
        for key, entries in replies:
            name = key.decode() if isinstance(key, bytes) else key
            self.behind = self.behind or len(entries) >= READ_COUNT
            for entry_id, fields in entries:
                out.append((name, entry_id, fields))
        return out

    async def consume_once(self, pending: bool = False, block_ms: int | None = None) -> int:
        """Read one batch (``pending``: this consumer's unacknowledged entries, else new
        ones, waiting up to ``block_ms`` on one Redis), apply it, acknowledge it. Answers
        how many entries were read. Raises LeaseLost when another consumer holds the lease."""
        try:
            entries = await self._read(pending, block_ms)
        except ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            await self.join()
            entries = await self._read(pending, block_ms)
        if not entries:
            return 0
        await self._apply_batch(entries)
        if self.after_apply is not None:
            await self.after_apply()
        by_stream: dict[str, list[bytes]] = {}
        for key, entry_id, _ in entries:
            by_stream.setdefault(key, []).append(entry_id)
        pipe = self.r.pipeline(transaction=False)
        for key, ids in by_stream.items():
            pipe.xack(key, GROUP, *ids)
        await pipe.execute()
        return len(entries)

    def _ops(self, inc: Increments | None, index: Callable[[str], int]
             ) -> list[tuple[str, int, str, int]]:
        """``inc`` as script operations ``(op, key index, field, n)`` on its three buckets."""
        ops: list[tuple[str, int, str, int]] = []
        if inc is None:
            return ops
        for bucket, start in bucket_starts(inc.at):
            base = self.bucket_key(bucket, start)
            ops += [("h", index(base), name, n) for name, n in inc.counters.items() if n]
            for ranking, members in inc.ranks.items():
                zkey = index(f"{base}:{ranking}")
                ops += [("z", zkey, member, n) for member, n in members.items() if n]
        return ops

    async def _apply_batch(self, entries: list[tuple[str, bytes, Any]]) -> None:
        keys: dict[str, int] = {self.hw_key: 1, self.lease_key: 2}

        def index(key: str) -> int:
            return keys.setdefault(key, len(keys) + 1)

        folded = []
        minutes: dict[int, Increments] = {}  # minute start -> its events' deltas summed
        spans: dict[str, list[Any]] = {}  # stream -> [first id, last id]
        for stream, entry_id, fields in entries:
            event = decode_entry(fields) if _may_count(fields) else None
            inc = fold(event) if event is not None else None
            folded.append((stream, entry_id, inc))
            if inc is not None:
                minute = int(inc.at // BUCKETS["minute"]) * BUCKETS["minute"]
                if (acc := minutes.get(minute)) is None:
                    acc = minutes[minute] = Increments(at=float(minute))
                acc.add(inc)
            spans.setdefault(stream, [entry_id, entry_id])[1] = entry_id
        summed: Counter[tuple[str, int, str]] = Counter()
        for acc in minutes.values():
            for kind, k, name, n in self._ops(acc, index):
                summed[kind, k, name] += n
        args: list[Any] = [self.token, len(spans)]
        for stream, (first, last) in spans.items():
            args += [stream, first, last]
        flat = [(kind, k, name, n) for (kind, k, name), n in summed.items() if n]
        args.append(len(flat))
        for op in flat:
            args += op
        done = int(await self._apply_sum(keys=list(keys), args=args))
        if done == 0:
            applied = len(entries)
        elif done == -2:  # a replay: some of these were applied before, skip those
            applied = 0
            for i in range(0, len(folded), APPLY_CHUNK):
                args = [self.token, len(folded[i:i + APPLY_CHUNK])]
                for stream, entry_id, inc in folded[i:i + APPLY_CHUNK]:
                    ops = self._ops(inc, index)
                    args += [stream, entry_id, len(ops)]
                    for op in ops:
                        args += op
                got = int(await self._apply(keys=list(keys), args=args))
                if got < 0:
                    applied = got
                    break
                applied += got
        else:
            applied = done
        if applied < 0:
            raise LeaseLost("another consumer holds the analytics lease")
        self.applied += applied
        self._progress.set()

    async def wait_applied(self, n: int) -> None:
        """Return once this consumer has applied ``n`` events in all (tests, tools)."""
        while self.applied < n:
            self._progress.clear()
            await self._progress.wait()

    async def catch_up(self) -> int:
        """Apply this consumer's pending entries, then every new one, until none is left
        (taking the lease first). Answers how many entries were read.
        Raises LeaseLost when another consumer holds the lease."""
        if not await self.hold_lease():
            raise LeaseLost("another consumer holds the analytics lease")
        await self.join()
        total = 0
        for pending in (True, False):
            while n := await self.consume_once(pending=pending):
                total += n
        return total

    async def run(self) -> None:
        """Consume until cancelled: stand by while another process holds the lease; on
        taking it, re-read what is pending first. Errors are logged and retried."""
        loop = asyncio.get_running_loop()
        holding, renewed = False, 0.0
        # A flag as well as cancellation: a cancellation that lands inside a cluster
        # client's command can come out as a connection error.
        while not self._stopping:
            try:
                if not holding or loop.time() - renewed > self.lease_ttl / 3:
                    was = holding
                    holding = await self.hold_lease()
                    renewed = loop.time()
                    if not holding:
                        await asyncio.sleep(self.lease_ttl / 3)
                        continue
                    if not was:
                        await self.join()
                        while await self.consume_once(pending=True):
                            renewed = loop.time() if await self.hold_lease() else renewed
                n = await self.consume_once(block_ms=int(self.poll * 1000))
                if not n and self.store.cluster:
                    await asyncio.sleep(self.poll)
                elif n and not self.behind:  # caught up: gather a second's events per read
                    await asyncio.sleep(self.pace)
            except asyncio.CancelledError:
                raise
            except LeaseLost:
                holding = False
            except Exception:  # noqa: BLE001 - Redis away for a while: try again
                if self._stopping:
                    break
                log.exception("analytics consumer failed; retrying")
                holding = False
                await asyncio.sleep(1.0)

    def start(self) -> None:
        """Run `run` as a task of the running loop."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        """Cancel the task and give the lease back (another process may take over)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.release_lease()
        except Exception:  # noqa: BLE001 - Redis gone: the lease lapses by itself
            log.warning("could not release the analytics lease; it lapses in %ss",
                        self.lease_ttl)

    # -- reading ---------------------------------------------------------------------------
    async def figures(self, counted: Sequence[tuple[str, int]],
                      ranked: Sequence[tuple[str, int]]) -> tuple[list[Figures], list[Figures]]:
        """`FigureSource.figures`: one MULTI/EXEC (every key is in the ``{an}`` hash slot, so
        on a Redis Cluster too), which the apply scripts cannot run in the middle of."""
        pipe = self.r.pipeline(transaction=True)
        for (bucket, start), ranks in [(b, False) for b in counted] + [(b, True) for b in ranked]:
            base = self.bucket_key(bucket, start)
            pipe.hgetall(base)
            if ranks:
                pipe.zrange(f"{base}:{UNITS}", 0, -1, withscores=True)
                pipe.zrange(f"{base}:{REVENUE}", 0, -1, withscores=True)
        rows = iter(await pipe.execute())

        def read(ranks: bool) -> Figures:
            f = Figures(Counter({k.decode(): int(v) for k, v in next(rows).items()}))
            for name in (UNITS, REVENUE) if ranks else ():
                if members := next(rows):
                    f.ranks[name] = Counter({m.decode(): int(s) for m, s in members})
            return f

        return [read(False) for _ in counted], [read(True) for _ in ranked]


class LeaseLost(Exception):
    """Another analytics consumer holds the lease: this one must not apply."""


class MemoryAnalytics:
    """The figures of a `snapshots.memory_store.MemoryStore`'s outbox (a list), folded on
    demand: embedding and in-process tests (one process, nothing to consume)."""

    def __init__(self, outbox: list[dict[str, Any]]) -> None:
        self.outbox = outbox
        self._seen = 0
        self._buckets: dict[tuple[str, int], Figures] = {}

    def _fold_new(self) -> None:
        while self._seen < len(self.outbox):
            inc: Increments | None = fold(self.outbox[self._seen])
            self._seen += 1
            if inc is not None:
                for b in bucket_starts(inc.at):
                    self._buckets.setdefault(b, Figures()).add(inc)

    async def figures(self, counted: Sequence[tuple[str, int]],
                      ranked: Sequence[tuple[str, int]]) -> tuple[list[Figures], list[Figures]]:
        self._fold_new()
        return ([self._buckets.get(b, Figures()) for b in counted],
                [self._buckets.get(b, Figures()) for b in ranked])


def analytics_for(store: Any) -> FigureSource:
    """The figure source for the engine's store: Redis (figures the consumer keeps), or a
    memory store's outbox. Raises Unavailable ``analytics_unavailable`` for another store."""
    from snapshots.memory_store import MemoryStore
    from snapshots.redis_store import RedisStore

    if isinstance(store, RedisStore):
        return RedisAnalytics(store)
    if isinstance(store, MemoryStore):
        return MemoryAnalytics(store.outbox)
    raise _unavailable()


def _unavailable() -> DomainError:
    from engine.errors import Unavailable

    return Unavailable("analytics_unavailable",
                       "sales analytics need the Redis store or the in-memory store")
