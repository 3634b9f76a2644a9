"""``cart-engine loadtest URL``: scenarios against any deployment, judged by invariants.

Scenarios (each a measured phase of at most ``duration`` seconds):

- ``flash``: ``buyers`` guests each make a cart, add one unit of the sale variant and check
  out with ``tok_ok``; a clean answer is an order or a 409 ``out_of_stock``.
- ``churn``: guests build realistic carts (2 to 5 lines, 1 to 3 units each), change a
  quantity, remove a line and view the cart, then start another cart.
- ``read``: ``carts`` carts of 3 lines are prepared, then viewed at random.
- ``storm``: ``carts`` carts of 2 to 4 lines check out at once over a stock that cannot serve
  them all; a tenth of the buyers retry with the same Idempotency-Key (the same order must
  come back) and every buyer who paid tries again with a new key (a second order is a
  duplicate).

Non-destructive by default: products and variants are created under a run prefix through the
admin API and their stock is zeroed afterwards (``keep`` leaves it); or ``variants`` names
existing ones, whose stock at the start is the baseline (a flash sale or storm over them
sells real units: use a staging deployment).

The verdict: ``oversold`` (units sold beyond what was available, per variant), ``ledger
gap`` (on hand + sold changed, or units sold differ from the units of the paid orders the
clients were answered), ``duplicate orders`` (a cart with two orders, a retried key with
another order), ``lost acknowledged writes`` (a cart whose lines differ from what its
acknowledged writes made, an acknowledged order the server no longer knows or that is not
paid). Another client buying the given variants at the same time breaks the ledger checks:
run the stock-judging scenarios on variants of their own.

Pacing: without ``rate`` every connection sends as fast as it is answered (closed loop);
with ``rate`` (requests/s over all connections) requests are given start times on a fixed
schedule and each latency counts from its scheduled start, so a server that falls behind is
charged the queueing it caused (no coordinated omission, as in wrk2).

Latencies are recorded in microseconds (HdrHistogram, 1 us .. 60 s) and reported in ms.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from hdrh.histogram import HdrHistogram

from loadtest.http1 import Connection, HttpError

__all__ = ["SCENARIOS", "LoadConfig", "LoadTest", "run_loadtest", "verdict"]

SCENARIOS = ("flash", "churn", "read", "storm")
MAX_LATENCY_US = 60_000_000
REQUEST_TIMEOUT_S = 30.0
#: Unit price of the products a run creates (minor units of USD).
PRICE = 2599


class LoadTestError(Exception):
    """The run could not set itself up (unreachable, an admin call refused)."""


@dataclass
class LoadConfig:
    """What to run and how hard. Seconds for times; ``rate`` in requests/s (None: closed
    loop); ``variants`` existing variant ids to use instead of creating products."""

    url: str
    admin_token: str
    scenarios: tuple[str, ...] = ("flash", "churn", "read", "storm")
    duration: float = 20.0
    connections: int = 32
    rate: float | None = None
    units: int = 100
    buyers: int = 1000
    carts: int = 300
    variants: tuple[str, ...] = ()
    prefix: str = field(default_factory=lambda: "lt-" + uuid.uuid4().hex[:8])
    keep: bool = False
    max_error_rate: float = 0.01
    seed: int = 1


# --------------------------------------------------------------------------- transport


@dataclass(slots=True)
class Answer:
    status: int
    body: Any

    @property
    def code(self) -> str:
        """The API.md error code, else the status as text."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("code", self.status))
        return str(self.status)


class _Transport:
    """One keep-alive connection per worker: the lean HTTP/1.1 client for ``http://``
    (little CPU per request, so the generator caps nothing), httpx for ``https://``."""

    def __init__(self, url: str, workers: int) -> None:
        parts = urlsplit(url)
        self.base = url.rstrip("/")
        self.tls = parts.scheme == "https"
        self._lean: dict[int, Connection] = {}
        self._httpx: httpx.AsyncClient | None = None
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self.tls else 80)
        self._prefix = parts.path.rstrip("/")
        if self.tls:
            self._httpx = httpx.AsyncClient(base_url=self.base, timeout=REQUEST_TIMEOUT_S,
                                            limits=httpx.Limits(max_connections=workers))

    async def request(self, worker: int, method: str, path: str, json: Any,
                      headers: dict[str, str]) -> Answer:
        """Raises HttpError (or an httpx.TransportError) on a transport failure."""
        if self._httpx is not None:
            r = await self._httpx.request(method, path, json=json, headers=headers)
            try:
                body = r.json() if r.content else None
            except ValueError:
                body = None
            return Answer(r.status_code, body)
        conn = self._lean.get(worker)
        if conn is None:
            conn = self._lean[worker] = Connection(self._host, self._port, REQUEST_TIMEOUT_S)
        r2 = await conn.request(method, self._prefix + path, json=json, headers=headers)
        return Answer(r2.status, r2.json())

    async def close(self) -> None:
        for c in self._lean.values():
            await c.close()
        if self._httpx is not None:
            await self._httpx.aclose()


# --------------------------------------------------------------------------- recording


def _hist() -> HdrHistogram:
    return HdrHistogram(1, MAX_LATENCY_US, 3)


class Recorder:
    """Latency per route (``"scenario METHOD /template"``) and per second of the run.

    ``expected`` statuses of a call are a normal answer; anything else, and a transport
    failure (recorded by exception name), is an error.
    """

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.routes: dict[str, HdrHistogram] = {}
        self.statuses: dict[str, Counter[str]] = {}
        self.errors: dict[str, int] = {}
        #: second of the run -> [requests, errors, histogram] of measured requests
        self.seconds: dict[int, list[Any]] = {}
        #: (second of the run, scenario) when each measured phase started
        self.marks: list[tuple[float, str]] = []
        self.requests = 0
        self.error_count = 0

    def record(self, route: str, started: float, ended: float, outcome: str,
               error: bool, measured: bool = True) -> None:
        """One request; only ``measured`` ones (the scenarios' own) go on the timeline."""
        us = min(max(int((ended - started) * 1e6), 1), MAX_LATENCY_US)
        h = self.routes.get(route)
        if h is None:
            h = self.routes[route] = _hist()
            self.statuses[route] = Counter()
        h.record_value(us)
        self.statuses[route][outcome] += 1
        if not measured:
            return
        sec = int(ended - self.t0)
        slot = self.seconds.get(sec)
        if slot is None:
            slot = self.seconds[sec] = [0, 0, _hist()]
        slot[0] += 1
        slot[2].record_value(us)
        self.requests += 1
        if error:
            slot[1] += 1
            self.error_count += 1
            self.errors[route] = self.errors.get(route, 0) + 1

    def route_table(self) -> list[dict[str, Any]]:
        out = []
        for route, h in sorted(self.routes.items()):
            n = h.get_total_count()
            out.append({"route": route, "requests": n, "errors": self.errors.get(route, 0),
                        "statuses": dict(sorted(self.statuses[route].items())),
                        **{k: h.get_value_at_percentile(p) / 1000.0 for k, p in
                           (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99),
                            ("p999_ms", 99.9))},
                        "max_ms": h.get_max_value() / 1000.0})
        return out

    def timeline(self) -> list[dict[str, Any]]:
        return [{"second": s, "requests": v[0], "errors": v[1],
                 "p50_ms": v[2].get_value_at_percentile(50) / 1000.0,
                 "p99_ms": v[2].get_value_at_percentile(99) / 1000.0}
                for s, v in sorted(self.seconds.items())]


class _Pacer:
    """Scheduled start times: ``rate`` per second over every worker, or now (closed loop)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = None if not rate else 1.0 / rate
        self.next: float | None = None

    async def slot(self) -> float:
        now = time.perf_counter()
        if self.interval is None:
            return now
        if self.next is None:
            self.next = now
        at, self.next = self.next, self.next + self.interval
        if at > now:
            await asyncio.sleep(at - now)
        return at


class _PhaseOver(Exception):
    """The phase's time is up: the worker that raised it stops."""


# --------------------------------------------------------------------------- the run


@dataclass
class _Cart:
    cart_id: str
    token: str
    lines: dict[str, tuple[str, int]] = field(default_factory=dict)  # line_id -> (vid, qty)


class LoadTest:
    """One run: set-up, scenarios, verification and clean-up (see the module docstring)."""

    def __init__(self, cfg: LoadConfig,
                 on_progress: Callable[[LoadTest], None] | None = None) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.http = _Transport(cfg.url, cfg.connections + 1)
        self.rec = Recorder()
        self.pacer = _Pacer(cfg.rate)
        self.on_progress = on_progress
        self.phase = "setup"
        self.deadline = float("inf")
        self.created: list[str] = []
        self.items: dict[str, str] = {}  # variant_id -> product_id
        self.baseline: dict[str, dict[str, int]] = {}
        self.paid_units: Counter[str] = Counter()
        self.orders: dict[str, tuple[str, str]] = {}  # order_id -> (cart_id, token)
        self.findings: dict[str, list[str]] = {"oversold": [], "ledger gap": [],
                                               "duplicate orders": [],
                                               "lost acknowledged writes": []}
        self.figures: dict[str, dict[str, Any]] = {}
        self.checks: Counter[str] = Counter()
        self.cleanup: list[str] = []

    # -- requests --------------------------------------------------------------------------
    async def call(self, worker: int, route: str, method: str, path: str, *,
                   json: Any = None, token: str | None = None,
                   headers: dict[str, str] | None = None,
                   expect: tuple[int, ...] = (200, 201), measured: bool = True
                   ) -> Answer | None:
        """One request, recorded under ``phase route``; None on a transport failure.

        Raises _PhaseOver (before sending) once the phase's time is up."""
        if measured and time.perf_counter() >= self.deadline:
            raise _PhaseOver
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        started = await self.pacer.slot() if measured else time.perf_counter()
        try:
            ans = await self.http.request(worker, method, path, json, hdrs)
        except (HttpError, httpx.TransportError) as e:
            self.rec.record(f"{self.phase} {method} {route}", started, time.perf_counter(),
                            type(e.__cause__ or e).__name__, True, measured)
            return None
        ok = ans.status in expect
        self.rec.record(f"{self.phase} {method} {route}", started, time.perf_counter(),
                        str(ans.status) if ok else f"{ans.status} {ans.code}", not ok,
                        measured)
        return ans

    async def admin(self, method: str, path: str, body: Any) -> Any:
        route = "/v1/admin/" + path.split("/v1/admin/")[1].split("/")[0] + "/{id}"
        ans = await self.call(0, route, method, path,
                              json=body, token=self.cfg.admin_token, measured=False)
        if ans is None or ans.status >= 300:
            raise LoadTestError(f"{method} {path}: "
                                f"{'no answer' if ans is None else (ans.status, ans.body)}")
        return ans.body

    async def stock(self, vid: str) -> dict[str, int]:
        body = await self.admin("POST", f"/v1/admin/stock/{vid}", {"delta": 0})
        return {k: int(body.get(k, 0)) for k in ("on_hand", "reserved", "available", "sold")}

    async def _workers(self, n: int, work: Callable[[int], Awaitable[None]]) -> None:
        async def guarded(i: int) -> None:
            try:
                await work(i)
            except _PhaseOver:
                return

        ticker = asyncio.create_task(self._tick())
        try:
            await asyncio.gather(*(guarded(i + 1) for i in range(n)))
        finally:
            ticker.cancel()

    async def _each(self, items: list[Any], job: Callable[[int, Any], Awaitable[None]]) -> None:
        """Run ``job(worker, item)`` for every item over the connections, one request at a
        time on each (set-up and verification traffic: not paced, not time-limited)."""
        todo = list(reversed(items))

        async def worker(w: int) -> None:
            while todo:
                await job(w, todo.pop())

        await asyncio.gather(*(worker(i + 1) for i in range(self.cfg.connections)))

    async def _tick(self) -> None:
        while self.on_progress is not None:
            self.on_progress(self)
            await asyncio.sleep(0.25)

    # -- set-up and clean-up ---------------------------------------------------------------
    async def _product(self, name: str, variants: int, stock: int) -> list[str]:
        pid = f"{self.cfg.prefix}-{name}"
        vids = [f"{pid}-v{i}" for i in range(variants)]
        await self.admin("PUT", f"/v1/admin/products/{pid}", {
            "name": f"Load test {name}", "category": "loadtest",
            "description": f"created by cart-engine loadtest run {self.cfg.prefix}",
            "price": {"amount": PRICE, "currency": "USD"},
            "variants": [{"variant_id": v, "sku": v.upper(), "stock": stock,
                          "attributes": {"n": str(i)}} for i, v in enumerate(vids)]})
        for v in vids:
            self.items[v] = pid
        self.created += vids
        return vids

    async def _given(self) -> list[str]:
        """The given variants with their products (from the catalog listing)."""
        want = set(self.cfg.variants)
        cursor = None
        for _ in range(1000):
            path = "/v1/products?limit=50" + (f"&cursor={cursor}" if cursor else "")
            ans = await self.call(0, "/v1/products", "GET", path, measured=False)
            if ans is None or ans.status != 200:
                raise LoadTestError(f"GET {path}: {ans.status if ans else 'no answer'}")
            for p in ans.body.get("items", []):
                for v in p.get("variants", []):
                    if v["variant_id"] in want:
                        self.items[v["variant_id"]] = p["product_id"]
            cursor = ans.body.get("next_cursor")
            if not cursor or want <= set(self.items):
                break
        if missing := want - set(self.items):
            raise LoadTestError(f"variants not in the catalog: {sorted(missing)}")
        return list(self.cfg.variants)

    async def _baseline(self, vids: list[str]) -> None:
        for v in vids:
            if v not in self.baseline:
                self.baseline[v] = await self.stock(v)

    async def _zero(self) -> None:
        if self.cfg.keep:
            self.cleanup.append(f"kept the stock of {len(self.created)} created variant(s)")
            return
        for v in self.created:
            st = await self.stock(v)
            # on hand cannot go below what open reservations hold; those lapse by themselves
            await self.admin("POST", f"/v1/admin/stock/{v}", {"set": st["reserved"]})
        if self.created:
            self.cleanup.append(f"zeroed the stock of {len(self.created)} variant(s) under "
                                f"{self.cfg.prefix} (the API has no product delete)")

    # -- shared steps ----------------------------------------------------------------------
    async def _guest(self, w: int) -> _Cart | None:
        ans = await self.call(w, "/v1/carts", "POST", "/v1/carts",
                              headers={"Idempotency-Key": str(uuid.uuid4())}, expect=(201,))
        if ans is None or ans.status != 201:
            return None
        return _Cart(ans.body["cart_id"], ans.body["token"])

    async def _add(self, w: int, cart: _Cart, vid: str, qty: int,
                   expect: tuple[int, ...] = (201, 200)) -> Answer | None:
        ans = await self.call(w, "/v1/carts/{id}/items", "POST",
                              f"/v1/carts/{cart.cart_id}/items", token=cart.token,
                              json={"product_id": self.items[vid], "variant_id": vid,
                                    "quantity": qty}, expect=expect)
        if ans is not None and ans.status in (200, 201):
            cart.lines = {ln["line_id"]: (ln["variant_id"], ln["quantity"])
                          for ln in ans.body["lines"]}
        return ans

    async def _checkout(self, w: int, cart: _Cart, key: str,
                        expect: tuple[int, ...] = (201, 409)) -> Answer | None:
        return await self.call(w, "/v1/carts/{id}/checkout", "POST",
                               f"/v1/carts/{cart.cart_id}/checkout", token=cart.token,
                               headers={"Idempotency-Key": key},
                               json={"payment": {"token": "tok_ok"}}, expect=expect)

    def _paid(self, cart: _Cart, order: dict[str, Any]) -> None:
        oid = order["order_id"]
        if oid in self.orders:
            return
        self.orders[oid] = (cart.cart_id, cart.token)
        for ln in order.get("lines", []):
            self.paid_units[ln["variant_id"]] += ln["quantity"]

    async def _verify_cart(self, w: int, cart: _Cart) -> None:
        ans = await self.call(w, "/v1/carts/{id}", "GET", f"/v1/carts/{cart.cart_id}",
                              token=cart.token, measured=False)
        self.checks["carts verified"] += 1
        if ans is None or ans.status != 200:
            self.findings["lost acknowledged writes"].append(
                f"cart {cart.cart_id}: GET answered {ans.status if ans else 'nothing'}")
            return
        seen = {ln["line_id"]: (ln["variant_id"], ln["quantity"]) for ln in ans.body["lines"]}
        if seen != cart.lines:
            self.findings["lost acknowledged writes"].append(
                f"cart {cart.cart_id}: lines {seen} after acknowledged writes made "
                f"{cart.lines}")

    async def _verify_orders(self) -> None:
        async def one(w: int, order: tuple[str, str]) -> None:
            oid, token = order
            ans = await self.call(w, "/v1/orders/{id}", "GET", f"/v1/orders/{oid}",
                                  token=token, measured=False)
            self.checks["orders verified"] += 1
            if ans is None or ans.status != 200 or ans.body.get("status") not in (
                    "paid", "shipped"):
                self.findings["lost acknowledged writes"].append(
                    f"order {oid}: {ans.status if ans else 'no answer'} "
                    f"{(ans.body or {}).get('status') if ans else ''}")

        await self._each([(oid, tok) for oid, (_, tok) in self.orders.items()], one)

    async def _judge_stock(self, vids: list[str]) -> None:
        for v in vids:
            before, after = self.baseline[v], await self.stock(v)
            sold = after["sold"] - before["sold"]
            self.checks["variants judged"] += 1
            if sold > before["available"] or self.paid_units[v] > before["available"]:
                self.findings["oversold"].append(
                    f"{v}: {before['available']} available, sold {sold}, paid orders for "
                    f"{self.paid_units[v]}")
            if after["on_hand"] + after["sold"] != before["on_hand"] + before["sold"]:
                self.findings["ledger gap"].append(
                    f"{v}: on hand + sold went from {before['on_hand'] + before['sold']} "
                    f"to {after['on_hand'] + after['sold']}")
            if sold != self.paid_units[v]:
                self.findings["ledger gap"].append(
                    f"{v}: the ledger sold {sold}, paid orders answered hold "
                    f"{self.paid_units[v]}")

    def _start(self, name: str) -> None:
        self.phase = name
        now = time.perf_counter()
        self.deadline = now + self.cfg.duration
        self.pacer = _Pacer(self.cfg.rate)
        self.rec.marks.append((round(now - self.rec.t0, 3), name))

    def _stop(self) -> None:
        self.deadline = float("inf")
        self.phase = f"{self.phase}-verify"

    # -- scenarios -------------------------------------------------------------------------
    async def flash(self, vids: list[str]) -> None:
        vid = vids[0]
        queue = list(range(self.cfg.buyers))
        out: Counter[str] = Counter()
        self._start("flash")

        async def buyer(w: int) -> None:
            while queue:
                queue.pop()
                cart = await self._guest(w)
                if cart is None:
                    out["no cart"] += 1
                    continue
                ans = await self._add(w, cart, vid, 1, expect=(201, 200, 409))
                if ans is None or ans.status not in (200, 201):
                    out["refused at add" if ans is not None and ans.code == "out_of_stock"
                        else "failed add"] += 1
                    continue
                ans = await self._checkout(w, cart, str(uuid.uuid4()))
                if ans is not None and ans.status == 201:
                    out["paid"] += 1
                    self._paid(cart, ans.body)
                elif ans is not None and ans.code == "out_of_stock":
                    out["refused"] += 1
                else:
                    out[f"checkout {ans.code if ans else 'no answer'}"] += 1

        await self._workers(self.cfg.connections, buyer)
        self._stop()
        out["not served (time up)"] = len(queue)
        self.figures["flash"] = {"variant": vid, "buyers": self.cfg.buyers, **out}

    async def churn(self, vids: list[str]) -> None:
        carts: list[_Cart] = []
        done: Counter[str] = Counter()
        self._start("churn")

        async def shopper(w: int) -> None:
            rng = random.Random(self.cfg.seed * 1000 + w)
            while True:
                cart = await self._guest(w)
                if cart is None:
                    continue
                carts.append(cart)
                for vid in rng.sample(vids, min(len(vids), rng.randint(2, 5))):
                    await self._add(w, cart, vid, rng.randint(1, 3))
                if cart.lines:
                    lid = rng.choice(sorted(cart.lines))
                    ans = await self.call(w, "/v1/carts/{id}/items/{line}", "PATCH",
                                          f"/v1/carts/{cart.cart_id}/items/{lid}",
                                          token=cart.token, json={"quantity": rng.randint(1, 5)})
                    if ans is not None and ans.status == 200:
                        cart.lines = {ln["line_id"]: (ln["variant_id"], ln["quantity"])
                                      for ln in ans.body["lines"]}
                if len(cart.lines) > 1:
                    lid = rng.choice(sorted(cart.lines))
                    ans = await self.call(w, "/v1/carts/{id}/items/{line}", "DELETE",
                                          f"/v1/carts/{cart.cart_id}/items/{lid}",
                                          token=cart.token, expect=(200, 204))
                    if ans is not None and ans.status in (200, 204):
                        if isinstance(ans.body, dict) and "lines" in ans.body:
                            cart.lines = {ln["line_id"]: (ln["variant_id"], ln["quantity"])
                                          for ln in ans.body["lines"]}
                        else:
                            cart.lines.pop(lid, None)
                await self.call(w, "/v1/carts/{id}", "GET", f"/v1/carts/{cart.cart_id}",
                                token=cart.token)
                done["carts"] += 1

        await self._workers(self.cfg.connections, shopper)
        self._stop()
        await self._each(carts, self._verify_cart)
        self.figures["churn"] = {"carts": len(carts), "completed": done["carts"]}

    async def read(self, vids: list[str]) -> None:
        carts: list[_Cart] = []
        self.phase = "read-setup"

        async def prepare(w: int, i: int) -> None:
            cart = await self._guest(w)
            if cart is None:
                return
            for j in range(3):
                await self._add(w, cart, vids[(i + j) % len(vids)], 1 + j)
            carts.append(cart)

        await self._each(list(range(self.cfg.carts)), prepare)
        if not carts:
            raise LoadTestError("read: no cart could be prepared")
        mismatched = 0
        self._start("read")

        async def reader(w: int) -> None:
            nonlocal mismatched
            rng = random.Random(self.cfg.seed * 2000 + w)
            while True:
                cart = rng.choice(carts)
                ans = await self.call(w, "/v1/carts/{id}", "GET", f"/v1/carts/{cart.cart_id}",
                                      token=cart.token)
                if ans is not None and ans.status == 200:
                    seen = {ln["line_id"]: (ln["variant_id"], ln["quantity"])
                            for ln in ans.body["lines"]}
                    if seen != cart.lines:
                        mismatched += 1
                        self.findings["lost acknowledged writes"].append(
                            f"cart {cart.cart_id} read {seen}, expected {cart.lines}")

        await self._workers(self.cfg.connections, reader)
        self._stop()
        self.figures["read"] = {"carts": len(carts), "mismatched_reads": mismatched}

    async def storm(self, vids: list[str]) -> None:
        carts: list[_Cart] = []
        self.phase = "storm-setup"
        rng = random.Random(self.cfg.seed * 3000)
        plans = [rng.sample(vids, min(len(vids), rng.randint(2, 4)))
                 for _ in range(self.cfg.carts)]

        async def prepare(w: int, plan: list[str]) -> None:
            cart = await self._guest(w)
            if cart is None:
                return
            for vid in plan:
                await self._add(w, cart, vid, 1)
            if cart.lines:
                carts.append(cart)

        await self._each(plans, prepare)
        queue = list(carts)
        out: Counter[str] = Counter()
        self._start("storm")

        async def buyer(w: int) -> None:
            while queue:
                cart = queue.pop()
                key = str(uuid.uuid4())
                ans = await self._checkout(w, cart, key)
                if ans is None or ans.status != 201:
                    out["refused" if ans is not None and ans.code == "out_of_stock"
                        else f"checkout {ans.code if ans else 'no answer'}"] += 1
                    continue
                out["paid"] += 1
                oid = ans.body["order_id"]
                self._paid(cart, ans.body)
                if rng.random() < 0.1:  # a client retrying after a lost answer
                    again = await self._checkout(w, cart, key, expect=(200, 201))
                    out["retried"] += 1
                    if again is not None and again.status in (200, 201) and \
                            again.body.get("order_id") != oid:
                        self.findings["duplicate orders"].append(
                            f"cart {cart.cart_id}: key {key} answered {oid} then "
                            f"{again.body.get('order_id')}")
                second = await self._checkout(w, cart, str(uuid.uuid4()), expect=(409,))
                out["second key"] += 1
                if second is not None and second.status in (200, 201):
                    self.findings["duplicate orders"].append(
                        f"cart {cart.cart_id}: a second key made order "
                        f"{second.body.get('order_id')} besides {oid}")
                    self._paid(cart, second.body)

        await self._workers(self.cfg.connections, buyer)
        self._stop()
        out["not served (time up)"] = len(queue)
        self.figures["storm"] = {"carts": len(carts), **out}

    # -- the whole run ---------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        wall0 = time.perf_counter()
        try:
            ans = await self.call(0, "/healthz", "GET", "/healthz", measured=False)
            if ans is None or ans.status != 200:
                raise LoadTestError(f"{cfg.url}/healthz: "
                                    f"{ans.status if ans else 'no answer'}")
            given = await self._given() if cfg.variants else None
            judged: list[str] = []
            try:
                for name in cfg.scenarios:
                    self.phase = f"{name}-setup"
                    if name == "flash":
                        vids = given[:1] if given else await self._product("flash", 1,
                                                                           cfg.units)
                        await self._baseline(vids)
                        judged += vids
                        await self.flash(vids)
                    elif name == "churn":
                        await self.churn(given or await self._product("churn", 12, 10**6))
                    elif name == "read":
                        await self.read(given or await self._product("read", 6, 10**6))
                    elif name == "storm":
                        # stock for about half the demand: a real storm leaves buyers out
                        vids = given or await self._product("storm", 6,
                                                            max(1, cfg.carts * 3 // 12))
                        await self._baseline(vids)
                        judged += [v for v in vids if v not in judged]
                        await self.storm(vids)
                self.phase = "verify"
                await self._verify_orders()
                await self._judge_stock(judged)
            finally:
                self.phase = "cleanup"
                await self._zero()
        finally:
            await self.http.close()
        return self.result(time.perf_counter() - wall0)

    def result(self, wall: float) -> dict[str, Any]:
        routes = self.rec.route_table()
        measured = [r for r in routes if r["route"].split(" ")[0] in SCENARIOS]
        requests = sum(r["requests"] for r in measured)
        errors = sum(r["errors"] for r in measured)
        out = {"url": self.cfg.url, "prefix": self.cfg.prefix,
               "config": {k: v for k, v in vars(self.cfg).items() if k != "admin_token"},
               "seconds": round(wall, 3), "requests": requests, "errors": errors,
               "error_rate": round(errors / requests, 5) if requests else 0.0,
               "routes": routes, "timeline": self.rec.timeline(),
               "phases": [{"at": at, "scenario": n} for at, n in self.rec.marks],
               "figures": self.figures,
               "checks": dict(self.checks), "findings": self.findings,
               "cleanup": self.cleanup}
        out["verdict"] = verdict(out, self.cfg.max_error_rate)
        return out


def verdict(result: dict[str, Any], max_error_rate: float) -> dict[str, Any]:
    """``{"passed": bool, "failures": [...]}``: every invariant finding fails the run, and
    so does an error rate (unexpected statuses and transport errors of the measured
    requests) above ``max_error_rate``."""
    failures = [f"{name}: {len(found)} ({found[0]}{' ...' if len(found) > 1 else ''})"
                for name, found in result["findings"].items() if found]
    if result["error_rate"] > max_error_rate:
        failures.append(f"error rate {result['error_rate']:.2%} over "
                        f"{max_error_rate:.2%} ({result['errors']} of {result['requests']})")
    return {"passed": not failures, "failures": failures}


async def run_loadtest(cfg: LoadConfig,
                       on_progress: Callable[[LoadTest], None] | None = None
                       ) -> dict[str, Any]:
    """Run ``cfg``; the result dict (``verdict``, ``routes``, ``timeline``, ``figures``).

    Raises LoadTestError when the target cannot be set up.
    """
    for name in cfg.scenarios:
        if name not in SCENARIOS:
            raise LoadTestError(f"unknown scenario {name!r}: one of {', '.join(SCENARIOS)}")
    return await LoadTest(cfg, on_progress).run()
