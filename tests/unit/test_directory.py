"""The partition directory's planner and its in-memory store (no Ray, no Redis)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from actors.directory import MAX_MOVES, Member, MemoryDirectory, PartitionMap, plan
from snapshots.store import PARTITIONS

NOW = 1_000.0


def members(*ids: str, lapsed: tuple[str, ...] = (), leaving: tuple[str, ...] = ()
            ) -> dict[str, Member]:
    return {h: Member(h, ("127.0.0.1", 1000 + i), 1,
                      NOW - 1 if h in lapsed else NOW + 2, h in leaving)
            for i, h in enumerate(ids)}


def settled(*ids: str) -> PartitionMap:
    """A map where ``ids`` own the partitions round-robin and nothing moves."""
    owners = [ids[p % len(ids)] for p in range(PARTITIONS)]
    return PartitionMap(7, owners, [""] * PARTITIONS, members(*ids), NOW)


def test_a_new_cluster_spreads_every_partition_evenly_and_rehomes_nothing() -> None:
    m = PartitionMap(0, [""] * PARTITIONS, [""] * PARTITIONS, members("h0", "h1", "h2"), NOW)
    owners, targets, rehomed = plan(m)  # type: ignore[misc]
    counts = Counter(owners)
    assert set(counts) == {"h0", "h1", "h2"} and max(counts.values()) - min(counts.values()) <= 1
    assert not any(targets) and rehomed == 0


def test_a_lapsed_hosts_partitions_go_to_the_survivors_at_once() -> None:
    m = settled("h0", "h1")
    m.members = members("h0", "h1", lapsed=("h0",))
    owners, targets, rehomed = plan(m)  # type: ignore[misc]
    assert set(owners) == {"h1"} and rehomed == PARTITIONS // 2 and not any(targets)


def test_a_joining_host_is_given_partitions_by_hand_off_not_taken_over() -> None:
    m = settled("h0", "h1")
    m.members = members("h0", "h1", "h2")
    owners, targets, rehomed = plan(m)  # type: ignore[misc]
    assert owners == m.owners and rehomed == 0  # the owners hand off; nothing changes hands yet
    moving = [p for p, t in enumerate(targets) if t]
    assert 0 < len(moving) <= MAX_MOVES and {targets[p] for p in moving} == {"h2"}


def test_a_leaving_host_hands_everything_off_and_a_settled_map_is_left_alone() -> None:
    m = settled("h0", "h1")
    m.members = members("h0", "h1", leaving=("h1",))
    owners, targets, _ = plan(m)  # type: ignore[misc]
    handed = [targets[p] for p, h in enumerate(owners) if h == "h1" and targets[p]]
    assert set(handed) == {"h0"} and len(handed) == min(PARTITIONS // 2, MAX_MOVES)  # waves
    assert plan(settled("h0", "h1")) is None


async def test_the_memory_directory_fences_stale_maps_and_superseded_incarnations() -> None:
    d = MemoryDirectory()
    assert await d.heartbeat(Member("h0", ("127.0.0.1", 1), 5), 2.0) is not None
    assert await d.heartbeat(Member("h0", ("127.0.0.1", 2), 4), 2.0) is None  # older: refused
    newer = await d.heartbeat(Member("h0", ("127.0.0.1", 3), 6), 2.0)
    assert newer is not None and newer.serve_after > 0  # waits out its predecessor's lease
    assert await d.write(0, ["h0"] * PARTITIONS, [""] * PARTITIONS)
    assert not await d.write(0, ["h1"] * PARTITIONS, [""] * PARTITIONS)  # stale version
    assert (await d.read()).owners == ["h0"] * PARTITIONS


class _Maps:
    """A cluster view whose every read shows the next of ``maps`` (the last one for good)."""

    def __init__(self, *maps: PartitionMap) -> None:
        self.maps = list(maps)
        self.map = self.maps[0]
        self.reads = 0

    async def refresh(self, min_age: float = 0.05) -> None:
        self.map = self.maps[min(self.reads, len(self.maps) - 1)]
        self.reads += 1


def _placement(view: _Maps, *hosts: str) -> Any:
    from actors.ray_placement import RayPlacement
    from actors.reference import ReferenceData
    from actors.settings import EngineSettings

    placement = RayPlacement(n_hosts=len(hosts), redis_url="redis://unused", prefix="t",
                             settings=EngineSettings(), reference=ReferenceData())
    placement.handles = dict.fromkeys(hosts)
    placement.view = view  # type: ignore[assignment]
    return placement


async def test_a_placement_starts_serving_once_every_host_it_started_owns_its_share() -> None:
    alone = settled("h0")
    alone.members = members("h0", "h1")  # h1 joined; h0 still owns all
    handing = settled("h0", "h1")  # shares even, but a hand-off still under way
    handing.targets = ["h1" if p == 0 else "" for p in range(PARTITIONS)]
    view = _Maps(settled("h0"), alone, handing, settled("h0", "h1"))
    await _placement(view, "h0", "h1").wait_balanced(within=5)
    assert view.reads == 4  # not before the balanced map


async def test_a_placement_whose_host_never_joins_serves_after_the_wait(caplog) -> None:  # type: ignore[no-untyped-def]
    view = _Maps(settled("h0"))
    await _placement(view, "h0", "h1").wait_balanced(within=0.2)
    assert view.reads > 1 and "not balanced" in caplog.text
