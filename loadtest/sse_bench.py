"""What open cart event streams cost a running server: memory and CPU per stream.

    python -m loadtest.sse_bench --url http://127.0.0.1:8000 --auth-secret S \
        [--streams 5000] [--product P] [--idle 20] [--changing 100] [--rate 50]

Against a running `cart-engine serve` (any shape): it makes ``--streams`` guest carts, finds
the serving processes (every process listening on the URL's port: the hosts' ingresses, or
the one gateway; ``--pid`` to name them), then measures, over ``--idle`` seconds each:

1. idle, no stream open (the baseline);
2. idle with ``--streams`` streams open (one per cart): resident memory (RSS) added per
   stream, CPU per stream (heartbeats and the hub's tail);
3. ``--rate`` adds per second spread over ``--changing`` of the streamed carts: CPU per
   event delivered, against
4. the same adds with every stream closed (what the adds cost without streams).

Streams are read by raw sockets (one request each, bytes counted, events split on blank
lines) so the load generator stays light; it shares the machine, so figures are indicative.
Prints a table and, with ``--json``, one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from gateway.auth import issue_token


def serving_pids(port: int) -> list[int]:
    """Processes listening on TCP ``port`` (several with SO_REUSEPORT)."""
    pids = set()
    for c in psutil.net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            pids.add(c.pid)
    return sorted(pids)


def sample(pids: list[int]) -> tuple[int, float]:
    """(RSS bytes, CPU seconds user + system) summed over ``pids``."""
    rss, cpu = 0, 0.0
    for pid in pids:
        p = psutil.Process(pid)
        rss += p.memory_info().rss
        t = p.cpu_times()
        cpu += t.user + t.system
    return rss, cpu


class Stream:
    """One open ``GET /v1/carts/{id}/events`` read by a raw socket."""

    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def run(self, host: str, port: int, cart_id: str, token: str) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write((f"GET /v1/carts/{cart_id}/events HTTP/1.1\r\nHost: {host}\r\n"
                          f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
                          ).encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
            self.ready.set()
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                self.bytes += len(chunk)
                self.events += chunk.count(b"\r\nevent: ")
        finally:
            writer.close()


async def open_streams(host: str, port: int, carts: list[tuple[str, str]],
                       batch: int = 200) -> list[Stream]:
    streams = []
    for i in range(0, len(carts), batch):
        part = []
        for cart_id, token in carts[i:i + batch]:
            s = Stream()
            s.task = asyncio.ensure_future(s.run(host, port, cart_id, token))
            part.append(s)
        await asyncio.gather(*(_ready(s) for s in part))
        streams.extend(part)
    return streams


async def _ready(s: Stream) -> None:
    assert s.task is not None
    done, _ = await asyncio.wait({s.task, asyncio.ensure_future(s.ready.wait())},
                                 return_when=asyncio.FIRST_COMPLETED)
    if s.task in done:
        s.task.result()
        raise RuntimeError("a stream ended before it opened")


async def close_streams(streams: list[Stream]) -> None:
    for s in streams:
        if s.task is not None:
            s.task.cancel()
    await asyncio.gather(*(s.task for s in streams if s.task), return_exceptions=True)


async def make_carts(http: httpx.AsyncClient, n: int) -> list[tuple[str, str]]:
    sem = asyncio.Semaphore(64)

    async def one() -> tuple[str, str]:
        async with sem:
            r = await http.post("/v1/carts")
            r.raise_for_status()
            body = r.json()
            return body["cart_id"], body["token"]

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def changes(http: httpx.AsyncClient, carts: list[tuple[str, str]], product: str,
                  rate: float, seconds: float) -> int:
    """``rate`` adds per second over ``carts`` for ``seconds`` (on a fixed schedule)."""
    loop = asyncio.get_running_loop()
    start, n, tasks = loop.time(), 0, []

    async def add(cart_id: str, token: str) -> None:
        r = await http.post(f"/v1/carts/{cart_id}/items", json={"product_id": product,
                                                                "quantity": 1},
                            headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()

    while loop.time() - start < seconds:
        due = start + n / rate
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        cart_id, token = carts[n % len(carts)]
        tasks.append(asyncio.ensure_future(add(cart_id, token)))
        n += 1
    await asyncio.gather(*tasks)
    return n


async def measure(pids: list[int], seconds: float, work: Any = None) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``pids`` over ``seconds`` (or while ``work`` runs)."""
    _, cpu0 = sample(pids)
    t0 = time.perf_counter()
    if work is None:
        await asyncio.sleep(seconds)
    else:
        await work
    _, cpu1 = sample(pids)
    return cpu1 - cpu0, time.perf_counter() - t0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    pids = args.pid or serving_pids(port)
    if not pids:
        raise SystemExit(f"no process listens on port {port}; pass --pid")
    admin = issue_token(args.auth_secret, "sse-bench", "admin", 3600)
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=args.url, timeout=60, limits=limits) as http:
        product = args.product
        if product is None:
            product = "sse-bench-tee"
            r = await http.put(f"/v1/admin/products/{product}", headers={
                "Authorization": f"Bearer {admin}"}, json={
                "name": "SSE bench tee", "category": "bench",
                "price": {"amount": 1000, "currency": "USD"}, "stock": 1_000_000})
            r.raise_for_status()
        carts = await make_carts(http, args.streams)
        changing = carts[:args.changing]
        base_cpu, base_wall = await measure(pids, args.idle)
        rss0, _ = sample(pids)
        t0 = time.perf_counter()
        streams = await open_streams(host, port, carts)
        open_s = time.perf_counter() - t0
        await asyncio.sleep(2)  # let the opening settle
        rss1, _ = sample(pids)
        idle_cpu, idle_wall = await measure(pids, args.idle)
        ev0 = sum(s.events for s in streams)
        busy_cpu, busy_wall = await measure(
            pids, 0, changes(http, changing, product, args.rate, args.idle))
        await asyncio.sleep(1)
        delivered = sum(s.events for s in streams) - ev0
        await close_streams(streams)
        await asyncio.sleep(2)
        rss2, _ = sample(pids)
        plain_cpu, plain_wall = await measure(
            pids, 0, changes(http, changing, product, args.rate, args.idle))
    n = len(streams)
    idle_extra = idle_cpu / idle_wall - base_cpu / base_wall
    busy_extra = busy_cpu / busy_wall - plain_cpu / plain_wall
    return {
        "streams": n, "serving_pids": pids, "open_seconds": round(open_s, 2),
        "rss_before_mb": round(rss0 / 2**20, 1), "rss_open_mb": round(rss1 / 2**20, 1),
        "rss_after_close_mb": round(rss2 / 2**20, 1),
        "rss_per_stream_kb": round((rss1 - rss0) / n / 1024, 2),
        "idle_cpu_pct_no_streams": round(100 * base_cpu / base_wall, 2),
        "idle_cpu_pct_streams": round(100 * idle_cpu / idle_wall, 2),
        "idle_cpu_us_per_stream_per_s": round(1e6 * idle_extra / n, 3),
        "changing_carts": len(changing), "adds_per_s": args.rate,
        "events_delivered": delivered,
        "busy_cpu_pct_streams": round(100 * busy_cpu / busy_wall, 2),
        "busy_cpu_pct_no_streams": round(100 * plain_cpu / plain_wall, 2),
        "busy_cpu_us_per_stream_per_s": round(1e6 * busy_extra / n, 3),
        "cpu_us_per_event_delivered": round(1e6 * busy_extra * busy_wall / delivered, 1)
        if delivered else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.sse_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--auth-secret", required=True, help="to sign an admin token")
    p.add_argument("--streams", type=int, default=5000)
    p.add_argument("--product", default=None, help="an existing product (default: one made)")
    p.add_argument("--idle", type=float, default=20.0, help="seconds per measured phase")
    p.add_argument("--changing", type=int, default=100, help="carts changed in phase 3")
    p.add_argument("--rate", type=float, default=50.0, help="adds per second in phase 3")
    p.add_argument("--pid", type=int, action="append", help="a serving process (repeat)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    out = asyncio.run(run(args))
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:32} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
