"""The engine on a Redis Cluster: three ``redis-server --cluster-enabled yes`` processes started
here, joined into one cluster from Python (CLUSTER ADDSLOTS / MEET, no redis-cli), and the actor
suite's persistence cases run against a `RedisStore` on it (in-process placement), with the
store's own cases (layout, sweeps, events, NOSCRIPT, migration, the README's consumer).

The cases are the same functions as for the memory store or one Redis (imported below); this
module's ``store``, ``redis_store``, ``harness`` and ``svc`` fixtures put them on the cluster.
The old layout's keys of the migration cases lie in any slots: DUMP / RESTORE moves them
between nodes.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from snapshots.bundled import redis_server_binary
from snapshots.redis_store import RedisStore, connect
from snapshots.store import PARTITIONS
from tests.actors.harness import Harness
from tests.actors.test_contract import (  # noqa: F401 - collected here, on the cluster
    test_a_repeated_idempotency_key_answers_the_first_reply,
    test_actor_activates_from_its_snapshot_after_a_restart,
    test_checkout_with_one_key_makes_one_order_and_sells_once,
    test_concurrent_checkouts_never_oversell,
    test_deadlines_kept_in_the_store_are_honoured_after_a_restart,
    test_inactive_cart_expires_and_releases_its_holds,
    test_unfinished_checkout_reservations_expire,
)
from tests.actors.test_persistence import (  # noqa: F401 - collected here, on the cluster
    RecordingStore,
    test_a_failed_write_is_never_acknowledged_and_the_actor_reloads,
    test_a_host_that_lost_an_actor_cannot_overwrite_its_new_owner,
    test_a_new_reservation_writes_as_much_with_10000_open_as_with_none,
    test_concurrent_turns_share_one_commit,
)
from tests.integration.test_analytics_redis import (  # noqa: F401 - on the cluster too
    test_a_batch_mixing_counted_and_new_entries_counts_only_the_new_ones,
    test_a_consumer_killed_after_applying_and_before_acking_counts_nothing_twice,
    test_a_read_that_fills_no_stream_is_caught_up_however_much_it_read,
    test_a_replay_larger_than_one_script_call_counts_each_event_once,
    test_a_report_taken_while_the_consumer_applies_is_of_one_instant,
    test_a_second_consumer_applies_nothing_while_the_first_holds_the_lease,
    test_entries_read_but_not_applied_before_a_crash_are_applied_on_restart,
    test_the_consumer_folds_a_known_sequence_into_every_figure,
    test_the_running_consumer_counts_events_as_they_come_and_hands_over_on_stop,
)
from tests.integration.test_redis_partitions import (  # noqa: F401 - collected here too
    _write,
    test_a_commit_touches_only_keys_of_its_partition_in_one_hash_slot,
    test_a_fenced_write_is_refused_in_its_partition,
    test_a_group_commit_is_one_script_call_and_a_write_redis_refuses_fails_alone,
    test_a_large_group_commit_is_cut_into_calls_of_bounded_size,
    test_a_script_cache_flushed_under_the_store_is_reloaded_and_nothing_runs_twice,
    test_an_interrupted_migration_finishes_without_duplicates_and_newer_state_wins,
    test_clear_deletes_every_key_of_the_prefix,
    test_due_answers_only_the_partitions_asked_for_earliest_first,
    test_events_are_the_newest_of_every_partition_oldest_first,
    test_events_of_one_busy_partition_are_read_as_far_back_as_needed,
    test_migration_again_is_a_no_op_and_a_fresh_store_has_nothing_to_move,
    test_migration_moves_hashes_deadlines_and_events_to_their_partitions,
    test_old_events_that_arrive_after_newer_ones_are_still_moved,
    test_the_readme_event_consumers_get_every_event_once,
)

pytestmark = pytest.mark.integration

SLOTS = 16384
#: A cluster node also listens on its port + 10000 (the cluster bus).
BUS_OFFSET = 10000
#: How long the servers may take to start and agree on the cluster, seconds.
FORM_TIMEOUT = 30.0


def _free_port_with_bus() -> int:
    """A free loopback port whose cluster bus port (``+ BUS_OFFSET``) is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + BUS_OFFSET > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + BUS_OFFSET))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class LocalRedisCluster:
    """``n`` primaries on free loopback ports, each in its own directory under ``root``."""

    def __init__(self, root: Path, n: int = 3) -> None:
        self.root = root
        self.ports = [_free_port_with_bus() for _ in range(n)]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self) -> None:
        """Start the servers, give each a third of the slots, introduce them, and wait until
        every node answers ``cluster_state:ok``. Raises RuntimeError on timeout or exit."""
        binary = shutil.which("redis-server") or redis_server_binary()
        for port in self.ports:
            d = self.root / str(port)
            d.mkdir(parents=True)
            self.procs.append(subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--logfile", "redis.log"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        clients = [redis.Redis(port=p, socket_timeout=5) for p in self.ports]
        try:
            self._until(lambda: all(self._answers(c) for c in clients), "the servers start")
            bounds = [SLOTS * i // len(clients) for i in range(len(clients) + 1)]
            for c, lo, hi in zip(clients, bounds, bounds[1:], strict=False):
                c.execute_command("CLUSTER ADDSLOTS", *range(lo, hi))
            for p in self.ports[1:]:
                clients[0].execute_command("CLUSTER MEET", "127.0.0.1", p)
            self._until(lambda: all(self._ok(c) for c in clients), "cluster_state:ok")
        finally:
            for c in clients:
                c.close()

    def _until(self, check: object, what: str) -> None:
        deadline = time.monotonic() + FORM_TIMEOUT
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    logs = [(d / "redis.log").read_text()[-2000:]
                            for d in self.root.iterdir() if (d / "redis.log").exists()]
                    raise RuntimeError("a redis-server exited: " + "\n".join(logs))
            if check():  # type: ignore[operator]
                return
            time.sleep(0.05)  # a poll interval: each round reads the servers' own answer
        raise RuntimeError(f"timed out waiting until {what}")

    @staticmethod
    def _answers(c: redis.Redis) -> bool:
        try:
            return bool(c.ping())
        except redis.ConnectionError:
            return False

    def _ok(self, c: redis.Redis) -> bool:
        info = c.execute_command("CLUSTER INFO")
        if isinstance(info, bytes):  # a raw reply: "field:value" lines
            info = dict(line.split(":", 1) for line in info.decode().split() if ":" in line)
        return str(info.get("cluster_state")) == "ok" and \
            int(info.get("cluster_known_nodes", 0)) == len(self.ports)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    cluster = LocalRedisCluster(Path(tempfile.mkdtemp(prefix="ce-test-cluster-")))
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
async def cluster_store(cluster_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(connect(cluster_url), "t" + uuid.uuid4().hex[:10])
    yield store
    await store.clear()
    await store.close()


@pytest.fixture
def redis_store(cluster_store: RedisStore) -> RedisStore:
    """test_redis_partitions's cases over the cluster."""
    return cluster_store


@pytest.fixture
def store(cluster_store: RedisStore) -> RecordingStore:
    """test_persistence's cases over the cluster."""
    return RecordingStore(cluster_store)


@pytest.fixture
async def harness(cluster_store: RedisStore) -> AsyncIterator[Harness]:
    """test_contract's cases over the cluster, in-process placement (two hosts)."""
    h = Harness("local", cluster_store)
    await h.start()
    yield h
    await h.close()


@pytest.fixture
def svc(harness: Harness) -> object:
    return harness.service


async def test_the_partitions_spread_over_every_node_and_each_commit_stays_on_one(
        cluster_store: RedisStore) -> None:
    s = cluster_store
    assert s.cluster and await s.ping()  # the client has read the slots
    nodes = {s.r.get_node_from_key(k).name for k in s.event_streams()}
    assert len(nodes) == 3
    # Every partition's three keys go to one node (one slot): a commit per partition works.
    writes = [_write(f"cart:c_{i}", hset={"meta": i}, deadline=(f"cart:c_{i}", float(i)),
                     events=[{"type": "t", "n": i}]) for i in range(2000)]
    assert len({w.partition for w in writes}) == PARTITIONS
    assert await s.commit(writes) == [1] * 2000
    assert len(await s.due(5000.0, 5000, range(PARTITIONS))) == 2000
    assert sorted(e["n"] for e in await s.events(5000)) == list(range(2000))
    assert (await s.activate("cart:c_7", writes[7].partition)) == (2, {"meta": 7})


async def test_a_node_that_lost_its_scripts_runs_the_calls_once_after_a_reload(
        cluster_store: RedisStore, cluster_url: str) -> None:
    s = cluster_store
    writes = [_write(f"cart:n{i}") for i in range(300)]
    await s.commit(writes)
    # One node forgets the scripts (as a promoted replica would): its calls answer NOSCRIPT,
    # the other nodes' calls run; only the missing ones are sent again.
    node = s.r.get_node_from_key(s.events_key(writes[0].partition))
    await s.r.execute_command("SCRIPT FLUSH", target_nodes=node)
    again = [_write(w.key, epoch=1, events=[{"type": "t", "n": i}]) for i, w in enumerate(writes)]
    assert await s.commit(again) == [1] * 300
    assert sorted(e["n"] for e in await s.events(1000)) == list(range(300))
