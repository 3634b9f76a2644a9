"""The hot lane: the cart and checkout routes served in one ASGI layer instead of fifteen.

A request through the FastAPI app passes FastAPI's and Starlette's own layers (server
errors, telemetry, a body limit, exception handlers, an exit stack, the router's matching)
and our four middlewares (security headers, access log, metrics, body limit), each an
``async`` call wrapping ``send`` in a closure of its own. For a cart request that is about a
third of the app's CPU: `python -m loadtest.gateway_bench --lines 6` measured 175 us per
request through the stack and 122 us with the route called directly, none of the layers'
work done (2026-11-30); the lane, doing that work, 143 us.

`HotLane` serves the routes built with `gateway.deps.LeanRoute` (the cart, line item,
coupon code and checkout routes) itself, doing in one layer what those layers do for them,
with the same code where the work is ours (`gateway.middleware`, `gateway.metrics`,
`gateway.logging_setup`) and the app's own exception handlers:

- the body guard (413, 415) before the route; a chunked body goes the whole way instead;
- ``X-Request-ID``, the request id bound for logging, the access-log line, the request
  metrics and stock-refusal counts, ``nosniff`` and ``no-store``, on every answer;
- an exception the app's handlers know becomes their answer; any other is answered by the
  app's 500 handler and raised again for the server to log, as Starlette's
  ``ServerErrorMiddleware`` does (the lane's answer also carries the headers above, which
  that middleware's, sent outside ours, lacked).

Everything else, and every request when the app has layers the lane does not reproduce (a
rate limit, proxy headers, tracing, a middleware added after `gateway.app.create_app`, a
``root_path``, FastAPI's own body limit), goes through the whole stack. Which route a path
reaches is the one Starlette's router would pick: a lean route is in the lane only when no
route before it in the app's route list could take the same requests (`_shape`,
`_overlaps`).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from starlette._exception_handler import _lookup_exception_handler
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor
from starlette.exceptions import HTTPException
from starlette.routing import Route, WebSocketRoute
from structlog.contextvars import bind_contextvars, reset_contextvars

from gateway.deps import LeanRoute
from gateway.logging_setup import AccessLogMiddleware, request_id
from gateway.metrics import Metrics
from gateway.middleware import Framing, body_refusal, error_body, framing, no_store_for, secured

#: A route's path as segments: a literal string, or None for a ``{name}`` parameter.
Shape = tuple[str | None, ...]


class HotLane:
    """Serves an app's `LeanRoute` routes in one layer (module docstring).

    ``app``: the app (its routes, exception handlers and state); ``metrics``: its `Metrics`;
    ``max_bytes``: the request body limit (`GatewaySettings.max_body_bytes`). `match` finds a
    request's route, `serve` answers it. Built lazily on the first request, when every route
    and exception handler is in place; ``middleware`` is the app's ``user_middleware`` as
    `create_app` left it: if it has changed since, the lane stays shut.
    """

    def __init__(self, app: FastAPI, metrics: Metrics, max_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.access = AccessLogMiddleware(None)
        self.middleware = list(app.user_middleware)
        self._table: dict[tuple[str, int], list[tuple[LeanRoute, Any, Any]]] | None = None
        self._by_class: dict[Any, Any] = {}
        self._by_status: dict[int, Any] = {}
        self._server_error: Any = None

    def match(self, scope: dict[str, Any]) -> tuple[LeanRoute, dict[str, str], Framing] | None:
        """The lean route an HTTP request goes to, its path parameters and its body's
        `framing`; None for a request the lane does not take (another route, a chunked body,
        a ``root_path``; every request once the app's middleware changed)."""
        table = self._table if self._table is not None else self._build()
        if not table or scope.get("root_path"):
            return None
        parts = scope["path"].split("/")
        candidates = table.get((scope["method"], len(parts)))
        if candidates is None:
            return None
        for route, literals, params in candidates:
            if all(parts[i] == text for i, text in literals) and all(parts[i] for i, _ in params):
                body = framing(scope)
                if body[2] and body[0] is None:
                    return None  # `BodyLimitMiddleware` reads and counts a chunked body
                return route, {name: parts[i] for i, name in params}, body
        return None

    async def serve(self, route: LeanRoute, params: dict[str, str], body: Framing,
                    scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answer a request `match` gave ``route``, ``params`` and ``body`` for."""
        start = time.perf_counter()
        scope["app"] = self.app
        rid = request_id(scope)
        echo = (b"x-request-id", rid.encode())
        no_store = no_store_for(scope)
        metrics = self.metrics
        status = 500
        started = False

        async def _send(message: dict[str, Any]) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message = {**message, "headers": secured(
                    [*message.get("headers", ()), echo], no_store)}
            elif status >= 400 and message["type"] == "http.response.body":
                metrics.refused(scope, message.get("body", b""))
            await send(message)

        tokens = bind_contextvars(request_id=rid)
        try:
            refused = body_refusal(*body, self.max_bytes)
            if refused is not None:
                await error_body(_send, *refused)
                return
            scope.setdefault("router", self.app.router)
            scope.update(endpoint=route.endpoint, path_params=params, route=route)
            request = Request(scope, receive, _send)
            try:
                response = await route.endpoint(request)
                await response(scope, receive, _send)
            except Exception as exc:
                if started:
                    raise
                handler = self._handler(exc)
                if handler is None:
                    await self._answer(self._server_error, request, exc, scope, receive, _send)
                    raise
                await self._answer(handler, request, exc, scope, receive, _send)
                exc.__traceback__ = None
        finally:
            metrics.answered(scope, status, start)
            self.access.line(scope, status, start)
            reset_contextvars(**tokens)

    def _handler(self, exc: Exception) -> Any:
        """The app's handler for ``exc`` as Starlette's ``ExceptionMiddleware`` finds it: an
        HTTPException's status first, then the exception's classes in MRO order."""
        if isinstance(exc, HTTPException):
            handler = self._by_status.get(exc.status_code)
            if handler is not None:
                return handler
        return _lookup_exception_handler(self._by_class, exc)

    @staticmethod
    async def _answer(handler: Any, request: Request, exc: Exception, scope: dict[str, Any],
                      receive: Any, send: Any) -> None:
        if handler is None:
            await error_body(send, 500, "internal_error", "the request failed unexpectedly")
            return
        if is_async_callable(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        if response is not None:
            await response(scope, receive, send)

    def _build(self) -> dict[tuple[str, int], list[tuple[LeanRoute, Any, Any]]]:
        """The lane's routes by (method, segment count), in the app's route order; empty
        when the app's middleware changed since `create_app`."""
        table: dict[tuple[str, int], list[tuple[LeanRoute, Any, Any]]] = {}
        self._table = table
        current = self.app.user_middleware
        if len(current) != len(self.middleware) or any(
                a is not b for a, b in zip(current, self.middleware, strict=True)) \
                or "build_middleware_stack" in vars(self.app) \
                or self.app.root_path or _native_telemetry(self.app) \
                or getattr(self.app, "max_body_size", None) is not None:
            return table  # a layer the lane lacks (OpenTelemetry wraps the stack builder)
        for key, handler in self.app.exception_handlers.items():
            if key in (500, Exception):
                self._server_error = handler
            elif isinstance(key, int):
                self._by_status[key] = handler
            else:
                self._by_class[key] = handler
        before: list[tuple[frozenset[str] | None, Shape | None]] = []
        for route in self.app.router.routes:
            if isinstance(route, WebSocketRoute):
                continue
            methods = frozenset(route.methods) if isinstance(route, Route) and route.methods \
                else None
            shape = _shape(route)
            if isinstance(route, LeanRoute) and shape is not None and methods and not any(
                    _overlaps(shape, s) and (m is None or m & methods) for m, s in before):
                literals = tuple((i, t) for i, t in enumerate(shape) if t is not None)
                params = tuple((i, name) for i, name in enumerate(_names(route))
                               if name is not None)
                for method in methods - {"HEAD"}:
                    table.setdefault((method, len(shape)), []).append(
                        (route, literals, params))
            before.append((methods, shape))
        return table


def _native_telemetry(app: FastAPI) -> bool:
    """Whether FastAPI's own OpenTelemetry is on (`gateway.app` turns it off)."""
    telemetry = getattr(app, "_native_telemetry", None)
    return bool(telemetry is not None and telemetry.enabled())


def _shape(route: Any) -> Shape | None:
    """``route``'s path as segments (None for a ``{name}`` parameter of the plain string
    convertor); None for anything else (a mount, another convertor, a partial segment)."""
    if not isinstance(route, Route):
        return None
    out: list[str | None] = []
    for name, part in zip(_names(route), route.path.split("/"), strict=True):
        if name is not None:
            if not isinstance(route.param_convertors.get(name), StringConvertor):
                return None
            out.append(None)
        elif "{" in part or "}" in part:
            return None
        else:
            out.append(part)
    return tuple(out)


def _names(route: Route) -> list[str | None]:
    """Per path segment of ``route``, the parameter name it is (``{name}``), else None."""
    return [part[1:-1] if part.startswith("{") and part.endswith("}") and
            part.count("{") == 1 else None for part in route.path.split("/")]


def _overlaps(shape: Shape, other: Shape | None) -> bool:
    """Whether a path could match both shapes (``other`` None: any path may match it)."""
    if other is None:
        return True
    return len(shape) == len(other) and all(
        a is None or b is None or a == b for a, b in zip(shape, other, strict=True))
