"""Comparative benchmark: the cart engine against the strongest peer and the HTTP ceiling.

Usage (from the project root, with the project's venv):

    python -m loadtest.bench [--systems engine,lua-peer,raw-asgi]
                             [--scenarios churn,churn-edit,flash,read] [--big-carts]
                             [--connections 64] [--duration 20] [--carts 500] [--lines 6]
                             [--buyers 4000] [--units 1000] [--workers N] [--own-redis]
                             [--rounds 1] [--json] [--out bench-results/bench.json]

Systems (each started in turn as a subprocess on a free 127.0.0.1 port, stopped before the next):

    engine         cart-engine serve with its default flags (--placement P and --hosts N
                   only when given here)
    engine-traced  the same with OpenTelemetry tracing on: OTEL_EXPORTER_OTLP_ENDPOINT points
                   at a tiny OTLP/HTTP sink the bench starts on loopback as a process of its
                   own (`loadtest.otlp_sink`: it accepts every export and discards it), so the
                   exporter does its real work (batching, encoding, a POST per batch); its rows
                   beside `engine`'s are the overhead of tracing (the `tracing overhead`
                   table: requests/s and server CPU per request, and KB exported per request)
    engine-ray, engine-local   (only when named) the same with --placement ray / local
    engine-gateway    (only when named) engine-ray with --ingress gateway: one gateway process
                      forwards every request to the hosts (the shape before an ingress on
                      every host)
    lua-peer       python -m loadtest.peers.lua_peer: the strongest conventional peer, FastAPI +
                   redis.asyncio, one Lua script per mutation and per checkout, orjson, cached
                   token checks, --workers uvicorn workers (default: one per core)
    lua-peer-1w    (only when named) the same with one worker
    raw-asgi       python -m loadtest.peers.raw_asgi: a bare ASGI app answering a fixed 1.2 KB
                   JSON body, --workers workers: the HTTP ceiling (one `ceiling` row: the
                   churn's requests, answered alike)
    redis-peer, memory-peer, ray-per-cart   (only when named) the earlier peers: FastAPI +
                   Redis with a read-modify-write per mutation, over a dict, a Ray actor per cart

Scenarios (see `loadtest.scenarios`): churn (`--carts` guest carts of `--lines` lines shared by
the connections, 60% add one unit / 40% view), churn-edit (the same carts with PATCH and
DELETE in the mix: 35% add, 15% PATCH, 10% DELETE, 40% view), churn-big (churn on carts of
`--big-lines` lines, default 50; `--big-carts` adds it), flash (`--buyers` guests race for
`--units` units: guest cart, add one unit, checkout with tok_ok; checked for overselling),
read (GETs of `--read-carts` prepared carts of 3 lines; memory per cart). Every measured
phase is bounded by `--duration` seconds and `--requests` requests, every setup phase
(making carts) and the flash race (a fixed amount of work: its time is the figure) by
`--setup-timeout` seconds.

For each system the bench writes a catalog file (`--products` x `--variants`, ample stock),
flushes Redis database `--redis-db` (default 15; lend it to this one bench run alone) before
start and after stop when the system uses Redis, waits for `GET /readyz` to answer 200
(`--ready-timeout` s), runs the scenarios, then stops it: SIGTERM, `--stop-timeout` s,
SIGKILL; its child processes are waited for and killed by pid if they outlive that. A system
that cannot start or a scenario that fails becomes a failed row, not a crash. Server logs go
to `<out dir>/logs/<system>.log`. `--own-redis` starts a private redis-server for the run
(`snapshots.bundled`), so that its command counts and CPU are the systems' alone.

Around the flash race the bench reads Redis `INFO commandstats` (EVALSHA calls, all calls but
INFO) and, for the engine, its `/metrics` (actor turns and committed writes, summed over the
hosts): the growth per buyer is what one purchase costs. INFO is server-wide: without
`--own-redis` the counts include whatever else uses that Redis server meanwhile.

Output: rich tables on stdout (with `--json`, on stderr, and the JSON document on stdout) and
the JSON file `--out`: the machine (nproc, memory, CPU, Python and package versions, Redis
version, date), the configuration, one result dict per row and `summary`: per system and
scenario, requests/s (buyers/s for flash), p99 ms, server CPU ms per request and the ratios,
so a regression shows as a number. Ratios: `x lua-peer` is requests/s (buyers/s for flash)
over lua-peer's on the same scenario; `x raw` is requests/s over raw-asgi's `ceiling`. CPU
ms per request: the server's process tree, plus the Redis server's own CPU for systems that
use Redis, and the load generator's. On a small machine the generator shares the CPUs with
the server: when the client's CPU ms/request is near the server's, requests/s is capped by
the generator, and the server CPU per request is the figure to compare. `tracing_overhead`:
per scenario both ran, `engine-traced` against `engine` (requests/s, server CPU ms per
request, their ratios, and the KB per request the exporter sent to the sink).

`--rounds N` runs the systems N times in alternating order (as given, reversed, as given...):
a VM's speed drifts by tens of percent within minutes, and a system that always runs first
would meet a different machine than the one after it. Every row carries its `round`; ratios
are taken within a round; `summary` holds the medians over the rounds and each round's ratio
(`vs_lua-peer_rounds`), and a last table prints them.

Example, a short check (3 s phases, small sale):

    python -m loadtest.bench --systems lua-peer,raw-asgi --duration 3 --buyers 400 --units 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from loadtest.client import run_async
from loadtest.otlp_sink import SinkProcess, tracing_env
from loadtest.scenarios import (
    ADD_VIEW_MIX,
    EDIT_MIX,
    Target,
    cart_churn,
    catalog_items,
    flash_race,
    make_admin_token,
    make_catalog,
    read_heavy,
    request_mix,
)
from loadtest.wrk import available as wrk_available
from snapshots.bundled import BundledRedis

try:
    import psutil
except ImportError:  # pragma: no cover - psutil ships with Ray; the RSS column is optional
    psutil = None

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = Path(sys.executable).parent
DEFAULT_SYSTEMS = ("engine", "engine-traced", "lua-peer", "raw-asgi")
ALL_SCENARIOS = ("churn", "churn-edit", "churn-big", "flash", "read")
DEFAULT_SCENARIOS = ("churn", "churn-edit", "flash", "read")
#: The strongest peer and the HTTP ceiling: every row's ratios are to these two.
PEER, CEILING = "lua-peer", "raw-asgi"
#: The ceiling's only row: the churn's requests, answered alike.
CEILING_SCENARIO = "ceiling"
#: Engine counters read from `/metrics` around the flash race: family name -> counter name.
ENGINE_FAMILIES = {"cart_engine_host_turns": "engine_turns",
                   "cart_engine_host_commit_writes": "engine_writes",
                   "cart_engine_host_commit_flushes": "engine_flushes"}
PACKAGES = ("cart-engine", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "pydantic",
            "httpx", "hdrhistogram", "rich", "redis", "ray", "msgpack", "PyJWT", "psutil")
#: The system whose rows the traced engine's are compared with.
UNTRACED, TRACED = "engine", "engine-traced"
#: Seconds between two /readyz probes while a system starts.
READY_POLL_S = 0.25

#: Wide enough for the results table when stdout is a file or a pipe.
console = Console() if sys.stdout.isatty() else Console(width=190)


# --------------------------------------------------------------------------- systems


@dataclass(frozen=True)
class RunContext:
    """What every system is started with: catalog file, token secret, Redis URL, the engine's
    hosts and placement overrides (None: its defaults), the peers' uvicorn workers."""

    catalog_path: Path
    auth_secret: str
    redis_url: str
    hosts: int | None
    ray_carts: int
    placement: str | None = None
    workers: int = 1


@dataclass(frozen=True)
class SystemSpec:
    """How to start one system: its command line, whether it uses Redis, its cart cap, and
    its kind (``engine``: counters from `/metrics`; ``ceiling``: only the ceiling row), and
    whether it runs with tracing on, exporting to an OTLP sink the bench starts (``traced``)."""

    name: str
    command: Callable[[int, RunContext], list[str]]
    uses_redis: bool
    caps_carts: bool = False
    kind: str = "peer"
    traced: bool = False


def engine_command(placement: str | None = None, *extra: str
                   ) -> Callable[[int, RunContext], list[str]]:
    """The `cart-engine serve` command line: its default flags, plus `--placement` when
    `placement` (else the bench's `--placement`, if given) and `--hosts` when given."""

    def command(port: int, ctx: RunContext) -> list[str]:
        chosen = placement or ctx.placement
        return [str(BIN_DIR / "cart-engine"), "serve", "--port", str(port),
                "--redis-url", ctx.redis_url,
                "--catalog", str(ctx.catalog_path), f"--auth-secret={ctx.auth_secret}",
                *(["--placement", chosen] if chosen else []),
                *(["--hosts", str(ctx.hosts)] if ctx.hosts is not None else []), *extra]

    return command


def peer_command(module: str, *extra: str) -> Callable[[int, RunContext], list[str]]:
    """The command line of a peer module; `extra` may use {redis_url}, {workers} and
    {peer_carts} (the cart cap of a peer: `ray_carts` for each scenario)."""

    def command(port: int, ctx: RunContext) -> list[str]:
        peer_carts = ctx.ray_carts * len(ALL_SCENARIOS)
        filled = [arg.format(redis_url=ctx.redis_url, peer_carts=peer_carts,
                             workers=ctx.workers) for arg in extra]
        return [sys.executable, "-m", f"loadtest.peers.{module}", "--port", str(port),
                "--catalog", str(ctx.catalog_path), f"--auth-secret={ctx.auth_secret}", *filled]

    return command


SYSTEMS: dict[str, SystemSpec] = {
    spec.name: spec
    for spec in (
        SystemSpec("engine", engine_command(), uses_redis=True, kind="engine"),
        SystemSpec("engine-traced", engine_command(), uses_redis=True, kind="engine",
                   traced=True),
        SystemSpec("engine-ray", engine_command("ray"), uses_redis=True, kind="engine"),
        # The shape before: the gateway's process plus one host per CPU left (1 on 2 cores).
        SystemSpec("engine-gateway", engine_command(
            "ray", "--ingress", "gateway", "--hosts", str(max(1, (os.cpu_count() or 2) - 1))),
                   uses_redis=True, kind="engine"),
        SystemSpec("engine-local", engine_command("local"), uses_redis=True, kind="engine"),
        SystemSpec("lua-peer", peer_command("lua_peer", "--redis-url", "{redis_url}",
                                            "--key-prefix", "lp:", "--workers", "{workers}"),
                   uses_redis=True),
        SystemSpec("lua-peer-1w", peer_command("lua_peer", "--redis-url", "{redis_url}",
                                               "--key-prefix", "lp:", "--workers", "1"),
                   uses_redis=True),
        SystemSpec("raw-asgi", peer_command("raw_asgi", "--workers", "{workers}"),
                   uses_redis=False, kind="ceiling"),
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


def flush_redis(url: str, settle_s: float = 60.0) -> None:
    """Empty the bench's Redis database (the one named by `url`); with AOF on, then rewrite
    the append-only file and wait (up to `settle_s` seconds) until that is done, so that the
    rewrite Redis starts by itself once the file has doubled (with what the system before
    wrote) does not fork and copy during the next system's run."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        if not int(client.info("persistence").get("aof_enabled", 0)):
            return
        with contextlib.suppress(redis.ResponseError):  # one is already under way
            client.bgrewriteaof()
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            info = client.info("persistence")
            if not int(info.get("aof_rewrite_in_progress", 0)) and \
                    not int(info.get("aof_rewrite_scheduled", 0)):
                return
            time.sleep(0.1)
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


def redis_command_counts(url: str) -> dict[str, float]:
    """Redis calls so far (INFO commandstats, server-wide, commands run by scripts included):
    ``redis_evalsha`` (EVALSHA + EVAL) and ``redis_commands`` (every command but INFO, which
    the bench itself sends). Empty if Redis does not answer."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        stats = client.info("commandstats")
    except redis.RedisError:
        return {}
    finally:
        client.close()
    calls = {name.removeprefix("cmdstat_"): int(entry.get("calls", 0))
             for name, entry in stats.items() if isinstance(entry, dict)}
    return {"redis_evalsha": float(calls.get("evalsha", 0) + calls.get("eval", 0)),
            "redis_commands": float(sum(n for name, n in calls.items() if name != "info"))}


def engine_counters(metrics_text: str) -> dict[str, float]:
    """The engine's counters summed over its hosts from a `/metrics` page (Prometheus text):
    actor turns, committed writes and group-commit flushes (`ENGINE_FAMILIES`); a family the
    page lacks is left out."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        name = ENGINE_FAMILIES.get(family.name)
        if name is None:
            continue
        found[name] = float(sum(sample.value for sample in family.samples
                                if not sample.name.endswith("_created")))
    return found


class ServerProcess:
    """A system under test running as a subprocess in its own process group."""

    def __init__(self, spec: SystemSpec, ctx: RunContext, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.spec = spec
        self.env = env or {}
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
            # the systems of this tree, not of wherever the venv's editable install points:
            # `cart-engine` (and the Ray workers it starts) import from PYTHONPATH first
            path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH"))
                                   if p)
            env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path, **self.env)
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

    async def counters(self) -> dict[str, float]:
        """Cumulative counters now: Redis calls (systems on Redis) and, for the engine, its
        actor turns and writes from `/metrics` (left out when it does not answer)."""
        found: dict[str, float] = {}
        if self.redis_url is not None:
            found.update(await asyncio.to_thread(redis_command_counts, self.redis_url))
        if self.spec.kind == "engine":
            try:
                async with httpx.AsyncClient(base_url=self.base_url, timeout=10.0) as client:
                    reply = await client.get("/metrics")
                if reply.status_code == 200:
                    found.update(engine_counters(reply.text))
            except httpx.HTTPError:
                pass
        return found

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
    carts: int = 500
    lines: int = 6
    big_lines: int = 50
    rounds: int = 1
    generator: str = "python"


async def run_scenario(name: str, target: Target, plan: BenchPlan, items: list) -> dict[str, Any]:
    """Run one scenario against a ready system; bounded by a safety timeout."""
    if name == CEILING_SCENARIO:
        job = request_mix(target, items, mix=ADD_VIEW_MIX, scenario=name)
    elif name in ("churn", "churn-edit", "churn-big"):
        job = cart_churn(target, items, carts=plan.carts,
                         lines=plan.big_lines if name == "churn-big" else plan.lines,
                         mix=EDIT_MIX if name == "churn-edit" else ADD_VIEW_MIX, scenario=name)
    elif name == "flash":
        job = flash_race(target, buyers=plan.buyers, units=plan.units)
    else:
        job = read_heavy(target, items, carts=plan.read_carts)
    return await asyncio.wait_for(job, timeout=2 * plan.duration_s + 2 * plan.setup_s + 60)


def failed_row(system: str, scenario: str, reason: str) -> dict[str, Any]:
    """The row of a scenario that could not run."""
    return {"system": system, "scenario": scenario, "failed": reason[:2000]}


def scenarios_of(spec: SystemSpec, plan: BenchPlan) -> list[str]:
    """What a system runs: the plan's scenarios, or the ceiling's one row."""
    return [CEILING_SCENARIO] if spec.kind == "ceiling" else plan.scenarios


async def run_system(
    spec: SystemSpec, ctx: RunContext, plan: BenchPlan, items: list
) -> list[dict[str, Any]]:
    """Start one system (and, traced, its OTLP sink first), run the scenarios on it, stop
    it; one row per scenario."""
    logs = plan.out.parent / "logs"
    sink = SinkProcess(free_port(), logs / f"{spec.name}-otlp-sink.log") if spec.traced \
        else None
    server = ServerProcess(spec, ctx, logs / f"{spec.name}.log",
                           env=tracing_env(sink.url) if sink is not None else None)
    scenarios = scenarios_of(spec, plan)
    rows: list[dict[str, Any]] = []
    try:
        if spec.uses_redis:
            flush_redis(ctx.redis_url)
        if sink is not None:
            await asyncio.to_thread(sink.start)
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
            counters=server.counters,
            generator=plan.generator,
        )
        for scenario in scenarios:
            before = await asyncio.to_thread(sink.stats) if sink is not None else None
            rows.append(await run_one(scenario, target, plan, items, server))
            if sink is not None and "failed" not in rows[-1]:
                after = await asyncio.to_thread(sink.stats)
                sent = rows[-1]["requests"] + (rows[-1].get("setup") or {}).get("requests", 0)
                rows[-1]["otlp"] = otlp_figures(before, after, sent)
            console.print(describe(rows[-1]))
    except (SystemFailed, OSError, RuntimeError, redis.RedisError) as exc:
        rows = [failed_row(spec.name, s, f"{type(exc).__name__}: {exc}") for s in scenarios]
    finally:
        await asyncio.to_thread(server.stop, plan.stop_timeout_s)
        if sink is not None:
            await asyncio.to_thread(sink.stop)
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
    if scenario == "flash":
        cpu = row.get("server_cpu_ms_per_request")
        served = row["buyers"] - row["untried"]
        row["server_cpu_ms_per_buyer"] = (round(cpu * row["requests"] / served, 3)
                                          if cpu is not None and served else None)
    return row


def otlp_figures(before: dict[str, int] | None, after: dict[str, int] | None,
                 requests: int) -> dict[str, Any] | None:
    """What the traced engine exported during one scenario, from the sink's counts before
    and after it: ``exports`` (POSTs), ``bytes`` and ``kb_per_request`` over ``requests``
    (the scenario's, its setup's included: their spans are exported too). Approximate at the
    edges: the exporter sends a batch up to 5 s after its spans (the SDK's default delay),
    so the tail of one scenario may land in the next. None when the sink did not answer."""
    if before is None or after is None:
        return None
    exports, size = after["exports"] - before["exports"], after["bytes"] - before["bytes"]
    return {"exports": exports, "bytes": size,
            "kb_per_request": round(size / 1024 / requests, 3) if requests else None}


def tracing_overhead(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario that both `engine` and `engine-traced` ran: their headline figure
    (requests/s; buyers/s for flash), server CPU ms per request, and the traced engine's
    ratios to the untraced (``rate_ratio`` below 1 and ``cpu_ratio`` above 1 are the cost
    of tracing), with what it exported (``otlp``)."""
    plain = {(r["scenario"], r.get("round")): r for r in rows
             if r["system"] == UNTRACED and "failed" not in r}
    out = []
    for row in rows:
        ref = plain.get((row["scenario"], row.get("round")))
        if row["system"] != TRACED or "failed" in row or ref is None:
            continue
        rate, ref_rate = headline(row), headline(ref)
        cpu, ref_cpu = row.get("server_cpu_ms_per_request"), ref.get("server_cpu_ms_per_request")
        out.append({
            "scenario": row["scenario"], "rate": rate, "untraced_rate": ref_rate,
            "rate_ratio": round(rate / ref_rate, 3) if rate and ref_rate else None,
            "server_cpu_ms_per_request": cpu, "untraced_server_cpu_ms_per_request": ref_cpu,
            "cpu_ratio": round(cpu / ref_cpu, 3) if cpu and ref_cpu else None,
            "otlp": row.get("otlp"),
        })
    return out


def describe(row: dict[str, Any]) -> str:
    """A one-line account of a row, printed as the bench goes."""
    if "failed" in row:
        return f"  [red]{row['scenario']}: FAILED[/] {row['failed'][:200]}"
    extra = ""
    if row["scenario"] == "flash":
        extra = (f", {row['buyers_per_s']} buyers/s, paid {row['paid_orders']}, "
                 f"oversold {row['oversold_units']}, per buyer {row['per_buyer']}")
    elif row.get("per_request"):
        extra = f", per request {row['per_request']}"
    return (f"  {row['scenario']}: {row['requests']} req in {row['seconds']} s, "
            f"{row['requests_per_s']} req/s, p99 {fmt(row['p99_ms'])} ms, "
            f"errors {row['error_count']}, CPU ms/req: server "
            f"{fmt(row['server_cpu_ms_per_request'])}, "
            f"client {fmt(row['client_cpu_ms_per_request'])}{extra}")


def headline(row: dict[str, Any]) -> float | None:
    """The figure a row is compared by: buyers/s for a flash race, else requests/s."""
    return row.get("buyers_per_s") if row["scenario"] == "flash" else row.get("requests_per_s")


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Set `vs_lua-peer` (the row's headline over lua-peer's on the same scenario) and
    `vs_raw-asgi` (requests/s over the ceiling row's requests/s), both within the row's
    round (`--rounds`)."""
    peer = {(r["scenario"], r.get("round")): headline(r) for r in rows
            if r["system"] == PEER and "failed" not in r}
    ceilings = {r.get("round"): r.get("requests_per_s") for r in rows
                if r["system"] == CEILING and "failed" not in r}
    for row in rows:
        if "failed" in row:
            continue
        ceiling = ceilings.get(row.get("round"))
        mine, ref = headline(row), peer.get((row["scenario"], row.get("round")))
        row[f"vs_{PEER}"] = round(mine / ref, 2) if mine and ref else None
        rps = row.get("requests_per_s")
        row[f"vs_{CEILING}"] = round(rps / ceiling, 3) if rps and ceiling else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per system and scenario, the figures a regression shows in: requests/s (and buyers/s),
    p99 ms, server CPU ms per request, the ratios, and for flash the counts per buyer.

    With several rounds (`--rounds`) each figure is the median of the rounds' (counts per
    buyer key by key), ``rounds`` says how many rounds ran it, and ``vs_lua-peer_rounds``
    lists the ratio of each round; a failed round makes the whole entry ``failed``."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["system"], row["scenario"]), []).append(row)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (system, scenario), group in grouped.items():
        if any("failed" in row for row in group):
            out.setdefault(system, {})[scenario] = {"failed": True}
            continue
        keys = ["requests_per_s", "p50_ms", "p99_ms", "error_count",
                "server_cpu_ms_per_request", "client_cpu_ms_per_request", f"vs_{PEER}",
                f"vs_{CEILING}"]
        if scenario == "flash":
            keys += ["buyers_per_s", "purchase_p50_ms", "purchase_p99_ms", "paid_orders",
                     "oversold_units", "server_cpu_ms_per_buyer", "per_buyer"]
        figures = {key: _median_of([row.get(key) for row in group]) for key in keys}
        if len(group) > 1:
            figures["rounds"] = len(group)
            figures[f"vs_{PEER}_rounds"] = [row.get(f"vs_{PEER}") for row in group]
        out.setdefault(system, {})[scenario] = figures
    return out


def _median_of(values: list[Any]) -> Any:
    """One round's value as it is; of several, the median (of each key, for dicts), None
    when no round has one."""
    if len(values) == 1:
        return values[0]
    if all(isinstance(v, dict) for v in values):
        keys = {k for v in values for k in v}
        return {k: _median_of([v.get(k) for v in values]) for k in sorted(keys)}
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not numbers:
        return None
    middle = statistics.median(numbers)
    if all(isinstance(v, int) for v in numbers) and middle == int(middle):
        return int(middle)  # counts stay counts
    return round(middle, 3)


# --------------------------------------------------------------------------- reporting


def label(row: dict[str, Any]) -> str:
    """A row's system, with its round when the run had several (only those rows carry one)."""
    return f"{row['system']} #{row['round']}" if "round" in row else row["system"]


def rounds_table(summary: dict[str, dict[str, dict[str, Any]]]) -> Table:
    """The medians over the rounds of a ``--rounds`` run, with each round's ratio."""
    table = Table(title=f"median over rounds: headline (req/s; buyers/s for flash) and ratio "
                        f"to {PEER}, each round's ratio beside it")
    for header in ("system", "scenario", "rounds", "median", f"median x {PEER}",
                   f"x {PEER} per round", "median p99 ms", "median srv CPU ms/req"):
        table.add_column(header, justify="left" if header in ("system", "scenario") else "right")
    for system, scenarios in summary.items():
        for scenario, f in scenarios.items():
            if f.get("failed"):
                table.add_row(system, scenario, "", "[red]FAILED", *([""] * 4))
                continue
            rate = f.get("buyers_per_s") if scenario == "flash" else f.get("requests_per_s")
            table.add_row(system, scenario, fmt(f.get("rounds", 1)), fmt(rate, 0),
                          fmt(f.get(f"vs_{PEER}")),
                          ", ".join(fmt(v) for v in f.get(f"vs_{PEER}_rounds", [])),
                          fmt(f.get("p99_ms")), fmt(f.get("server_cpu_ms_per_request")))
    return table


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
    """The table of the request-rate rows (churn, read, ceiling)."""
    table = Table(title=f"requests/s; ratios to {PEER} (same scenario) and {CEILING} "
                        f"(the HTTP ceiling)")
    for header in ("system", "scenario", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors",
                   f"x {PEER}", f"x {CEILING}", "srv CPU ms/req", "cli CPU ms/req", "RSS MB",
                   "B/cart"):
        table.add_column(header, justify="left" if header in ("system", "scenario") else "right")
    for row in rows:
        if row["scenario"] == "flash":
            continue
        if "failed" in row:
            table.add_row(label(row), row["scenario"], "[red]FAILED", *([""] * 10))
            continue
        table.add_row(
            label(row), row["scenario"], fmt(row["requests_per_s"], 0),
            fmt(row["p50_ms"]), fmt(row["p99_ms"]), fmt(row["p999_ms"]),
            fmt(row["error_count"]), fmt(row.get(f"vs_{PEER}")), fmt(row.get(f"vs_{CEILING}"), 3),
            fmt(row.get("server_cpu_ms_per_request")), fmt(row.get("client_cpu_ms_per_request")),
            fmt(row.get("server_rss_mb"), 0), fmt(row.get("bytes_per_cart")),
        )
    return table


def flash_table(rows: list[dict[str, Any]]) -> Table:
    """The table of the flash races: buyers/s, purchase latency, the ledger, and what one
    purchase costs (Redis calls, engine actor turns and writes, server CPU)."""
    table = Table(title=f"flash race: buyers/s (ratio to {PEER}); per buyer: Redis calls, "
                        "actor turns and writes, server CPU")
    for header in ("system", "buyers/s", "seconds", "p50 ms", "p99 ms", "paid", "oversold",
                   "errors", f"x {PEER}", "EVALSHA/buyer", "Redis cmds/buyer", "turns/buyer",
                   "writes/buyer", "srv CPU ms/buyer"):
        table.add_column(header, justify="left" if header == "system" else "right")
    for row in rows:
        if row["scenario"] != "flash":
            continue
        if "failed" in row:
            table.add_row(label(row), "[red]FAILED", *([""] * 12))
            continue
        per = row.get("per_buyer") or {}
        table.add_row(
            label(row), fmt(row.get("buyers_per_s"), 0), fmt(row["seconds"]),
            fmt(row.get("purchase_p50_ms")), fmt(row.get("purchase_p99_ms")),
            fmt(row["paid_orders"]), fmt(row["oversold_units"]), fmt(row["error_count"]),
            fmt(row.get(f"vs_{PEER}")), fmt(per.get("redis_evalsha")),
            fmt(per.get("redis_commands")), fmt(per.get("engine_turns")),
            fmt(per.get("engine_writes")), fmt(row.get("server_cpu_ms_per_buyer")),
        )
    return table


def overhead_table(overhead: list[dict[str, Any]]) -> Table:
    """The table of tracing's cost: the engine with tracing on beside it without."""
    table = Table(title=f"tracing overhead: {TRACED} (OTLP export to a discarding sink) "
                        f"against {UNTRACED}")
    for header in ("scenario", "req/s untraced", "req/s traced", "x", "srv CPU ms/req untraced",
                   "srv CPU ms/req traced", "x CPU", "OTLP posts", "KB/req exported"):
        table.add_column(header, justify="left" if header == "scenario" else "right")
    for o in overhead:
        otlp = o.get("otlp") or {}
        table.add_row(o["scenario"] + (" (buyers/s)" if o["scenario"] == "flash" else ""),
                      fmt(o["untraced_rate"], 0), fmt(o["rate"], 0), fmt(o["rate_ratio"], 3),
                      fmt(o["untraced_server_cpu_ms_per_request"]),
                      fmt(o["server_cpu_ms_per_request"]), fmt(o["cpu_ratio"], 3),
                      fmt(otlp.get("exports")), fmt(otlp.get("kb_per_request"), 3))
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


def bench_document(plan: BenchPlan, ctx: RunContext, rows: list[dict[str, Any]]
                   ) -> dict[str, Any]:
    """The results document: machine, configuration, summary and rows."""
    config = {
        "systems": plan.systems, "scenarios": plan.scenarios,
        "connections": plan.connections, "duration_s": plan.duration_s, "rate": plan.rate,
        "max_requests": plan.max_requests, "buyers": plan.buyers, "units": plan.units,
        "carts": plan.carts, "lines_per_cart": plan.lines, "big_lines": plan.big_lines,
        "read_carts": plan.read_carts, "engine_hosts": ctx.hosts,
        "engine_placement": ctx.placement, "peer_workers": ctx.workers,
        "ray_per_cart_max_carts": ctx.ray_carts, "redis_url": ctx.redis_url,
        "rounds": plan.rounds, "generator": plan.generator,
    }
    return {"machine": machine_info(ctx.redis_url), "config": config,
            "summary": summarize(rows), "tracing_overhead": tracing_overhead(rows),
            "results": rows}


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> tuple[BenchPlan, argparse.Namespace]:
    """The bench's command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help=f"comma-separated, from: {', '.join(SYSTEMS)}")
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                        help=f"comma-separated, from: {', '.join(ALL_SCENARIOS)}")
    parser.add_argument("--big-carts", action="store_true",
                        help="also run churn-big (churn on carts of --big-lines lines)")
    parser.add_argument("--connections", type=int, default=64,
                        help="keep-alive connections = concurrent virtual users")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="time limit of each measured phase, seconds")
    parser.add_argument("--requests", type=int, default=1_000_000,
                        help="request limit of each measured phase")
    parser.add_argument("--rate", type=float, default=None,
                        help="pace churn and read at this many requests/s over all "
                             "connections (latency at an offered load; default: flat out)")
    parser.add_argument("--carts", type=int, default=500,
                        help="churn: distinct guest carts shared by the connections")
    parser.add_argument("--lines", type=int, default=6, help="churn: lines per cart")
    parser.add_argument("--big-lines", type=int, default=50, help="churn-big: lines per cart")
    parser.add_argument("--buyers", type=int, default=4000, help="flash: buyers")
    parser.add_argument("--units", type=int, default=1000, help="flash: units on sale")
    parser.add_argument("--read-carts", type=int, default=4000,
                        help="carts read-heavy reads (and memory per active cart is measured on)")
    parser.add_argument("--ray-carts", type=int, default=16,
                        help="cart cap per scenario for ray-per-cart (a Ray process per cart)")
    parser.add_argument("--products", type=int, default=50, help="catalog products")
    parser.add_argument("--variants", type=int, default=4, help="variants per product")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="uvicorn workers of lua-peer and raw-asgi (default: one per core)")
    parser.add_argument("--hosts", type=int, default=None,
                        help="engine hosts (--hosts of cart-engine serve; default: its own)")
    parser.add_argument("--placement", default=None,
                        help="the engine's --placement (default: its own)")
    parser.add_argument("--redis-host", default="127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=15,
                        help="Redis database the bench flushes and lends to the systems")
    parser.add_argument("--own-redis", action="store_true",
                        help="start a private redis-server for the run (exact command counts)")
    parser.add_argument("--setup-timeout", type=float, default=120.0,
                        help="time limit of each setup phase (making carts), seconds")
    parser.add_argument("--ready-timeout", type=float, default=120.0, help="seconds")
    parser.add_argument("--stop-timeout", type=float, default=30.0, help="seconds")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the systems this many times, in alternating order "
                             "(as given, then reversed, ...); ratios are taken within each "
                             "round and the summary gives their median")
    parser.add_argument("--generator", choices=("python", "wrk"), default="python",
                        help="who sends the measured phase of churn, read and the ceiling: "
                             "the Python client, or wrk (a C load generator: Debian package "
                             "wrk; loadtest.wrk), which leaves more of a small machine to "
                             "the systems; churn-edit and flash stay Python's")
    parser.add_argument("--json", action="store_true",
                        help="print the results document as JSON on stdout (tables on stderr)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench.json"))
    args = parser.parse_args(argv)
    scenarios = checked(args.scenarios, ALL_SCENARIOS, parser)
    if args.big_carts and "churn-big" not in scenarios:
        scenarios.append("churn-big")
    for flag, value in (("--carts", args.carts), ("--lines", args.lines),
                        ("--big-lines", args.big_lines), ("--buyers", args.buyers),
                        ("--workers", args.workers), ("--connections", args.connections),
                        ("--rounds", args.rounds)):
        if value < 1:
            parser.error(f"{flag} must be at least 1")
    if args.units < 0:
        parser.error("--units must be at least 0")
    if args.generator == "wrk":
        if args.rate is not None:
            parser.error("--rate paces the Python generator only; wrk runs flat out")
        if not wrk_available():
            parser.error("--generator wrk: no wrk on the PATH (Debian: apt-get install wrk)")
    plan = BenchPlan(
        systems=checked(args.systems, tuple(SYSTEMS), parser),
        scenarios=scenarios,
        connections=args.connections, duration_s=args.duration, max_requests=args.requests,
        buyers=args.buyers, units=args.units, read_carts=args.read_carts,
        setup_s=args.setup_timeout, ready_timeout_s=args.ready_timeout,
        stop_timeout_s=args.stop_timeout, out=args.out, rate=args.rate,
        carts=args.carts, lines=args.lines, big_lines=args.big_lines, rounds=args.rounds,
        generator=args.generator,
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
    global console
    if args.json:
        console = Console(stderr=True, width=190)
    entries = make_catalog(args.products, args.variants, stock=10_000_000)
    catalog_path = plan.out.parent / "bench-catalog.json"
    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    catalog_path.write_text(json.dumps(entries))
    own, own_dir = None, None
    redis_url = f"redis://{args.redis_host}/{args.redis_db}"
    if args.own_redis:
        own_dir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        own = BundledRedis(own_dir)
        redis_url = own.start()
    try:
        ctx = RunContext(
            catalog_path=catalog_path.resolve(),
            auth_secret=secrets.token_urlsafe(32),
            redis_url=redis_url,
            hosts=args.hosts,
            ray_carts=args.ray_carts,
            placement=args.placement,
            workers=args.workers,
        )
        items = catalog_items(entries)
        rows: list[dict[str, Any]] = []
        for r in range(plan.rounds):
            # Alternating order: a machine that speeds up or slows down during the run
            # favours no system in the medians.
            for name in plan.systems if r % 2 == 0 else plan.systems[::-1]:
                console.rule(name if plan.rounds == 1 else f"{name}, round {r + 1}")
                got = await run_system(SYSTEMS[name], ctx, plan, items)
                if plan.rounds > 1:
                    for row in got:
                        row["round"] = r + 1
                rows.extend(got)
        add_ratios(rows)
        console.print(results_table(rows))
        if any(row["scenario"] == "flash" for row in rows):
            console.print(flash_table(rows))
        if overhead := tracing_overhead(rows):
            console.print(overhead_table(overhead))
        for row in rows:
            if "failed" in row:
                reason = row["failed"][:300]
                console.print(f"[red]failed[/] {row['system']} {row['scenario']}: {reason}")
        document = bench_document(plan, ctx, rows)
        if plan.rounds > 1:
            console.print(rounds_table(document["summary"]))
    finally:
        if own is not None:
            own.stop()
            shutil.rmtree(own_dir, ignore_errors=True)
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    plan.out.write_text(json.dumps(document, indent=2) + "\n")
    console.print(f"results written to {plan.out}")
    if args.json:
        print(json.dumps(document, indent=2))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 0 (failed rows are reported, not fatal)."""
    plan, args = parse_args(argv)
    run_async(run_bench(plan, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
