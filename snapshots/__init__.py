"""Snapshots of engine state: the versioned msgpack codec and the stores.

Public surface: ``SnapshotStore`` and ``Write`` (the port), ``RedisStore`` and ``connect``,
``MemoryStore``, ``BundledRedis``, ``SnapshotVersionError``.
"""

from snapshots.bundled import BundledRedis
from snapshots.codec import SnapshotVersionError
from snapshots.memory_store import MemoryStore
from snapshots.redis_store import RedisStore, connect
from snapshots.store import SnapshotStore, Write

__all__ = ["BundledRedis", "MemoryStore", "RedisStore", "SnapshotStore",
           "SnapshotVersionError", "Write", "connect"]
