"""A process's part in the cluster: its copy of the directory, and a host's lease and partitions.

`ClusterView` is what every router reads on each message (``owners``, no directory round
trip): a copy of the partition map refreshed every `HEARTBEAT` seconds, and at once when a
message bounced (`refresh`, coalesced). `Membership` is a host's: it heartbeats its lease,
plans the map (`actors.directory.plan`), serves the partitions the map gives it, hands off the
ones the plan moves away (refuse new messages, let the turns under way finish and their
writes land, passivate, then write the new owner), and forgets at once the ones it lost
(its lease lapsed, or a newer incarnation of it took over: the activation epochs fence any
late write). It stops serving when its own lease may have lapsed, judged on this process's
monotonic clock from before the heartbeat was sent, so the directory never gives a partition
to another host while this one might still answer for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from actors.directory import HEARTBEAT, LEASE, Directory, Member, PartitionMap, plan
from snapshots.store import PARTITIONS

log = logging.getLogger(__name__)

#: Seconds of the lease this host does not count on (message delays, clock rate).
LEASE_MARGIN = 0.25


class ClusterView:
    """A copy of the directory for routing: owner per partition and members' addresses."""

    def __init__(self, directory: Directory, every: float = HEARTBEAT) -> None:
        self.directory = directory
        self.every = every
        self.map = PartitionMap()
        self.owners: list[str] = self.map.owners
        self._refresh: asyncio.Task[None] | None = None
        self._fresh_at = -math.inf
        self._task: asyncio.Task[None] | None = None
        self.refreshes = 0

    async def start(self) -> None:
        await self.refresh(0)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def address(self, host_id: str) -> tuple[str, int] | None:
        m = self.map.members.get(host_id)
        return None if m is None else m.address

    def live(self) -> list[str]:
        return sorted(self.map.live())

    async def refresh(self, min_age: float = 0.05) -> None:
        """Read the directory again unless it was read under ``min_age`` seconds ago; callers
        that ask together share one read. Raises what the directory raises (unreachable)."""
        loop = asyncio.get_running_loop()
        if self._refresh is None or self._refresh.done():
            if loop.time() - self._fresh_at < min_age:
                return
            self._refresh = asyncio.ensure_future(self._read())
        await asyncio.shield(self._refresh)

    async def _read(self) -> None:
        m = await self.directory.read()
        self._fresh_at = asyncio.get_running_loop().time()
        self.refreshes += 1
        self.apply(m)

    def apply(self, m: PartitionMap) -> None:
        """Take ``m`` as the current map (an older version than the one held is ignored:
        reads that were under way together may finish out of order)."""
        if m.version < self.map.version:
            return
        self.map = m
        self.owners = m.owners

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the directory is down: try again
                log.warning("directory unreachable: %s", e)

    async def tick(self) -> None:
        await self.refresh(0)


class Membership(ClusterView):
    """A host's membership: lease, planning, the partitions it serves, hand-offs.

    ``host`` is the `actors.runtime.Host` it governs (its ``ownership`` is this object).
    """

    def __init__(self, directory: Directory, host: Any, address: tuple[str, int],
                 incarnation: int | None = None, lease: float = LEASE,
                 every: float = HEARTBEAT,
                 on_gained: Callable[[list[int]], None] | None = None) -> None:
        super().__init__(directory, every)
        self.host = host
        self.lease = lease
        self.me = Member(host.host_id, address,
                         incarnation if incarnation is not None else _incarnation())
        self.serving = bytearray(PARTITIONS)
        self.releasing: set[int] = set()
        self._lease_ok_until = -math.inf
        self._serve_from = math.inf
        self.superseded = False
        self.leaving = False
        self._handoffs: set[asyncio.Task[None]] = set()
        self.on_gained = on_gained
        self.handed_off = 0
        self.lost = 0

    # -- Ownership (actors.runtime) --------------------------------------------------------
    def accepts(self, partition: int, internal: bool) -> bool:
        if asyncio.get_running_loop().time() >= self._lease_ok_until:
            return False
        return bool(self.serving[partition]) or (internal and partition in self.releasing)

    def partitions(self) -> list[int]:
        return [p for p in range(PARTITIONS) if self.serving[p]]

    # -- lifecycle -------------------------------------------------------------------------
    async def tick(self) -> None:
        """One heartbeat: renew the lease, read and plan the map, serve what it says."""
        loop = asyncio.get_running_loop()
        if self.superseded:
            return
        sent = loop.time()
        row = await self.directory.heartbeat(self.me, self.lease)
        if row is None:
            log.warning("host %s: a newer incarnation took over; serving nothing",
                        self.me.host_id)
            self.superseded = True
            self._lease_ok_until = -math.inf
            self._set_serving(set())
            return
        if sent >= self._lease_ok_until and self._lease_ok_until != -math.inf:
            # Our lease may have lapsed since the last heartbeat: another host may have
            # served our partitions meanwhile, so what we hold in memory may be stale.
            self.host.drop(set(range(PARTITIONS)))
        self._lease_ok_until = sent + self.lease - LEASE_MARGIN
        # The previous incarnation's lease must run out before we answer for anything.
        wait = row.serve_after - (row.until - self.lease)
        self._serve_from = min(self._serve_from, sent + max(0.0, wait))
        m = await self.directory.read()
        nxt = plan(m)
        if nxt is not None:
            owners, targets, rehomed = nxt
            if await self.directory.write(m.version, owners, targets, rehomed):
                m = await self.directory.read()
        self._fresh_at = loop.time()
        self.apply(m)

    def apply(self, m: PartitionMap) -> None:
        if m.version < self.map.version:
            return
        super().apply(m)
        if self.superseded:
            return
        me = self.me.host_id
        mine = {p for p, h in enumerate(m.owners) if h == me}
        if asyncio.get_running_loop().time() < self._serve_from:
            mine = set()
        self._set_serving(mine - self.releasing)
        moving = {p for p in mine if m.targets[p] and p not in self.releasing}
        if moving:
            self.releasing |= moving
            for p in moving:
                self.serving[p] = 0
            task = asyncio.ensure_future(self._hand_off(moving))
            self._handoffs.add(task)
            task.add_done_callback(self._handoffs.discard)

    def _set_serving(self, parts: set[int]) -> None:
        before = {p for p in range(PARTITIONS) if self.serving[p]}
        lost = before - parts
        gained = parts - before
        for p in lost:
            self.serving[p] = 0
        if lost:
            self.lost += len(lost)
            self.host.drop(lost)
        for p in gained:
            self.serving[p] = 1
        if gained and self.on_gained is not None:
            self.on_gained(sorted(gained))

    async def _hand_off(self, parts: set[int]) -> None:
        """Complete the hand-off of ``parts`` (already refused to new messages)."""
        try:
            await self.host.release(parts)
            me = self.me.host_id
            while True:
                m = await self.directory.read()
                owners, targets = list(m.owners), list(m.targets)
                moved = 0
                for p in parts:
                    if owners[p] == me and targets[p]:
                        owners[p], targets[p] = targets[p], ""
                        moved += 1
                if not moved or await self.directory.write(m.version, owners, targets,
                                                           handoffs=moved):
                    break
            self.handed_off += moved
            self.releasing -= parts
            await self.refresh(0)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the next heartbeat plans the move again
            log.exception("hand-off of %d partitions failed", len(parts))
            self.releasing -= parts
            await self.refresh(0)

    async def leave(self, within: float = 30.0) -> bool:
        """Hand every partition off and leave the directory; False if that did not finish
        ``within`` seconds (the partitions are re-homed when the lease lapses)."""
        self.leaving = True
        self.me.leaving = True
        await self.directory.set_leaving(self.me.host_id)
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while loop.time() < end:
            await self.tick()
            if not any(self.serving) and not self.releasing and \
                    self.me.host_id not in self.owners:
                break
            await asyncio.sleep(self.every / 5)
        else:
            return False
        await self.stop()
        await self.directory.remove(self.me.host_id, self.me.incarnation)
        return True

    def stats(self) -> dict[str, Any]:
        return {"partitions": sum(self.serving), "releasing": len(self.releasing),
                "handed_off": self.handed_off, "lost": self.lost,
                "lease_ok": asyncio.get_running_loop().time() < self._lease_ok_until}


async def cluster_summary(view: ClusterView) -> dict[str, Any]:
    """What operators see of the cluster (``/v1/admin/cluster``, ``/metrics``): ``version``,
    ``hosts`` (live host id -> ``{partitions, leaving}``), ``unowned`` partitions, hand-offs
    under way (``moving``), ``rehomed`` and ``handoffs`` since the directory began, and the
    host count asked for (``desired``)."""
    m = view.map
    counts = m.counts()
    live = m.live()
    counters = await view.directory.counters()
    return {"version": m.version,
            "hosts": {h: {"partitions": counts[h], "leaving": live[h].leaving}
                      for h in sorted(live)},
            "unowned": m.unowned(), "moving": sum(1 for t in m.targets if t),
            "desired": await view.directory.desired_hosts(), **counters}


def _incarnation() -> int:
    """A number that grows with each start of a host id (milliseconds since the epoch, then
    three random digits); below 2**53, so it survives Lua's doubles in the directory."""
    import secrets

    return int(time.time() * 1000) * 1000 + secrets.randbelow(1000)
