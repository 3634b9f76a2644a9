"""The churn's and the reads' measured phase sent by wrk, a load generator written in C.

The Python generator (`loadtest.client`) spends 0.07 to 0.12 ms of CPU per request on the
2-core machine it shares with the system under test, more than a third of a core at the
rates measured there; wrk, which the first measurements of issue 11 used, spends a fraction
of that, so more of the machine goes to the systems compared. ``--generator wrk`` of
`loadtest.bench` prepares the carts over HTTP as usual (`loadtest.scenarios`) and hands the
measured phase to ``wrk`` (Debian package ``wrk``; `available` says whether it is on the
``PATH``) with `wrk_churn.lua` beside this file: the same requests (add one unit of one of
the cart's items, or view the cart; `read_heavy` only views), the same connections, each
cart used by one request at a time, closed loop.

`run` answers the figures of a `loadtest.client.Phase` result, so rows compare alike:
requests, seconds, requests/s, p50/p99/p99.9/max latency in ms (wrk's, from each request's
send to its answer), statuses, errors, and CPU ms per request of the server's process tree
(the probe) and of wrk itself (its own resource usage, read when it exits).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.client import CpuProbe

#: The script wrk runs (arguments documented in it).
SCRIPT = Path(__file__).with_name("wrk_churn.lua")
#: Threads of wrk: one per core, as wrk advises.
THREADS = max(1, os.cpu_count() or 1)
#: Marks the JSON line the script's ``done`` prints.
MARK = "WRK_RESULT "


class WrkError(Exception):
    """wrk is missing, failed, or printed no result."""


def available() -> bool:
    """Whether a ``wrk`` executable is on the ``PATH``."""
    return shutil.which("wrk") is not None


def cart_lines(carts: Sequence[tuple[str, str, Sequence[tuple[str, str]]]]) -> str:
    """The script's data file: per cart ``(cart id, token, [(product id, variant id), ...])``
    one line of space-separated fields. Raises WrkError for a field with a space in it."""
    out = []
    for cart_id, token, items in carts:
        fields = [cart_id, token, *(f for item in items for f in item)]
        if any(not f or any(c.isspace() for c in f) for f in fields):
            raise WrkError(f"cart {cart_id!r}: ids and tokens must not be empty or hold spaces")
        out.append(" ".join(fields))
    return "\n".join(out) + "\n"


def parse(output: str) -> dict[str, Any]:
    """The result line of the script's ``done`` in wrk's output. Raises WrkError."""
    for line in output.splitlines():
        if line.startswith(MARK):
            return dict(json.loads(line[len(MARK):]))
    raise WrkError(f"wrk printed no result: {output[-500:]!r}")


async def run(base_url: str, carts: Sequence[tuple[str, str, Sequence[tuple[str, str]]]], *,
              add_share: float, connections: int, duration_s: float, seed: int = 1,
              server_cpu: CpuProbe | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
    """Drive ``base_url`` with wrk for ``duration_s`` seconds over ``connections`` keep-alive
    connections: per request one of ``carts`` in turn (module docstring), adding one unit of
    one of its items with probability ``add_share`` (0 to 1), else viewing it. Answers the
    phase's figures (module docstring) plus ``operations`` sent by kind. Raises WrkError."""
    if not available():
        raise WrkError("wrk is not installed (Debian: apt-get install wrk)")
    threads = max(1, min(THREADS, connections))
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        data = Path(tmp) / "carts.txt"
        data.write_text(cart_lines(carts))
        command = ["wrk", "-t", str(threads), "-c", str(connections), "-d",
                   f"{max(1, round(duration_s))}s", "--timeout", f"{max(1, round(timeout_s))}s",
                   "--latency", "-s", str(SCRIPT), base_url, "--", str(data), repr(add_share),
                   str(seed), str(threads)]
        server_before = server_cpu() if server_cpu is not None else None
        started = time.perf_counter()
        output, client_cpu_s, code = await asyncio.to_thread(_run_measured, command,
                                                              duration_s + 60)
        seconds = time.perf_counter() - started
        server_after = server_cpu() if server_cpu is not None else None
    if code != 0:
        raise WrkError(f"wrk exited {code}: {output[-500:]!r}")
    got = parse(output)
    requests = max(1, int(got["requests"]))
    wrk_seconds = got["duration_us"] / 1e6 or seconds
    transport = {name: int(got[key]) for name, key in (
        ("connect_error", "connect_errors"), ("read_error", "read_errors"),
        ("write_error", "write_errors"), ("timeout", "timeouts")) if got[key]}
    errors = ({"non_2xx_3xx": int(got["non_2xx_3xx"])} if got["non_2xx_3xx"] else {}) | transport
    server_s = None if server_before is None or server_after is None \
        else server_after - server_before
    return {
        "generator": "wrk",
        "requests": int(got["requests"]),
        "seconds": round(wrk_seconds, 3),
        "requests_per_s": round(got["requests"] / wrk_seconds, 1) if wrk_seconds else None,
        "p50_ms": got["p50_us"] / 1000, "p99_ms": got["p99_us"] / 1000,
        "p999_ms": got["p999_us"] / 1000, "max_ms": got["max_us"] / 1000,
        "statuses": {"2xx/3xx": int(got["requests"]) - int(got["non_2xx_3xx"])},
        "errors": errors, "error_count": sum(errors.values()),
        "client_cpu_ms_per_request": round(1000 * client_cpu_s / requests, 3),
        # wrk runs a second longer than its phase at most: the server's CPU over the
        # subprocess's whole life, against the requests wrk counted
        "server_cpu_ms_per_request": None if server_s is None
        else round(1000 * server_s / requests, 3),
        "operations": {"add": int(got["adds"]), "view": int(got["views"])},
    }


def _run_measured(command: list[str], timeout_s: float) -> tuple[str, float, int]:
    """Run ``command``; its output, its own CPU seconds (user + system, from ``wait4``) and
    its exit code (negative: killed by that signal, as when it outlived ``timeout_s``)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return output, usage.ru_utime + usage.ru_stime, proc.returncode
