"""Engine figures without HTTP: embedded throughput, memory per cart, O(change) persistence.

Usage (from the project root, with the project's venv):

    python -m loadtest.engine_bench [ops] [memory] [persistence] [linecost] [groupcommit]
        [analytics] [viewcost] [--events 3000] [--view-lines 6] [--views 20000]
        [--carts 100000] [--ops 200000] [--per-cart 1,10,50]
        [--big-cart 50] [--rounds 15] [--samples 100]
        [--redis-url redis://127.0.0.1:6379/15]
        [--out bench-results/engine.json]

- ``ops``: cart operations per second in this process (the embedding API), on the in-memory
  store (every turn still goes through the codec) and, with ``--redis-url``, on Redis. Two
  ways in: one call per operation (``add_item`` / ``set_quantity`` / ``get_cart``, each
  answering the priced cart), sent as concurrent batches; and ``CartService.apply``, the
  batch API for simulations, with ``--per-cart`` line operations per cart per batch (one
  turn and one write per cart, a lean answer per op).
- ``memory``: resident bytes per idle active cart (one line) in one host, over ``--carts``
  carts, and the extrapolation to 1,000,000 carts.
- ``persistence``: time to persist one new reservation on an inventory actor that holds 0
  open reservations and on one that holds 10,000 (Redis, ``--redis-url``), in alternating
  rounds: O(change) means a ratio near 1.
- ``groupcommit``: CPU per persisted write when ``--writes`` turns' writes share one flush
  (Redis, ``--redis-url``): this process's and Redis's, and the wall time.
- ``analytics``: CPU per outbox event of the sales analytics consumer reading and applying
  ``--events`` events at a time (about a second of a flash sale's), spread over the
  partitions (Redis, ``--redis-url``).
- ``viewcost``: CPU of a cart actor's view after a one-line change (what every add, PATCH
  and DELETE answers): pricing, the view's dicts and its JSON, as a host serving HTTP makes
  them in the turn, on a ``--view-lines``-line cart, ``--views`` times (one line's quantity
  and the cart's times moved before each); pricing alone the same number of times.
- ``linecost``: time to add one new line to a ``--big-cart``-line cart (default 50) and to a
  1-line cart, one ``add_item`` call each on the in-memory store, in alternating rounds
  (median of the rounds' means, and their ratio: issue 11 asks for at most 2).

The process runs with `actors.runtime.tune_gc` applied, as the served engine does;
``--default-gc`` keeps CPython's collector defaults instead, for comparison.

Prints a rich table and writes JSON. Bounded: every loop runs a fixed count.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from actors.clock import ManualClock
from actors.runtime import tune_gc
from actors.service import CartOp, CartService
from actors.settings import EngineSettings
from engine.analytics import sale_fields
from loadtest.client import run_async
from snapshots.memory_store import MemoryStore
from snapshots.redis_store import RedisStore, connect
from snapshots.store import NEW_EPOCH, Write

PRODUCT = {"name": "Bench Tee", "category": "apparel",
           "price": {"amount": 1999, "currency": "USD"}, "stock": 10**9}
BATCH = 1000


class _DiscardStore(MemoryStore):
    """Accepts every write and keeps none: memory figures then show the host alone."""

    async def commit(self, writes: list[Write]) -> list[int | None]:
        return [max(w.epoch, 1) for w in writes]

    async def activate(self, key: str, partition: int = 0) -> tuple[int, dict[str, Any]]:
        return NEW_EPOCH, {}


async def _service(store: Any, hosts: int = 1) -> CartService:
    svc = await CartService.in_process(store=store, clock=ManualClock(),
                                       settings=EngineSettings(), hosts=hosts)
    await svc.put_product("tee", PRODUCT)
    return svc


def cart_id(i: int) -> str:
    return f"c_{i:024x}"  # the shape of real cart ids


async def _create(svc: CartService, n: int, lines: bool = True) -> None:
    for start in range(0, n, BATCH):
        ids = range(start, min(n, start + BATCH))
        await asyncio.gather(*(svc.call("cart", cart_id(i), "create",
                                        {"owner": f"guest_{i:020x}"}) for i in ids))
        if lines:
            await asyncio.gather(*(svc.add_item(f"guest_{i:020x}", cart_id(i),
                                                product_id="tee", quantity=1) for i in ids))


async def bench_ops(carts: int, ops: int, store: Any, label: str) -> dict[str, Any]:
    """Operations/s of a mix of add, re-quantity and view, in concurrent batches."""
    svc = await _service(store)
    await _create(svc, carts)
    done = 0
    started = time.perf_counter()
    kinds = ("add", "set", "view")
    while done < ops:
        kind = kinds[(done // BATCH) % 3]
        ids = [(done + j) % carts for j in range(BATCH)]
        if kind == "add":
            calls = [svc.add_item(f"guest_{i:020x}", cart_id(i), product_id="tee", quantity=1)
                     for i in ids]
        elif kind == "set":
            calls = [svc.set_quantity(f"guest_{i:020x}", cart_id(i), "ln_1", 2) for i in ids]
        else:
            calls = [svc.get_cart(f"guest_{i:020x}", cart_id(i)) for i in ids]
        await asyncio.gather(*calls)
        done += BATCH
    seconds = time.perf_counter() - started
    await svc.close()
    return {"figure": f"embedded ops/s ({label})", "value": round(done / seconds),
            "unit": "ops/s", "ops": done, "seconds": round(seconds, 2), "carts": carts}


async def bench_apply(carts: int, ops: int, per_cart: int, store: Any,
                      label: str) -> dict[str, Any]:
    """Operations/s through ``CartService.apply``: batches of ``per_cart`` add / re-quantity
    ops on each of BATCH carts (every op valid; each batch persisted before the next)."""
    svc = await _service(store)
    await _create(svc, carts)
    done, first = 0, 0
    started = time.perf_counter()
    while done < ops:
        batch = []
        for i in range(first, first + BATCH):
            owner, cid = f"guest_{i % carts:020x}", cart_id(i % carts)
            for k in range(per_cart):
                batch.append(CartOp(cid, owner, "add", "tee", 1) if k % 2 == 0
                             else CartOp(cid, owner, "set", "ln_1", 1 + k % 7))
        replies = await svc.apply(batch)
        if any(r[0] != "ok" for r in replies):
            raise RuntimeError(f"an op failed: {next(r for r in replies if r[0] != 'ok')}")
        done += len(batch)
        first += BATCH
    seconds = time.perf_counter() - started
    await svc.close()
    return {"figure": f"embedded ops/s, apply, {per_cart} per cart per batch ({label})",
            "value": round(done / seconds), "unit": "ops/s", "ops": done,
            "seconds": round(seconds, 2), "carts": carts, "per_cart": per_cart}


async def bench_memory(carts: int) -> dict[str, Any]:
    """Resident bytes per idle active cart (one line) in one host."""
    proc = psutil.Process(os.getpid())
    svc = await _service(_DiscardStore())
    gc.collect()
    before = proc.memory_info().rss
    await _create(svc, carts)
    gc.collect()
    per_cart = (proc.memory_info().rss - before) / carts
    total_1m = before + per_cart * 1_000_000
    await svc.close()
    return {"figure": "bytes per idle active cart (1 line)", "value": round(per_cart),
            "unit": "B", "carts": carts, "baseline_rss_mb": round(before / 2**20),
            "projected_rss_1m_carts_gb": round(total_1m / 2**30, 2)}


async def bench_persistence(redis_url: str, open_reservations: int = 10_000,
                            rounds: int = 15, samples: int = 200,
                            prefix: str = "bench-persist") -> list[dict[str, Any]]:
    """Seconds to persist one more reservation on an inventory actor holding 0 open
    reservations and on one holding ``open_reservations``, measured in alternating rounds of
    ``samples`` (so a slow spell of the machine or of Redis hits both alike); each sample
    reserves (timed) and releases (untimed), so the ledgers keep their sizes. Reports the
    median of the rounds' means and their ratio: O(change) persistence means about 1."""
    store = RedisStore(connect(redis_url), prefix)
    await store.clear()
    svc = await _service(store)
    await svc.put_product("tee-full", PRODUCT)

    def reserve(variant: str, rid: str) -> Any:
        return svc.call("inv", variant, "reserve", {"reservation_id": rid, "quantity": 1,
                                                    "ttl": 600.0, "owner": "bench"})

    for start in range(0, open_reservations, BATCH):
        await asyncio.gather(*(reserve("tee-full", f"open{i:07d}")
                               for i in range(start, min(open_reservations, start + BATCH))))
    means: dict[str, list[float]] = {"tee": [], "tee-full": []}
    n = 0
    for _ in range(rounds):
        for variant, round_means in means.items():
            spent = 0.0
            for _ in range(samples):
                n += 1
                t = time.perf_counter()
                await reserve(variant, f"s{n:07d}")
                spent += time.perf_counter() - t
                await svc.call("inv", variant, "release", {"reservation_id": f"s{n:07d}"})
            round_means.append(spent / samples)
    await svc.close()
    await store.clear()
    await store.close()
    empty, full = (sorted(m)[len(m) // 2] for m in means.values())
    return [
        {"figure": "persist a reservation, 0 already open", "value": round(empty * 1e6),
         "unit": "us", "rounds": rounds, "samples_per_round": samples},
        {"figure": f"persist a reservation, {open_reservations} already open",
         "value": round(full * 1e6), "unit": "us", "rounds": rounds,
         "samples_per_round": samples},
        {"figure": f"ratio, {open_reservations} open to 0 open", "value": round(full / empty, 2),
         "unit": "x"},
    ]


async def bench_line_cost(big: int = 50, rounds: int = 15, samples: int = 100,
                          store: Any = None) -> list[dict[str, Any]]:
    """Seconds to add one new line to a cart of ``big`` lines and to a cart of 1 line
    (embedded, one ``add_item`` call each, answering the priced cart), in alternating rounds
    of ``samples``: each sample adds the line (timed) and removes it (untimed), so the carts
    keep their sizes. Reports the median of the rounds' means and their ratio: a cost that
    does not grow with the cart means a ratio near 1 (issue 11's target: at most 2)."""
    svc = await _service(store if store is not None else MemoryStore())
    for i in range(big + 1):
        await svc.put_product(f"line-{i}", dict(PRODUCT, name=f"Line {i}"))
    carts = {1: (f"guest_{1:020x}", cart_id(1)), big: (f"guest_{big:020x}", cart_id(big))}
    for size, (owner, cid) in carts.items():
        await svc.call("cart", cid, "create", {"owner": owner})
        for i in range(1, size + 1):
            await svc.add_item(owner, cid, product_id=f"line-{i}", quantity=1)
    means: dict[int, list[float]] = {1: [], big: []}
    for r in range(rounds):
        order = (1, big) if r % 2 == 0 else (big, 1)  # neither size always goes first
        for size in order:
            owner, cid = carts[size]
            spent = 0.0
            for _ in range(samples):
                t = time.perf_counter()
                view = await svc.add_item(owner, cid, product_id="line-0", quantity=1)
                spent += time.perf_counter() - t
                line = next(li["line_id"] for li in view["lines"]
                            if li["product_id"] == "line-0")
                await svc.remove_line(owner, cid, line)
            means[size].append(spent / samples)
    await svc.close()
    small_s, big_s = (sorted(m)[len(m) // 2] for m in means.values())
    return [
        {"figure": "add a line to a 1-line cart", "value": round(small_s * 1e6),
         "unit": "us", "rounds": rounds, "samples_per_round": samples},
        {"figure": f"add a line to a {big}-line cart", "value": round(big_s * 1e6),
         "unit": "us", "rounds": rounds, "samples_per_round": samples},
        {"figure": f"ratio, {big}-line to 1-line cart", "value": round(big_s / small_s, 2),
         "unit": "x"},
    ]


async def bench_view_cost(lines: int = 6, views: int = 20_000) -> list[dict[str, Any]]:
    """CPU microseconds (``time.thread_time``) of one changed view of a ``lines``-line cart
    (`actors.cart.CartActor._view`, JSON rendered as in a host serving HTTP) and of its
    pricing alone, each the mean of ``views`` calls; before each view one line's quantity
    and the cart's times move (`engine.cart.Cart.set_quantity`), as an add's turn does."""
    svc = await _service(MemoryStore())
    svc.serve_http()
    for i in range(lines):
        await svc.put_product(f"view-{i}", dict(PRODUCT, name=f"View {i}"))
    owner, cid = f"guest_{lines:020x}", cart_id(lines)
    await svc.call("cart", cid, "create", {"owner": owner})
    for i in range(lines):
        await svc.add_item(owner, cid, product_id=f"view-{i}", quantity=1)
    actor = next(h.actors["cart"][cid] for h in svc.placement.hosts
                 if cid in h.actors["cart"])
    cart, ids = actor.cart, list(actor.cart.lines)
    now = cart.updated_at
    started = time.thread_time()
    for k in range(views):
        now += 0.001
        line = cart.lines[ids[k % len(ids)]]
        cart.set_quantity(line.line_id, line.quantity % 50 + 1, now, actor.ttl)
        actor._view()
    view_s = (time.thread_time() - started) / views
    started = time.thread_time()
    for _ in range(views):
        actor._price()
    price_s = (time.thread_time() - started) / views
    await svc.close()
    return [{"figure": f"changed view of a {lines}-line cart (priced, dicts, JSON)",
             "value": round(view_s * 1e6, 1), "unit": "us CPU", "views": views},
            {"figure": f"pricing a {lines}-line cart", "value": round(price_s * 1e6, 1),
             "unit": "us CPU", "views": views}]


async def bench_group_commit(redis_url: str, writes: int = 20, flushes: int = 1000,
                             prefix: str = "bench-commit") -> list[dict[str, Any]]:
    """CPU per persisted write of a group commit of ``writes`` carts' turns (two fields each,
    as an add writes the cart's meta and a line), ``flushes`` times, in microseconds: this
    process's (packing, the call, its answer) and Redis's (``INFO cpu``, so run it on a
    Redis nothing else uses), and the wall time. Leaves nothing under ``prefix``."""
    store = RedisStore(connect(redis_url), prefix)
    await store.clear()
    epochs: dict[int, int] = {}

    def batch() -> list[Write]:
        return [Write(key=f"cart:{cart_id(i)}", epoch=epochs.get(i, NEW_EPOCH),
                      partition=(7 * i) % 256,
                      hset={"meta": {"version": 3, "updated_at": 1.5e9, "status": "active"},
                            f"l:ln_{i}": {"quantity": 2, "unit_price": 1999, "sku": "SKU-1"}})
                for i in range(writes)]

    async def redis_cpu() -> float:
        info = await store.r.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    await store.commit(batch())  # the script loaded, the keys made
    epochs = dict.fromkeys(range(writes), 1)
    server, cpu, wall = await redis_cpu(), time.process_time(), time.perf_counter()
    for _ in range(flushes):
        answers = await store.commit(batch())
        if not all(isinstance(a, int) for a in answers):
            raise RuntimeError(f"a write of the group commit failed: {answers}")
    n = writes * flushes
    client_us = (time.process_time() - cpu) / n * 1e6
    wall_us = (time.perf_counter() - wall) / n * 1e6
    server_us = (await redis_cpu() - server) / n * 1e6
    await store.clear()
    await store.close()
    return [
        {"figure": f"group commit of {writes}: client CPU per write", "value": round(client_us, 1),
         "unit": "us", "flushes": flushes},
        {"figure": f"group commit of {writes}: Redis CPU per write", "value": round(server_us, 1),
         "unit": "us", "flushes": flushes},
        {"figure": f"group commit of {writes}: wall time per write", "value": round(wall_us, 1),
         "unit": "us", "flushes": flushes},
    ]


def _sale_events(n: int, start: float) -> list[dict[str, Any]]:
    """``n`` outbox events of a sale, one a second from ``start``: three of four
    ``cart.created``, every fourth an ``order.paid`` of one unit (as a flash sale writes)."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        at = start + i
        if i % 4:
            out.append({"type": "cart.created", "at": at, "cart_id": f"c{i}"})
            continue
        price = {"amount": 1999, "currency": "USD"}
        line = {"product_id": "tee", "variant_id": "tee-m", "quantity": 1,
                "unit_price": price, "line_total": price}
        totals = {"subtotal": price, "discount": {"amount": 0, "currency": "USD"},
                  "total": price}
        out.append({"type": "order.paid", "at": at, "order_id": f"o{i}", "total": price,
                    **sale_fields("USD", [line], [], totals)})
    return out


async def bench_analytics(redis_url: str, events: int = 3000, batches: int = 5,
                          prefix: str = "bench-analytics") -> list[dict[str, Any]]:
    """CPU per event of the analytics consumer (`snapshots.analytics_store.RedisAnalytics`)
    reading and applying ``events`` outbox events spread over the partitions, ``batches``
    times, in microseconds: this process's (read, fold, apply, acknowledge) and the wall
    time. About a second of a flash sale's events a batch. Leaves nothing under ``prefix``."""
    from snapshots.analytics_store import RedisAnalytics

    store = RedisStore(connect(redis_url), prefix)
    await store.clear()
    consumer = RedisAnalytics(store)
    if not await consumer.hold_lease():
        raise RuntimeError("another analytics consumer holds the lease under " + prefix)
    await consumer.join()
    cpu = wall = 0.0
    read = 0
    for b in range(batches):
        writes = [Write(key=f"bench:{b}-{i}", epoch=NEW_EPOCH, partition=(7 * i + b) % 256,
                        events=[e]) for i, e in enumerate(_sale_events(events, 1.8e9 + b))]
        for k in range(0, len(writes), 500):
            await store.commit(writes[k:k + 500])
        c, w = time.process_time(), time.perf_counter()
        while (got := await consumer.consume_once()) > 0:
            read += got
        cpu += time.process_time() - c
        wall += time.perf_counter() - w
    if read != events * batches or consumer.applied != read:
        raise RuntimeError(f"the consumer read {read} and applied {consumer.applied} of "
                           f"{events * batches} events")
    await consumer.release_lease()
    await store.clear()
    await store.close()
    return [
        {"figure": f"analytics consumer, {events} events a batch: CPU per event",
         "value": round(cpu / read * 1e6, 1), "unit": "us", "batches": batches},
        {"figure": f"analytics consumer, {events} events a batch: wall time per event",
         "value": round(wall / read * 1e6, 1), "unit": "us", "batches": batches},
    ]


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if "linecost" in args.what:
        rows += await bench_line_cost(args.big_cart, args.rounds, args.samples)
    if "viewcost" in args.what:
        rows += await bench_view_cost(args.view_lines, args.views)
    if "ops" in args.what:
        rows.append(await bench_ops(args.carts, args.ops, MemoryStore(), "memory store"))
        for per_cart in args.per_cart:
            rows.append(await bench_apply(args.carts, args.ops, per_cart, MemoryStore(),
                                          "memory store"))
        if args.redis_url:
            store = RedisStore(connect(args.redis_url), "bench-ops")
            await store.clear()
            rows.append(await bench_ops(args.carts, args.ops, store, "Redis store"))
            await store.clear()
            rows.append(await bench_apply(args.carts, args.ops, max(args.per_cart), store,
                                          "Redis store"))
            await store.clear()
            await store.close()
    if "memory" in args.what:
        rows.append(await bench_memory(args.carts))
    if "persistence" in args.what and args.redis_url:
        rows += await bench_persistence(args.redis_url)
    if "groupcommit" in args.what and args.redis_url:
        rows += await bench_group_commit(args.redis_url, args.writes, args.flushes)
    if "analytics" in args.what and args.redis_url:
        rows += await bench_analytics(args.redis_url, args.events)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="*", default=["ops", "memory", "persistence", "linecost"],
                   choices=["ops", "memory", "persistence", "linecost", "groupcommit",
                            "analytics", "viewcost"])
    p.add_argument("--carts", type=int, default=100_000)
    p.add_argument("--ops", type=int, default=300_000)
    p.add_argument("--per-cart", type=lambda v: [int(x) for x in v.split(",")],
                   default=[1, 10, 50],
                   help="apply: ops per cart per batch, comma-separated (default 1,10,50)")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    p.add_argument("--big-cart", type=int, default=50,
                   help="linecost: lines of the big cart (default 50)")
    p.add_argument("--rounds", type=int, default=15, help="linecost: alternating rounds")
    p.add_argument("--samples", type=int, default=100, help="linecost: additions per round")
    p.add_argument("--view-lines", type=int, default=6,
                   help="viewcost: lines of the cart (default 6)")
    p.add_argument("--views", type=int, default=20_000, help="viewcost: views (default 20000)")
    p.add_argument("--writes", type=int, default=20,
                   help="groupcommit: writes per flush (default 20)")
    p.add_argument("--flushes", type=int, default=1000, help="groupcommit: flushes")
    p.add_argument("--events", type=int, default=3000,
                   help="analytics: outbox events a batch (default 3000)")
    p.add_argument("--default-gc", action="store_true",
                   help="keep CPython's garbage-collector defaults (no tune_gc)")
    p.add_argument("--out", type=Path, default=Path("bench-results/engine.json"))
    args = p.parse_args(argv)
    if not args.default_gc:
        tune_gc()
    rows = run_async(run(args))
    table = Table(title="cart engine, in process")
    for col in ("figure", "value", "unit"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["figure"], f"{r['value']:,}", r["unit"])
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "gc": "default" if args.default_gc else "tune_gc",
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
        "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
