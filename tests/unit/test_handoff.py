"""Connection hand-off between the hosts of one machine (`gateway.handoff`), with real sockets:
the descriptor passing itself, and two uvicorn servers passing one client's connection."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from gateway.handoff import RETRY_AFTER, HandOff, handoff_dir, request_cart
from gateway.http_protocol import handoff_protocol, serve_handed

pytestmark = pytest.mark.unit


def test_the_cart_of_a_request_is_read_from_its_whole_request_line() -> None:
    assert request_cart(b"GET /v1/carts/c1 HTTP/1.1\r\nHost: x\r\n\r\n") == "c1"
    assert request_cart(b"DELETE /v1/carts/c1/items/l2?x=1 HTTP/1.1\r\n") == "c1"
    assert request_cart(b"POST /v1/carts/c1/checkout HTTP/1.1\r\nContent-Le") == "c1"
    # not a cart request, a stream, an escaped path, a partial request line
    assert request_cart(b"GET /v1/carts HTTP/1.1\r\n\r\n") is None
    assert request_cart(b"POST /v1/carts/ HTTP/1.1\r\n\r\n") is None
    assert request_cart(b"GET /v1/orders/o1 HTTP/1.1\r\n\r\n") is None
    assert request_cart(b"GET /v1/carts/c1/events HTTP/1.1\r\n\r\n") is None
    assert request_cart(b"GET /v1/carts/c%31 HTTP/1.1\r\n\r\n") is None
    assert request_cart(b"GET /v1/carts/c1 HTT") is None
    assert request_cart(b"GET /v1/carts/c1") is None
    assert request_cart(b"BREW /v1/carts/c1 HTTP/1.1\r\n\r\n") is None


def test_the_socket_directory_is_private_and_named_by_the_cluster(tmp_path: Path) -> None:
    a = handoff_dir(b"cluster-a", str(tmp_path))
    assert a == handoff_dir(b"cluster-a", str(tmp_path))
    assert a != handoff_dir(b"cluster-b", str(tmp_path))
    assert b"cluster-a".hex() not in str(a) and "cluster-a" not in str(a)
    assert a.stat().st_mode & 0o777 == 0o700
    assert a.parent.stat().st_mode & 0o777 == 0o700
    os.chmod(a, 0o755)
    with pytest.raises(PermissionError):
        handoff_dir(b"cluster-a", str(tmp_path))


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected client socket and the server's accepted end."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


class _Conn:
    """What the hand-off uses of a `HandOffHttpProtocol` (and of its transport), over a real
    socket or any descriptor."""

    def __init__(self, fd: int, key: Any = None, holders: frozenset[str] = frozenset()) -> None:
        self.fd = fd
        self.key = key
        self.holders = holders
        self.parked = False
        self.parked_at = 0.0
        self.resumed: list[tuple[bytes, frozenset[str]]] = []
        self.closed = False
        self.transport = self

    def fileno(self) -> int:
        return self.fd

    def park(self) -> None:
        self.parked = True
        self.parked_at = asyncio.get_running_loop().time()

    def resume(self, data: bytes, holders: frozenset[str]) -> None:
        self.parked = False
        self.holders = holders
        self.resumed.append((data, holders))

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def _until(condition: Any) -> None:
    """Wait (up to 2 s) for ``condition()``, letting the loop run the hand-off sockets."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


class _Hosts:
    """Two hand-off endpoints in one directory, closed on exit with every socket handed:
    ``ingress`` (h0) sends every cart to ``owner`` (h1), which sends every cart back to h0;
    ``got`` collects what either was handed that it had no parked copy of."""

    def __init__(self, tmp_path: Path, park_for: float = 75.0) -> None:
        self.got: list[Any] = []
        self.owner = HandOff("h1", tmp_path, lambda cart: "h0")
        self.owner.start(lambda *a: self.got.append(a))
        self.ingress = HandOff("h0", tmp_path, lambda cart: "h1", park_for=park_for)
        self.ingress.start(lambda *a: self.got.append(a))

    async def __aenter__(self) -> _Hosts:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for sock, *_ in self.got:
            sock.close()
        await self.owner.close()
        await self.ingress.close()

    async def hand_one(self, conn: _Conn) -> Any:
        """Pass ``conn`` from the ingress to the owner; what the owner received: ``(sock,
        first_bytes, key, holders)``."""
        assert self.ingress.pass_on(conn, "h1", REQUEST)
        await _until(lambda: self.got)
        return self.got.pop()


REQUEST = b"GET /v1/carts/c1 HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_a_connection_passed_on_reaches_the_owner_and_its_parked_copy_takes_it_back(
        tmp_path: Path) -> None:
    client, server = _tcp_pair()
    mine = _Conn(server.fileno())
    async with _Hosts(tmp_path) as hosts:
        owner, ingress, got = hosts.owner, hosts.ingress, hosts.got
        assert ingress.owner_here(REQUEST) == "h1"
        assert ingress.pass_on(mine, "h1", REQUEST)
        assert mine.parked and ingress.parked == {mine.key: mine}
        await _until(lambda: got)
        (handed, data, key, holders), = got
        assert (data, key, holders) == (REQUEST, mine.key, frozenset({"h0"}))
        assert handed.type == socket.SOCK_STREAM
        assert handed.getpeername() == client.getsockname()
        handed.setblocking(True)
        handed.sendall(b"answer")
        assert client.recv(100) == b"answer"
        client.sendall(b"more")
        assert handed.recv(100) == b"more"
        # back to the first host: its parked copy goes on, nothing is set up again
        theirs = _Conn(handed.fileno(), key, holders)
        assert owner.pass_on(theirs, "h0", b"GET /v1/carts/a1 HTTP/1.1\r\n\r\n")
        await _until(lambda: mine.resumed)
        assert mine.resumed == [(b"GET /v1/carts/a1 HTTP/1.1\r\n\r\n",
                                 frozenset({"h0", "h1"}))]
        assert not mine.parked and not ingress.parked and len(got) == 1
        assert ingress.stats() == {"handed_off": 1, "handed_in": 1, "handed_back": 1,
                                   "handoffs_refused": 0, "handoffs_bounced": 0}
    client.close()
    server.close()


async def test_a_connection_goes_back_by_its_key_and_returns_to_its_sender_without_a_copy(
        tmp_path: Path) -> None:
    client, server = _tcp_pair()
    mine = _Conn(server.fileno())
    async with _Hosts(tmp_path) as hosts:
        owner, ingress = hosts.owner, hosts.ingress
        handed, _, key, holders = await hosts.hand_one(mine)
        # Back to a host that has held it: its key alone. A descriptor could not be sent at
        # all from this copy (-1), so the send succeeding says none went.
        again = b"GET /v1/carts/a1 HTTP/1.1\r\n\r\n"
        assert owner.pass_on(_Conn(-1, key, holders), "h0", again)
        await _until(lambda: mine.resumed)
        assert mine.resumed == [(again, frozenset({"h0", "h1"}))]
        # Out again; this time the first host's copy is gone when it comes back (closed
        # after the keep-alive): the message returns to the sender, which serves it itself.
        assert ingress.pass_on(mine, "h1", REQUEST)  # by key: h1 holds a parked copy
        await _until(lambda: owner.stats()["handed_back"] == 1)
        ingress.parked.pop(key).abort()
        theirs = _Conn(-1, key, frozenset({"h0", "h1"}))
        assert owner.pass_on(theirs, "h0", again)
        assert theirs.parked and owner.parked == {key: theirs}
        await _until(lambda: theirs.resumed)
        assert theirs.resumed == [(again, frozenset({"h1"}))]  # h0 holds no copy now
        assert not theirs.parked and not owner.parked
        assert owner.stats()["handoffs_bounced"] == 1
        # So the next hand-off to h0 carries the descriptor again (and reaches `serve`).
        assert owner.pass_on(_Conn(handed.fileno(), key, frozenset({"h1"})), "h0", again)
        await _until(lambda: hosts.got)
        assert hosts.got[-1][1:] == (again, key, frozenset({"h1"}))
    client.close()
    server.close()


async def test_a_closed_connection_closes_the_copies_parked_elsewhere(tmp_path: Path) -> None:
    client, server = _tcp_pair()
    mine = _Conn(server.fileno())
    async with _Hosts(tmp_path) as hosts:
        handed, _, key, holders = await hosts.hand_one(mine)
        hosts.owner.lost(_Conn(handed.fileno(), key, holders))  # the owner closed it
        await _until(lambda: mine.closed)
        assert not hosts.ingress.parked
        handed.close()
    client.close()
    server.close()


async def test_copies_are_closed_when_the_other_host_goes_away_or_after_the_keep_alive(
        tmp_path: Path) -> None:
    pairs = [_tcp_pair() for _ in range(2)]
    first, second = _Conn(pairs[0][1].fileno()), _Conn(pairs[1][1].fileno())
    async with _Hosts(tmp_path, park_for=0.05) as hosts:
        assert hosts.ingress.pass_on(first, "h1", REQUEST)
        await _until(lambda: first.closed)  # parked longer than the keep-alive
        assert not hosts.ingress.parked
        hosts.ingress.park_for = 60
        assert hosts.ingress.pass_on(second, "h1", REQUEST)
        await _until(lambda: len(hosts.got) == 2)
        await hosts.owner.close()
        await _until(lambda: second.closed)  # the owner went away
        assert not hosts.ingress.parked
    for client, server in pairs:
        client.close()
        server.close()


async def test_an_owner_without_a_socket_here_is_left_to_forwarding_for_a_while(
        tmp_path: Path) -> None:
    ingress = HandOff("h0", tmp_path, lambda cart: "h9")
    client, server = _tcp_pair()
    mine = _Conn(server.fileno())
    try:
        assert ingress.owner_here(REQUEST) == "h9"
        assert not ingress.pass_on(mine, "h9", REQUEST)
        assert not mine.parked and not ingress.parked
        skipped = sum(ingress.owner_here(REQUEST) is None for _ in range(RETRY_AFTER))
        assert skipped == RETRY_AFTER
        assert ingress.owner_here(REQUEST) == "h9"  # tried again after that
        server.sendall(b"still mine")  # nothing was sent: the connection is intact here
        assert client.recv(100) == b"still mine"
    finally:
        client.close()
        server.close()
        await ingress.close()


async def test_no_hand_off_for_this_host_another_path_or_a_big_first_read(
        tmp_path: Path) -> None:
    ingress = HandOff("h0", tmp_path, lambda cart: "h0" if cart == "mine" else "h1")
    assert ingress.owner_here(b"GET /v1/carts/mine HTTP/1.1\r\n\r\n") is None
    assert ingress.owner_here(b"GET /v1/products HTTP/1.1\r\n\r\n") is None
    big = b"POST /v1/carts/c1/items HTTP/1.1\r\n\r\n" + b"x" * 40_000
    assert ingress.owner_here(big) is None
    assert ingress.owner_here(b"POST /v1/carts/c1/items HTTP/1.1\r\n\r\n") == "h1"


async def test_a_descriptor_that_is_not_a_tcp_socket_or_a_malformed_message_is_refused(
        tmp_path: Path) -> None:
    read, write = os.pipe()
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    async with _Hosts(tmp_path) as hosts:
        assert hosts.ingress.pass_on(_Conn(read), "h1", REQUEST)
        await _until(lambda: hosts.owner.stats()["handoffs_refused"] == 1)
        raw.connect(str(tmp_path / "h1.sock"))
        socket.send_fds(raw, [b"X nonsense"], [write])
        raw.send(b"H\x00\x05h0")  # a hand-off without a descriptor
        await _until(lambda: hosts.owner.stats()["handoffs_refused"] == 3)
        assert not hosts.got
    raw.close()
    os.close(read)
    os.close(write)


async def test_a_stopping_owner_serves_what_was_queued_and_refuses_the_rest(
        tmp_path: Path) -> None:
    pairs = [_tcp_pair() for _ in range(3)]
    conns = [_Conn(server.fileno()) for _, server in pairs]
    async with _Hosts(tmp_path) as hosts:
        ingress = hosts.ingress
        # queued, not read yet: the owner's loop has not run since
        assert ingress.pass_on(conns[0], "h1", b"GET /v1/carts/q1 HTTP/1.1\r\n\r\n")
        await asyncio.sleep(0)  # the owner accepts the ingress's connection, reads the first
        assert ingress.pass_on(conns[1], "h1", b"GET /v1/carts/q2 HTTP/1.1\r\n\r\n")
        await hosts.owner.stop_receiving()
        assert sorted(data for _, data, *_ in hosts.got) == [
            b"GET /v1/carts/q1 HTTP/1.1\r\n\r\n", b"GET /v1/carts/q2 HTTP/1.1\r\n\r\n"]
        assert not ingress.pass_on(conns[2], "h1", b"GET /v1/carts/q3 HTTP/1.1\r\n\r\n")
        assert not conns[2].parked
    for client, server in pairs:
        client.close()
        server.close()


# -- two uvicorn servers passing one client's connection ---------------------------------------


async def _app(name: str, scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    answer = f"{name} {scope['method']} {scope['path']} {len(body)}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


async def _serve(name: str, handoff: HandOff, sock: socket.socket) -> Any:
    import uvicorn

    config = uvicorn.Config(lambda s, r, w: _app(name, s, r, w), lifespan="on",
                            interface="asgi3", log_level="warning",
                            http=handoff_protocol(handoff), ws="none")
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    handoff.start(lambda *a: asyncio.ensure_future(serve_handed(server, *a)))
    return server, task


async def _read_answer(reader: asyncio.StreamReader) -> str:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    return (await reader.readexactly(length)).decode()


async def test_one_keep_alive_connection_is_served_by_the_owner_of_each_request(
        tmp_path: Path) -> None:
    def owner(cart: str) -> str:
        return "h0" if cart.startswith("a") else "h1"

    h0, h1 = HandOff("h0", tmp_path, owner), HandOff("h1", tmp_path, owner)
    listener0 = socket.create_server(("127.0.0.1", 0))
    listener1 = socket.create_server(("127.0.0.1", 0))
    s0, t0 = await _serve("h0", h0, listener0)
    s1, t1 = await _serve("h1", h1, listener1)
    reader, writer = await asyncio.open_connection(*listener0.getsockname())
    try:
        answers = []
        for path in ("/v1/carts/a1", "/v1/carts/b1", "/v1/carts/b2", "/v1/carts/a2",
                     "/v1/products", "/v1/carts/b3/items/l1"):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            answers.append(await _read_answer(reader))
        assert answers == ["h0 GET /v1/carts/a1 0", "h1 GET /v1/carts/b1 0",
                           "h1 GET /v1/carts/b2 0", "h0 GET /v1/carts/a2 0",
                           "h0 GET /v1/products 0", "h1 GET /v1/carts/b3/items/l1 0"]
        # a request whose body comes in a later read than its request line
        writer.write(b"POST /v1/carts/a3/items HTTP/1.1\r\nHost: t\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"Content-Length: 5\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"hello")
        assert await _read_answer(reader) == "h0 POST /v1/carts/a3/items 5"
        # two pipelined requests in one read go with the first one's owner, in order
        writer.write(b"GET /v1/carts/b4 HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /v1/carts/a4 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert [await _read_answer(reader), await _read_answer(reader)] == [
            "h1 GET /v1/carts/b4 0", "h1 GET /v1/carts/a4 0"]
        # b1, a2, b3, a3 (its request line alone), b4 (with a4); all but b1 came back to
        # a parked copy
        assert h0.stats()["handed_off"] + h1.stats()["handed_off"] == 5
        assert h0.stats()["handed_in"] + h1.stats()["handed_in"] == 5
        assert h0.stats()["handed_back"] + h1.stats()["handed_back"] == 4
        assert len(h0.parked) + len(h1.parked) == 1  # the host the client left holds a copy
        writer.close()  # the client hangs up: the copy parked at the other host goes too
        await _until(lambda: not h0.parked and not h1.parked)
        assert await reader.read() == b""
    finally:
        writer.close()
        for handoff in (h0, h1):
            await handoff.close()
        for server in (s0, s1):
            server.should_exit = True
        await asyncio.gather(t0, t1, return_exceptions=True)


async def test_a_connection_that_cannot_be_served_is_closed_everywhere(tmp_path: Path) -> None:
    client, server = _tcp_pair()
    mine = _Conn(server.fileno())
    async with _Hosts(tmp_path) as hosts:
        handed, data, key, holders = await hosts.hand_one(mine)

        class _Broken:
            config = type("Config", (), {"http_protocol_class": handoff_protocol(
                hosts.owner)})()
            server_state = lifespan = None

        with pytest.raises(Exception):  # noqa: B017 - uvicorn's protocol refuses the state
            await serve_handed(_Broken(), handed, data, key, holders)
        assert handed.fileno() == -1  # closed here
        await _until(lambda: mine.closed)  # and the copy parked at the ingress too
    client.close()
    server.close()
