"""The Ray placement: each host is one Ray actor holding many logical actors.

``RayHostActor`` is a plain class (testable without Ray); :class:`RayPlacement` applies
``ray.remote`` to it when it wires the cluster up. Each host builds its own Redis client and
snapshot store when it starts (the bootstrap step of that process), holds a replica of the
reference data, and reaches the other hosts through a :class:`~actors.router.BatchingRouter`
over their handles. Hosts ask for no CPU of their own (``num_cpus=0``): they are long-lived
async servers, and Ray places them across the cluster's nodes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any, Literal

from actors import business
from actors.channel import (
    TOKEN_BYTES,
    ChannelClient,
    ChannelServer,
    connect_all,
    node_address,
)
from actors.clock import Clock, ManualClock, SystemClock
from actors.placement import build_host
from actors.reference import ReferenceData
from actors.router import BatchCall, BatchingRouter
from actors.runtime import Message, Reply, tune_gc
from actors.settings import EngineSettings

log = logging.getLogger(__name__)


class RayHostActor:
    """The body of one Ray host actor."""

    def __init__(self, index: int, n_hosts: int, redis_url: str, prefix: str,
                 settings: EngineSettings, manual_clock_start: float | None = None,
                 max_delay: float = 0.001, max_batch: int = 256) -> None:
        self.index = index
        self.n_hosts = n_hosts
        self.redis_url = redis_url
        self.prefix = prefix
        self.settings = settings
        self.clock: Clock = ManualClock(manual_clock_start) if manual_clock_start is not None \
            else SystemClock()
        self.max_delay = max_delay
        self.max_batch = max_batch
        self.host: Any = None
        self.channel: ChannelServer | None = None
        self.router: BatchingRouter | None = None

    async def listen(self, token: bytes) -> tuple[str, int]:
        """Open this host's batch channel (`actors.channel`) on its node; answers its address."""
        self.channel = ChannelServer(self.handle_batch, token)
        return await self.channel.start(node_address())

    async def start(self, peers: list[Any], addresses: list[tuple[str, int]] | None = None,
                    token: bytes = b"") -> int:
        """Connect to Redis, load reference data, join the peers, start the sweeper.

        ``addresses``: the peers' batch channels (`listen`), in host order; None: reach the
        peers by Ray calls on their handles.
        """
        from snapshots.redis_store import RedisStore, connect

        logging.basicConfig(level=logging.WARNING)
        store = RedisStore(connect(self.redis_url), self.prefix)
        reference = ReferenceData()
        for kind in ("product", "promotion"):
            for value in (await store.load_reference(kind)).values():
                reference.apply(kind, value)
        self.host = build_host(self.index, self.n_hosts, store, self.clock, self.settings,
                               reference)

        clients = None if addresses is None else connect_all(addresses, token)
        self.router = router = BatchingRouter(batch_call(peers, clients), self.n_hosts,
                                              self.max_delay, self.max_batch)
        self.host.route = router.send
        self.host.start_sweeper()
        tune_gc()
        return self.index

    async def handle_batch(self, messages: list[Message]) -> list[Reply]:
        return await self.host.handle_batch(messages)  # type: ignore[no-any-return]

    async def publish(self, kind: str, value: Any) -> None:
        self.host.reference.apply(kind, value)

    async def advance(self, seconds: float) -> int:
        """Move a manual clock (tests, simulations). Raises TypeError on a system clock."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("this host runs on the system clock")
        return await self.clock.advance(seconds)

    async def stats(self) -> dict[str, Any]:
        import os

        import psutil

        s: dict[str, Any] = self.host.stats()
        s["business"] = {**business.snapshot(), **business.host_figures(self.host)}
        s["pid"] = os.getpid()
        if self.router is not None:
            s["router"] = self.router.stats()  # this host's messages to the others
        s["rss_bytes"] = psutil.Process(os.getpid()).memory_info().rss
        return s  # type: ignore[no-any-return]

    async def stop(self) -> None:
        """Stop sweeping and wait for every pending write."""
        self.host.stop_sweeper()
        if self.channel is not None:
            await self.channel.close()
        await self.host.drain()
        await self.host.store.close()


def batch_call(handles: list[Any], clients: list[ChannelClient] | None) -> BatchCall:
    """How a router reaches host ``i``: over its batch channel when ``clients`` are given
    (`actors.channel`), else by a Ray call on its handle."""
    if clients is None:
        async def by_ray(i: int, batch: list[Message]) -> list[Reply]:
            return await handles[i].handle_batch.remote(batch)  # type: ignore[no-any-return]
        return by_ray
    channels = clients

    async def by_channel(i: int, batch: list[Message]) -> list[Reply]:
        return await channels[i].call(batch)
    return by_channel


class RayPlacement:
    """``n_hosts`` Ray host actors; this process routes to them with a batching router.

    ``transport``: how batches travel, to the hosts and between them: ``"tcp"``, a direct
    channel per host (`actors.channel`, the default), or ``"ray"``, Ray actor calls. Ray must
    be initialised by the caller (the bootstrap: CLI, app lifespan or test session).
    """

    def __init__(self, *, n_hosts: int, redis_url: str, prefix: str, settings: EngineSettings,
                 reference: ReferenceData, manual_clock_start: float | None = None,
                 max_delay: float = 0.001, max_batch: int = 256, max_queue: int = 20_000,
                 name: str | None = None, transport: Literal["tcp", "ray"] = "tcp") -> None:
        self.n_hosts = n_hosts
        self.transport = transport
        self.redis_url = redis_url
        self.prefix = prefix
        self.settings = settings
        self.reference = reference
        self.manual_clock_start = manual_clock_start
        self.max_delay = max_delay
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.name = name
        self.handles: list[Any] = []
        self.clients: list[ChannelClient] | None = None
        self.router: BatchingRouter | None = None

    async def start(self) -> None:
        import ray

        remote_cls = ray.remote(RayHostActor)
        opts: dict[str, Any] = {"num_cpus": 0, "max_concurrency": 100_000,
                                "max_restarts": 0}
        self.handles = [
            remote_cls.options(**opts, **({"name": f"{self.name}-host-{i}"} if self.name
                                          else {})).remote(
                i, self.n_hosts, self.redis_url, self.prefix, self.settings,
                self.manual_clock_start, self.max_delay, self.max_batch)
            for i in range(self.n_hosts)]
        token = secrets.token_bytes(TOKEN_BYTES)
        addresses: list[tuple[str, int]] | None = None
        if self.transport == "tcp":
            addresses = list(await asyncio.gather(*(h.listen.remote(token)
                                                    for h in self.handles)))
        await asyncio.gather(*(h.start.remote(self.handles, addresses, token)
                               for h in self.handles))
        self.clients = None if addresses is None else connect_all(addresses, token)
        self.router = BatchingRouter(batch_call(self.handles, self.clients), self.n_hosts,
                                     self.max_delay, self.max_batch, self.max_queue)

    async def send(self, msg: Message) -> Reply:
        assert self.router is not None, "RayPlacement.start() first"
        return await self.router.send(msg)

    async def publish(self, kind: str, value: Any) -> None:
        self.reference.apply(kind, value)
        await asyncio.gather(*(h.publish.remote(kind, value) for h in self.handles))

    async def advance(self, seconds: float) -> None:
        await asyncio.gather(*(h.advance.remote(seconds) for h in self.handles))

    async def stats(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(h.stats.remote() for h in self.handles)))

    async def close(self) -> None:
        import ray

        try:
            await asyncio.wait_for(asyncio.gather(*(h.stop.remote() for h in self.handles)),
                                   timeout=10)
        except Exception as e:  # noqa: BLE001 - shutting down anyway
            log.warning("hosts did not stop cleanly: %s", e)
        for c in self.clients or []:
            await c.close()
        for h in self.handles:
            ray.kill(h)
        self.handles, self.clients = [], None
