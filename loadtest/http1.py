"""A lean HTTP/1.1 keep-alive client connection for the load generator.

The generator shares the machine's cores with the server it measures, so every microsecond it
spends per request is taken from the server and compresses the ratios between systems. A
general client (httpx over httpcore) costs about 1 to 1.5 ms of CPU per request on the 2-core
reference machine; this one writes one pre-formatted request and parses the status line,
headers and a `Content-Length` or chunked body (RFC 9112 sections 6 and 7.1) straight off an
asyncio stream, about a tenth of that.

It speaks only what the load generator needs: one request at a time per connection, no
pipelining, no TLS, no redirects, no compression, no body delimited by the connection's end.
A connection the server closed (RFC 9112 section 9.6, `Connection: close`) is reopened on the
next request; one it closed while idle is reopened and the request sent once more.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

#: Largest response head accepted, in bytes.
MAX_HEAD_BYTES = 64 * 1024


class HttpError(Exception):
    """A transport failure: the connection broke, timed out or answered malformed HTTP."""


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer: status code, headers (names lower-cased) and the raw body bytes."""

    status: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        """The body decoded as JSON, or None when it is empty or not JSON."""
        if not self.content:
            return None
        try:
            return orjson.loads(self.content)
        except orjson.JSONDecodeError:
            return None


class Connection:
    """One keep-alive HTTP/1.1 connection to `host:port`, opened lazily, one request at a time.

    `timeout_s` bounds each request (seconds). Raises `HttpError` on any transport failure;
    the connection is then dropped and reopened by the next request.
    """

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._host_header = f"Host: {host}:{port}\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send one request (a JSON body when `json` is not None) and read its answer."""
        body = b"" if json is None else orjson.dumps(json)
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        if json is not None:
            head.append(b"Content-Type: application/json\r\n")
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(b"Content-Length: %d\r\n" % len(body))
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}\r\n".encode())
        head.append(b"\r\n")
        head.append(body)
        raw = b"".join(head)
        reused = self._writer is not None and not self._writer.is_closing()
        try:
            try:
                return await asyncio.wait_for(self._exchange(raw), self.timeout_s)
            except asyncio.IncompleteReadError as exc:
                # A kept-alive connection the server closed while idle (its keep-alive
                # timeout) answers nothing at all: send once more on a new connection.
                if not reused or exc.partial:
                    raise
                await self.close()
                return await asyncio.wait_for(self._exchange(raw), self.timeout_s)
        # OSError covers TimeoutError; EOFError covers IncompleteReadError.
        except (OSError, EOFError, asyncio.LimitOverrunError, ValueError) as exc:
            await self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, raw: bytes) -> Response:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, limit=MAX_HEAD_BYTES)
        reader, writer = self._reader, self._writer
        assert reader is not None
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        version, status_text = lines[0].split(" ", 2)[:2]
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1 answer: {lines[0]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            content = await self._read_chunked(reader)
        else:
            content = await reader.readexactly(int(headers.get("content-length", "0")))
        if "close" in headers.get("connection", "").lower():
            await self.close()
        return Response(int(status_text), headers, content)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        """A chunked body (RFC 9112 section 7.1); trailers are read and dropped."""
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def close(self) -> None:
        """Close the socket (the next request reopens it)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
