"""The partitioned Redis layout: one hash slot per partition, sweeps and events across
partitions, NOSCRIPT recovery, and the one-shot migration from the layout before partitions."""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

import pytest
from redis.crc import key_slot
from redis.exceptions import ResponseError

from snapshots import redis_store as redis_store_module
from snapshots.codec import encode
from snapshots.redis_store import RedisStore, connect
from snapshots.store import NEW_EPOCH, PARTITIONS, Write
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def _partition(skey: str) -> int:
    """A partition for storage key ``skey`` (the store takes whatever the runtime says)."""
    return (zlib.crc32(skey.encode()) & 0xFFFF) % PARTITIONS


def _write(skey: str, epoch: int = NEW_EPOCH, **kw: Any) -> Write:
    return Write(key=skey, epoch=epoch, partition=_partition(skey), **kw)


async def test_a_commit_touches_only_keys_of_its_partition_in_one_hash_slot(
        redis_store: RedisStore) -> None:
    s = redis_store
    w = _write("cart:c_1", hset={"meta": {"v": 1}}, deadline=("cart:c_1", 100.0),
               events=[{"type": "cart.created", "cart_id": "c_1"}])
    assert await s.commit([w]) == [1]
    # SCAN may return a key more than once (Redis documents it; seen on the cluster, which
    # scans every node): the keys are a set.
    keys = sorted({k.decode() async for k in s.r.scan_iter(match=f"{s.prefix}:*")})
    p = w.partition
    assert keys == sorted([f"{s.prefix}:{{p{p}}}:a:cart:c_1", f"{s.prefix}:{{p{p}}}:deadlines",
                           f"{s.prefix}:{{p{p}}}:events"])
    assert len({key_slot(k.encode()) for k in keys}) == 1
    # The tag is the partition, whatever braces the actor's key holds.
    assert key_slot(s.actor_key("cart:{x}", p).encode()) == key_slot(s.events_key(p).encode())
    assert await s.activate("cart:c_1", p) == (2, {"meta": {"v": 1}})


async def test_due_answers_only_the_partitions_asked_for_earliest_first(
        redis_store: RedisStore) -> None:
    s = redis_store
    writes = [_write(f"cart:c_{i}", deadline=(f"cart:c_{i}", 1000.0 - i)) for i in range(40)]
    writes.append(_write("cart:late", deadline=("cart:late", 5000.0)))
    assert await s.commit(writes) == [1] * 41
    by_partition = {w.key: w.partition for w in writes}
    mine = sorted({w.partition for w in writes[:40:3]})
    due = await s.due(2000.0, 1000, mine)
    expected = sorted((1000.0 - i, f"cart:c_{i}") for i in range(40)
                      if by_partition[f"cart:c_{i}"] in mine)
    assert due == [(m, t) for t, m in expected]
    assert await s.due(2000.0, 3, mine) == due[:3]
    everything = await s.due(10_000.0, 1000, range(PARTITIONS))
    assert len(everything) == 41 and everything[-1] == ("cart:late", 5000.0)
    assert await s.due(2000.0, 10, []) == []
    assert await s.due(10_000.0, 1000) == everything  # None: every partition


async def test_events_are_the_newest_of_every_partition_oldest_first(
        redis_store: RedisStore) -> None:
    s = redis_store
    # 300 events from 60 carts, spread over many partitions, each commit after the last.
    for i in range(300):
        cart = f"c_{i % 60}"
        e = {"type": "cart.touched", "cart_id": cart, "n": i}
        epoch = NEW_EPOCH if i < 60 else 1
        assert await s.commit([_write(f"cart:{cart}", epoch=epoch, hset={"meta": i},
                                      events=[e])]) == [1]
    assert len({_partition(f"cart:c_{i}") for i in range(60)}) > 30
    # Every entry of every stream, ordered by id (milliseconds, then sequence in its stream),
    # then partition.
    entries = []
    for p, key in enumerate(s.event_streams()):
        for entry_id, fields in await s.r.xrange(key):
            ms, seq = entry_id.decode().split("-")
            entries.append((int(ms), int(seq), p, json.loads(fields[b"data"])["n"]))
    by_id = [e[-1] for e in sorted(entries)]
    assert sorted(by_id) == list(range(300))
    everything = [e["n"] for e in await s.events(1000)]
    assert everything == by_id
    for cart in range(60):  # one actor's events keep their order
        assert [n for n in everything if n % 60 == cart] == list(range(cart, 300, 60))
    assert [e["n"] for e in await s.events(25)] == by_id[-25:]
    assert [e["n"] for e in await s.events(1)] == by_id[-1:]
    assert await s.events(0) == []
    assert len(s.event_streams()) == PARTITIONS
    assert s.event_streams([3, 17]) == [f"{s.prefix}:{{p3}}:events", f"{s.prefix}:{{p17}}:events"]


async def test_events_of_one_busy_partition_are_read_as_far_back_as_needed(
        redis_store: RedisStore) -> None:
    s = redis_store
    await s.commit([_write("cart:quiet", events=[{"type": "t", "n": -1}])])
    await s.commit([_write("cart:busy", events=[{"type": "t", "n": i} for i in range(40)])])
    for i in range(40, 90):
        await s.commit([_write("cart:busy", epoch=1, events=[{"type": "t", "n": i}])])
    assert [e["n"] for e in await s.events(60)] == list(range(30, 90))
    assert [e["n"] for e in await s.events(1000)] == list(range(-1, 90))


async def test_a_script_cache_flushed_under_the_store_is_reloaded_and_nothing_runs_twice(
        redis_store: RedisStore) -> None:
    s = redis_store
    await s.commit([_write("cart:a"), _write("cart:b")])
    await s.r.script_flush()
    writes = [_write("cart:a", epoch=1, events=[{"type": "x", "n": 1}]),
              _write("cart:b", epoch=1, events=[{"type": "x", "n": 2}])]
    assert await s.commit(writes) == [1, 1]
    assert sorted(e["n"] for e in await s.events()) == [1, 2]  # each event once
    await s.r.script_flush()
    assert (await s.activate("cart:a", _partition("cart:a")))[0] == 2


async def test_a_group_commit_is_one_script_call_and_a_write_redis_refuses_fails_alone(
        redis_store: RedisStore) -> None:
    s = redis_store
    await s.commit([_write(f"cart:warm_{i}") for i in range(64)])  # scripts loaded everywhere
    calls: list[int] = []
    send = s._evalsha_pipeline

    async def counted(script: Any, batch: list[Any], *rest: Any) -> list[Any]:
        calls.append(len(batch))
        return await send(script, batch, *rest)

    s._evalsha_pipeline = counted  # type: ignore[method-assign]
    bad = _write("cart:c_bad", hset={"meta": {"v": -1}})
    await s.r.set(s.actor_key(bad.key, bad.partition), "not a hash")
    good = [_write(f"cart:c_{i}", hset={"meta": {"v": i}},
                   events=[{"type": "cart.touched", "n": i}]) for i in range(5)]
    res = await s.commit([good[0], bad, *good[1:]])
    assert isinstance(res[1], ResponseError) and "WRONGTYPE" in str(res[1])
    assert res[:1] + res[2:] == [1] * 5
    # one call on one Redis; on a cluster one per partition (a call's keys share a slot)
    assert calls == [len({w.partition for w in [bad, *good]}) if s.cluster else 1]
    for i, w in enumerate(good):
        assert await s.activate(w.key, w.partition) == (2, {"meta": {"v": i}})
    assert sorted(e["n"] for e in await s.events()) == list(range(5))


async def test_a_large_group_commit_is_cut_into_calls_of_bounded_size(
        redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    s = redis_store
    await s.commit([_write(f"cart:warm_{i}") for i in range(64)])  # scripts loaded everywhere
    monkeypatch.setattr(redis_store_module, "COMMIT_CALL_ARGS", 60)
    calls: list[list[int]] = []
    send = s._evalsha_pipeline

    async def counted(script: Any, batch: list[Any], *rest: Any) -> list[Any]:
        calls.append([len(args) for _, args in batch])
        return await send(script, batch, *rest)

    s._evalsha_pipeline = counted  # type: ignore[method-assign]
    writes = [_write(f"cart:big_{i}", hset={f"l:{j}": {"q": j} for j in range(i + 1)})
              for i in range(12)]
    big = _write("cart:huge", hset={f"l:{j}": {"q": j} for j in range(40)})  # alone: > 60
    assert await s.commit([*writes, big]) == [1] * 13
    assert len(calls) == 1  # one pipeline
    if not s.cluster:
        assert len(calls[0]) > 2 and sum(1 for n in calls[0] if n > 60) == 1
    for i, w in enumerate(writes):
        assert await s.activate(w.key, w.partition) == (
            2, {f"l:{j}": {"q": j} for j in range(i + 1)})


async def test_the_group_commit_keeps_its_connection_and_goes_on_when_redis_drops_it(
        redis_store: RedisStore) -> None:
    """On one Redis a group commit goes on the store's own connection, the same one each
    time; when Redis closes it, the commit is sent again through the client and applied
    once, and the next one takes a fresh connection."""
    s = redis_store
    assert await s.commit([_write("cart:k1", hset={"meta": {"v": 1}})]) == [1]
    if s.cluster:  # one call per partition, through the cluster client: none kept
        assert s._conn is None
        return
    conn = s._conn
    assert conn is not None
    assert await s.commit([_write("cart:k2", hset={"meta": {"v": 2}})]) == [1]
    assert s._conn is conn
    await conn.send_command("CLIENT", "ID")
    client_id = await conn.read_response()
    assert await s.r.execute_command("CLIENT", "KILL", "ID", client_id) == 1
    w = _write("cart:k3", hset={"meta": {"v": 3}}, events=[{"type": "cart.touched", "n": 3}])
    assert await s.commit([w]) == [1]
    assert await s.activate(w.key, w.partition) == (2, {"meta": {"v": 3}})
    assert [e["n"] for e in await s.events()] == [3]  # applied once
    assert await s.commit([_write("cart:k4")]) == [1]
    assert s._conn is not None
    await s._conn.send_command("CLIENT", "ID")
    assert await s._conn.read_response() != client_id  # a new connection (the pool may
    # hand back the same object, connected again)


async def test_a_fenced_write_is_refused_in_its_partition(redis_store: RedisStore) -> None:
    s = redis_store
    assert await s.commit([_write("inv:sku-1", hset={"on_hand": 3})]) == [1]
    epoch, _ = await s.activate("inv:sku-1", _partition("inv:sku-1"))
    assert epoch == 2
    stale = _write("inv:sku-1", epoch=1, hset={"on_hand": 0}, events=[{"type": "late"}])
    assert await s.commit([stale]) == [None]
    assert await s.activate("inv:sku-1", _partition("inv:sku-1")) == (3, {"on_hand": 3})
    assert await s.events() == []


def test_connect_builds_a_cluster_client_for_a_cluster_url_only() -> None:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    assert isinstance(connect("redis://127.0.0.1:1/0"), Redis)
    assert isinstance(connect("redis+cluster://127.0.0.1:1"), RedisCluster)
    assert isinstance(connect("redis://127.0.0.1:1", cluster=True), RedisCluster)
    with pytest.raises(ValueError):
        connect("redis+cluster://127.0.0.1:1/3")


def test_single_redis_connections_pack_commands_as_redis_py_does() -> None:
    from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
    from redis.exceptions import DataError

    cases = [("redis://127.0.0.1:1/0", Connection), ("rediss://127.0.0.1:1/0", SSLConnection),
             ("unix:///tmp/nothing.sock", UnixDomainSocketConnection)]
    for url, base in cases:
        cls = connect(url).connection_pool.connection_class
        assert issubclass(cls, base) and cls is not base
    conn = cls(path="/tmp/nothing.sock")
    plain = UnixDomainSocketConnection(path="/tmp/nothing.sock")
    for args in [("EVALSHA", "ab12", 3, "ce:{p1}:a:cart:c_1", b"\x00\xff", 0.1 + 0.2,
                  1764473533.123456, -7, "caf\u00e9"), ("CONFIG GET", "maxmemory"),
                 ("SET", "k", memoryview(b"view"))]:
        assert b"".join(conn.pack_command(*args)) == b"".join(plain.pack_command(*args))
    with pytest.raises(DataError):  # what redis-py refuses stays refused
        conn.pack_command("SET", "k", True)


# -- migration from the layout before partitions ---------------------------------------------

async def _old_layout(s: RedisStore) -> None:
    """What the store before partitions left: hashes, one deadline set, one event stream."""
    r, p = s.r, s.prefix
    await r.hset(f"{p}:a:cart:c_1", mapping={"_epoch": 4, "meta": encode("m1")})
    await r.hset(f"{p}:a:cart:c_2", mapping={"_epoch": 1, "meta": encode("m2")})
    await r.expire(f"{p}:a:cart:c_2", 3600)
    await r.hset(f"{p}:a:inv:sku-1", mapping={"_epoch": 2, "r:r1": encode("res")})
    await r.zadd(f"{p}:deadlines", {"cart:c_1": 100.0, "inv:sku-1": 50.0})
    for i in range(5):
        await r.xadd(f"{p}:events", {"type": "cart.touched",
                                     "data": json.dumps({"type": "cart.touched", "n": i})})


async def _keys(s: RedisStore) -> set[str]:
    return {k.decode() async for k in s.r.scan_iter(match=f"{s.prefix}:*")}


async def test_migration_moves_hashes_deadlines_and_events_to_their_partitions(
        redis_store: RedisStore) -> None:
    s = redis_store
    await _old_layout(s)
    old_ids = [i for i, _ in await s.r.xrange(f"{s.prefix}:events")]
    moved = await s.migrate_layout(_partition)
    assert moved == {"actors": 3, "deadlines": 2, "events": 5}
    pc, pi = _partition("cart:c_1"), _partition("inv:sku-1")
    assert await s.r.hgetall(s.actor_key("cart:c_1", pc)) == {b"_epoch": b"4",
                                                               b"meta": encode("m1")}
    assert 0 < await s.r.ttl(s.actor_key("cart:c_2", _partition("cart:c_2"))) <= 3600
    assert await s.due(1000.0, 10, [pc, pi]) == [("inv:sku-1", 50.0), ("cart:c_1", 100.0)]
    assert [e["n"] for e in await s.events()] == list(range(5))
    assert [i for i, _ in await s.r.xrange(s.events_key(0))] == old_ids  # ids kept
    assert not any(k.startswith((f"{s.prefix}:a:", f"{s.prefix}:deadlines",
                                 f"{s.prefix}:events")) for k in await _keys(s))
    # The engine takes over where the old layout left off: the fence carries on.
    assert await s.activate("cart:c_1", pc) == (5, {"meta": "m1"})


async def test_migration_again_is_a_no_op_and_a_fresh_store_has_nothing_to_move(
        redis_store: RedisStore) -> None:
    s = redis_store
    nothing = {"actors": 0, "deadlines": 0, "events": 0}
    assert await s.migrate_layout(_partition) == nothing
    assert await _keys(s) == set()
    await _old_layout(s)
    await s.migrate_layout(_partition)
    before = {k: await s.r.type(k) for k in await _keys(s)}
    assert await s.migrate_layout(_partition) == nothing
    assert {k: await s.r.type(k) for k in await _keys(s)} == before
    assert len(await s.events()) == 5
    # A roll-back to the old version wrote the old layout again: the next start moves it.
    await s.r.hset(f"{s.prefix}:a:cart:c_9", mapping={"_epoch": 1, "meta": encode("m9")})
    assert await s.migrate_layout(_partition) == nothing | {"actors": 1}
    assert await s.activate("cart:c_9", _partition("cart:c_9")) == (2, {"meta": "m9"})


async def test_an_interrupted_migration_finishes_without_duplicates_and_newer_state_wins(
        redis_store: RedisStore) -> None:
    s = redis_store
    await _old_layout(s)
    pc = _partition("cart:c_1")
    # A run that stopped half-way: one hash and one deadline copied but not yet deleted, and
    # three events copied; the new owner has since written the cart (epoch 5).
    await s.r.hset(s.actor_key("cart:c_1", pc), mapping={"_epoch": 5, "meta": b"newer"})
    await s.r.zadd(s.deadlines_key(pc), {"cart:c_1": 900.0})
    for entry_id, fields in (await s.r.xrange(f"{s.prefix}:events"))[:3]:
        await s.r.xadd(s.events_key(0), fields, id=entry_id)
    moved = await s.migrate_layout(_partition)
    assert moved == {"actors": 2, "deadlines": 1, "events": 2}
    assert await s.r.hget(s.actor_key("cart:c_1", pc), "meta") == b"newer"
    assert ("cart:c_1", 900.0) in await s.due(1000.0, 10, [pc])
    assert [e["n"] for e in await s.events()] == list(range(5))  # each once, in order


async def test_old_events_that_arrive_after_newer_ones_are_still_moved(
        redis_store: RedisStore) -> None:
    s = redis_store
    await _old_layout(s)
    assert await s.commit([_write("cart:z", events=[{"type": "new", "n": 99}])]) == [1]
    # A newer event in partition 0's stream itself, with the id of the last old one (streams
    # number their entries apart): no old entry fits before it, and that one is no copy.
    last_old = (await s.r.xrevrange(f"{s.prefix}:events", count=1))[0][0]
    await s.r.xadd(s.events_key(0), {"type": "new", "data": json.dumps({"n": 100})},
                   id=last_old)
    assert (await s.migrate_layout(_partition))["events"] == 5
    assert sorted(e["n"] for e in await s.events()) == [0, 1, 2, 3, 4, 99, 100]


async def test_clear_deletes_every_key_of_the_prefix(redis_store: RedisStore) -> None:
    s = redis_store
    await s.commit([_write(f"cart:c_{i}", events=[{"type": "x"}]) for i in range(700)])
    await s.put_reference("product", "p", {"name": "P"})
    assert len(await _keys(s)) > 700
    await s.clear()
    assert await _keys(s) == set()


def readme_consumer() -> dict[str, Any]:
    """The README's event consumer (``join``, ``read``), as written there."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    [code] = [b for b in blocks if "async def join(" in b]
    namespace: dict[str, Any] = {"__name__": "readme_events"}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    return namespace


async def readme_consumers_get_every_event_once(s: RedisStore) -> None:
    """Two workers, each on every other partition, read and acknowledge all 200 events."""
    ns = readme_consumer()
    shares = [s.event_streams(range(w, PARTITIONS, 2)) for w in (0, 1)]
    for streams in shares:
        await ns["join"](s, "shipping", streams)
    await s.commit([_write(f"cart:c_{i}", events=[{"type": "cart.touched", "n": i}])
                    for i in range(200)])
    seen = []
    for w, streams in enumerate(shares):
        got = await ns["read"](s, "shipping", f"worker-{w}", streams)
        for key, entry_id, event in got:
            assert key.decode() in streams
            await s.r.xack(key, "shipping", entry_id)
            seen.append(event["n"])
    assert sorted(seen) == list(range(200))
    await s.commit([_write("cart:c_0", epoch=1, events=[{"type": "cart.touched", "n": 200}])])
    w = 0 if s.events_key(_partition("cart:c_0")) in shares[0] else 1
    assert [e["n"] for _, _, e in await ns["read"](s, "shipping", f"worker-{w}",
                                                   shares[w])] == [200]


async def test_the_readme_event_consumers_get_every_event_once(
        redis_store: RedisStore) -> None:
    await readme_consumers_get_every_event_once(redis_store)
