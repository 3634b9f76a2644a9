"""How long a killed host's carts take to answer again: median and worst of N kills.

    python -m loadtest.failover [--runs 5] [--hosts 2] [--carts 20]

Starts `cart-engine serve` (local Ray, Redis from ``REDIS_URL`` or the bundled one) with an
ingress on every host, makes guest carts until ``--carts`` of them live on host ``h0``, then
``--runs`` times: SIGKILLs the process of the host that owns the first of them, and times a
``GET`` of each of those carts from the kill until all answered 200 (the request waits in the
router while the partitions are re-homed; nothing is restarted by hand). Prints each run and
the median and worst; exit 1 if a cart answered anything but 200 or lost its line.

A load tool of its own: it kills processes on this machine, so it drives a server it
started, never a deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.auth import issue_token
from snapshots.bundled import free_port

SECRET = "failover-measurement-secret-of-32-bytes!"


def _serve(port: int, hosts: int, data: Path) -> Any:
    import subprocess

    args = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--hosts",
            str(hosts), "--auth-secret", SECRET, "--data-dir", str(data),
            "--redis-prefix", f"fo{port}"]
    if os.environ.get("REDIS_URL"):
        args += ["--redis-url", os.environ["REDIS_URL"]]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _ready(client: httpx.AsyncClient, within: float = 120.0) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the engine did not become ready")


async def _get_retrying(client: httpx.AsyncClient, path: str, token: str) -> httpx.Response:
    while True:
        try:
            r = await client.get(path, headers={"Authorization": f"Bearer {token}"})
            if r.status_code != 503:
                return r
        except httpx.TransportError:
            pass  # a connection to the killed process: a client opens another
        await asyncio.sleep(0.02)


async def measure(runs: int, hosts: int, n_carts: int) -> list[float]:
    port = free_port()
    proc = _serve(port, hosts, Path(tempfile.mkdtemp(prefix="ce-failover-")))
    admin = {"Authorization": f"Bearer {issue_token(SECRET, 'ops', 'admin', 3600)}"}
    times = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            await _ready(c)
            await c.put("/v1/admin/products/fo-tee", headers=admin, json={
                "name": "Tee", "category": "apparel",
                "price": {"amount": 1999, "currency": "USD"},
                "variants": [{"variant_id": "fo-tee-m", "sku": "FO-M", "stock": 10**6}]})
            carts: list[tuple[str, str]] = []
            for _ in range(n_carts):
                r = (await c.post("/v1/carts")).json()
                token, cid = r["token"], r["cart_id"]
                await c.post(f"/v1/carts/{cid}/items", headers={
                    "Authorization": f"Bearer {token}", "Idempotency-Key": cid},
                    json={"product_id": "fo-tee", "variant_id": "fo-tee-m", "quantity": 1})
                carts.append((token, cid))
            for run in range(runs):
                hosts_now = (await c.get("/v1/admin/cluster", headers=admin)).json()["hosts"]
                victim = sorted(hosts_now)[run % len(hosts_now)]
                os.kill(int(hosts_now[victim]["pid"]), signal.SIGKILL)
                start = time.monotonic()
                async with httpx.AsyncClient(base_url=c.base_url, timeout=60) as fresh:
                    answers = await asyncio.gather(*(
                        _get_retrying(fresh, f"/v1/carts/{cid}", token) for token, cid in carts))
                took = time.monotonic() - start
                bad = [r.status_code for r in answers if r.status_code != 200
                       or r.json()["lines"][0]["quantity"] != 1]
                print(f"run {run + 1}: killed {victim}; every cart answered in {took:.2f} s"
                      + (f"; BAD {bad}" if bad else ""), flush=True)
                if bad:
                    raise SystemExit(1)
                times.append(took)
                await _settled(c, admin, len(hosts_now))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return times


async def _settled(c: httpx.AsyncClient, admin: dict[str, str], hosts: int) -> None:
    """Until the killed host is back and every hand-off is done."""
    while True:
        cl = (await c.get("/v1/admin/cluster", headers=admin)).json()
        if len(cl["hosts"]) == hosts and not cl["moving"] and not cl["unowned"]:
            return
        await asyncio.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--hosts", type=int, default=2)
    p.add_argument("--carts", type=int, default=20)
    a = p.parse_args(argv)
    times = asyncio.run(measure(a.runs, a.hosts, a.carts))
    print(f"recovery after a host kill: median {statistics.median(times):.2f} s, "
          f"worst {max(times):.2f} s over {len(times)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
