"""Redis snapshot store: actor hashes, a deadline sorted set, an outbox stream.

Layout under ``prefix`` (default ``ce``):
  ``{prefix}:a:{kind}:{key}``  hash: ``_epoch`` plus one field per piece of state (msgpack)
  ``{prefix}:deadlines``       sorted set: member ``{kind}:{key}``, score epoch seconds
  ``{prefix}:events``          stream: fields ``type`` and ``data`` (JSON), approx. 1M entries
  ``{prefix}:ref:{kind}``      hash: catalog products / promotions by id
One turn's write is one Lua script call (fence check, HSET/HDEL, deadline, XADD: atomic);
the writes of a batch travel in one pipeline (group commit). Durability is Redis's own:
run AOF with ``appendfsync always`` to lose no acknowledged write on power loss.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from actors import tracing
from snapshots.codec import decode, encode
from snapshots.store import Write

_ACTIVATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, {}} end
local epoch = redis.call('HINCRBY', KEYS[1], '_epoch', 1)
return {epoch, redis.call('HGETALL', KEYS[1])}
"""

# ARGV: epoch, nset, (field, value)*, ndel, field*, deadline_op ('', 'set', 'del'),
#       member, score, nevents, (type, data)*, expire_after ('' or seconds)
_COMMIT = """
local epoch = tonumber(ARGV[1])
local cur = redis.call('HGET', KEYS[1], '_epoch')
if epoch == 0 then
  if cur then return -1 end
  redis.call('HSET', KEYS[1], '_epoch', 1)
  epoch = 1
elseif tonumber(cur) ~= epoch then
  return -1
end
local i = 2
local nset = tonumber(ARGV[i]); i = i + 1
for _ = 1, nset do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2 end
local ndel = tonumber(ARGV[i]); i = i + 1
for _ = 1, ndel do redis.call('HDEL', KEYS[1], ARGV[i]); i = i + 1 end
local op = ARGV[i]; local member = ARGV[i + 1]; local score = ARGV[i + 2]; i = i + 3
if op == 'set' then redis.call('ZADD', KEYS[2], score, member)
elseif op == 'del' then redis.call('ZREM', KEYS[2], member) end
local nev = tonumber(ARGV[i]); i = i + 1
for _ = 1, nev do
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000000, '*', 'type', ARGV[i], 'data', ARGV[i + 1])
  i = i + 2
end
local ttl = ARGV[i]
if ttl ~= '' then redis.call('EXPIRE', KEYS[1], tonumber(ttl)) end
return epoch
"""


def connect(url: str, max_connections: int = 64) -> aioredis.Redis:
    """A client whose pool waits for a free connection instead of failing under load.

    Call it only from a bootstrap step (CLI, app lifespan, host start) and pass the client in.
    """
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections,
                                                    timeout=30)
    return aioredis.Redis(connection_pool=pool)


class RedisStore:
    """A :class:`~snapshots.store.SnapshotStore` over a ``redis.asyncio`` client.

    The client is built by the caller (a bootstrap step) and passed in.
    """

    def __init__(self, client: aioredis.Redis, prefix: str = "ce") -> None:
        self.r = client
        self.prefix = prefix
        self._activate = client.register_script(_ACTIVATE)
        self._commit = client.register_script(_COMMIT)
        self.deadlines_key = f"{prefix}:deadlines"
        self.events_key = f"{prefix}:events"
        # Activations that arrive together (a flash sale's new carts) share one pipeline.
        self._pending: list[tuple[str, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def actor_key(self, key: str) -> str:
        return f"{self.prefix}:a:{key}"

    async def activate(self, key: str) -> tuple[int, dict[str, Any]]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((key, fut))
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
                results = await self._scripts(self._activate,
                                              [([self.actor_key(k)], []) for k, _ in batch])
            except Exception as e:  # noqa: BLE001 - every waiter gets the failure
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    async def _scripts(self, script: Any, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run ``script`` once per ``(keys, args)`` in one pipeline, by SHA (EVALSHA).

        One round trip: redis-py's own script pipelining asks SCRIPT EXISTS first on every
        execute. A server that lost its script cache (restart, SCRIPT FLUSH) answers NOSCRIPT
        to every call of the pipeline, so nothing ran: load the script and send it again.
        """
        for attempt in (1, 2):
            pipe = self.r.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                return await pipe.execute()  # type: ignore[no-any-return]
            except NoScriptError:
                if attempt == 2:
                    raise
                await self.r.script_load(script.script)
        raise AssertionError("unreachable")

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
            args += [e["type"], json.dumps(e, separators=(",", ":"))]
        args.append("" if w.expire_after is None else int(w.expire_after))
        return args

    async def commit(self, writes: list[Write]) -> list[int | None]:
        if not writes:
            return []
        keys_tail = [self.deadlines_key, self.events_key]
        with tracing.span("redis.commit", writes=len(writes)):
            results = await self._scripts(self._commit, [
                ([self.actor_key(w.key), *keys_tail], self._args(w)) for w in writes])
        return [None if int(x) < 0 else int(x) for x in results]

    async def due(self, now: float, limit: int) -> list[tuple[str, float]]:
        rows = await self.r.zrangebyscore(self.deadlines_key, "-inf", now, start=0, num=limit,
                                          withscores=True)
        return [(m.decode(), float(s)) for m, s in rows]

    async def put_reference(self, kind: str, ref_id: str, value: Any) -> None:
        await self.r.hset(f"{self.prefix}:ref:{kind}", ref_id, encode(value))

    async def load_reference(self, kind: str) -> dict[str, Any]:
        raw = await self.r.hgetall(f"{self.prefix}:ref:{kind}")
        return {k.decode(): decode(v) for k, v in raw.items()}

    async def events(self, count: int = 1000) -> list[dict[str, Any]]:
        rows = await self.r.xrevrange(self.events_key, count=count)
        return [json.loads(fields[b"data"]) for _, fields in reversed(rows)]

    async def ping(self) -> bool:
        return bool(await self.r.ping())

    async def close(self) -> None:
        await self.r.aclose()

    async def clear(self) -> None:
        """Delete every key under the prefix (tests and benchmarks)."""
        async for k in self.r.scan_iter(match=f"{self.prefix}:*", count=1000):
            await self.r.delete(k)
