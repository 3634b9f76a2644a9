"""Per-client rate limits (the ``limits`` library, moving window), answered with 429.

A client is its verified identity, the ``sub`` of a bearer token whose signature and expiry
hold (each guest has its own; a user's tokens share one window), or, for a request with no
token or an invalid or expired one, its IP address. The address is the connection's peer;
``X-Forwarded-For`` counts only when that peer is one of ``--trusted-proxies``
(uvicorn's ``ProxyHeadersMiddleware``, installed by the app, rewrites the peer then), so a
client can neither mint new identities with made-up tokens nor new addresses with a header.
Operations routes (``/healthz``, ``/readyz``, ``/metrics``, ``/docs``) are never limited.
Off unless ``--rate-limit`` (e.g. ``"20/second"``) is set.
"""

from __future__ import annotations

import math
import time
from typing import Any

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import SecretStr

from gateway.auth import AuthError, decode_token
from gateway.middleware import error_body

_EXEMPT = ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")


def client_key(scope: dict[str, Any], secret: str) -> str:
    """The rate-limit key of a request: ``sub:<user id>`` for a valid bearer token (verified
    with ``secret``; `gateway.auth.decode_token` remembers verified tokens in a bounded LRU
    until their ``exp``), else ``ip:<address>``."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                try:
                    return "sub:" + decode_token(secret, token.strip()).sub
                except AuthError:
                    pass
            break
    client = scope.get("client")
    return "ip:" + (client[0] if client else "unknown")


class RateLimitMiddleware:
    """Pure ASGI middleware: one moving window per client (`client_key`); over it, 429 with
    Retry-After. ``secret`` is the JWT secret that verifies tokens."""

    def __init__(self, app: Any, rate: str, secret: SecretStr) -> None:
        self.app = app
        self.item = parse(rate)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.secret = secret

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_EXEMPT):
            await self.app(scope, receive, send)
            return
        key = client_key(scope, self.secret.get_secret_value())
        if self.limiter.hit(self.item, key):
            await self.app(scope, receive, send)
            return
        reset = self.limiter.get_window_stats(self.item, key).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        await error_body(send, 429, "rate_limited",
                         f"too many requests; at most {self.item} per client",
                         [{"retry_after": retry_after}],
                         headers=[(b"retry-after", str(retry_after).encode())])
