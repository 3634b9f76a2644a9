"""The partition directory (`actors.directory`) kept in Redis.

Layout under ``prefix``, one hash tag so that every script touches one slot (Redis Cluster):
  ``{prefix}:{dir}:members``  hash: host id -> JSON ``{inc, addr, lease_end, leaving,
                              serve_after}`` (times on the Redis clock, epoch seconds)
  ``{prefix}:{dir}:map``      hash: ``version``, ``owners`` and ``targets`` (JSON lists of
                              host ids, one per partition), ``rehomed``, ``handoffs``,
                              ``desired`` (the host count operators asked for)
Leases are judged on Redis's clock (``TIME`` inside the scripts), so hosts' clocks need not
agree; the map changes only by compare-and-set on its version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis.asyncio as aioredis

from snapshots.directory import Member, PartitionMap
from snapshots.store import PARTITIONS

# ARGV: lease seconds, host id, incarnation, address (JSON), leaving on first registration.
# The incarnation stays a string: cjson writes numbers with 14 digits, an incarnation has 16.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local inc = ARGV[3]
local leaving = tonumber(ARGV[5])
local serve_after = 0
local old = redis.call('HGET', KEYS[1], ARGV[2])
if old then
  local o = cjson.decode(old)
  if tonumber(o.inc) > tonumber(inc) then return false end
  if o.inc == inc then
    leaving = o.leaving
    serve_after = o.serve_after
  else
    serve_after = o.lease_end
  end
end
local row = cjson.encode({inc = inc, addr = cjson.decode(ARGV[4]),
                          lease_end = now + tonumber(ARGV[1]), leaving = leaving,
                          serve_after = serve_after})
redis.call('HSET', KEYS[1], ARGV[2], row)
return row
"""

# ARGV: expected version, owners JSON, targets JSON, re-homed, hand-offs
_WRITE = """
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', v + 1, 'owners', ARGV[2], 'targets', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'rehomed', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'handoffs', ARGV[5])
return 1
"""

_SET_LEAVING = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local o = cjson.decode(old)
o.leaving = 1
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(o))
return 1
"""

_REMOVE = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
if cjson.decode(old).inc ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


def _member(host_id: str, raw: bytes | str) -> Member:
    o = json.loads(raw)
    return Member(host_id, (str(o["addr"][0]), int(o["addr"][1])), int(o["inc"]),
                  float(o["lease_end"]), bool(o["leaving"]), float(o["serve_after"]))


class RedisDirectory:
    """A :class:`~actors.directory.Directory` over a ``redis.asyncio`` client (built by the
    caller's bootstrap step and passed in)."""

    def __init__(self, client: aioredis.Redis, prefix: str = "ce") -> None:
        self.r = client
        self.members_key = f"{prefix}:{{dir}}:members"
        self.map_key = f"{prefix}:{{dir}}:map"
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._write = client.register_script(_WRITE)
        self._set_leaving = client.register_script(_SET_LEAVING)
        self._remove = client.register_script(_REMOVE)

    async def heartbeat(self, member: Member, lease: float) -> Member | None:
        row = await self._heartbeat(keys=[self.members_key], args=[
            lease, member.host_id, str(member.incarnation), json.dumps(list(member.address)),
            1 if member.leaving else 0])
        return None if row is None else _member(member.host_id, row)

    async def read(self) -> PartitionMap:
        pipe = self.r.pipeline(transaction=False)
        pipe.time()
        pipe.hgetall(self.members_key)
        pipe.hmget(self.map_key, "version", "owners", "targets")
        (sec, usec), members, (version, owners, targets) = await pipe.execute()
        return PartitionMap(
            int(version or 0),
            json.loads(owners) if owners else [""] * PARTITIONS,
            json.loads(targets) if targets else [""] * PARTITIONS,
            {h.decode(): _member(h.decode(), raw) for h, raw in members.items()},
            sec + usec / 1e6)

    async def version(self) -> int:
        return int(await self.r.hget(self.map_key, "version") or 0)

    async def write(self, expected_version: int, owners: Sequence[str], targets: Sequence[str],
                    rehomed: int = 0, handoffs: int = 0) -> bool:
        return bool(await self._write(keys=[self.map_key], args=[
            expected_version, json.dumps(list(owners)), json.dumps(list(targets)), rehomed,
            handoffs]))

    async def set_leaving(self, host_id: str) -> None:
        await self._set_leaving(keys=[self.members_key], args=[host_id])

    async def remove(self, host_id: str, incarnation: int) -> None:
        await self._remove(keys=[self.members_key], args=[host_id, str(incarnation)])

    async def desired_hosts(self) -> int | None:
        raw = await self.r.hget(self.map_key, "desired")
        return None if raw is None else int(raw)

    async def set_desired_hosts(self, n: int) -> None:
        await self.r.hset(self.map_key, "desired", n)

    async def counters(self) -> dict[str, int]:
        rehomed, handoffs = await self.r.hmget(self.map_key, "rehomed", "handoffs")
        return {"rehomed": int(rehomed or 0), "handoffs": int(handoffs or 0)}

    async def clear(self) -> None:
        """Forget the whole directory (tests)."""
        await self.r.delete(self.members_key, self.map_key)

