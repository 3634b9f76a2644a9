"""The partition directory: which live host owns each partition, kept in a shared store.

Actor keys hash to `PARTITIONS` partitions (`actors.runtime.partition_of`); the directory maps
each partition to the host that owns it, as Orleans' grain directory over its membership
table, or Akka Cluster Sharding's coordinator over shard regions. It is a small port with a
Redis adapter (`snapshots.redis_directory.RedisDirectory`) and an in-memory one
(`MemoryDirectory`, for unit tests):

- **Members** (one row per host: channel address, incarnation, lease end) renew a lease by
  heartbeat. A lease is judged on the directory's own clock (Redis ``TIME``), so hosts' clocks
  never need to agree. A newer incarnation of a host id (a restarted process) supersedes the
  older one, which is refused from then on; the newer one serves only once the older one's
  lease has run out (``serve_after``), so two processes never serve one partition at once.
- **The map** (version, owner per partition, hand-off target per partition) changes only by
  compare-and-set on its version: any host may compute `plan` and write it, and concurrent
  planners cannot both win.
- `plan` is pure and deterministic: the partitions of a host whose lease lapsed go to the live
  hosts with the fewest (re-homing); a leaving host's partitions and an overloaded host's
  surplus get a hand-off *target*. The owner itself completes a hand-off (it stops taking the
  partition's messages, waits for its turns and writes, passivates its actors, then writes
  the new owner), so a planned move never has two owners at once and loses nothing.

256 partitions (not the 65,536 values of the 16-bit key hash): a map small enough to read
whole on every change (a few KB), moves fine-grained enough to balance up to a few dozen
hosts within a partition or two of each other, and a per-partition key layout in Redis
(deadline set, event stream) that stays a few hundred keys.
"""

from __future__ import annotations

from snapshots.directory import Directory, Member, MemoryDirectory, PartitionMap

__all__ = ["HEARTBEAT", "LEASE", "MAX_MOVES", "Directory", "Member", "MemoryDirectory",
           "PartitionMap", "plan"]

#: Seconds a heartbeat keeps a host a member; a host that misses it loses its partitions.
LEASE = 2.0
#: Seconds between heartbeats (a quarter of the lease: three may be lost before it lapses).
HEARTBEAT = 0.5
#: Largest number of hand-offs one plan starts, so that adding hosts moves partitions in
#: waves rather than passivating a quarter of the actors at once.
MAX_MOVES = 64


def plan(m: PartitionMap) -> tuple[list[str], list[str], int] | None:
    """The next ``(owners, targets, re-homed)`` for ``m``, or None when nothing changes.

    Deterministic (ties broken by host id), so hosts that plan concurrently agree. Re-homing
    (an owner's lease lapsed) assigns at once: the activation epochs fence any late write of the
    former owner. Moves between live hosts only set targets; the owner completes them.
    """
    live = m.live()
    takers = sorted(h for h, mem in live.items() if not mem.leaving)
    if not takers:
        return None
    owners, targets = list(m.owners), list(m.targets)
    load = dict.fromkeys(takers, 0)
    for p, h in enumerate(owners):
        dest = targets[p] or h
        if dest in load:
            load[dest] += 1

    def lightest() -> str:
        return min(takers, key=lambda h: (load[h], h))

    rehomed = 0
    for p, h in enumerate(owners):
        if h not in live:
            if targets[p] in load:  # a hand-off was under way: its target takes it now
                owners[p] = targets[p]
            else:
                owners[p] = to = lightest()
                load[to] += 1
            targets[p] = ""
            rehomed += 1 if h else 0
        elif targets[p] and targets[p] not in load:
            targets[p] = ""  # the target left or died: the owner keeps it
            if h in load:
                load[h] += 1
    moves = sum(1 for t in targets if t)
    for p, h in enumerate(owners):  # a leaving host hands everything off
        if moves >= MAX_MOVES:
            break
        if live[h].leaving and not targets[p]:
            targets[p] = to = lightest()
            load[to] += 1
            moves += 1
    while moves < MAX_MOVES:  # balance: one partition from the heaviest to the lightest
        heavy = max(takers, key=lambda h: (load[h], h))
        light = lightest()
        if load[heavy] - load[light] <= 1:
            break
        p = next((p for p, h in enumerate(owners) if h == heavy and not targets[p]), -1)
        if p < 0:  # its surplus is all incoming hand-offs: they land first
            break
        targets[p] = light
        load[heavy] -= 1
        load[light] += 1
        moves += 1
    if owners == m.owners and targets == m.targets:
        return None
    return owners, targets, rehomed
