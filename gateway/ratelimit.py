"""Per-client rate limits (the ``limits`` library, moving window), answered with 429.

A client is its bearer token (each guest has its own) or, without one, its IP address.
Operations routes (``/healthz``, ``/readyz``, ``/metrics``, ``/docs``) are never limited.
Off unless ``--rate-limit`` (e.g. ``"20/second"``) is set.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from gateway.middleware import error_body

_EXEMPT = ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")


class RateLimitMiddleware:
    """Pure ASGI middleware: one moving window per client; over it, 429 with Retry-After."""

    def __init__(self, app: Any, rate: str) -> None:
        self.app = app
        self.item = parse(rate)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def _client(self, scope: dict[str, Any]) -> str:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                return "t:" + hashlib.blake2b(value, digest_size=12).hexdigest()
        client = scope.get("client")
        return "ip:" + (client[0] if client else "unknown")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_EXEMPT):
            await self.app(scope, receive, send)
            return
        key = self._client(scope)
        if self.limiter.hit(self.item, key):
            await self.app(scope, receive, send)
            return
        reset = self.limiter.get_window_stats(self.item, key).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        await error_body(send, 429, "rate_limited",
                         f"too many requests; at most {self.item} per client",
                         [{"retry_after": retry_after}],
                         headers=[(b"retry-after", str(retry_after).encode())])
