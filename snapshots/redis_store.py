"""Redis snapshot store: per partition, actor hashes, a deadline sorted set and an outbox stream.

Layout under ``<prefix>`` (default ``ce``), for partition ``N`` (``0 <= N < PARTITIONS``, 256,
computed by the runtime: the store never hashes keys):
  ``<prefix>:{pN}:a:<kind>:<key>``  hash: ``_epoch`` plus one field per piece of state (msgpack)
  ``<prefix>:{pN}:deadlines``       sorted set: member ``<kind>:<key>``, score epoch seconds
  ``<prefix>:{pN}:events``          stream: fields ``type`` and ``data`` (JSON), approx.
                                    `EVENTS_PER_PARTITION` entries (about 1M in all)
  ``<prefix>:ref:<kind>``           hash: catalog products / promotions by id
For example ``ce:{p17}:a:cart:c_1``, ``ce:{p17}:deadlines``, ``ce:{p17}:events``. Redis Cluster
hashes only the first ``{...}`` of a key (its hash tag), so every key of a partition lives in
one hash slot, whatever the actor's key holds. A turn's write touches its partition's three
keys (fence check, HSET/HDEL, deadline, XADD: atomic); the writes of a group commit are one
Lua script call on one Redis, and on a Redis Cluster (`connect`) one per partition (a call's
keys share a slot), in one pipeline that redis-py splits into one per node. So the same store
runs on both. Reference data are single keys in any slot.

Event consumers read the ``PARTITIONS`` streams (`RedisStore.event_streams`): the README shows
how. Durability is Redis's own: run AOF with ``appendfsync always`` to lose no acknowledged
write on power loss.

The layout before partitions (``<prefix>:a:<kind>:<key>``, ``<prefix>:deadlines``,
``<prefix>:events``) is moved over by `RedisStore.migrate_layout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from actors import tracing
from snapshots.codec import decode, encode
from snapshots.store import PARTITIONS, Write

#: Approximate length each partition's event stream is trimmed to (XADD MAXLEN ~): about a
#: million events kept in all, as the single stream kept before partitions.
EVENTS_PER_PARTITION = 4096

#: Arguments of one group-commit script call, at most (a write larger than that goes alone):
#: a flush of thousands of writes is cut into calls of about this size, sent in one pipeline.
COMMIT_CALL_ARGS = 20_000

#: URL schemes that ask `connect` for a Redis Cluster client.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

_ACTIVATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, {}} end
local epoch = redis.call('HINCRBY', KEYS[1], '_epoch', 1)
return {epoch, redis.call('HGETALL', KEYS[1])}
"""

# The writes of one group commit (on a cluster, those of one partition: one hash slot).
# KEYS: per write, its actor's hash, its partition's deadline set and event stream.
# ARGV: per write, how many arguments it has, then: epoch, nset, (field, value)*, ndel, field*,
#       deadline_op ('', 'set', 'del'), member, score, nevents, (type, data)*, expire_after
#       ('' or seconds).
# Answers per write, in order: its new epoch, -1 if fenced out, or (a string) the error that
# stopped it; each write is applied on its own (pcall), as one script call each would be.
_COMMIT = """
local function apply(hash, deadlines, events, i)
  local epoch = tonumber(ARGV[i]); i = i + 1
  local cur = redis.call('HGET', hash, '_epoch')
  if epoch == 0 then
    if cur then return -1 end
    redis.call('HSET', hash, '_epoch', 1)
    epoch = 1
  elseif tonumber(cur) ~= epoch then
    return -1
  end
  local nset = tonumber(ARGV[i]); i = i + 1
  for _ = 1, nset do redis.call('HSET', hash, ARGV[i], ARGV[i + 1]); i = i + 2 end
  local ndel = tonumber(ARGV[i]); i = i + 1
  for _ = 1, ndel do redis.call('HDEL', hash, ARGV[i]); i = i + 1 end
  local op = ARGV[i]; local member = ARGV[i + 1]; local score = ARGV[i + 2]; i = i + 3
  if op == 'set' then redis.call('ZADD', deadlines, score, member)
  elseif op == 'del' then redis.call('ZREM', deadlines, member) end
  local nev = tonumber(ARGV[i]); i = i + 1
  for _ = 1, nev do
    redis.call('XADD', events, 'MAXLEN', '~', EVENTS_MAXLEN, '*',
               'type', ARGV[i], 'data', ARGV[i + 1])
    i = i + 2
  end
  local ttl = ARGV[i]
  if ttl ~= '' then redis.call('EXPIRE', hash, tonumber(ttl)) end
  return epoch
end
local out = {}
local a = 1
for w = 1, #KEYS / 3 do
  local ok, res = pcall(apply, KEYS[3 * w - 2], KEYS[3 * w - 1], KEYS[3 * w], a + 1)
  if ok then out[w] = res
  elseif type(res) == 'table' and res.err then out[w] = res.err
  else out[w] = tostring(res) end
  a = a + 1 + tonumber(ARGV[a])
end
return out
""".replace("EVENTS_MAXLEN", str(EVENTS_PER_PARTITION))

# One Redis only (a cluster refuses keys of several slots in one call): the ARGV[2] earliest
# due members of the deadline sets in KEYS, flattened (member, score)*.
_DUE = """
local limit = tonumber(ARGV[2])
local due = {}
for _, k in ipairs(KEYS) do
  local rows = redis.call('ZRANGEBYSCORE', k, '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, limit)
  for j = 1, #rows, 2 do due[#due + 1] = {tonumber(rows[j + 1]), rows[j]} end
end
if #due > limit then
  table.sort(due, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
end
local out = {}
for j = 1, math.min(#due, limit) do
  out[#out + 1] = due[j][2]
  out[#out + 1] = string.format('%.17g', due[j][1])
end
return out
"""

#: Errors after which a cluster client must re-read the topology (a node failed or moved).
_TOPOLOGY_ERRORS = tuple(RedisCluster.ERRORS_ALLOW_RETRY)


def connect(url: str, max_connections: int = 64,
            cluster: bool | None = None) -> aioredis.Redis | RedisCluster:
    """A client for ``url``: one Redis, or a Redis Cluster.

    A cluster client is built when ``cluster`` is True or the URL's scheme is
    ``redis+cluster://host:port`` (``rediss+cluster://`` with TLS); ``host:port`` is any node,
    the others are discovered (CLUSTER SLOTS). On one Redis the pool waits for a free
    connection instead of failing under load (``max_connections`` in all); on a cluster it is
    ``max_connections`` per node (the store's group commit and batched activations use one
    per node at a time).

    Call it only from a bootstrap step (CLI, app lifespan, host start) and pass the client in.
    """
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        cluster = True if cluster is None else cluster
        url = urlunsplit(parts._replace(scheme=CLUSTER_SCHEMES[parts.scheme]))
    if cluster:
        # A cluster has database 0 only: a "/0" path is tolerated, another is refused.
        path = urlsplit(url).path.strip("/")
        if path not in ("", "0"):
            raise ValueError(f"a Redis Cluster has database 0 only, not {path!r}")
        return RedisCluster.from_url(urlunsplit(urlsplit(url)._replace(path="")),
                                     max_connections=max_connections)
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections,
                                                    timeout=30)
    pool.connection_class = _hiredis_packing(pool.connection_class)
    return aioredis.Redis(connection_pool=pool)


def _hiredis_packing(base: type[Connection]) -> type[Connection]:
    """``base`` (the connection class the URL's scheme chose: TCP, TLS, Unix socket) packing
    each command with hiredis's C ``pack_command``: redis-py's sync client does so when
    hiredis is installed, its asyncio client packs in Python, which cost a group commit
    about 10 us per written actor (18 arguments) on the 2-core reference machine. Arguments
    hiredis does not take (a ``memoryview``, a ``bool``) and multi-word command names are
    left to redis-py, which encodes or refuses them by its own rules."""

    class HiredisPacking(base):  # type: ignore[valid-type, misc]
        def pack_command(self, *args: Any) -> list[bytes]:
            if not (isinstance(args[0], str) and " " in args[0]):
                try:
                    return [hiredis.pack_command(args)]
                except TypeError:
                    pass
            return super().pack_command(*args)  # type: ignore[no-any-return]

    HiredisPacking.__name__ = HiredisPacking.__qualname__ = f"HiredisPacking{base.__name__}"
    return HiredisPacking


def _commit_result(x: Any) -> int | None | Exception:
    """One write's answer from the commit script: its epoch, None (fenced out), or the
    error that stopped it (a Redis error string, or the exception of the whole call)."""
    if isinstance(x, Exception):
        return x
    if isinstance(x, bytes | str):
        return ResponseError(x.decode() if isinstance(x, bytes) else x)
    return None if int(x) < 0 else int(x)


def _stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class RedisStore:
    """A :class:`~snapshots.store.SnapshotStore` over a ``redis.asyncio`` client, one Redis
    (``Redis``) or a Redis Cluster (``RedisCluster``): see `connect`.

    The client is built by the caller (a bootstrap step) and passed in.
    """

    def __init__(self, client: aioredis.Redis | RedisCluster, prefix: str = "ce") -> None:
        self.r = client
        self.prefix = prefix
        self.cluster = isinstance(client, RedisCluster)
        self._activate = client.register_script(_ACTIVATE)
        self._commit = client.register_script(_COMMIT)
        self._due = client.register_script(_DUE)
        # Activations that arrive together (a flash sale's new carts) share one pipeline.
        self._pending: list[tuple[str, int, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: The group commit's own connection (one Redis): see `_direct`.
        self._conn: Connection | None = None
        self._conn_busy = False

    # -- key layout ------------------------------------------------------------------------
    def partition_prefix(self, partition: int) -> str:
        """``<prefix>:{p<partition>}``: the start of every key of ``partition`` (its hash tag)."""
        if not 0 <= partition < PARTITIONS:
            raise ValueError(f"partition {partition} is not in 0..{PARTITIONS - 1}")
        return f"{self.prefix}:{{p{partition}}}"

    def actor_key(self, key: str, partition: int) -> str:
        """The hash of actor ``key`` (``"<kind>:<key>"``) in ``partition``."""
        return f"{self.partition_prefix(partition)}:a:{key}"

    def deadlines_key(self, partition: int) -> str:
        return f"{self.partition_prefix(partition)}:deadlines"

    def events_key(self, partition: int) -> str:
        return f"{self.partition_prefix(partition)}:events"

    def event_streams(self, partitions: Sequence[int] | None = None) -> list[str]:
        """The event stream keys of ``partitions`` (default: all `PARTITIONS`), in partition
        order: what an event consumer reads (``XREADGROUP ... STREAMS k1 k2 ... > > ...``)."""
        return [self.events_key(p) for p in (range(PARTITIONS) if partitions is None
                                              else partitions)]

    # -- actors ----------------------------------------------------------------------------
    async def activate(self, key: str, partition: int) -> tuple[int, dict[str, Any]]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((self.actor_key(key, partition), partition, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_activations())
        epoch, flat = await fut
        fields: dict[str, Any] = {}
        for i in range(0, len(flat), 2):
            name = flat[i].decode()
            if name != "_epoch":
                fields[name] = decode(flat[i + 1])
        return int(epoch), fields

    async def _flush_activations(self) -> None:
        await asyncio.sleep(0)
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await self._scripts(self._activate, [([k], []) for k, _, _ in batch])
            except Exception as e:  # noqa: BLE001 - every waiter gets the failure
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, _, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    async def _scripts(self, script: Any, calls: list[tuple[list[str], list[Any]]],
                       isolate: bool = False, direct: bool = False) -> list[Any]:
        """Run ``script`` once per ``(keys, args)`` in one pipeline, by SHA (EVALSHA).

        One round trip (one per node on a cluster): redis-py's own script pipelining asks
        SCRIPT EXISTS first on every execute. A server that lost its script cache (restart,
        SCRIPT FLUSH, a replica promoted on a cluster: Redis 7 does not replicate SCRIPT LOAD)
        answers NOSCRIPT to each of its calls, which then did not run: load the script (on
        every primary of a cluster) and send those calls, and only those, again.

        Raises the first other error (after a node failure, a cluster client re-reads the
        topology on its next use); the calls that succeeded stay applied. ``isolate``: a
        call the server refused (a ``ResponseError``: its script failed) answers that
        exception in its place instead, the others theirs. ``direct``: a single call on one
        Redis goes on the store's own connection (`_direct`; the group commit's).
        """
        results = await self._evalsha_pipeline(script, calls, direct)
        missing = [i for i, res in enumerate(results) if isinstance(res, NoScriptError)]
        if missing:
            await self.r.script_load(script.script)
            again = await self._evalsha_pipeline(script, [calls[i] for i in missing])
            for i, res in zip(missing, again, strict=True):
                results[i] = res
        for res in results:
            if isinstance(res, Exception):
                if isolate and type(res) is ResponseError:
                    continue
                if self.cluster and isinstance(res, _TOPOLOGY_ERRORS):
                    await self.r.aclose()  # reconnects and re-reads the slots on next use
                raise res
        return results

    async def _evalsha_pipeline(self, script: Any,
                                calls: list[tuple[list[str], list[Any]]],
                                direct: bool = False) -> list[Any]:
        if len(calls) == 1 and not self.cluster:
            # One call (a group commit on one Redis): sent as a command, not a pipeline of
            # one; ``direct``, on the store's own connection (`_direct`). An error Redis
            # answers is the call's result, as in a pipeline.
            keys, args = calls[0]
            command = ("EVALSHA", script.sha, len(keys), *keys, *args)
            try:
                return [await (self._direct(command) if direct
                               else self.r.execute_command(*command))]
            except ResponseError as e:  # NOSCRIPT among them
                return [e]
        pipe = self.r.pipeline(transaction=False)
        for keys, args in calls:
            # Not ``pipe.evalsha``: redis-py's cluster pipeline refuses that method (it cannot
            # know the script is loaded on every node), yet routes the raw command by its first
            # key's slot (checking all keys share it) and groups the calls by node, one
            # pipeline each, sent concurrently; NOSCRIPT is handled here, per call.
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))

    async def _direct(self, command: tuple[Any, ...]) -> Any:
        """``command``'s reply, sent on a connection this store keeps for its group commits:
        about 40% less client CPU per round trip than through the client (its pool, retry
        and timeout layers; `loadtest.engine_bench groupcommit`), and a group commit is one
        round trip at a time. While that connection is busy (two hosts of one process
        sharing the store), and to retry after it failed, the client sends it instead.
        Raises what the client raises; ResponseError for an error reply."""
        if self._conn_busy:
            return await self.r.execute_command(*command)
        self._conn_busy = True
        conn = self._conn
        try:
            if conn is None:
                conn = self._conn = await self.r.connection_pool.get_connection()
            await conn.send_packed_command(conn.pack_command(*command), check_health=False)
            return await conn.read_response()
        except ResponseError:
            raise  # an answer: the connection is in step
        except BaseException as e:
            self._conn = None
            if conn is not None:  # a reply may still be on its way: never reuse it
                with contextlib.suppress(Exception):
                    await conn.disconnect()
                await self.r.connection_pool.release(conn)
            if isinstance(e, (ConnectionError, TimeoutError, RedisConnectionError,
                              RedisTimeoutError)):
                return await self.r.execute_command(*command)  # with the client's retries
            raise
        finally:
            self._conn_busy = False

    def _args(self, w: Write) -> list[Any]:
        args: list[Any] = [w.epoch, len(w.hset)]
        for f, v in w.hset.items():
            args += [f, encode(v)]
        args.append(len(w.hdel))
        args += w.hdel
        if w.deadline is None:
            args += ["", "", 0]
        else:
            member, when = w.deadline
            args += ["del", member, 0] if when is None else ["set", member, repr(when)]
        args.append(len(w.events))
        for e in w.events:
            args += [e["type"], orjson.dumps(e, option=orjson.OPT_NON_STR_KEYS)]
        args.append("" if w.expire_after is None else int(w.expire_after))
        return args

    async def commit(self, writes: list[Write]) -> list[int | None | Exception]:
        """Per write: its new epoch, None if fenced out, or the exception that failed it
        alone (a value the codec cannot hold, a command Redis refused): the other writes of
        the batch are applied all the same. One script call for the batch on one Redis, one
        per partition on a cluster (a call's keys share a hash slot), each call cut at
        `COMMIT_CALL_ARGS` arguments (a simulation's batch of thousands of carts), all in
        one pipeline. Raises when Redis cannot be reached."""
        if not writes:
            return []
        out: list[int | None | Exception] = [None] * len(writes)
        calls: list[tuple[list[str], list[Any], list[int]]] = []
        open_call: dict[int, int] = {}  # call group (partition on a cluster) -> its call
        for i, w in enumerate(writes):
            try:
                args = self._args(w)
            except Exception as e:  # noqa: BLE001 - this write alone cannot be stored
                out[i] = e
                continue
            group = w.partition if self.cluster else 0
            at = open_call.get(group)
            if at is None or len(calls[at][1]) + len(args) > COMMIT_CALL_ARGS:
                at = open_call[group] = len(calls)
                calls.append(([], [], []))
            keys, argv, sent = calls[at]
            keys += [self.actor_key(w.key, w.partition), self.deadlines_key(w.partition),
                     self.events_key(w.partition)]
            argv.append(len(args))
            argv += args
            sent.append(i)
        with tracing.span("redis.commit", writes=len(writes)):
            results = await self._scripts(self._commit, [(k, a) for k, a, _ in calls],
                                          isolate=True, direct=True) if calls else []
        for (_, _, sent), res in zip(calls, results, strict=True):
            for i, x in zip(sent, res if isinstance(res, list) else [res] * len(sent),
                            strict=True):
                out[i] = _commit_result(x)
        return out

    async def due(self, now: float, limit: int,
                  partitions: Sequence[int] | None = None) -> list[tuple[str, float]]:
        """Each partition's due members, merged earliest first: on one Redis in one script
        call (a host sweeps its 128 or 256 partitions every few seconds: 1.3 ms against 5 ms
        for a pipeline of ZRANGEBYSCOREs, measured on the 2-core reference machine), on a
        cluster in a pipeline of one ZRANGEBYSCORE per partition (one per node)."""
        if partitions is None:
            partitions = range(PARTITIONS)
        if not partitions or limit <= 0:
            return []
        keys = [self.deadlines_key(p) for p in partitions]
        if self.cluster:
            pipe = self.r.pipeline(transaction=False)
            for k in keys:
                pipe.zrangebyscore(k, "-inf", now, start=0, num=limit, withscores=True)
            rows = [(m, float(s)) for part in await pipe.execute() for m, s in part]
        else:
            [flat] = await self._scripts(self._due, [(keys, [repr(float(now)), limit])])
            rows = [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]
        merged = heapq.nsmallest(limit, ((s, m) for m, s in rows))
        return [(m.decode(), s) for s, m in merged]

    # -- reference data --------------------------------------------------------------------
    async def put_reference(self, kind: str, ref_id: str, value: Any) -> None:
        await self.r.hset(f"{self.prefix}:ref:{kind}", ref_id, encode(value))

    async def load_reference(self, kind: str) -> dict[str, Any]:
        raw = await self.r.hgetall(f"{self.prefix}:ref:{kind}")
        return {k.decode(): decode(v) for k, v in raw.items()}

    # -- events ----------------------------------------------------------------------------
    async def events(self, count: int = 1000) -> list[dict[str, Any]]:
        """The ``count`` most recent events of every partition, oldest first, by stream id.

        Reads each stream newest first, a page at a time, and pages on (twice as far each
        round) only in the streams that may still hold one of the ``count`` newest: a few
        times ``count`` entries read in all, not ``PARTITIONS * count``.
        """
        if count <= 0:
            return []
        streams = self.event_streams()
        page = 1 + -(-count // len(streams))
        # A min-heap of the newest `count` so far: (stream id, partition, data); equal ids of
        # two streams are ordered by partition.
        newest: list[tuple[tuple[int, int], int, bytes]] = []
        upper = ["+"] * len(streams)
        active = list(range(len(streams)))
        while active:
            pipe = self.r.pipeline(transaction=False)
            for p in active:
                pipe.xrevrange(streams[p], max=upper[p], min="-", count=page)
            pages = await pipe.execute()
            more = []
            for p, rows in zip(active, pages, strict=True):
                for entry_id, fields in rows:
                    item = (_stream_id(entry_id), p, fields[b"data"])
                    if len(newest) < count:
                        heapq.heappush(newest, item)
                    elif item[:2] > newest[0][:2]:
                        heapq.heapreplace(newest, item)
                if len(rows) == page:
                    oldest = (_stream_id(rows[-1][0]), p)
                    # Older entries of this stream count only if the newest `count` are
                    # not all newer than its oldest entry read so far.
                    if len(newest) < count or oldest > newest[0][:2]:
                        upper[p] = f"({oldest[0][0]}-{oldest[0][1]}"
                        more.append(p)
            active = more
            page *= 2
        return [json.loads(data) for _, _, data in sorted(newest)]

    # -- operations ------------------------------------------------------------------------
    async def ping(self) -> bool:
        return bool(await self.r.ping())

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not self._conn_busy:
            await self.r.connection_pool.release(conn)
        await self.r.aclose()

    async def clear(self) -> None:
        """Delete every key under the prefix, on every node of a cluster (tests, benchmarks)."""
        batch: list[Any] = []
        async for k in self.r.scan_iter(match=f"{self.prefix}:*", count=1000):
            batch.append(k)
            if len(batch) == 500:
                await self._delete(batch)
                batch = []
        await self._delete(batch)

    async def _delete(self, keys: list[Any]) -> None:
        if not keys:
            return
        pipe = self.r.pipeline(transaction=False)
        for k in keys:  # one key each: a cluster pipeline sends each to its node
            pipe.delete(k)
        await pipe.execute()

    # -- the layout before partitions ------------------------------------------------------
    async def migrate_layout(self, partition_of: Callable[[str], int],
                             batch: int = 500) -> dict[str, int]:
        """Move the single-Redis layout before partitions to the partitioned keys, once.

        ``partition_of`` maps a storage key ``"<kind>:<key>"`` to its partition by the
        runtime's rule (``lambda k: store_partition(*k.split(":", 1))`` with
        `actors.runtime.store_partition`). Moves
        - each ``<prefix>:a:<kind>:<key>`` hash, with its TTL, to its partition's key
          (DUMP, RESTORE, DEL: also between nodes of a cluster);
        - each ``<prefix>:deadlines`` member to its partition's deadline set;
        - each ``<prefix>:events`` entry, with its id (so its time and order), to partition
          0's stream (the old entries name no actor). A consumer group that had read the old
          stream is not carried over: create it on partition 0's stream at the last id it
          processed (``XGROUP CREATE ... <id>``) to skip what it already saw. An old entry
          whose id is not above that stream's last (events written there first) is appended
          with a new id; should a run stop between that and deleting the old entry, the next
          run appends it again.
        Where a partitioned key or member already exists, it is newer and is kept; the old one
        is dropped. Safe to call at every start, after an interrupted run (each step is
        idempotent) and after a roll-back to the old version and forward again; stop every
        process of the old version first. With nothing old it changes nothing and costs one
        SCAN of the keyspace (``MATCH <prefix>:a:*``, on every primary of a cluster: about a
        second per few million keys) and two reads. Answers how many actors, deadlines and
        events were moved: ``{"actors": n, "deadlines": n, "events": n}``.
        """
        return {"actors": await self._migrate_actors(partition_of, batch),
                "deadlines": await self._migrate_deadlines(partition_of, batch),
                "events": await self._migrate_events(batch)}

    async def _migrate_actors(self, partition_of: Callable[[str], int], batch: int) -> int:
        old_prefix = f"{self.prefix}:a:"
        moved = 0
        keys: list[bytes] = []
        async for k in self.r.scan_iter(match=f"{old_prefix}*", count=5000):
            keys.append(k)
            if len(keys) >= batch:
                moved += await self._move_hashes(keys, old_prefix, partition_of)
                keys = []
        if keys:
            moved += await self._move_hashes(keys, old_prefix, partition_of)
        return moved

    async def _move_hashes(self, keys: list[bytes], old_prefix: str,
                           partition_of: Callable[[str], int]) -> int:
        pipe = self.r.pipeline(transaction=False)
        for k in keys:
            pipe.dump(k)
            pipe.pttl(k)
        dumped = await pipe.execute()
        pipe = self.r.pipeline(transaction=False)
        sent = []
        for i, k in enumerate(keys):
            payload, pttl = dumped[2 * i], dumped[2 * i + 1]
            if payload is None:
                continue  # gone meanwhile (expired)
            skey = k.decode()[len(old_prefix):]
            pipe.restore(self.actor_key(skey, partition_of(skey)), max(int(pttl), 0), payload)
            sent.append(k)
        restored = await pipe.execute(raise_on_error=False)
        for res in restored:
            if isinstance(res, Exception) and "BUSYKEY" not in str(res):
                raise res
        await self._delete(sent)
        return sum(not isinstance(res, Exception) for res in restored)

    async def _migrate_deadlines(self, partition_of: Callable[[str], int], batch: int) -> int:
        old = f"{self.prefix}:deadlines"
        moved = 0
        while rows := await self.r.zrange(old, 0, batch - 1, withscores=True):
            pipe = self.r.pipeline(transaction=False)
            for member, score in rows:
                pipe.zadd(self.deadlines_key(partition_of(member.decode())), {member: score},
                          nx=True)
            moved += sum(await pipe.execute())
            await self.r.zrem(old, *(m for m, _ in rows))
        return moved

    async def _migrate_events(self, batch: int) -> int:
        old, new = f"{self.prefix}:events", self.events_key(0)
        moved = 0
        while rows := await self.r.xrange(old, min="-", max="+", count=batch):
            pipe = self.r.pipeline(transaction=False)
            for entry_id, fields in rows:
                pipe.xadd(new, fields, id=entry_id)
            added = await pipe.execute(raise_on_error=False)
            for (entry_id, fields), res in zip(rows, added, strict=True):
                if not isinstance(res, Exception):
                    moved += 1
                    continue
                if not isinstance(res, ResponseError):
                    raise res
                # Its id is not above the stream's last: either copied by an interrupted run
                # (then it is there) or newer events came first (then append it with a new id;
                # one of them may even hold its id, streams number their entries apart).
                there = await self.r.xrange(new, min=entry_id, max=entry_id)
                if not there or there[0][1] != fields:
                    await self.r.xadd(new, fields)
                    moved += 1
            await self.r.xdel(old, *(i for i, _ in rows))
        await self.r.delete(old)  # empty now; its consumer groups go with it
        return moved
