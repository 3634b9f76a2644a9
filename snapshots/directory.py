"""The partition directory's storage port and data: members, leases, the partition map.

The logic that uses it (planning, leases, hand-offs) is `actors.directory` and
`actors.membership`; this module is the small table underneath, as Orleans' membership table
is: `Directory` with a Redis adapter (`snapshots.redis_directory`) and `MemoryDirectory` for
unit tests.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from snapshots.store import PARTITIONS


@dataclass(slots=True)
class Member:
    """One host's row. ``until``: lease end, directory clock (epoch seconds)."""

    host_id: str
    address: tuple[str, int]
    incarnation: int
    until: float = 0.0
    leaving: bool = False
    serve_after: float = 0.0


@dataclass(slots=True)
class PartitionMap:
    """The directory as read at ``now`` (directory clock, epoch seconds).

    ``owners[p]``: the host id serving partition ``p`` ("" none); ``targets[p]``: the host a
    pending hand-off moves ``p`` to ("" none).
    """

    version: int = 0
    owners: list[str] = field(default_factory=lambda: [""] * PARTITIONS)
    targets: list[str] = field(default_factory=lambda: [""] * PARTITIONS)
    members: dict[str, Member] = field(default_factory=dict)
    now: float = 0.0

    def live(self) -> dict[str, Member]:
        """Members whose lease is running."""
        return {h: m for h, m in self.members.items() if m.until > self.now}

    def unowned(self) -> list[int]:
        """Partitions whose owner is not a live member."""
        live = self.live()
        return [p for p, h in enumerate(self.owners) if h not in live]

    def counts(self) -> dict[str, int]:
        """Partitions per live member."""
        out = dict.fromkeys(self.live(), 0)
        for h in self.owners:
            if h in out:
                out[h] += 1
        return out


class Directory(Protocol):
    """The directory's storage port (Redis in production, memory in unit tests)."""

    async def heartbeat(self, member: Member, lease: float) -> Member | None:
        """Register or renew ``member`` for ``lease`` seconds; its stored row (with ``until``
        and ``serve_after`` on the directory clock), or None if a newer incarnation of the
        same host id superseded it (this process must stop serving)."""
        ...

    async def read(self) -> PartitionMap:
        """The whole directory as of now."""
        ...

    async def version(self) -> int:
        """The map's version (a cheap check before a full read)."""
        ...

    async def write(self, expected_version: int, owners: Sequence[str], targets: Sequence[str],
                    rehomed: int = 0, handoffs: int = 0) -> bool:
        """Replace the map if its version is still ``expected_version``; False if not.
        ``rehomed`` / ``handoffs``: what this change did, added to the `counters`."""
        ...

    async def set_leaving(self, host_id: str) -> None:
        """Mark a member as leaving: `plan` hands all its partitions off."""
        ...

    async def remove(self, host_id: str, incarnation: int) -> None:
        """Forget a member (after it handed everything off)."""
        ...

    async def desired_hosts(self) -> int | None:
        """The host count operators asked for (None: not set)."""
        ...

    async def set_desired_hosts(self, n: int) -> None: ...

    async def counters(self) -> dict[str, int]:
        """Re-homed partitions and completed hand-offs since the directory was created."""
        ...


class MemoryDirectory:
    """A `Directory` in this process's memory (unit tests; one event loop)."""

    def __init__(self, clock: object | None = None) -> None:
        self._now = getattr(clock, "now", time.time)
        self.map = PartitionMap()
        self._desired: int | None = None
        self._counters = {"rehomed": 0, "handoffs": 0}

    async def heartbeat(self, member: Member, lease: float) -> Member | None:
        now = self._now()
        old = self.map.members.get(member.host_id)
        if old is not None and old.incarnation > member.incarnation:
            return None
        row = Member(member.host_id, member.address, member.incarnation, now + lease,
                     old.leaving if old is not None and old.incarnation == member.incarnation
                     else member.leaving,
                     old.serve_after if old is not None and
                     old.incarnation == member.incarnation else
                     (old.until if old is not None else 0.0))
        self.map.members[member.host_id] = row
        return Member(row.host_id, row.address, row.incarnation, row.until, row.leaving,
                      row.serve_after)

    async def read(self) -> PartitionMap:
        m = self.map
        return PartitionMap(m.version, list(m.owners), list(m.targets),
                            {h: Member(r.host_id, r.address, r.incarnation, r.until, r.leaving,
                                       r.serve_after) for h, r in m.members.items()},
                            self._now())

    async def version(self) -> int:
        return self.map.version

    async def write(self, expected_version: int, owners: Sequence[str], targets: Sequence[str],
                    rehomed: int = 0, handoffs: int = 0) -> bool:
        if self.map.version != expected_version:
            return False
        self.map.owners, self.map.targets = list(owners), list(targets)
        self.map.version += 1
        self._counters["rehomed"] += rehomed
        self._counters["handoffs"] += handoffs
        return True

    async def set_leaving(self, host_id: str) -> None:
        if host_id in self.map.members:
            self.map.members[host_id].leaving = True

    async def remove(self, host_id: str, incarnation: int) -> None:
        row = self.map.members.get(host_id)
        if row is not None and row.incarnation == incarnation:
            del self.map.members[host_id]

    async def desired_hosts(self) -> int | None:
        return self._desired

    async def set_desired_hosts(self, n: int) -> None:
        self._desired = n

    async def counters(self) -> dict[str, int]:
        return dict(self._counters)
