"""Bootstrap: the one place that builds Redis clients, starts Ray and wires the engine.

``start_runtime(settings)`` gives a running :class:`Runtime`; ``stop_runtime`` undoes it in
reverse (hosts drain their writes, Ray disconnects or shuts down, the bundled Redis stops).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from actors.placement import LocalPlacement
from actors.reference import ReferenceData
from actors.runtime import partition_of
from actors.service import CartService
from gateway.redis_url import resolve_redis
from gateway.settings import GatewaySettings
from snapshots.bundled import BundledRedis
from snapshots.redis_store import RedisStore, connect

log = logging.getLogger("cart_engine")


@dataclass
class Runtime:
    service: CartService
    store: RedisStore
    redis_url: str
    bundled: BundledRedis | None = None
    ray_started: bool = False
    notes: list[str] = field(default_factory=list)
    #: The sales analytics consumer (`snapshots.analytics_store.RedisAnalytics`), if run.
    analytics: Any = None


async def start_runtime(settings: GatewaySettings) -> Runtime:
    """Redis (given or bundled), Ray (joined or local), hosts, catalog: a ready engine.

    Raises gateway.redis_url.RedisUnusable when a configured Redis does not answer."""
    url, bundled = await resolve_redis(settings)
    store = RedisStore(connect(url), settings.redis_prefix)
    moved = await store.migrate_layout(lambda k: partition_of(*k.split(":", 1)))
    if any(moved.values()):
        log.warning("moved the single-Redis layout to partitioned keys: %s", moved)
    engine_settings = settings.engine()
    ray_started = False
    if settings.placement == "ray":
        import ray

        from actors.ray_placement import RayPlacement

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"namespace": "cart-engine", "include_dashboard": False,
                                      "configure_logging": False, "log_to_driver": True}
            if settings.ray_address:
                kwargs["address"] = settings.ray_address
            else:
                # "local": a cluster of our own, even where a `ray start` cluster runs (a bare
                # ray.init() would join that one, and refuse the resources given here).
                kwargs.update(address="local", num_cpus=os.cpu_count() or 2,
                              object_store_memory=256 * 1024 * 1024)
                # Ray runs workers at nice 15 (for batch jobs beside a driver); the hosts are
                # this service, so they get the CPU at the same priority as everything else.
                os.environ.setdefault("RAY_worker_niceness", "0")
            await _init_ray_keeping_signal_handlers(ray, kwargs)
            ray_started = True
        from gateway.ingress import ingress_for

        ingress = ingress_for(settings.model_copy(update={"redis_url": SecretStr(url)})) \
            if settings.ingress == "hosts" else None
        placement: Any = RayPlacement(
            n_hosts=settings.hosts, redis_url=url, prefix=settings.redis_prefix,
            settings=engine_settings, reference=ReferenceData(),
            max_delay=settings.batch_delay, max_batch=settings.batch_size,
            max_queue=settings.max_queue, ingress=ingress)
        for kind in ("product", "promotion"):
            for value in (await store.load_reference(kind)).values():
                placement.reference.apply(kind, value)
        await placement.start()
    else:
        from actors.clock import SystemClock

        placement = LocalPlacement(store, SystemClock(), engine_settings, settings.hosts)
        await placement.start()
    service = CartService(placement, store)
    rt = Runtime(service, store, url, bundled, ray_started)
    if settings.catalog:
        n = await load_catalog(service, settings.catalog)
        rt.notes.append(f"catalog: {n} products from {settings.catalog}")
    if settings.placement == "ray" and settings.ingress == "hosts":
        await placement.open_ingress()
    if settings.analytics:
        from snapshots.analytics_store import RedisAnalytics

        rt.analytics = RedisAnalytics(store)
        rt.analytics.start()
    return rt


async def serve_on_hosts(settings: GatewaySettings) -> int:
    """``cart-engine serve`` with an ingress on every host: boot the engine, let the hosts
    serve HTTP, supervise them until SIGTERM / SIGINT, then stop cleanly. Exit status."""
    rt = await start_runtime(settings)
    where = "bundled Redis" if rt.bundled else "Redis from --redis-url / REDIS_URL"
    print(f"cart-engine: listening on http://{settings.host}:{settings.port} in every host "
          f"({settings.hosts} hosts, docs at /docs); {where}; " + "; ".join(rt.notes),
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await stop_runtime(rt)
    print("cart-engine: stopped cleanly (writes drained, hosts stopped)", flush=True)
    return 0


def _ray_token_at_hand() -> bool:
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    token_file = Path(path) if path else Path.home() / ".ray" / "auth_token"
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or token_file.is_file()


def _join_ray(ray: Any, kwargs: dict[str, Any]) -> None:
    """``ray.init``; joining a cluster that authenticates callers by token, present it.

    Ray 2.5x+ clusters started with ``ray start`` authenticate by token when one exists on
    the head (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``), but a
    process that joins with an explicit address sends it only when ``RAY_AUTH_MODE=token`` is
    set, and is refused otherwise (``InvalidAuthToken``); and a process in token mode cannot
    join a cluster without it. So with ``RAY_AUTH_MODE`` unset, join without a token first
    and, if the cluster refuses for want of one and a token is at hand, again in token mode
    (for this process and the hosts it starts). An explicit ``RAY_AUTH_MODE`` is obeyed.
    """
    probe = "address" in kwargs and "RAY_AUTH_MODE" not in os.environ and _ray_token_at_hand()
    quick = probe and "RAY_gcs_rpc_server_connect_timeout_s" not in os.environ
    if quick:  # a refusal should come back in seconds, not after Ray's minute of retries
        os.environ["RAY_gcs_rpc_server_connect_timeout_s"] = "10"
    try:
        ray.init(**kwargs)
    except Exception as e:
        if not (probe and _asks_for_token(e)):
            raise
        log.warning("the Ray cluster asks for its token; joining in token mode")
        ray.shutdown()
        os.environ["RAY_AUTH_MODE"] = "token"
        from ray._raylet import Config  # Ray reads RAY_AUTH_MODE into its config here

        Config.initialize("")
        ray.init(**kwargs)
    finally:
        if quick:
            os.environ.pop("RAY_gcs_rpc_server_connect_timeout_s", None)


def _asks_for_token(e: BaseException | None) -> bool:
    """Whether ``e`` (or what caused it) is Ray's refusal for want of a token."""
    while e is not None:
        if "InvalidAuthToken" in str(e) or type(e).__name__ == "AuthenticationError":
            return True
        e = e.__cause__ or e.__context__
    return False


async def _init_ray_keeping_signal_handlers(ray: Any, kwargs: dict[str, Any]) -> None:
    """``ray.init``, then give SIGTERM/SIGINT back to their owner (uvicorn).

    Ray's core worker installs its own handlers, which end the process at once; the service
    must instead drain its writes and stop its hosts and the bundled Redis first.
    """
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    await asyncio.to_thread(_join_ray, ray, kwargs)
    if threading.current_thread() is threading.main_thread():
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


async def load_catalog(service: CartService, path: Any) -> int:
    """Upsert every product of a catalog file; stock is set only where none was ever set."""
    products = json.loads(await asyncio.to_thread(Path(path).read_text, "utf-8"))
    sem = asyncio.Semaphore(32)

    async def one(p: dict[str, Any]) -> None:
        async with sem:
            await service.put_product(p["product_id"], p, initial_stock_only=True)

    await asyncio.gather(*(one(p) for p in products))
    return len(products)


async def stop_runtime(rt: Runtime) -> None:
    if rt.analytics is not None:
        await rt.analytics.stop()
    try:
        await rt.service.close()
    finally:
        await rt.store.close()
        if rt.ray_started:
            import ray

            await asyncio.to_thread(ray.shutdown)
        if rt.bundled is not None:
            await asyncio.to_thread(rt.bundled.stop)
