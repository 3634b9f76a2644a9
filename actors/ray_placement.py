"""The Ray placement: each host is one Ray actor holding many logical actors.

Ray places, starts and restarts the hosts; the partition directory in Redis
(`actors.directory`) says which host owns which partitions; messages travel in batches over
each host's direct channel (`actors.channel`) to the owner the directory names
(`actors.directory_router`).

- ``RayHostActor`` is a plain class (testable without Ray); :class:`RayPlacement` applies
  ``ray.remote`` to it where it wires the cluster up. A host builds its own Redis client,
  store and directory client when it starts (the bootstrap step of that process), loads the
  reference data, opens its channel, joins the directory and, with an ``ingress``, serves
  the HTTP API itself on the shared port (``SO_REUSEPORT``): requests for its own actors run
  in its process, the others cross to their owners in batches.
- Hosts ask for no CPU of their own (``num_cpus=0``: long-lived async servers), are spread
  over the cluster's nodes (round-robin, pinned to a node), and restart when they die
  (``max_restarts=-1``, on their node): Ray runs the constructor again, and the placement's
  supervisor, which calls the idempotent `RayHostActor.ensure_started` every `SUPERVISE_EVERY`
  seconds, starts the new process, which rejoins the directory under its host id with a
  new incarnation.
- Hosts come and go while serving: `RayPlacement.scale` records the host count wanted in the
  directory (`cart-engine hosts`, the admin route), and the supervisor adds hosts or has the
  last ones hand their partitions off and leave before it stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from actors import business
from actors.channel import TOKEN_BYTES, ChannelClient, ChannelServer, node_address
from actors.clock import Clock, ManualClock, SystemClock
from actors.directory import LEASE
from actors.directory_router import DirectoryRouter
from actors.membership import ClusterView, Membership, cluster_summary
from actors.placement import build_host, resendable
from actors.reference import ReferenceData
from actors.runtime import PARTITIONS, Host, Message, Reply, partition_of, tune_gc
from actors.settings import EngineSettings

log = logging.getLogger(__name__)

#: Seconds between the supervisor's rounds (restarted hosts, the host count wanted).
SUPERVISE_EVERY = 0.5

#: Serves HTTP for a host: ``ingress(service, host_placement)`` answers an object with an
#: async ``stop()``. The gateway provides it (`gateway.ingress.serve`): actors never import
#: the gateway.
Ingress = Callable[[Any, Any], Awaitable[Any]]


@dataclass(frozen=True)
class HostConfig:
    """What every host of a placement is started with (plain data: Ray pickles it)."""

    redis_url: str = field(repr=False)  # may hold a password
    prefix: str
    settings: EngineSettings
    token: bytes = field(repr=False)
    manual_clock_start: float | None = None
    max_delay: float = 0.001
    max_batch: int = 256
    max_queue: int = 20_000
    lease: float = LEASE
    ingress: Ingress | None = None


class HostPlacement:
    """The placement seen from inside a host (its ingress's `CartService`): local actors
    run here, the others are reached through the directory router."""

    def __init__(self, host: Host, router: DirectoryRouter, membership: Membership,
                 cluster_key: bytes | None = None) -> None:
        self.host = host
        self.router = router
        self.membership = membership
        self.reference = host.reference
        #: A digest of the cluster's channel token, the same in every host of the cluster
        #: and no other (it names the cluster's hand-off sockets, `gateway.handoff`).
        self.cluster_key = cluster_key
        #: Messages go straight to the router (one coroutine less per request).
        self.send: Callable[[Message], Awaitable[Reply]] = router.send

    def local_hosts(self) -> list[Host]:
        """The hosts in this process: this one."""
        return [self.host]

    def owner_of(self, kind: str, key: str) -> str | None:
        """The host id that owns actor ``(kind, key)`` as this process last read the
        directory ("" or None: none now)."""
        return self.router.view.owners[partition_of(kind, key)] or None

    def local_key(self, kind: str, make: Callable[[], str],
                  via: Callable[[str], tuple[str, str]] | None = None) -> str:
        """A new actor key, preferably one this host owns (`ActorContext.local_key`)."""
        return self.host.ctx.local_key(kind, make, via=via)

    async def forward(self, host_id: str, msg: Message) -> Reply:
        """Send ``msg`` to host ``host_id`` once, as it is: no re-send, no id given (the
        caller decides what a lost reply means). A batch that never left, or whose answer
        was lost, answers 503 ``host_unavailable`` with ``details[].sent`` saying which."""
        return await self.router.batcher.send_to(host_id, msg)

    async def publish(self, kind: str, value: Any) -> None:
        self.reference.apply(kind, value)
        await _broadcast(self.router, "publish", {"kind": kind, "value": value})

    async def stats(self) -> list[dict[str, Any]]:
        return await _broadcast(self.router, "stats", {}, every=False)

    def health(self) -> dict[str, Any]:
        """``serving``: this process can serve (its lease runs); ``unowned``: partitions
        no live host owns (as this process last read the directory)."""
        return {"serving": self.membership.stats()["lease_ok"],
                "unowned": self.membership.map.unowned(), "hosts": self.membership.live()}

    async def cluster(self) -> dict[str, Any]:
        return await cluster_summary(self.membership)

    async def scale(self, n: int) -> None:
        """Ask for ``n`` hosts; the placement's supervisor adds or retires hosts."""
        await self.membership.directory.set_desired_hosts(n)

    async def close(self) -> None:
        """Nothing: the host's lifecycle belongs to its Ray actor."""


async def _broadcast(router: DirectoryRouter, method: str, args: dict[str, Any],
                     every: bool = True) -> list[Any]:
    """Send a `SYSTEM` message to every live host; their answers. ``every``: raise
    RuntimeError if one failed, else leave its answer out (figures of a dying host)."""
    out = []
    for reply in await router.broadcast(method, args):
        if reply[0] == "ok":
            out.append(reply[1])
        elif every:
            raise RuntimeError(f"host {method} failed: {reply[1].get('message')}")
    return out


class RayHostActor:
    """The body of one Ray host actor."""

    def __init__(self, host_id: str, cfg: HostConfig) -> None:
        self.host_id = host_id
        self.cfg = cfg
        self.clock: Clock = ManualClock(cfg.manual_clock_start) \
            if cfg.manual_clock_start is not None else SystemClock()
        self.host: Host | None = None
        self.channel: ChannelServer | None = None
        self.membership: Membership | None = None
        self.router: DirectoryRouter | None = None
        self.ingress: Any = None
        self._starting: asyncio.Lock | None = None
        self._info: dict[str, Any] = {}

    async def ensure_started(self, ingress: bool = False) -> dict[str, Any]:
        """Start this host if it is not yet, and its HTTP ingress if ``ingress`` and it has
        none (idempotent); ``{host_id, pid, address, incarnation}``."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self._info:
                await self._start()
            if ingress and self.ingress is None and self.cfg.ingress is not None:
                from actors.service import CartService

                assert self.host is not None and self.router is not None
                assert self.membership is not None
                placement = HostPlacement(self.host, self.router, self.membership,
                                          hashlib.sha256(self.cfg.token).digest())
                self.ingress = await self.cfg.ingress(CartService(placement, self.host.store),
                                                      placement)
        return self._info

    async def _start(self) -> None:
        from snapshots.redis_directory import RedisDirectory
        from snapshots.redis_store import RedisStore, connect

        logging.basicConfig(level=logging.WARNING)
        cfg = self.cfg
        client = connect(cfg.redis_url)
        store = RedisStore(client, cfg.prefix)
        reference = ReferenceData()
        for kind in ("product", "promotion"):
            for value in (await store.load_reference(kind)).values():
                reference.apply(kind, value)
        directory = RedisDirectory(client, cfg.prefix)
        # The membership is the host's ownership; it needs the host, the host needs it.
        host = build_host(self.host_id, _Pending(), store, self.clock, cfg.settings, reference)
        self.channel = ChannelServer(host.handle_batch, cfg.token)
        address = await self.channel.start(node_address())
        membership = Membership(directory, host, address, lease=cfg.lease,
                                on_gained=lambda parts: _sweep_soon(host, parts))
        host.ownership = membership
        token = cfg.token
        router = DirectoryRouter(membership, lambda addr: ChannelClient(addr, token), host,
                                 resendable, max_delay=cfg.max_delay, max_batch=cfg.max_batch,
                                 max_queue=cfg.max_queue)
        host.route = router.send
        host.system.update(publish=self._publish, advance=self._advance, stats=self._stats)
        self.host, self.membership, self.router = host, membership, router
        await membership.tick()
        await membership.start()
        host.start_sweeper()
        tune_gc()
        self._info = {"host_id": self.host_id, "pid": os.getpid(), "address": address,
                      "incarnation": membership.me.incarnation}

    async def _publish(self, kind: str, value: Any) -> None:
        assert self.host is not None
        self.host.reference.apply(kind, value)

    async def _advance(self, seconds: float) -> int:
        """Move a manual clock (tests, simulations). Raises TypeError on a system clock."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("this host runs on the system clock")
        return await self.clock.advance(seconds)

    async def _stats(self) -> dict[str, Any]:
        """The host's figures, its router's and its membership's, pid and resident memory."""
        import psutil

        assert self.host is not None and self.router is not None
        assert self.membership is not None
        s: dict[str, Any] = self.host.stats()
        s["business"] = {**business.snapshot(), **business.host_figures(self.host)}
        s.update(pid=os.getpid(), node=_node_id(), router=self.router.stats(),
                 membership=self.membership.stats(),
                 rss_bytes=psutil.Process(os.getpid()).memory_info().rss)
        forwarding = getattr(self.ingress, "forwarding_stats", None)
        if forwarding is not None:
            s["forwarding"] = forwarding()
        return s

    async def info(self) -> dict[str, Any]:
        return self._info

    async def leave(self) -> bool:
        """Hand every partition off, leave the directory and stop (scale-in)."""
        if self.membership is None:
            return True
        if self.ingress is not None:
            await self.ingress.stop()
            self.ingress = None
        done = await self.membership.leave()
        await self.stop()
        return done

    async def stop(self) -> None:
        """Stop serving HTTP and sweeping, and wait for every pending write."""
        if self.host is None:
            return
        if self.ingress is not None:
            await self.ingress.stop()
            self.ingress = None
        if self.membership is not None:
            await self.membership.stop()
        self.host.stop_sweeper()
        if self.channel is not None:
            await self.channel.close()
        await self.host.drain()
        if self.router is not None:
            await self.router.close()
        await self.host.store.close()


def _node_id() -> str | None:
    """The Ray node this process runs on (None outside Ray)."""
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # noqa: BLE001 - not in a Ray worker
        return None


class _Pending:
    """Ownership of a host whose membership is not built yet: serves nothing."""

    def accepts(self, partition: int, internal: bool) -> bool:
        return False

    def partitions(self) -> list[int]:
        return []


def _sweep_soon(host: Host, parts: list[int]) -> None:
    """Deadlines of partitions a host just gained (re-homed, handed over) may be overdue."""
    async def sweep() -> None:
        try:
            await host.sweep_once(parts=parts)
        except Exception:  # noqa: BLE001 - the periodic sweep tries again
            log.exception("sweep of gained partitions failed")
    task = asyncio.ensure_future(sweep())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


_tasks: set[asyncio.Task[None]] = set()


class RayPlacement:
    """Ray host actors, their supervisor, and a router for this process (which hosts no
    actors: a test driver, or the gateway when it is the only ingress).

    ``n_hosts`` hosts at start (ids ``h0``, ``h1``, ...); ``ingress``: each host serves HTTP
    itself (`HostConfig.ingress`). Ray must be initialised by the caller (the bootstrap: CLI,
    app lifespan or test session).
    """

    def __init__(self, *, n_hosts: int, redis_url: str, prefix: str, settings: EngineSettings,
                 reference: ReferenceData, manual_clock_start: float | None = None,
                 max_delay: float = 0.001, max_batch: int = 256, max_queue: int = 20_000,
                 name: str | None = None, ingress: Ingress | None = None,
                 lease: float = LEASE) -> None:
        self.n_hosts = n_hosts
        self.redis_url = redis_url
        self.prefix = prefix
        self.reference = reference
        self.name = name
        self.cfg = HostConfig(redis_url, prefix, settings, secrets.token_bytes(TOKEN_BYTES),
                              manual_clock_start, max_delay, max_batch, max_queue, lease,
                              ingress)
        self.handles: dict[str, Any] = {}
        self._next = 0
        self.view: ClusterView | None = None
        self.router: DirectoryRouter | None = None
        self.directory: Any = None
        self._client: Any = None
        self._supervisor: asyncio.Task[None] | None = None
        self._http = False

    async def start(self) -> None:
        from snapshots.redis_directory import RedisDirectory
        from snapshots.redis_store import connect

        self._client = connect(self.redis_url, max_connections=8)
        self.directory = RedisDirectory(self._client, self.prefix)
        await self.directory.set_desired_hosts(self.n_hosts)
        for _ in range(self.n_hosts):
            self._spawn()
        await asyncio.gather(*(h.ensure_started.remote() for h in self.handles.values()))
        self.view = view = ClusterView(self.directory)
        await view.start()
        token = self.cfg.token
        self.router = DirectoryRouter(view, lambda addr: ChannelClient(addr, token), None,
                                      resendable, max_delay=self.cfg.max_delay,
                                      max_batch=self.cfg.max_batch,
                                      max_queue=self.cfg.max_queue)
        await self.wait_owned()
        await self.wait_balanced()
        await self.wait_serving()
        self._supervisor = asyncio.ensure_future(self._supervise())

    async def open_ingress(self) -> None:
        """Have every host serve HTTP (``ingress``), now and after any restart: called once
        the engine is ready to answer (reference data loaded)."""
        self._http = True
        await asyncio.gather(*(h.ensure_started.remote(True) for h in self.handles.values()))

    def _spawn(self) -> str:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        host_id = f"h{self._next}"
        # Round-robin over the live nodes, pinned: Ray's SPREAD, and soft node affinity too,
        # placed both hosts of a 2-node test on one node at times. A host restarts on its own
        # node; one whose node is lost stays down, and the survivors keep its partitions.
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
        strategy: Any = NodeAffinitySchedulingStrategy(nodes[self._next % len(nodes)],
                                                       soft=False) if nodes else "SPREAD"
        self._next += 1
        opts: dict[str, Any] = {"num_cpus": 0, "max_concurrency": 100_000,
                                "max_restarts": -1, "max_task_retries": 0,
                                "scheduling_strategy": strategy}
        if self.name:
            opts["name"] = f"{self.name}-{host_id}"
        self.handles[host_id] = ray.remote(RayHostActor).options(**opts).remote(
            host_id, self.cfg)
        return host_id

    async def wait_owned(self, within: float = 30.0) -> None:
        """Wait until every partition has a live owner and no hand-off is under way (start,
        tests). Raises TimeoutError."""
        assert self.view is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while True:
            await self.view.refresh(0)
            if not self.view.map.unowned() and not any(self.view.map.targets):
                return
            if loop.time() >= end:
                raise TimeoutError(f"{len(self.view.map.unowned())} partitions have no owner")
            await asyncio.sleep(0.05)

    async def wait_balanced(self, within: float = 30.0) -> None:
        """Wait until every host this placement started owns its share of the partitions
        (within one of each other) and no hand-off is under way. At a fresh start the first
        host to join claims every partition and the others take theirs by hand-offs
        (`actors.directory.plan`, `MAX_MOVES` a wave): a placement that answered before then
        would place its first actors on one host and move them within seconds. Past
        ``within`` seconds it logs and goes on (a host slow to join takes its share later,
        as after any restart)."""
        assert self.view is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while True:
            await self.view.refresh(0)
            m = self.view.map
            counts = m.counts()
            if counts and set(self.handles) <= set(counts) and not any(m.targets) and \
                    max(counts.values()) - min(counts.values()) <= 1:
                return
            if loop.time() >= end:
                log.warning("hosts not balanced %.0f s after start (partitions per host: "
                            "%s); serving anyway", within, counts)
                return
            await asyncio.sleep(0.05)

    async def wait_serving(self, within: float = 30.0) -> None:
        """Wait until the hosts serve every partition themselves: the directory may name a
        restarted host as owner while its new incarnation still waits out its predecessor's
        lease (`LEASE`), and until then it runs no turn and sweeps no deadline there.
        Raises TimeoutError."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while True:
            stats = await self.stats()
            served = sum(s["membership"]["partitions"] for s in stats if "membership" in s)
            if served >= PARTITIONS and all(s["membership"]["lease_ok"] for s in stats):
                return
            if loop.time() >= end:
                raise TimeoutError(f"the hosts serve {served} of {PARTITIONS} partitions")
            await asyncio.sleep(0.05)

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_EVERY)
            try:
                await self._reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("host supervisor round failed")

    async def _reconcile(self) -> None:
        import ray

        wanted = await self.directory.desired_hosts() or self.n_hosts
        while len(self.handles) < wanted:
            self._spawn()
        if len(self.handles) > wanted:
            leaving = sorted(self.handles, key=lambda h: int(h[1:]))[wanted:]
            for host_id in leaving:
                handle = self.handles[host_id]
                try:
                    await handle.leave.remote()
                finally:
                    del self.handles[host_id]
                    ray.kill(handle)

        async def ensure(handle: Any) -> None:
            with contextlib.suppress(Exception):  # restarting: the next round tries again
                await asyncio.wait_for(handle.ensure_started.remote(self._http), 10)

        await asyncio.gather(*(ensure(h) for h in self.handles.values()))

    async def scale(self, n: int) -> None:
        """Ask for ``n`` hosts (1..256); the supervisor adds or retires hosts to match."""
        if not 1 <= n <= 256:
            raise ValueError("a placement runs 1 to 256 hosts")
        await self.directory.set_desired_hosts(n)

    async def send(self, msg: Message) -> Reply:
        assert self.router is not None, "RayPlacement.start() first"
        return await self.router.send(msg)

    async def publish(self, kind: str, value: Any) -> None:
        assert self.router is not None, "RayPlacement.start() first"
        self.reference.apply(kind, value)
        await _broadcast(self.router, "publish", {"kind": kind, "value": value})

    async def advance(self, seconds: float) -> None:
        """Move every host's manual clock by ``seconds`` (tests, simulations); due timers and
        sweeps run before this returns. A host whose lease lapsed a moment ago (a heartbeat
        late under load) sweeps nothing, so this waits first until every partition is served
        again (`wait_serving`). Raises TimeoutError, or TypeError on a system clock."""
        assert self.router is not None, "RayPlacement.start() first"
        await self.wait_serving()
        await _broadcast(self.router, "advance", {"seconds": seconds})

    async def stats(self) -> list[dict[str, Any]]:
        assert self.router is not None, "RayPlacement.start() first"
        return await _broadcast(self.router, "stats", {}, every=False)

    async def host_info(self) -> dict[str, dict[str, Any]]:
        """Host id -> ``{host_id, pid, address, incarnation}`` of the hosts running now."""
        out = {}
        for host_id, h in self.handles.items():
            with contextlib.suppress(Exception):
                out[host_id] = await asyncio.wait_for(h.info.remote(), 5)
        return out

    def health(self) -> dict[str, Any]:
        """``serving``: some host is live to send to; ``unowned``: partitions no live host
        owns (as this process last read the directory)."""
        assert self.view is not None
        live = self.view.live()
        return {"serving": bool(live), "unowned": self.view.map.unowned(), "hosts": live}

    async def cluster(self) -> dict[str, Any]:
        assert self.view is not None
        return await cluster_summary(self.view)

    async def close(self) -> None:
        import ray

        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        try:
            await asyncio.wait_for(asyncio.gather(
                *(h.stop.remote() for h in self.handles.values())), timeout=15)
        except Exception as e:  # noqa: BLE001 - shutting down anyway
            log.warning("hosts did not stop cleanly: %s", e)
        if self.router is not None:
            await self.router.close()
        if self.view is not None:
            await self.view.stop()
        for h in self.handles.values():
            ray.kill(h)
        self.handles = {}
        if self.directory is not None:
            with contextlib.suppress(Exception):
                await self.directory.clear()
        if self._client is not None:
            await self._client.aclose()
