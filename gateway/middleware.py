"""Request guards and response headers as pure ASGI middleware (a ``BaseHTTPMiddleware``
costs a task and a stream per request on the hot routes), answering with the API.md error
body."""

from __future__ import annotations

import json
from typing import Any


def is_json_media_type(content_type: bytes) -> bool:
    """Whether a Content-Type header names JSON: ``application/json`` (RFC 8259 section 11),
    case-insensitive, with at most a ``charset`` parameter of ``utf-8`` (section 8.1: JSON
    exchanged between systems is UTF-8). ``text/json``, ``application/jsonp``,
    ``application/x-json`` or ``application/json; charset=latin-1`` are not."""
    media_type, *params = content_type.lower().split(b";")
    if media_type.strip() != b"application/json":
        return False
    for param in params:
        name, _, value = param.partition(b"=")
        if name.strip() != b"charset" or value.strip().strip(b'"') != b"utf-8":
            if param.strip():
                return False
    return True


class BodyLimitMiddleware:
    """Guards request bodies, with the API.md error body: over ``max_bytes`` is a 413; a body
    whose Content-Type is not ``application/json`` (`is_json_media_type`) is a 415.

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
        length, ctype, chunked = framing(scope)
        refused = body_refusal(length, ctype, chunked, self.max_bytes)
        if refused is not None:
            await error_body(send, *refused)
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
                    await error_body(send, *_too_large(self.max_bytes))
                    return
            await self.app(scope, replay(receive, body), send)
            return
        await self.app(scope, receive, send)


#: A request body's framing: Content-Length (or None), Content-Type, chunked or not.
Framing = tuple[int | None, bytes, bool]


def framing(scope: dict[str, Any]) -> Framing:
    """A request's body framing from its headers: Content-Length (None when absent or not
    digits), Content-Type (lower case, ``b""`` when absent), and whether it is chunked."""
    length, ctype, chunked = None, b"", False
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.isdigit():
            length = int(value)
        elif name == b"content-type":
            ctype = value.lower()
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    return length, ctype, chunked


def body_refusal(length: int | None, ctype: bytes, chunked: bool,
                 max_bytes: int) -> tuple[int, str, str, list[dict[str, Any]]] | None:
    """The `error_body` arguments refusing a request by its `framing`: 413 for a declared
    length over ``max_bytes``, 415 for a body that is not JSON (`is_json_media_type`); None
    when it may go on (a chunked body is then still to be counted as it is read)."""
    if length is not None and length > max_bytes:
        return _too_large(max_bytes)
    if (length or chunked) and not is_json_media_type(ctype):
        return (415, "unsupported_media_type",
                "send the request body as JSON with 'Content-Type: application/json'", [])
    return None


def _too_large(max_bytes: int) -> tuple[int, str, str, list[dict[str, Any]]]:
    return (413, "payload_too_large", f"request bodies are at most {max_bytes} bytes",
            [{"limit": max_bytes}])


def replay(receive: Any, body: bytes) -> Any:
    """An ASGI ``receive`` that hands on ``body`` (already read, whole) first, then defers to
    ``receive`` (for the disconnect)."""
    replayed = False

    async def again() -> dict[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # type: ignore[no-any-return]

    return again


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


#: Paths whose answers a shared cache may keep (public catalog and API documents), when the
#: request carries no credentials.
_CACHEABLE = ("/v1/products", "/docs", "/redoc", "/openapi.json")
NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeadersMiddleware:
    """Adds response headers to every answer, errors included:

    - ``X-Content-Type-Options: nosniff`` (WHATWG Fetch): a browser never reads a JSON answer
      as HTML or script;
    - ``Cache-Control: no-store`` (RFC 9111 section 5.2.2.5) unless the route set its own, on
      every answer except a credential-less read of the public catalog or the API documents:
      carts, orders, saved items, tokens and admin answers are never kept by a cache.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = no_store_for(scope)

        async def _send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message,
                           "headers": secured(list(message.get("headers", ())), no_store)}
            await send(message)

        await self.app(scope, receive, _send)


def no_store_for(scope: dict[str, Any]) -> bool:
    """Whether the answer to this request gets ``Cache-Control: no-store`` (unless its route
    set its own): everything but a credential-less read of `_CACHEABLE` paths."""
    return not scope["path"].startswith(_CACHEABLE) or any(
        name == b"authorization" for name, _ in scope["headers"])


def secured(headers: list[tuple[bytes, bytes]], no_store: bool) -> list[tuple[bytes, bytes]]:
    """``headers`` (a response's, a new list) with `SecurityHeadersMiddleware`'s added."""
    headers.append(NOSNIFF)
    if no_store and not any(name.lower() == b"cache-control" for name, _ in headers):
        headers.append(NO_STORE)
    return headers
