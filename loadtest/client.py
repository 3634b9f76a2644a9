"""The load generator: an asyncio HTTP/1.1 keep-alive client with latency histograms.

One `HttpSession` holds `connections` virtual users' keep-alive HTTP/1.1 connections to one
loopback server (`loadtest.http1`: a lean client, since the generator shares the cores with the
server it measures and its CPU per request would otherwise cap every system alike). A scenario opens
one or more `Phase`s on the session (setup, measured load, verification); each phase has its
own request budget, time limit and `Recorder`, so setup traffic never pollutes the measured
figures. A phase also records the client's CPU time and, given a probe, the server's, so a
run can tell when the generator rather than the server was the bottleneck.

Every request through a phase takes one unit from its `Budget` first; when the count or the
deadline is used up the call raises `BudgetExhausted`, which ends the virtual user that made
it. Loops are therefore bounded twice: by request count and by wall-clock time.

Units: latencies are recorded in microseconds into an HdrHistogram (1 us .. 60 s, 3
significant digits) and reported in milliseconds; durations are in seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from loadtest.http1 import Connection, HttpError

#: Highest latency the histogram can hold, in microseconds (60 s).
MAX_LATENCY_US = 60_000_000
#: Per-request timeout in seconds (connect, read, write and pool wait).
REQUEST_TIMEOUT_S = 30.0
#: Seconds between two progress refreshes.
PROGRESS_TICK_S = 0.25

STDERR = Console(stderr=True)
T = TypeVar("T")

#: A probe answering the server's CPU seconds so far (None when it cannot tell).
CpuProbe = Callable[[], "float | None"]


class BudgetExhausted(Exception):
    """Raised by `User.call` when the phase's request count or time limit is used up."""


@dataclass
class Budget:
    """A request budget: at most `max_requests` requests, none after `deadline`.

    `deadline` is a `time.monotonic()` instant in seconds; `start()` sets it from
    `duration_s` so a budget can be built before its phase starts.
    """

    max_requests: int
    duration_s: float
    issued: int = 0
    started_at: float = 0.0
    deadline: float = float("inf")

    def start(self) -> None:
        """Start the clock: the deadline is `duration_s` seconds from now."""
        self.started_at = time.monotonic()
        self.deadline = self.started_at + self.duration_s

    def take(self) -> None:
        """Take one request from the budget, or raise `BudgetExhausted`."""
        if self.issued >= self.max_requests or time.monotonic() >= self.deadline:
            raise BudgetExhausted
        self.issued += 1

    @property
    def exhausted(self) -> bool:
        """True once no further request may be issued."""
        return self.issued >= self.max_requests or time.monotonic() >= self.deadline


@dataclass
class Recorder:
    """Latencies (microseconds, HdrHistogram) and outcomes of the requests of one phase.

    `expected` lists the status codes that are a normal answer for this phase (for example
    409 for a refused flash-sale checkout); any other status, and any transport error
    (recorded by exception class name), counts as an error.
    """

    expected: frozenset[int] = frozenset({200, 201, 204})
    histogram: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, MAX_LATENCY_US, 3))
    statuses: Counter[str] = field(default_factory=Counter)
    first_at: float | None = None
    last_at: float | None = None

    def record(self, started: float, ended: float, outcome: int | str) -> None:
        """Record one request that ran from `started` to `ended` (perf_counter seconds).

        `outcome` is the HTTP status code, or the name of the transport exception.
        """
        latency_us = int((ended - started) * 1_000_000)
        self.histogram.record_value(min(max(latency_us, 1), MAX_LATENCY_US))
        self.statuses[str(outcome)] += 1
        self.first_at = started if self.first_at is None else min(self.first_at, started)
        self.last_at = ended if self.last_at is None else max(self.last_at, ended)

    @property
    def requests(self) -> int:
        """Requests recorded, answered or failed."""
        return self.histogram.get_total_count()

    @property
    def errors(self) -> dict[str, int]:
        """Count of each unexpected status code or transport error name."""
        return {
            key: n
            for key, n in sorted(self.statuses.items())
            if not (key.isdigit() and int(key) in self.expected)
        }

    @property
    def seconds(self) -> float:
        """Wall-clock seconds from the first request's start to the last one's end."""
        if self.first_at is None or self.last_at is None:
            return 0.0
        return self.last_at - self.first_at

    def percentile_ms(self, percentile: float) -> float | None:
        """The latency at `percentile` (0-100) in milliseconds, or None with no requests."""
        if self.requests == 0:
            return None
        return self.histogram.get_value_at_percentile(percentile) / 1000.0

    def summary(self) -> dict[str, Any]:
        """Requests, seconds, requests/s, p50/p99/p99.9 and max in ms, statuses, errors."""
        seconds = self.seconds
        return {
            "requests": self.requests,
            "seconds": round(seconds, 3),
            "requests_per_s": round(self.requests / seconds, 1) if seconds > 0 else None,
            "p50_ms": self.percentile_ms(50),
            "p99_ms": self.percentile_ms(99),
            "p999_ms": self.percentile_ms(99.9),
            "max_ms": self.percentile_ms(100),
            "statuses": dict(sorted(self.statuses.items())),
            "errors": self.errors,
            "error_count": sum(self.errors.values()),
        }


@dataclass
class Reply:
    """An answered request: its status code and decoded JSON body (None if not JSON)."""

    status: int
    body: Any
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return 200 <= self.status < 300


class User:
    """A virtual user: one keep-alive connection (its own client) inside a phase.

    In a paced phase (`Phase.interval_s` set) the user sends at most one request per interval
    on a fixed schedule, and each latency counts from the request's scheduled start, not from
    when it went out: a server that falls behind is charged the wait it caused (no
    "coordinated omission", as in wrk2).
    """

    def __init__(self, phase: Phase, connection: Connection, slot: float = 0.0) -> None:
        self.phase = phase
        self.connection = connection
        #: Where in each interval this user's requests fall (0..1): users spread evenly over
        #: it rather than all sending at once.
        self.slot = slot
        self.next_at: float | None = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply | None:
        """Send one request and record it; None on a transport error.

        `token` goes out as `Authorization: Bearer <token>`. Raises `BudgetExhausted` (before
        sending) when the phase's budget is used up.
        """
        self.phase.budget.take()
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        recorder = self.phase.recorder
        started = time.perf_counter()
        interval = self.phase.interval_s
        if interval is not None:
            if self.next_at is None:
                self.next_at = started + self.slot * interval  # users start together
            scheduled = self.next_at
            if scheduled > started:
                await asyncio.sleep(scheduled - started)
            started, self.next_at = scheduled, scheduled + interval
        try:
            response = await self.connection.request(method, path, json=json, headers=all_headers)
        except HttpError as exc:
            recorder.record(started, time.perf_counter(), type(exc.__cause__ or exc).__name__)
            return None
        recorder.record(started, time.perf_counter(), response.status)
        return Reply(response.status, response.json(), response.headers)


class Phase:
    """One bounded, recorded stretch of traffic over a shared `HttpSession`."""

    def __init__(self, session: HttpSession, name: str, budget: Budget, recorder: Recorder,
                 interval_s: float | None = None) -> None:
        self.session = session
        self.name = name
        self.budget = budget
        self.recorder = recorder
        #: Seconds between two requests of one virtual user when paced (None: at once).
        self.interval_s = interval_s
        self.client_cpu_s = 0.0
        self.server_cpu_s: float | None = None

    def user(self, index: int) -> User:
        """Virtual user `index` (its connection is the session's `index mod connections`)."""
        connections = self.session.connections
        return User(self, self.session.client(index), (index % connections) / connections)

    async def call(self, method: str, path: str, **kwargs: Any) -> Reply | None:
        """A request outside `run_users`/`run_pool` (admin calls), on the first connection."""
        return await self.user(0).call(method, path, **kwargs)

    async def run_users(self, users: int, user: Callable[[User, int], Awaitable[None]]) -> None:
        """Run `users` virtual users `user(vu, index)` concurrently until the budget ends."""
        await self._run([self._guarded(user, self.user(i), i) for i in range(users)])

    async def run_pool(
        self,
        jobs: Iterable[Any],
        job: Callable[[User, Any], Awaitable[None]],
        workers: int,
    ) -> None:
        """Run `job(vu, item)` for each item with `workers` virtual users, within budget."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for item in jobs:
            queue.put_nowait(item)

        async def worker(vu: User, _index: int) -> None:
            while not queue.empty() and not self.budget.exhausted:
                await job(vu, queue.get_nowait())

        vus = range(max(1, workers))
        await self._run([self._guarded(worker, self.user(i), i) for i in vus])

    @staticmethod
    async def _guarded(
        user: Callable[[User, int], Awaitable[None]], vu: User, index: int
    ) -> None:
        """Run one virtual user; running out of budget is its normal end."""
        try:
            await user(vu, index)
        except BudgetExhausted:
            return

    async def _run(self, coroutines: list[Awaitable[None]]) -> None:
        """Start the budget clock, run the coroutines under a progress display, meter CPU."""
        server_before = self.session.server_cpu()
        client_before = time.process_time()
        self.budget.start()
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[requests]} req, {task.fields[errors]} err"),
            TimeElapsedColumn(),
            console=STDERR,
            transient=True,
        ) as progress:
            task = progress.add_task(self.name, total=self.budget.duration_s, requests=0, errors=0)
            ticker = asyncio.create_task(self._tick(progress, task))
            try:
                await asyncio.gather(*coroutines)
            finally:
                ticker.cancel()
        self.client_cpu_s += time.process_time() - client_before
        server_after = self.session.server_cpu()
        if server_before is not None and server_after is not None:
            self.server_cpu_s = (self.server_cpu_s or 0.0) + server_after - server_before

    async def _tick(self, progress: Progress, task: Any) -> None:
        """Refresh the progress bar every PROGRESS_TICK_S seconds (time-based bar)."""
        while True:
            progress.update(
                task,
                completed=time.monotonic() - self.budget.started_at,
                requests=self.recorder.requests,
                errors=sum(self.recorder.errors.values()),
            )
            await asyncio.sleep(PROGRESS_TICK_S)

    def result(self) -> dict[str, Any]:
        """The recorded summary (see `Recorder.summary`) plus client and server CPU.

        `client_cpu_ms_per_request` and `server_cpu_ms_per_request` are CPU milliseconds spent
        per request by the generator process and by the server's process tree (None without
        a probe); on a small machine the side near 1 core per wall second is the bottleneck.
        """
        summary = self.recorder.summary()
        requests = max(1, summary["requests"])
        summary["client_cpu_ms_per_request"] = round(1000 * self.client_cpu_s / requests, 3)
        summary["server_cpu_ms_per_request"] = (
            None if self.server_cpu_s is None
            else round(1000 * self.server_cpu_s / requests, 3)
        )
        return summary


class HttpSession:
    """`connections` keep-alive HTTP/1.1 connections to `base_url` (`http://host:port`).

    `server_cpu`, if given, answers the server's CPU seconds so far; phases meter it.
    """

    def __init__(
        self, base_url: str, connections: int, server_cpu: CpuProbe | None = None
    ) -> None:
        self.base_url = base_url
        self.connections = max(1, connections)
        self._server_cpu = server_cpu
        url = urlsplit(base_url)
        self._address = (url.hostname or "127.0.0.1", url.port or 80)
        self._connections: dict[int, Connection] = {}

    async def __aenter__(self) -> HttpSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for connection in self._connections.values():
            await connection.close()
        self._connections.clear()

    def client(self, index: int) -> Connection:
        """The keep-alive connection of virtual user `index mod connections`."""
        slot = index % self.connections
        if slot not in self._connections:
            self._connections[slot] = Connection(*self._address, timeout_s=REQUEST_TIMEOUT_S)
        return self._connections[slot]

    def server_cpu(self) -> float | None:
        """The server's CPU seconds so far, or None without a probe."""
        return None if self._server_cpu is None else self._server_cpu()

    def phase(
        self,
        name: str,
        *,
        max_requests: int,
        duration_s: float,
        expected: Iterable[int] = (200, 201, 204),
        rate: float | None = None,
    ) -> Phase:
        """A new phase with its own budget and recorder; its clock starts when it runs.

        `rate` (requests/s over all `connections` virtual users) paces the phase: an offered
        load instead of as fast as the server answers (see `User`).
        """
        return Phase(
            self,
            name,
            Budget(max_requests=max_requests, duration_s=duration_s),
            Recorder(expected=frozenset(expected)),
            None if rate is None else self.connections / rate,
        )


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run a load-generating coroutine on uvloop when installed (about 15% less client CPU
    per request than the default loop), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)

