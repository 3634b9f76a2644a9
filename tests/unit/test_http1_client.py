"""The load generator's lean HTTP/1.1 client against a canned server on a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from loadtest.http1 import Connection, HttpError

pytestmark = pytest.mark.unit


def answer(status: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """A raw HTTP/1.1 answer with a Content-Length (unless ``headers`` says otherwise)."""
    head = [f"HTTP/1.1 {status}"]
    fields = {"Content-Length": str(len(body)), **(headers or {})}
    head += [f"{name}: {value}" for name, value in fields.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True)
class Received:
    connection: int  # 1 for the first connection the server accepted, and so on
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class CannedServer:
    """Reads requests and writes the next canned answer; ``None`` reads and never answers.

    An answer that says ``Connection: close`` is followed by closing the connection.
    """

    def __init__(self) -> None:
        self.answers: list[bytes | None] = []
        #: Close each connection after one answer without saying so (an idle timeout).
        self.hang_up_silently = False
        self.received: list[Received] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        number = self.connections
        self._writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client hung up between requests
                request_line, *lines = head[:-4].decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ")
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.received.append(Received(number, method, path, headers, body))
                raw = self.answers.pop(0)
                if raw is None:
                    await reader.read()  # say nothing until the client gives up
                    return
                writer.write(raw)
                await writer.drain()
                if b"\r\nconnection: close\r\n" in raw.lower() or self.hang_up_silently:
                    return
        except (OSError, EOFError):
            return
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()
        if self._handlers:
            await asyncio.wait_for(asyncio.gather(*self._handlers, return_exceptions=True), 2)


@pytest.fixture
async def server() -> AsyncIterator[CannedServer]:
    s = CannedServer()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def conn(server: CannedServer) -> AsyncIterator[Connection]:
    c = Connection("127.0.0.1", server.port, timeout_s=2.0)
    yield c
    await c.close()


async def test_a_json_body_goes_out_typed_and_sized_and_the_answer_comes_back_decoded(
        server: CannedServer, conn: Connection) -> None:
    server.answers.append(answer("201 Created", b'{"cart_id": "c_1", "lines": []}',
                                 {"Content-Type": "application/json", "X-Trace-Id": "t-42"}))
    r = await asyncio.wait_for(conn.request(
        "POST", "/v1/carts/c_1/items", json={"product_id": "p1", "quantity": 2},
        headers={"Idempotency-Key": "k-1"}), 2)

    (sent,) = server.received
    assert (sent.method, sent.path) == ("POST", "/v1/carts/c_1/items")
    assert sent.headers["content-type"] == "application/json"
    assert int(sent.headers["content-length"]) == len(sent.body)
    assert sent.body == b'{"product_id":"p1","quantity":2}'
    assert sent.headers["idempotency-key"] == "k-1"
    assert sent.headers["host"] == f"127.0.0.1:{server.port}"
    assert r.status == 201
    assert r.headers["x-trace-id"] == "t-42" and r.headers["content-type"] == "application/json"
    assert r.json() == {"cart_id": "c_1", "lines": []}


async def test_two_requests_in_a_row_travel_over_one_tcp_connection(
        server: CannedServer, conn: Connection) -> None:
    server.answers += [answer("200 OK", b'{"n": 1}'), answer("200 OK", b'{"n": 2}')]
    first = await asyncio.wait_for(conn.request("GET", "/one"), 2)
    second = await asyncio.wait_for(conn.request("GET", "/two"), 2)
    assert [first.json(), second.json()] == [{"n": 1}, {"n": 2}]
    assert server.connections == 1
    assert [(r.connection, r.path) for r in server.received] == [(1, "/one"), (1, "/two")]
    # A GET without a body says nothing about a body.
    assert "content-length" not in server.received[0].headers
    assert "content-type" not in server.received[0].headers


async def test_a_chunked_answer_is_reassembled_and_the_connection_stays_usable(
        server: CannedServer, conn: Connection) -> None:
    # RFC 9112 section 7.1: hex sizes, an extension on one size line, a last chunk, a trailer.
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Type: application/json\r\n\r\n"
               b"a\r\n{\"items\": \r\n"
               b"6;name=value\r\n[1, 2,\r\n"
               b"4\r\n 3]}\r\n"
               b"0\r\nX-Checksum: abc\r\n\r\n")
    server.answers += [chunked, answer("200 OK", b'"after"')]
    r = await asyncio.wait_for(conn.request("GET", "/chunked"), 2)
    assert r.status == 200
    assert r.content == b'{"items": [1, 2, 3]}'
    assert r.json() == {"items": [1, 2, 3]}
    # The trailer was consumed: the next answer on the same connection parses cleanly.
    nxt = await asyncio.wait_for(conn.request("GET", "/next"), 2)
    assert nxt.json() == "after" and server.connections == 1


async def test_an_answer_with_connection_close_makes_the_next_request_reconnect(
        server: CannedServer, conn: Connection) -> None:
    server.answers += [answer("200 OK", b'{"n": 1}', {"Connection": "close"}),
                       answer("200 OK", b'{"n": 2}')]
    first = await asyncio.wait_for(conn.request("GET", "/one"), 2)
    second = await asyncio.wait_for(conn.request("GET", "/two"), 2)
    assert first.json() == {"n": 1} and first.headers["connection"] == "close"
    assert second.status == 200 and second.json() == {"n": 2}
    assert server.connections == 2
    assert [r.connection for r in server.received] == [1, 2]


async def test_a_server_that_never_answers_is_an_http_error_within_the_timeout_then_recovers(
        server: CannedServer) -> None:
    conn = Connection("127.0.0.1", server.port, timeout_s=0.2)
    server.answers += [None, answer("200 OK", b'{"ok": true}')]
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(HttpError):
        await asyncio.wait_for(conn.request("GET", "/silent"), 2)
    waited = loop.time() - started
    assert 0.15 <= waited < 1.5
    # The server behaves again: the next request opens a fresh connection and succeeds.
    r = await asyncio.wait_for(conn.request("GET", "/again"), 2)
    assert r.status == 200 and r.json() == {"ok": True}
    assert server.connections == 2
    assert [(x.connection, x.path) for x in server.received] == [(1, "/silent"), (2, "/again")]
    await conn.close()


async def test_a_204_without_a_body_has_empty_content_and_no_json(
        server: CannedServer, conn: Connection) -> None:
    no_content = b"HTTP/1.1 204 No Content\r\nX-Request-Id: r-1\r\n\r\n"
    server.answers += [no_content, answer("200 OK", b"[1]")]
    r = await asyncio.wait_for(conn.request("DELETE", "/v1/carts/c_1/items/ln_1"), 2)
    assert r.status == 204 and r.content == b"" and r.json() is None
    assert r.headers["x-request-id"] == "r-1"
    # Nothing was left unread: the connection carries the next answer intact.
    assert (await asyncio.wait_for(conn.request("GET", "/next"), 2)).json() == [1]


async def test_a_body_that_is_not_json_keeps_its_bytes_and_decodes_to_none(
        server: CannedServer, conn: Connection) -> None:
    server.answers.append(answer("503 Service Unavailable", b"upstream down",
                                 {"Content-Type": "text/plain"}))
    r = await asyncio.wait_for(conn.request("GET", "/healthz"), 2)
    assert r.status == 503
    assert r.content == b"upstream down"
    assert r.json() is None


async def test_a_kept_alive_connection_the_server_dropped_while_idle_is_reopened_once(
        server: CannedServer, conn: Connection) -> None:
    server.hang_up_silently = True  # as a server's keep-alive timeout does, between requests
    server.answers += [answer("200 OK", b'{"n": 1}'), answer("200 OK", b'{"n": 2}')]
    first = await asyncio.wait_for(conn.request("GET", "/one"), 2)
    second = await asyncio.wait_for(conn.request("GET", "/two"), 2)
    assert [first.json(), second.json()] == [{"n": 1}, {"n": 2}]
    assert [(r.connection, r.path) for r in server.received] == [(1, "/one"), (2, "/two")]
