"""Prometheus metrics (prometheus-client) and the ASGI middleware that records them."""

from __future__ import annotations

import json
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "MetricsMiddleware", "CONTENT_TYPE_LATEST"]


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

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: counts requests by route template and status, times them."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def _send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(scope["method"], path, str(status[0])).inc()
            self.metrics.latency.labels(scope["method"], path).observe(
                time.perf_counter() - start)


class BodyLimitMiddleware:
    """Guards request bodies, with the API.md error body: over ``max_bytes`` is a 413; a body
    that is not declared ``application/json`` is a 415 (it would otherwise not be parsed).

    A body sent without Content-Length (chunked) is read here first, up to the limit, and
    handed on whole, so the limit holds for it too.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length, ctype, chunked = None, b"", False
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"content-type":
                ctype = value.lower()
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if length is not None and length > self.max_bytes:
            await self._refuse(send)
            return
        if (length or chunked) and b"json" not in ctype:
            await error_body(send, 415, "unsupported_media_type",
                         "send the request body as JSON with 'Content-Type: application/json'")
            return
        if length is None and chunked:
            body, more = b"", True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    break
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_bytes:
                    await self._refuse(send)
                    return
            replayed = False

            async def _replay() -> dict[str, Any]:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # type: ignore[no-any-return]

            await self.app(scope, _replay, send)
            return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Any) -> None:
        await error_body(send, 413, "payload_too_large",
                     f"request bodies are at most {self.max_bytes} bytes",
                     [{"limit": self.max_bytes}])


async def error_body(send: Any, status: int, code: str, message: str,
                     details: list[dict[str, Any]] | None = None,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send an API.md error response from ASGI middleware (outside FastAPI's handlers)."""
    body = json.dumps({"error": {"code": code, "message": message,
                                 "details": details or []}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
