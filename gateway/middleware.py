"""Request guards as pure ASGI middleware, answering with the API.md error body."""

from __future__ import annotations

import json
from typing import Any


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
