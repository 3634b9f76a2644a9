"""Prometheus metrics (prometheus-client) and the ASGI middleware that records them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from actors import business

__all__ = ["EngineCollector", "Metrics", "MetricsMiddleware", "CONTENT_TYPE_LATEST"]


class Metrics:
    """One registry per app, so several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cart_engine_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("cart_engine_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
                                          2.5, 5))

        # Business figures seen at the gateway (per request answered); the engine-side ones
        # (paid orders, revenue, reservations) come from `EngineCollector`.
        self.carts_created = Counter("cart_engine_carts_created",
                                     "carts created (POST /v1/carts answered 201)",
                                     registry=self.registry)
        self.checkouts = Counter("cart_engine_checkouts",
                                 "checkout requests by outcome: paid, or the error code",
                                 ["outcome"], registry=self.registry)
        self.stock_refused = Counter("cart_engine_stock_refused",
                                     "requests refused for want of stock (409 out_of_stock)",
                                     ["route"], registry=self.registry)

        self.engine = EngineCollector()
        self.registry.register(self.engine)
        #: (method, route, status) -> its request counter and latency histogram: the label
        #: sets a process sees are few (routes x methods x statuses), and ``labels()`` on
        #: every request costs a lock and a lookup.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def answered(self, scope: dict[str, Any], status: int, start: float) -> None:
        """Count an HTTP request answered ``status`` and time it from ``start`` (its
        `time.perf_counter`), by method and route template (``unmatched`` without a route);
        a 201 of checkout or cart creation counts as a paid checkout or a cart created."""
        path = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        children = self._children.get((method, path, status))
        if children is None:
            children = self._children[method, path, status] = (
                self.requests.labels(method, path, str(status)),
                self.latency.labels(method, path))
        children[0].inc()
        if status == 201:
            if path == _CHECKOUT:
                self.checkouts.labels("paid").inc()
            elif path == "/v1/carts":
                self.carts_created.inc()
        children[1].observe(time.perf_counter() - start)

    def refused(self, scope: dict[str, Any], body: bytes) -> None:
        """Count a refusal (status 400 and up) of a cart or checkout request by the error
        code of its API.md error ``body``: checkouts by outcome, stock refusals by route."""
        path = getattr(scope.get("route"), "path", None)
        if path in _STOCK_ROUTES:
            code = _error_code(body)
            if path == _CHECKOUT:
                self.checkouts.labels(code).inc()
            if code == "out_of_stock":
                self.stock_refused.labels(path).inc()

    async def refresh(self, placement: Any) -> None:
        """Read the engine's figures (hosts, routers) for the next `render`."""
        await self.engine.refresh(placement)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class EngineCollector:
    """The engine's own figures on ``/metrics``, as of the last `refresh`.

    Business: orders paid and revenue (minor units) by currency, promotion uses, reservations
    that lapsed and their units (`actors.business`, summed over the processes running
    turns); open reservations and reserved units per host.

    Per host (label ``host``): resident actors, turns, activations, passivations, group-commit
    flushes and the writes they carried (writes / flushes = the group-commit batch), and the
    cart requests its ingress forwarded to their owner or ran for another ingress. Per
    router (label ``router``: ``gateway``, or ``host-N`` for a Ray host's messages to the
    others): batches and messages sent (messages / batches = the micro-batch), messages
    refused as overloaded (503), failed batches (host unreachable), messages re-sent after a
    bounce, and per destination host (label ``to_host``) the messages waiting and the batches
    in flight. The directory: live hosts, partitions per host, unowned partitions, hand-offs
    under way, re-homings and hand-offs so far.
    """

    def __init__(self) -> None:
        self.hosts: list[dict[str, Any]] = []
        self.routers: dict[str, dict[str, Any]] = {}
        self.cluster: dict[str, Any] = {}
        #: business counters of each process running turns, and open reservations per host
        self.business: list[dict[str, Any]] = []
        self.reservations: dict[str, dict[str, int]] = {}

    async def refresh(self, placement: Any) -> None:
        self.hosts = list(await placement.stats())
        self.cluster = await placement.cluster()
        remote = [h for h in self.hosts if "business" in h]
        if remote:  # Ray hosts: each process counts its own turns
            self.business = [h["business"] for h in remote]
            self.reservations = {str(h["host"]): h["business"] for h in remote}
        else:  # the hosts run in this process
            self.business = [business.snapshot()]
            self.reservations = {str(st["host"]): business.host_figures(h) for st, h in
                                 zip(self.hosts, getattr(placement, "hosts", []), strict=False)}
        routers = {f"host-{h['host']}": h["router"] for h in self.hosts if "router" in h}
        router = getattr(placement, "router", None)
        if router is not None:
            routers["gateway"] = router.stats()
        self.routers = routers

    def describe(self) -> list[Any]:
        return []  # the families depend on the engine's shape; nothing to check at register

    def collect(self) -> Iterator[Any]:
        host_figures = (
            ("actors", "cart_engine_host_actors", "actors resident in memory", False),
            ("turns", "cart_engine_host_turns", "actor turns run", True),
            ("activations", "cart_engine_host_activations", "actor activations", True),
            ("passivations", "cart_engine_host_passivations", "actor passivations", True),
            ("flushes", "cart_engine_host_commit_flushes", "group-commit pipelines sent", True),
            ("writes", "cart_engine_host_commit_writes", "actor writes committed", True))
        for key, name, doc, counter in host_figures:
            family = (CounterMetricFamily if counter else GaugeMetricFamily)(
                name, doc, labels=["host"])
            for h in self.hosts:
                family.add_metric([str(h["host"])], h.get(key, 0))
            yield family
        forwarded = CounterMetricFamily(
            "cart_engine_ingress_forwarded_requests",
            "cart requests by what a host's ingress did with them: forwarded to the cart's "
            "owner, ran_for_others (forwarded here), fell_back (ran here: owner unreachable); "
            "connections handed_off to the owner on this machine, handed_in from another "
            "host (handed_back: to a parked copy), handoffs_refused (malformed), "
            "handoffs_bounced (sent back by key: the other host had no copy left)",
            labels=["host", "outcome"])
        for h in self.hosts:
            for outcome, n in (h.get("forwarding") or {}).items():
                forwarded.add_metric([str(h["host"]), outcome], n)
        yield forwarded
        router_counters = (
            ("batches", "cart_engine_router_batches", "message batches sent"),
            ("messages", "cart_engine_router_messages", "messages sent in batches"),
            ("overloaded", "cart_engine_router_overloaded", "messages refused: queue full"),
            ("failed_batches", "cart_engine_router_failed_batches",
             "batches that failed: host unreachable"))
        for key, name, doc in router_counters:
            counter = CounterMetricFamily(name, doc, labels=["router"])
            for label, r in self.routers.items():
                counter.add_metric([label], r[key])
            yield counter
        yield from self._business()
        for key, name, doc in (("queued", "cart_engine_router_queued", "messages waiting"),
                               ("in_flight", "cart_engine_router_in_flight", "batches in flight")):
            gauge = GaugeMetricFamily(name, doc, labels=["router", "to_host"])
            for label, r in self.routers.items():
                for dest, value in r[key].items():
                    gauge.add_metric([label, dest], value)
            yield gauge
        resent = CounterMetricFamily("cart_engine_router_resent",
                                     "messages sent again after a bounce (directory moved, "
                                     "host unreachable)", labels=["router"])
        for label, r in self.routers.items():
            resent.add_metric([label], r.get("resent", 0))
        yield resent
        yield from self._directory()

    def _directory(self) -> Iterator[Any]:
        c = self.cluster
        if not c:
            return
        hosts = GaugeMetricFamily("cart_engine_directory_hosts", "live hosts in the directory")
        hosts.add_metric([], len(c["hosts"]))
        yield hosts
        parts = GaugeMetricFamily("cart_engine_directory_partitions",
                                  "partitions owned per host", labels=["host"])
        for h, row in c["hosts"].items():
            parts.add_metric([h], row["partitions"])
        yield parts
        for key, doc in (("unowned", "partitions without a live owner"),
                         ("moving", "hand-offs under way")):
            g = GaugeMetricFamily(f"cart_engine_directory_{key}", doc)
            g.add_metric([], len(c[key]) if isinstance(c[key], list) else c[key])
            yield g
        for key, doc in (("rehomed", "partitions re-homed after their owner's lease lapsed"),
                         ("handoffs", "partitions handed off between live hosts")):
            counter = CounterMetricFamily(f"cart_engine_directory_{key}", doc)
            counter.add_metric([], c[key])
            yield counter


    def _business(self) -> Iterator[Any]:
        paid = CounterMetricFamily("cart_engine_orders_paid", "orders paid, by currency",
                                   labels=["currency"])
        revenue = CounterMetricFamily("cart_engine_revenue_minor",
                                      "order totals paid, minor units (ISO 4217) by currency",
                                      labels=["currency"])
        promos = CounterMetricFamily("cart_engine_promotion_uses",
                                     "promotions applied to paid orders", labels=["promotion"])
        for family, key in ((paid, "orders_paid"), (revenue, "revenue_minor"),
                            (promos, "promotion_uses")):
            totals: dict[str, int] = {}
            for b in self.business:
                for label, n in b.get(key, {}).items():
                    totals[label] = totals.get(label, 0) + n
            for label, n in sorted(totals.items()):
                family.add_metric([label], n)
            yield family
        for key, name, doc in (
                ("reservations_expired", "cart_engine_reservations_expired",
                 "stock reservations that lapsed (holds on add, unfinished checkouts)"),
                ("reservation_units_expired", "cart_engine_reservation_units_expired",
                 "units given back by reservations that lapsed")):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], sum(b.get(key, 0) for b in self.business))
            yield family
        for key, name, doc in (
                ("reservations_open", "cart_engine_reservations_open",
                 "open stock reservations (holds and checkout reservations), resident"),
                ("reserved_units", "cart_engine_reserved_units",
                 "units set aside by open reservations, resident")):
            gauge = GaugeMetricFamily(name, doc, labels=["host"])
            for host, figures in sorted(self.reservations.items()):
                gauge.add_metric([host], figures.get(key, 0))
            yield gauge


#: Routes whose refusals are counted by error code (cart lines and checkout).
_CHECKOUT = "/v1/carts/{cart_id}/checkout"
_STOCK_ROUTES = frozenset({"/v1/carts/{cart_id}/items", "/v1/carts/{cart_id}/items/{line_id}",
                           _CHECKOUT, "/v1/saved/{item_id}/move-to-cart"})


def _error_code(body: bytes) -> str:
    try:
        return str(orjson.loads(body)["error"]["code"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "unknown"


class MetricsMiddleware:
    """Pure ASGI middleware: counts requests by route template and status, times them; counts
    carts created, checkouts by outcome and stock refusals (the error code of a refused cart
    or checkout request is read from its API.md error body)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]
        metrics = self.metrics

        async def _send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif status[0] >= 400 and message["type"] == "http.response.body":
                metrics.refused(scope, message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            metrics.answered(scope, status[0], start)
