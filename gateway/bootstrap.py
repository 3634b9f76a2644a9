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

from actors.placement import LocalPlacement
from actors.reference import ReferenceData
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


async def start_runtime(settings: GatewaySettings) -> Runtime:
    """Redis (given or bundled), Ray (joined or local), hosts, catalog: a ready engine.

    Raises gateway.redis_url.RedisUnusable when a configured Redis does not answer."""
    url, bundled = await resolve_redis(settings)
    store = RedisStore(connect(url), settings.redis_prefix)
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
                kwargs.update(num_cpus=os.cpu_count() or 2,
                              object_store_memory=256 * 1024 * 1024)
            await _init_ray_keeping_signal_handlers(ray, kwargs)
            ray_started = True
        placement: Any = RayPlacement(
            n_hosts=settings.hosts, redis_url=url, prefix=settings.redis_prefix,
            settings=engine_settings, reference=ReferenceData(),
            max_delay=settings.batch_delay, max_batch=settings.batch_size,
            max_queue=settings.max_queue, transport=settings.ray_transport)
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
    return rt


async def _init_ray_keeping_signal_handlers(ray: Any, kwargs: dict[str, Any]) -> None:
    """``ray.init``, then give SIGTERM/SIGINT back to their owner (uvicorn).

    Ray's core worker installs its own handlers, which end the process at once; the service
    must instead drain its writes and stop its hosts and the bundled Redis first.
    """
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    await asyncio.to_thread(ray.init, **kwargs)
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
    try:
        await rt.service.close()
    finally:
        await rt.store.close()
        if rt.ray_started:
            import ray

            await asyncio.to_thread(ray.shutdown)
        if rt.bundled is not None:
            await asyncio.to_thread(rt.bundled.stop)
