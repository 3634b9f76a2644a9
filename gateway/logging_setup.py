"""Structured JSON logs (structlog), configured once at start, and the access-log middleware.

`configure_logging` sends every log line of the process, structlog's and the standard
library's (uvicorn, the runtime's ``cart_engine`` logger, Ray's client), to stdout as one JSON
object per line: ``{"event", "level", "timestamp" (ISO 8601, UTC), "logger", ...}``. Context
bound with ``structlog.contextvars`` (the request id) is merged into every line, so whatever
is logged while serving a request carries its ``request_id``: the gateway's lines and those of
the actor turns that run in the same process (the local placement, and the ingress on every
host for the actors it owns).

A process started by one that configured its logs (a Ray host serving HTTP) configures its
own the same way, at the level it inherits in ``CART_ENGINE_JSON_LOGS``, when it builds its
app.

`AccessLogMiddleware` (pure ASGI) writes one ``request`` line per HTTP request at INFO:
``method``, ``route`` (the route template, ``/v1/carts/{cart_id}``, never the raw path),
``status``, ``latency_ms``, ``caller`` (``user`` / ``admin`` / ``guest`` / ``anonymous``) and
``request_id``: the client's ``X-Request-ID`` when it is 1..128 characters of
``[A-Za-z0-9._:-]``, else a new one (32 hex digits); either way it is echoed in the response's
``X-Request-ID``. Headers, bodies and query strings are never logged, and a processor drops
any field whose name says it holds a credential, so no token or secret reaches the log.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
import structlog
from structlog.contextvars import bind_contextvars, reset_contextvars


def _ids() -> Iterator[str]:
    """Request ids for requests that bring none: 16 random hex digits fixed per process, then
    a counter; unique across processes and restarts without a system call per request (they
    name a request in logs; they are not secrets)."""
    prefix = secrets.token_hex(8)
    return (f"{prefix}{n:016x}" for n in itertools.count(1))


_request_ids = _ids()

__all__ = ["AccessLogMiddleware", "CALLER_KIND", "configure_logging", "valid_request_id"]

#: Set by `configure_logging` for the processes this one starts: the level they log at.
INHERITED = "CART_ENGINE_JSON_LOGS"
#: The scope key where the gateway notes the authenticated caller's role for the access log.
CALLER_KIND = "cart_engine.caller"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
#: Field names never written to the log (compared lower-case): credentials by name.
_SECRET_FIELDS = frozenset({"authorization", "token", "access_token", "guest_token",
                            "secret", "auth_secret", "password", "api_key", "cookie",
                            "payment_token"})


def _drop_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in [k for k in event if k.lower() in _SECRET_FIELDS]:
        event[key] = "[redacted]"
    return event


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(level: str = "info") -> None:
    """Route every logger of the process to stdout as JSON lines at ``level`` and above.

    Call once at start (the CLI does, before uvicorn starts); calling again re-applies it.
    ``level`` is a standard level name (``debug``, ``info``, ``warning``, ``error``).
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    # Processes started from this one (Ray hosts serving HTTP, which inherit the environment)
    # configure themselves the same way when they build their app: `AccessLogMiddleware`.
    os.environ[INHERITED] = level
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    # structlog's own loggers print straight to stdout (no logging.Handler on the way: the
    # access line is the hot one) and name themselves with a bound ``logger`` field;
    # standard-library records get theirs from the record.
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(serializer=_dumps)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(serializer=_dumps)]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # AccessLogMiddleware logs requests


def valid_request_id(value: str | None) -> str | None:
    """``value`` if it is an acceptable request id (1..128 of ``[A-Za-z0-9._:-]``), else None."""
    if value is not None and _REQUEST_ID.fullmatch(value):
        return value
    return None


def request_id(scope: dict[str, Any]) -> str:
    """The request's id: its valid ``X-Request-ID`` (`valid_request_id`), else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            rid = valid_request_id(value.decode("latin-1"))
            if rid is not None:
                return rid
            break
    return next(_request_ids)


class AccessLogMiddleware:
    """Pure ASGI: binds ``request_id`` for the request's lifetime, echoes it in
    ``X-Request-ID`` and logs one line per request (module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        # Bound now, so the hot path skips structlog's lazy proxy; an app built before
        # `configure_logging` (tests, embedders) keeps the request ids but logs no lines,
        # unless the process that started this one configured it (INHERITED).
        if not structlog.is_configured() and os.environ.get(INHERITED):
            configure_logging(os.environ[INHERITED])
        log = (structlog.get_logger().bind(logger="cart_engine.access")
               if structlog.is_configured() else None)
        # Below INFO (the service's default is warning) there is no line to build.
        enabled = getattr(log, "is_enabled_for", lambda _: True)
        self.log = log if log is not None and enabled(logging.INFO) else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = request_id(scope)
        echo = (b"x-request-id", rid.encode())
        status = 500
        tokens = bind_contextvars(request_id=rid)

        async def _send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            self.line(scope, status, start)
            reset_contextvars(**tokens)

    def line(self, scope: dict[str, Any], status: int, start: float) -> None:
        """Log the request's line (when INFO is on); ``start``: its `time.perf_counter`."""
        if self.log is None:
            return
        route = scope.get("route")
        self.log.info("request", method=scope["method"],
                      route=getattr(route, "path", "unmatched"), status=status,
                      latency_ms=round((time.perf_counter() - start) * 1000, 3),
                      caller=scope.get(CALLER_KIND, "anonymous"))
