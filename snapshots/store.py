"""The snapshot store port: what the actor runtime needs from persistence.

An actor's state is a hash of fields (``meta``, one per line item, one per reservation, one
per idempotency record...). A turn persists only the fields it changed (O(change)), and all
the writes of one batch go to the store in one round trip (group commit). Every write is
fenced by the actor's epoch: activation takes a new epoch, so a host that lost an actor can
never overwrite the new owner's state.

The store is partitioned: every actor belongs to one of `PARTITIONS` virtual partitions, which
the runtime computes and passes in (the store never hashes keys). An actor's state, the
deadline index and the event outbox of one partition live together (one Redis hash slot), so
a turn's commit touches one partition only and the store can be a Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Virtual partitions of the actor space (the runtime computes an actor's from its 16-bit key
#: hash, modulo this). Hosts own partitions; the store keeps each one together.
PARTITIONS = 256

#: Epoch of an actor that has no persisted state yet; its first write creates it.
NEW_EPOCH = 0


@dataclass(slots=True)
class Write:
    """The changes of one turn of one actor.

    ``key``: the actor's storage key ("cart:c_123"). ``epoch``: the fence taken on activation.
    ``partition``: the actor's partition, ``0 <= partition < PARTITIONS``.
    ``hset``: field -> engine object (encoded by the store's codec); ``hdel``: fields to drop.
    ``deadline``: ``(member, epoch seconds)`` to (re)schedule in the deadline index,
    ``(member, None)`` to remove it. ``events``: outbox records appended atomically with the
    state change. ``expire_after``: seconds after which the whole record may be dropped
    (finished carts), None to keep.
    """

    key: str
    epoch: int
    partition: int
    hset: dict[str, Any] = field(default_factory=dict)
    hdel: list[str] = field(default_factory=list)
    deadline: tuple[str, float | None] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    expire_after: float | None = None

    def is_empty(self) -> bool:
        return not (self.hset or self.hdel or self.deadline or self.events)


class SnapshotStore(Protocol):
    """Persistence of actor state, deadlines, events and reference data (catalog, promotions)."""

    async def activate(self, key: str, partition: int) -> tuple[int, dict[str, Any]]:
        """Take ownership of ``key`` (of ``partition``): ``(epoch, fields)``, or
        ``(NEW_EPOCH, {})`` if it has no state yet."""
        ...

    async def commit(self, writes: list[Write]) -> list[int | None | Exception]:
        """Apply ``writes`` in one round trip; per write the new epoch, None if fenced out, or
        the exception that failed that write alone (the others are applied). Raises when the
        store cannot be reached (then none was)."""
        ...

    async def due(self, now: float, limit: int,
                  partitions: Sequence[int] | None = None) -> list[tuple[str, float]]:
        """Deadline members of ``partitions`` (None: all) whose time (epoch seconds) is
        <= ``now``: ``[(storage key, epoch seconds)]``, earliest first, at most ``limit``."""
        ...

    async def put_reference(self, kind: str, ref_id: str, value: Any) -> None:
        """Store a catalog product (``kind="product"``) or promotion (``"promotion"``)."""
        ...

    async def load_reference(self, kind: str) -> dict[str, Any]:
        """Every product or promotion: id -> engine object."""
        ...

    async def events(self, count: int = 1000) -> list[dict[str, Any]]:
        """The ``count`` most recent outbox events of every partition, oldest first (operators
        and tests). Across partitions the order is that of the stream ids (time, then
        sequence): events of one actor keep their order."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
