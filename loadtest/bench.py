"""Comparative benchmark: the cart engine against baseline peers, same scenarios, same client.

Usage (from the project root, with the project's venv):

    python -m loadtest.bench [--systems engine-ray,engine-local,redis-peer,memory-peer,ray-per-cart]
                             [--scenarios churn,flash,read] [--connections 64] [--duration 20]
                             [--rate REQ_PER_S] [--out bench-results/bench.json]

Systems (each started in turn as a subprocess on a free 127.0.0.1 port, stopped before the next):

    engine-ray     cart-engine serve --placement ray   [--hosts N] --redis-url redis://.../DB
    engine-local   cart-engine serve --placement local [--hosts N] --redis-url redis://.../DB
    engine-ray-calls  (only when named) engine-ray with --ray-transport ray: batches as Ray
                   actor calls instead of the hosts' direct TCP channels, for comparison
    redis-peer     python -m loadtest.peers.redis_peer   (Redis hashes + Lua stock script)
    memory-peer    python -m loadtest.peers.memory_peer  (a bare dict: the HTTP stack's ceiling)
    ray-per-cart   python -m loadtest.peers.ray_per_cart (one Ray actor per cart; carts capped)

Scenarios (see `loadtest.scenarios`): churn (add / PATCH / DELETE / GET on own cart), flash
(`--units` units to `--buyers` buyers, checked for overselling), read (GETs of prepared carts).
Every measured phase is bounded by `--duration` seconds and `--requests` requests, every
setup phase (making carts) by `--setup-timeout` seconds.

For each system the bench writes a catalog file (`--products` x `--variants`, ample stock),
flushes Redis database `--redis-db` (default 15; lend it to this one bench run alone) before
start and after stop when the system uses Redis, waits for `GET /readyz` to answer 200
(`--ready-timeout` s), runs the scenarios, then stops it: SIGTERM, `--stop-timeout` s,
SIGKILL; its child processes are waited for and killed by pid if they outlive that. A system
that cannot start or a scenario that fails becomes a failed row, not a crash. Server logs go
to `<out dir>/logs/<system>.log`.

Output: a rich table on stdout and a JSON file (`--out`) with the machine (nproc, memory, CPU,
Python and package versions, Redis version, date), the configuration and one result dict per
row. Columns: requests/s; p50/p99/p99.9 latency in ms; errors (unexpected statuses and
transport errors); oversold units and checkouts/s (flash); requests/s as a ratio to redis-peer
and to memory-peer on the same scenario; CPU ms per request of the server (its process tree,
plus the Redis server's own CPU for systems that use Redis) and of the load generator; the
server's resident memory in MB; on the read scenario, memory per active cart (`B/cart`: what
the server's processes' resident memory plus its Redis data grew by while it made the
`--read-carts` carts of 3 lines, per cart). On a small machine the generator shares the
CPUs with the server: when the client's CPU ms/request is near the server's, requests/s is
capped by the generator, and the server CPU per request is the figure to compare.

Example, a quick check of the peers:

    python -m loadtest.bench --systems redis-peer,memory-peer --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import redis
from rich.console import Console
from rich.table import Table

from loadtest.client import run_async
from loadtest.scenarios import (
    Target,
    cart_churn,
    catalog_items,
    flash_sale,
    make_admin_token,
    make_catalog,
    read_heavy,
)

try:
    import psutil
except ImportError:  # pragma: no cover - psutil ships with Ray; the RSS column is optional
    psutil = None

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = Path(sys.executable).parent
ALL_SYSTEMS = ("engine-ray", "engine-local", "redis-peer", "memory-peer", "ray-per-cart")
ALL_SCENARIOS = ("churn", "flash", "read")
BASELINES = ("redis-peer", "memory-peer")
PACKAGES = ("cart-engine", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "pydantic",
            "httpx", "hdrhistogram", "rich", "redis", "ray", "msgpack", "PyJWT", "psutil")
#: Seconds between two /readyz probes while a system starts.
READY_POLL_S = 0.25

#: Wide enough for the results table when stdout is a file or a pipe.
console = Console() if sys.stdout.isatty() else Console(width=190)


# --------------------------------------------------------------------------- systems


@dataclass(frozen=True)
class RunContext:
    """What every system is started with: catalog file, token secret, Redis URL, engine hosts."""

    catalog_path: Path
    auth_secret: str
    redis_url: str
    hosts: int | None
    ray_carts: int


@dataclass(frozen=True)
class SystemSpec:
    """How to start one system: its command line, whether it uses Redis, its cart cap."""

    name: str
    command: Callable[[int, RunContext], list[str]]
    uses_redis: bool
    caps_carts: bool = False


def engine_command(placement: str, *extra: str) -> Callable[[int, RunContext], list[str]]:
    """The `cart-engine serve` command line for a placement (`ray` or `local`)."""

    def command(port: int, ctx: RunContext) -> list[str]:
        return [str(BIN_DIR / "cart-engine"), "serve", "--port", str(port),
                "--redis-url", ctx.redis_url, "--placement", placement,
                "--catalog", str(ctx.catalog_path), f"--auth-secret={ctx.auth_secret}",
                *(["--hosts", str(ctx.hosts)] if ctx.hosts is not None else []), *extra]

    return command


def peer_command(module: str, *extra: str) -> Callable[[int, RunContext], list[str]]:
    """The command line of a peer module; `extra` may use {redis_url} and {peer_carts} (the
    cart cap of a peer: `ray_carts` for each scenario)."""

    def command(port: int, ctx: RunContext) -> list[str]:
        peer_carts = ctx.ray_carts * len(ALL_SCENARIOS)
        filled = [arg.format(redis_url=ctx.redis_url, peer_carts=peer_carts) for arg in extra]
        return [sys.executable, "-m", f"loadtest.peers.{module}", "--port", str(port),
                "--catalog", str(ctx.catalog_path), f"--auth-secret={ctx.auth_secret}", *filled]

    return command


SYSTEMS: dict[str, SystemSpec] = {
    spec.name: spec
    for spec in (
        SystemSpec("engine-ray", engine_command("ray"), uses_redis=True),
        SystemSpec("engine-ray-calls", engine_command("ray", "--ray-transport", "ray"),
                   uses_redis=True),
        SystemSpec("engine-local", engine_command("local"), uses_redis=True),
        SystemSpec("redis-peer", peer_command("redis_peer", "--redis-url", "{redis_url}",
                                              "--key-prefix", "bench:"), uses_redis=True),
        SystemSpec("memory-peer", peer_command("memory_peer"), uses_redis=False),
        SystemSpec("ray-per-cart", peer_command("ray_per_cart", "--max-carts", "{peer_carts}"),
                   uses_redis=False, caps_carts=True),
    )
}


class SystemFailed(Exception):
    """A system did not start or become ready."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def flush_redis(url: str) -> None:
    """Empty the bench's Redis database (the one named by `url`)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def redis_cpu_seconds(url: str) -> float | None:
    """The Redis server's CPU seconds so far (INFO cpu: user + system), None if unreachable."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    except (redis.RedisError, KeyError):
        return None
    finally:
        client.close()


def redis_used_bytes(url: str) -> int | None:
    """The Redis server's data memory now (INFO memory: used_memory), None if unreachable."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return int(client.info("memory")["used_memory"])
    except (redis.RedisError, KeyError):
        return None
    finally:
        client.close()


class ServerProcess:
    """A system under test running as a subprocess in its own process group."""

    def __init__(self, spec: SystemSpec, ctx: RunContext, log_path: Path) -> None:
        self.spec = spec
        self.redis_url = ctx.redis_url if spec.uses_redis else None
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.command = spec.command(self.port, ctx)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the command; its output goes to the log file."""
        if not Path(self.command[0]).exists():
            raise SystemFailed(f"{self.command[0]} does not exist")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                env=env, start_new_session=True,
            )

    async def wait_ready(self, timeout_s: float) -> float:
        """Poll `GET /readyz` until 200; answers the seconds it took. SystemFailed otherwise."""
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() - started < timeout_s:
                if self.process is None or self.process.poll() is not None:
                    raise SystemFailed(f"exited with {self.exit_code()}: {self.log_tail()}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(READY_POLL_S)
        raise SystemFailed(f"not ready after {timeout_s:.0f} s: {self.log_tail()}")

    def _tree(self) -> list[Any]:
        """The server process and all its descendants (psutil), empty if unknown."""
        if psutil is None or self.process is None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def rss_mb(self) -> float | None:
        """Resident memory of the process tree, in MB (None if unknown)."""
        return _sum_over(self._tree(), lambda p: p.memory_info().rss / 2**20)

    def memory_bytes(self) -> dict[str, float]:
        """Bytes held now: ``processes`` (resident memory of the process tree) and, when the
        system uses Redis, ``redis`` (the server's data memory); what is unknown is left out."""
        out: dict[str, float] = {}
        own = _sum_over(self._tree(), lambda p: float(p.memory_info().rss))
        if own is not None:
            out["processes"] = own
        used = None if self.redis_url is None else redis_used_bytes(self.redis_url)
        if used is not None:
            out["redis"] = used
        return out

    def cpu_seconds(self) -> float | None:
        """CPU seconds (user + system) used so far by the live process tree, plus the Redis
        server's own when the system uses Redis (its work is part of the system's cost)."""
        own = _sum_over(self._tree(), lambda p: sum(p.cpu_times()[:2]))
        if own is None or self.redis_url is None:
            return own
        used = redis_cpu_seconds(self.redis_url)
        return None if used is None else own + used

    def stop(self, timeout_s: float) -> None:
        """SIGTERM, wait up to `timeout_s` s, SIGKILL; then wait for (or kill) its descendants.

        The descendants are listed before the signal because some outlive their parent
        (Ray's worker processes are re-parented to init and exit a few seconds after their
        raylet); waiting for them keeps them from eating into the next system's run.
        """
        if self.process is None:
            return
        descendants = self._tree()[1:]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                console.print(f"[yellow]{self.spec.name} ignored SIGTERM; killing it")
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        if psutil is not None and descendants:
            _, alive = psutil.wait_procs(descendants, timeout=timeout_s)
            for proc in alive:
                try:
                    proc.kill()
                except psutil.Error:
                    continue

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of the server's log, on one line."""
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


def _sum_over(procs: list[Any], measure: Callable[[Any], float]) -> float | None:
    """The sum of `measure` over processes, skipping those that vanished; None if none."""
    total, seen = 0.0, False
    for proc in procs:
        try:
            total += measure(proc)
            seen = True
        except psutil.Error:
            continue
    return round(total, 3) if seen else None


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class BenchPlan:
    """The parsed command line: systems, scenarios and their sizes."""

    systems: list[str]
    scenarios: list[str]
    connections: int
    duration_s: float
    max_requests: int
    buyers: int
    units: int
    read_carts: int
    setup_s: float
    ready_timeout_s: float
    stop_timeout_s: float
    out: Path
    rate: float | None = None


async def run_scenario(name: str, target: Target, plan: BenchPlan, items: list) -> dict[str, Any]:
    """Run one scenario against a ready system; bounded by a safety timeout."""
    if name == "churn":
        job = cart_churn(target, items)
    elif name == "flash":
        job = flash_sale(target, buyers=plan.buyers, units=plan.units)
    else:
        job = read_heavy(target, items, carts=plan.read_carts)
    return await asyncio.wait_for(job, timeout=2 * plan.duration_s + 2 * plan.setup_s + 60)


def failed_row(system: str, scenario: str, reason: str) -> dict[str, Any]:
    """The row of a scenario that could not run."""
    return {"system": system, "scenario": scenario, "failed": reason[:2000]}


async def run_system(
    spec: SystemSpec, ctx: RunContext, plan: BenchPlan, items: list
) -> list[dict[str, Any]]:
    """Start one system, run the scenarios on it, stop it; one row per scenario."""
    server = ServerProcess(spec, ctx, plan.out.parent / "logs" / f"{spec.name}.log")
    rows: list[dict[str, Any]] = []
    try:
        if spec.uses_redis:
            flush_redis(ctx.redis_url)
        server.start()
        ready_s = await server.wait_ready(plan.ready_timeout_s)
        console.print(f"[green]{spec.name}[/] ready in {ready_s:.1f} s on {server.base_url}")
        target = Target(
            base_url=server.base_url,
            admin_token=make_admin_token(ctx.auth_secret),
            system=spec.name,
            connections=plan.connections,
            duration_s=plan.duration_s,
            max_requests=plan.max_requests,
            max_carts=ctx.ray_carts if spec.caps_carts else None,
            setup_s=plan.setup_s,
            server_cpu=server.cpu_seconds,
            server_memory=server.memory_bytes,
            rate=plan.rate,
        )
        for scenario in plan.scenarios:
            rows.append(await run_one(scenario, target, plan, items, server))
            console.print(describe(rows[-1]))
    except (SystemFailed, OSError, redis.RedisError) as exc:
        rows = [failed_row(spec.name, s, f"{type(exc).__name__}: {exc}") for s in plan.scenarios]
    finally:
        await asyncio.to_thread(server.stop, plan.stop_timeout_s)
        if spec.uses_redis:
            await asyncio.to_thread(flush_redis, ctx.redis_url)
    return rows


async def run_one(
    scenario: str, target: Target, plan: BenchPlan, items: list, server: ServerProcess
) -> dict[str, Any]:
    """One scenario's row, or a failed row if it raised."""
    try:
        row = await run_scenario(scenario, target, plan, items)
    except Exception as exc:  # noqa: BLE001 - any failure of a system under test is a row
        return failed_row(target.system, scenario, f"{type(exc).__name__}: {exc}")
    row["server_rss_mb"] = server.rss_mb()
    return row


def describe(row: dict[str, Any]) -> str:
    """A one-line account of a row, printed as the bench goes."""
    if "failed" in row:
        return f"  [red]{row['scenario']}: FAILED[/] {row['failed'][:200]}"
    return (f"  {row['scenario']}: {row['requests']} req in {row['seconds']} s, "
            f"{row['requests_per_s']} req/s, p99 {fmt(row['p99_ms'])} ms, "
            f"errors {row['error_count']}, CPU ms/req: server "
            f"{fmt(row['server_cpu_ms_per_request'])}, "
            f"client {fmt(row['client_cpu_ms_per_request'])}")


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Set `vs_<baseline>`: requests/s divided by the baseline's for the same scenario."""
    for baseline in BASELINES:
        base = {r["scenario"]: r.get("requests_per_s") for r in rows
                if r["system"] == baseline and "failed" not in r}
        for row in rows:
            rps, ref = row.get("requests_per_s"), base.get(row["scenario"])
            row[f"vs_{baseline}"] = round(rps / ref, 2) if rps and ref else None


# --------------------------------------------------------------------------- reporting


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: numbers rounded, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def results_table(rows: list[dict[str, Any]]) -> Table:
    """The rich table of all rows."""
    table = Table(title="cart engine benchmark (requests/s ratios to the baselines)")
    for header in ("system", "scenario", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors",
                   "oversold", "checkouts/s", "x redis-peer", "x memory-peer",
                   "srv CPU ms/req", "cli CPU ms/req", "RSS MB", "B/cart"):
        table.add_column(header, justify="left" if header in ("system", "scenario") else "right")
    for row in rows:
        if "failed" in row:
            table.add_row(row["system"], row["scenario"], "[red]FAILED", *([""] * 12))
            continue
        table.add_row(
            row["system"], row["scenario"], fmt(row["requests_per_s"], 0),
            fmt(row["p50_ms"]), fmt(row["p99_ms"]), fmt(row["p999_ms"]),
            fmt(row["error_count"]), fmt(row.get("oversold_units")),
            fmt(row.get("checkouts_per_s"), 0), fmt(row.get("vs_redis-peer")),
            fmt(row.get("vs_memory-peer")), fmt(row.get("server_cpu_ms_per_request")),
            fmt(row.get("client_cpu_ms_per_request")), fmt(row.get("server_rss_mb"), 0),
            fmt(row.get("bytes_per_cart")),
        )
    return table


def machine_info(redis_url: str) -> dict[str, Any]:
    """Where the figures were measured: CPUs, memory, OS, Python, packages, Redis, date."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "memory_mb": memory_mb(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "packages": {name: package_version(name) for name in PACKAGES},
        "redis_server": redis_version(redis_url),
    }


def cpu_model() -> str | None:
    """The CPU model name from /proc/cpuinfo (Linux), if present."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def memory_mb() -> int | None:
    """Total memory in MB."""
    if psutil is not None:
        return psutil.virtual_memory().total // 2**20
    return None


def package_version(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def redis_version(url: str) -> str | None:
    """The Redis server's version, or None if it does not answer."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return str(client.info("server").get("redis_version"))
    except redis.RedisError:
        return None
    finally:
        client.close()


def write_json(path: Path, plan: BenchPlan, ctx: RunContext, rows: list[dict[str, Any]]) -> None:
    """The results file: machine, configuration and rows."""
    config = {
        "systems": plan.systems, "scenarios": plan.scenarios,
        "connections": plan.connections, "duration_s": plan.duration_s, "rate": plan.rate,
        "max_requests": plan.max_requests, "buyers": plan.buyers, "units": plan.units,
        "read_carts": plan.read_carts,
        "engine_hosts": ctx.hosts or max(1, (os.cpu_count() or 2) - 1),
        "ray_per_cart_max_carts": ctx.ray_carts, "redis_url": ctx.redis_url,
    }
    document = {"machine": machine_info(ctx.redis_url), "config": config, "results": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> tuple[BenchPlan, argparse.Namespace]:
    """The bench's command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS))
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS))
    parser.add_argument("--connections", type=int, default=64,
                        help="keep-alive connections = concurrent virtual users")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="time limit of each measured phase, seconds")
    parser.add_argument("--requests", type=int, default=1_000_000,
                        help="request limit of each measured phase")
    parser.add_argument("--rate", type=float, default=None,
                        help="pace churn and read at this many requests/s over all "
                             "connections (latency at an offered load; default: flat out)")
    parser.add_argument("--buyers", type=int, default=16_000, help="flash sale buyers")
    parser.add_argument("--units", type=int, default=4000, help="flash sale units on sale")
    parser.add_argument("--read-carts", type=int, default=4000,
                        help="carts read-heavy reads (and memory per active cart is measured on)")
    parser.add_argument("--ray-carts", type=int, default=16,
                        help="cart cap per scenario for ray-per-cart (a Ray process per cart)")
    parser.add_argument("--products", type=int, default=50, help="catalog products")
    parser.add_argument("--variants", type=int, default=4, help="variants per product")
    parser.add_argument("--hosts", type=int, default=None,
                        help="engine hosts (--hosts of cart-engine serve; default: its own, "
                             "one per CPU left after the gateway's)")
    parser.add_argument("--redis-host", default="127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=15,
                        help="Redis database the bench flushes and lends to the systems")
    parser.add_argument("--setup-timeout", type=float, default=120.0,
                        help="time limit of each setup phase (making carts), seconds")
    parser.add_argument("--ready-timeout", type=float, default=120.0, help="seconds")
    parser.add_argument("--stop-timeout", type=float, default=30.0, help="seconds")
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench.json"))
    args = parser.parse_args(argv)
    plan = BenchPlan(
        systems=checked(args.systems, tuple(SYSTEMS), parser),
        scenarios=checked(args.scenarios, ALL_SCENARIOS, parser),
        connections=args.connections, duration_s=args.duration, max_requests=args.requests,
        buyers=args.buyers, units=args.units, read_carts=args.read_carts,
        setup_s=args.setup_timeout, ready_timeout_s=args.ready_timeout,
        stop_timeout_s=args.stop_timeout, out=args.out, rate=args.rate,
    )
    return plan, args


def checked(csv: str, allowed: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    """A comma-separated list whose every name is in `allowed` (else a usage error)."""
    names = [name.strip() for name in csv.split(",") if name.strip()]
    unknown = sorted(set(names) - set(allowed))
    if unknown or not names:
        parser.error(f"unknown or empty: {unknown}; choose from {', '.join(allowed)}")
    return names


async def run_bench(plan: BenchPlan, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Write the catalog, run every system in turn, report and save."""
    entries = make_catalog(args.products, args.variants, stock=10_000_000)
    catalog_path = plan.out.parent / "bench-catalog.json"
    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    catalog_path.write_text(json.dumps(entries))
    ctx = RunContext(
        catalog_path=catalog_path.resolve(),
        auth_secret=secrets.token_urlsafe(32),
        redis_url=f"redis://{args.redis_host}/{args.redis_db}",
        hosts=args.hosts,
        ray_carts=args.ray_carts,
    )
    items = catalog_items(entries)
    rows: list[dict[str, Any]] = []
    for name in plan.systems:
        console.rule(name)
        rows.extend(await run_system(SYSTEMS[name], ctx, plan, items))
    add_ratios(rows)
    console.print(results_table(rows))
    for row in rows:
        if "failed" in row:
            reason = row["failed"][:300]
            console.print(f"[red]failed[/] {row['system']} {row['scenario']}: {reason}")
    write_json(plan.out, plan, ctx, rows)
    console.print(f"results written to {plan.out}")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 0 (failed rows are reported, not fatal)."""
    plan, args = parse_args(argv)
    run_async(run_bench(plan, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
