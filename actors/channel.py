"""A direct batch channel to a Ray host: an authenticated TCP stream of msgpack frames.

Ray places, starts and stops the hosts; the router's batches need not ride Ray's task calls
too. A Ray call costs about 0.5 ms of CPU on each side whatever it carries, which at a
moderate load (when most batches hold one or two messages) is most of a request's cost: churn
paced at 1,000 requests/s measured p99 23 ms and 1.54 ms of server CPU per request on Ray
calls, against 3 ms and 0.53 ms for the same hosts in-process (``python -m loadtest.bench
--systems engine-ray,engine-local --scenarios churn --rate 1000``, 2026-11-28). So each Ray
host also listens on a TCP port of its node, and each caller (the gateway, every other host)
keeps one connection to it.

**Opening: mutual authentication.** Both ends hold the placement's random secret (the
``token``, `TOKEN_BYTES` bytes, handed to the hosts in their Ray start-up calls), and neither
ever sends it. Each proves it knows it with an HMAC-SHA256 (RFC 2104) over both ends' fresh
nonces, a role label and the host's address::

    client -> host    MAGIC, client nonce (32 bytes)
    host -> client    MAGIC, host nonce (32 bytes), HMAC(secret, "host" | nonces | address)
    client -> host    HMAC(secret, "client" | nonces | address)

Each side checks the other's proof with ``hmac.compare_digest`` and closes the connection on
a mismatch. So a process that takes a dead host's port learns nothing of the secret and is
refused by the client before a single batch is sent; it cannot relay the proof of a live host
elsewhere either, since that proof names the other host's address. The host closes a
connection that has not authenticated within `PREAUTH_TIMEOUT` seconds, and holds at most
`MAX_CONNECTIONS` connections, `MAX_UNAUTHENTICATED` of them not yet authenticated: past
either, a new connection is closed at once. Where Ray's own TLS is on (``RAY_USE_TLS`` with
``RAY_TLS_SERVER_CERT``, ``RAY_TLS_SERVER_KEY``, ``RAY_TLS_CA_CERT``, the files Ray's own
connections use), the stream is TLS with certificates checked on both sides against that CA,
before the HMAC exchange; without it, frames travel in clear and an attacker on the path
between two nodes could read or alter them (as Ray's own traffic without TLS).

**Frames.** Then batches go as::

    frame = header (body length: u32, batch id: u64, network order) + body (msgpack)

A request's body is the list of messages, each a 6-item array; replies come under the same
batch id as each message finishes, ``[true, [[index, status, value], ...]]`` (those ready
together share a frame; a batch never waits for its slowest message), or
``[false, description]`` when the host failed the batch (the caller raises RuntimeError).
The two ends turn those arrays back into the runtime's tuples; inside a message or a reply
every value keeps its type.
Bodies are plain data (`actors.wire`): decoding one builds values, never runs code, whoever
sent it. A reply that cannot be encoded fails its batch alone; a body that cannot be decoded,
or an oversized frame, closes the connection. Replies may come back in any order.

Failure is what it is over Ray: if the connection breaks, every batch in flight on it fails
with ``ConnectionError`` and the router answers its callers ``host_unavailable`` (a 503 they
may retry: every mutating message carries its request id); the next batch reconnects. A
host process that dies closes its sockets at once; a host whose node vanishes without a word
is found by TCP keepalive (`KEEPALIVE_IDLE` s of silence, then `KEEPALIVE_PROBES` probes
`KEEPALIVE_INTERVAL` s apart), so no batch waits on a dead peer forever.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import socket
import ssl
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from actors import wire
from actors.router import NotSent, unavailable
from actors.runtime import Message, Reply

log = logging.getLogger(__name__)

#: body length (bytes), batch id
HEADER = struct.Struct("!IQ")
#: Length of the placement's shared secret, bytes (256 bits, the HMAC-SHA256 key size).
TOKEN_BYTES = 32
#: Largest frame body accepted, bytes (a batch of 256 messages is far below it).
MAX_FRAME = 64 * 2**20

#: Protocol name and version, first on the wire from each side: a peer speaking anything
#: else (an older build, another service) is closed before any proof is computed.
MAGIC = b"cechan/2"
NONCE_BYTES = 32
PROOF_BYTES = hashlib.sha256().digest_size
HOST_LABEL, CLIENT_LABEL = b"cart-engine channel host", b"cart-engine channel client"

#: Seconds a new connection has to authenticate (TLS included where on) before the host
#: closes it. A real peer needs one round trip on the cluster's network, well under a
#: millisecond; 5 s still covers a peer stalled by a long GC pause or a loaded node, while an
#: idle connection cannot hold a slot for longer than that.
PREAUTH_TIMEOUT = 5.0
#: Connections a host keeps open at once. Real callers hold one each (every gateway process,
#: every other host): a few dozen; 512 leaves room for reconnects and bounds the sockets well
#: below a process's usual soft limit of 1,024 open files (Redis and the host's own outgoing
#: connections need some too).
MAX_CONNECTIONS = 512
#: Of those, connections not yet authenticated. A real caller is unauthenticated for one
#: round trip, so even every caller reconnecting at once after a restart stays far below 64;
#: someone holding them all delays new connections by at most `PREAUTH_TIMEOUT` at a time and
#: never touches the authenticated ones.
MAX_UNAUTHENTICATED = 64

#: TCP keepalive of every channel connection, seconds and probes: a silent peer is given up
#: after about 10 + 3 x 5 = 25 s.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES = 10, 5, 3

Handler = Callable[[list[Message]], Awaitable[list[Reply]]]


class ChannelAuthError(NotSent):
    """The peer did not speak the channel's protocol or did not prove the shared secret."""


def keep_alive(writer: asyncio.StreamWriter) -> None:
    """Turn TCP keepalive on for the connection behind ``writer`` (where the OS lets us)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE), ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
                          ("TCP_KEEPCNT", KEEPALIVE_PROBES)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def proof(token: bytes, label: bytes, client_nonce: bytes, host_nonce: bytes,
          address: tuple[str, int]) -> bytes:
    """HMAC-SHA256 (RFC 2104) keyed by the shared secret over a role label, both nonces and
    the host's ``(host, port)`` as the client dials it: `PROOF_BYTES` bytes."""
    host, port = address
    msg = b"\0".join((label, client_nonce, host_nonce, f"{host}:{int(port)}".encode()))
    return hmac.new(token, msg, hashlib.sha256).digest()


def tls_enabled() -> bool:
    """Whether Ray's TLS is on for this process (``RAY_USE_TLS`` is ``1`` or ``true``)."""
    return os.environ.get("RAY_USE_TLS", "0").strip().lower() in ("1", "true")


def tls_context(server_side: bool) -> ssl.SSLContext | None:
    """A TLS context from Ray's own certificate files when ``RAY_USE_TLS`` is on, else None.

    Both sides present ``RAY_TLS_SERVER_CERT`` / ``RAY_TLS_SERVER_KEY`` and require the
    other's certificate to chain to ``RAY_TLS_CA_CERT``, as Ray's own connections do. The
    host name is not checked (Ray's node certificates need not name the address a host
    listens on); which host answered is proven by the HMAC exchange, bound to its address.
    Raises KeyError when TLS is on and one of the three variables is missing, and OSError /
    ssl.SSLError when a file cannot be read.
    """
    if not tls_enabled():
        return None
    cert, key, ca = (os.environ[name] for name in
                     ("RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _batch_from_wire(body: Any) -> list[Message] | None:
    """A request body's messages as the runtime's tuples ``(kind, key, method, args,
    request_id, fingerprint)`` (`actors.runtime.Message`); None when it is not that shape."""
    if type(body) is not list:
        return None
    messages = []
    for m in body:
        if type(m) is not list or len(m) != 6 or type(m[0]) is not str \
                or type(m[1]) is not str or type(m[2]) is not str or type(m[3]) is not dict:
            return None
        messages.append(tuple(m))
    return messages


def _replies_from_wire(value: Any) -> list[tuple[int, Reply]]:
    """A reply frame's ``[index, status, value]`` entries as ``(index, (status, value))``.
    Raises ValueError when they are not that shape."""
    if type(value) is not list or not all(
            type(r) is list and len(r) == 3 and type(r[0]) is int for r in value):
        raise ValueError("a frame that is not a batch's replies")
    return [(r[0], (r[1], r[2])) for r in value]


#: Seconds a closing channel server waits for the batches under way to answer.
CLOSE_GRACE = 10.0
#: Seconds it then keeps its connections open, refusing new batches unrun: more than the
#: directory refresh (`actors.directory.HEARTBEAT`, 0.5 s), after which callers route elsewhere.
CLOSE_LINGER = 1.0


class ChannelServer:
    """Answers batches sent over TCP with ``handler`` (a host's ``handle_batch``) to callers
    that prove they hold ``token``.

    ``preauth_timeout`` (seconds), ``max_connections`` and ``max_unauthenticated``: see
    `PREAUTH_TIMEOUT`, `MAX_CONNECTIONS` and `MAX_UNAUTHENTICATED` (tests use smaller ones).
    ``refused`` counts the connections it closed, by reason: ``over the connection cap``,
    ``over the cap of unauthenticated connections``, ``not authenticated in time``, ``not
    authenticated``, ``TLS handshake failed``, ``a frame over the size limit``, ``an
    undecodable frame``, ``a frame that is not a batch of messages``.
    """

    def __init__(self, handler: Handler, token: bytes, *,
                 preauth_timeout: float = PREAUTH_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS,
                 max_unauthenticated: int = MAX_UNAUTHENTICATED) -> None:
        self.handler = handler
        self.token = token
        self.preauth_timeout = preauth_timeout
        self.max_connections = max_connections
        self.max_unauthenticated = max_unauthenticated
        self.refused: Counter[str] = Counter()
        self._tls = tls_context(server_side=True)
        self._address: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._connections: set[_HostFrames] = set()
        self._unauthenticated = 0

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        """Listen on ``host`` at ``port`` (0: a free one); answers the ``(host, port)`` that
        callers must dial: the HMAC exchange proves this address."""
        self._closing = False
        self._server = await asyncio.start_server(self._serve, host, port)
        port = self._server.sockets[0].getsockname()[1]
        self._address = (host, port)
        return host, port

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """Stop listening, let the batches under way answer (up to ``grace`` seconds: a
        leaving host finishes what it was asked, forwarded HTTP requests included) while
        refusing new ones unrun for `CLOSE_LINGER` more, then close every connection (what
        is still in flight fails on the caller's side, as if the host had died)."""
        if self._server is not None:
            self._closing = True  # batches arriving from now on are refused, not run
            self._server.close()
            if grace > 0:
                if self._tasks:
                    await asyncio.wait(list(self._tasks), timeout=grace)
                # Callers whose directory copy still names this host keep sending for up to
                # a refresh: refuse those batches (they are re-sent elsewhere) rather than
                # drop them unanswered with the connection.
                if self._writers:
                    await asyncio.sleep(min(CLOSE_LINGER, grace))
            for writer in list(self._writers):
                writer.close()
            if self._connections:  # their ends are delivered by the loop: let them be
                await asyncio.wait([c.lost for c in self._connections], timeout=CLOSE_LINGER)
            await self._server.wait_closed()
            self._server = None

    def _refuse(self, reason: str, detail: str = "") -> None:
        """Count a closed connection under ``reason`` (one of a few fixed strings)."""
        self.refused[reason] += 1
        n = self.refused[reason]
        if n & (n - 1) == 0:  # the 1st, 2nd, 4th, 8th...: a flood does not flood the log
            log.warning("channel: closed a connection: %s%s (%d so far)", reason,
                        f" ({detail})" if detail else "", n)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= self.max_connections:
            self._refuse("over the connection cap")
            writer.close()
            return
        if self._unauthenticated >= self.max_unauthenticated:
            self._refuse("over the cap of unauthenticated connections")
            writer.close()
            return
        self._writers.add(writer)
        self._unauthenticated += 1
        authenticated = False
        try:
            try:
                async with asyncio.timeout(self.preauth_timeout):
                    keep_alive(writer)
                    if self._tls is not None:
                        await writer.start_tls(self._tls)
                    await self._authenticate(reader, writer)
            except TimeoutError:
                self._refuse("not authenticated in time")
                return
            except ChannelAuthError as e:
                self._refuse("not authenticated", str(e))
                return
            except ssl.SSLError:
                self._refuse("TLS handshake failed")
                return
            authenticated = True
            self._unauthenticated -= 1
            frames = _HostFrames(self, writer)
            self._connections.add(frames)
            try:
                await frames.take_over(reader)
                await frames.lost  # the batches are read and answered by `_HostFrames`
            finally:
                self._connections.discard(frames)
        except (asyncio.IncompleteReadError, OSError):
            pass  # the caller went away (or broke TLS); its batches in flight fail on its side
        finally:
            if not authenticated:
                self._unauthenticated -= 1
            self._writers.discard(writer)
            writer.close()

    async def _authenticate(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        if self._address is None:
            raise ChannelAuthError("server not started")
        hello = await reader.readexactly(len(MAGIC) + NONCE_BYTES)
        if hello[:len(MAGIC)] != MAGIC:
            raise ChannelAuthError("not the channel protocol")
        client_nonce, host_nonce = hello[len(MAGIC):], secrets.token_bytes(NONCE_BYTES)
        writer.write(MAGIC + host_nonce + proof(self.token, HOST_LABEL, client_nonce,
                                                host_nonce, self._address))
        await writer.drain()
        theirs = await reader.readexactly(PROOF_BYTES)
        expected = proof(self.token, CLIENT_LABEL, client_nonce, host_nonce, self._address)
        if not hmac.compare_digest(theirs, expected):
            raise ChannelAuthError("the caller did not prove the placement's secret")


class _Frames(asyncio.Protocol):
    """An authenticated connection's frames, read straight off its transport.

    The handshake runs on asyncio streams (`take_over` then moves the connection here): a
    frame is parsed from the bytes as they arrive and handed to `frame`, with no stream
    reads, futures or task wake-ups per frame, and the host runs a batch's messages as one
    task each, without a task and a gather per batch. Against streams, in alternating runs
    of ``python -m loadtest.hop_bench --concurrency 1,4,16`` (2026-11-30): at one message
    per batch 60-70 us of host CPU per message instead of 81-95, 71-79 us of the caller's
    instead of 80-91; at 4 and 16 per batch 5-20% less on each side. Writes go through the
    transport; `drain` waits while it asks us to pause.
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        #: The stream writer the connection had (its socket, ``get_extra_info``).
        self.writer = writer
        self.transport = writer.transport
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        #: Bytes the buffer must hold before a frame in it can be whole.
        self._need = HEADER.size
        self._paused = False
        self._drained: asyncio.Future[None] | None = None

    async def take_over(self, reader: asyncio.StreamReader) -> None:
        """Move the connection from its stream ``reader`` to this protocol, bytes already
        read included, in order: reading is paused while the stream gives them up."""
        transport = self.transport
        transport.pause_reading()
        transport.set_protocol(self)
        reader.feed_eof()
        left = await reader.read()  # the buffer as it is: with EOF fed, read never waits
        if left:
            self.data_received(left)
        if transport.is_closing():
            self.connection_lost(None)
        else:
            transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer:  # a frame begun in an earlier read: wait until it is whole
            buffer += data
            if len(buffer) < self._need:
                return
            data = bytes(buffer)
            buffer.clear()
        view = memoryview(data)
        start, end = 0, len(data)
        need = HEADER.size
        while end - start >= HEADER.size:
            size, batch_id = HEADER.unpack_from(data, start)
            if size > MAX_FRAME:
                self.too_big(size)
                self.transport.close()
                return
            stop = start + HEADER.size + size
            if stop > end:
                need = stop - start
                break
            body = view[start + HEADER.size:stop]
            start = stop
            if not self.frame(batch_id, body):
                self.transport.close()
                return
        if start < end:
            buffer += view[start:]
            self._need = need

    def frame(self, batch_id: int, body: memoryview) -> bool:
        """Take one frame (its body is valid during the call); False closes the connection."""
        raise NotImplementedError

    def too_big(self, size: int) -> None:
        """A frame header announced ``size`` bytes, over `MAX_FRAME` (the connection closes)."""

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        if self._paused and not self.transport.is_closing():
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.resume_writing()


class _HostFrames(_Frames):
    """The host's side of a connection: each batch's messages run, each on its own."""

    def __init__(self, server: ChannelServer, writer: asyncio.StreamWriter) -> None:
        super().__init__(writer)
        self.server = server

    def too_big(self, size: int) -> None:
        self.server._refuse("a frame over the size limit", f"{size} bytes")

    def frame(self, batch_id: int, body: memoryview) -> bool:
        server = self.server
        try:
            messages = _batch_from_wire(wire.unpack(body))
        except wire.WireError as e:
            server._refuse("an undecodable frame", str(e))
            return False
        if messages is None:
            server._refuse("a frame that is not a batch of messages")
            return False
        if server._closing:  # never run: the caller re-sends or runs it elsewhere
            data = wire.pack([True, [[i, *unavailable(False)] for i in range(len(messages))]])
            self.transport.write(HEADER.pack(len(data), batch_id) + data)
            return True
        _Answer(self, batch_id, messages)
        return True

    # A caller that does not read its replies stops having its batches read.
    def pause_writing(self) -> None:
        super().pause_writing()
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.transport.is_closing():
            self.transport.resume_reading()


class _Answer:
    """One batch being answered. Each message runs on its own and its reply is sent as soon
    as it is ready (replies that finish together share a frame): a batch never waits for its
    slowest message. Waiting for the whole batch would couple unrelated turns: a turn of this
    batch that asks, on the caller's host, an actor whose turn waits for another message of
    this same batch would wait for itself (a deadlock across hosts). A message whose handler
    raises fails the batch (``[false, description]``); replies sent before it stand."""

    __slots__ = ("frames", "batch_id", "ready", "failed", "scheduled")

    def __init__(self, frames: _HostFrames, batch_id: int, messages: list[Message]) -> None:
        self.frames = frames
        self.batch_id = batch_id
        self.ready: list[list[Any]] = []
        self.failed = False
        self.scheduled = False
        tasks = frames.server._tasks
        for i, message in enumerate(messages):
            task = asyncio.ensure_future(self._one(i, message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def _one(self, i: int, message: Message) -> None:
        try:
            status, value = (await self.frames.server.handler([message]))[0]
        except Exception as e:  # noqa: BLE001 - the batch fails, the host and the channel live on
            if not self.failed:
                log.error("channel: a batch failed on this host: %r", e)
                self._flush()  # the replies ready before the failure stand
                self.failed = True
                self._send([False, f"{type(e).__name__}: {e}"])
            return
        self.ready.append([i, status, value])
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        await self.frames.drain()

    def _flush(self) -> None:
        self.scheduled = False
        if self.ready and not self.failed:
            self._send([True, self.ready])
        self.ready = []

    def _send(self, body: list[Any]) -> None:
        transport = self.frames.transport
        if transport.is_closing():
            return
        try:
            data = wire.pack(body)
        except (wire.WireError, TypeError, ValueError) as e:
            # a reply that cannot travel fails its batch alone
            log.error("channel: a reply could not be encoded: %s", e)
            self.failed = True
            data = wire.pack([False, f"unencodable reply: {e}"])
        transport.write(HEADER.pack(len(data), self.batch_id) + data)


#: Called with (position in the batch, reply) as each reply arrives.
OnReply = Callable[[int, Reply], None]


class _Batch:
    """A batch in flight on the connection of ``frames``: its replies by position as they
    arrive."""

    __slots__ = ("fut", "replies", "missing", "on_reply", "frames")

    def __init__(self, fut: asyncio.Future[list[Reply]], n: int,
                 on_reply: OnReply | None, frames: _CallerFrames) -> None:
        self.frames = frames
        self.fut = fut
        self.replies: list[Reply | None] = [None] * n
        self.missing = n
        self.on_reply = on_reply


class ChannelClient:
    """One connection to one host's :class:`ChannelServer`, opened on first use and again
    after it breaks; any number of batches in flight on it at once.

    ``address`` is the ``(host, port)`` its server's ``start`` answered (the host proves it);
    ``handshake_timeout``: seconds to connect and authenticate (`PREAUTH_TIMEOUT`).
    """

    def __init__(self, address: tuple[str, int], token: bytes, *,
                 handshake_timeout: float = PREAUTH_TIMEOUT) -> None:
        self.address = address
        self.token = token
        self.handshake_timeout = handshake_timeout
        self._tls = tls_context(server_side=False)
        self._frames: _CallerFrames | None = None
        self._connecting: asyncio.Lock | None = None
        self._pending: dict[int, _Batch] = {}
        self._next_id = 0

    async def call(self, messages: list[Message], on_reply: OnReply | None = None
                   ) -> list[Reply]:
        """Send one batch and await its replies, in order; ``on_reply(i, reply)`` hears each
        as it arrives (a caller need not wait for the batch's slowest message).

        Raises `actors.router.NotSent` (a ConnectionError) when the host cannot be reached or
        does not prove the shared secret (the batch never left), ConnectionError when the
        connection breaks before the replies arrive; RuntimeError when the host failed the
        batch or its reply could not be encoded; `actors.wire.WireError` (a ValueError) when
        ``messages`` hold a value that cannot travel (nothing is sent).
        """
        data = wire.pack([list(m) for m in messages])
        frames = self._frames
        if frames is None or frames.transport.is_closing():
            try:
                frames = await self._connect()
            except NotSent:
                raise
            except OSError as e:  # ConnectionError included: nothing was sent
                raise NotSent(f"channel to {self.address}: {e}") from e
        self._next_id += 1
        batch_id = self._next_id
        fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        self._pending[batch_id] = _Batch(fut, len(messages), on_reply, frames)
        try:
            frames.transport.write(HEADER.pack(len(data), batch_id) + data)
            await frames.drain()
            return await fut
        finally:
            self._pending.pop(batch_id, None)

    async def _connect(self) -> _CallerFrames:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._frames is not None and not self._frames.transport.is_closing():
                return self._frames
            writer: asyncio.StreamWriter | None = None
            try:
                async with asyncio.timeout(self.handshake_timeout):
                    reader, writer = await asyncio.open_connection(*self.address, ssl=self._tls)
                    keep_alive(writer)
                    await self._authenticate(reader, writer)
            except BaseException as e:
                if writer is not None:
                    writer.close()
                if isinstance(e, TimeoutError):
                    raise ConnectionError(
                        f"channel to {self.address}: no authenticated answer within "
                        f"{self.handshake_timeout} s") from e
                if isinstance(e, asyncio.IncompleteReadError):
                    raise ConnectionError(
                        f"channel to {self.address} closed during the handshake") from e
                raise
            frames = _CallerFrames(self, writer)
            self._frames = frames
            await frames.take_over(reader)
            return frames

    async def _authenticate(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        client_nonce = secrets.token_bytes(NONCE_BYTES)
        writer.write(MAGIC + client_nonce)
        answer = await reader.readexactly(len(MAGIC) + NONCE_BYTES + PROOF_BYTES)
        magic, host_nonce = answer[:len(MAGIC)], answer[len(MAGIC):len(MAGIC) + NONCE_BYTES]
        expected = proof(self.token, HOST_LABEL, client_nonce, host_nonce, self.address)
        if magic != MAGIC or not hmac.compare_digest(answer[-PROOF_BYTES:], expected):
            raise ChannelAuthError(
                f"the peer at {self.address} did not prove the placement's secret; refused")
        writer.write(proof(self.token, CLIENT_LABEL, client_nonce, host_nonce, self.address))

    def _reply(self, batch_id: int, body: memoryview) -> None:
        """Hand one reply frame's replies to their batch. Raises ValueError for a frame that
        is not a reply (the connection is then done)."""
        answer = wire.unpack(body)
        if type(answer) is not list or len(answer) != 2 or type(answer[0]) is not bool:
            raise ValueError("a frame that is not a reply")
        answered, value = answer
        batch = self._pending.get(batch_id)
        if batch is None or batch.fut.done():
            return
        if not answered:
            batch.fut.set_exception(RuntimeError(f"host {self.address}: {value}"))
            return
        for i, reply in _replies_from_wire(value):
            if not 0 <= i < len(batch.replies) or batch.replies[i] is not None:
                raise ValueError("a reply for no message of its batch")
            batch.replies[i] = reply
            batch.missing -= 1
            if batch.on_reply is not None:
                batch.on_reply(i, reply)
        if not batch.missing:
            batch.fut.set_result(batch.replies)  # type: ignore[arg-type]

    def _lost(self, frames: _CallerFrames, error: BaseException) -> None:
        """The connection behind ``frames`` is gone: every batch in flight on it fails (a
        connection opened since keeps its own)."""
        if self._frames is frames:
            self._frames = None
        for batch in self._pending.values():
            if batch.frames is frames and not batch.fut.done():
                batch.fut.set_exception(error)

    async def close(self) -> None:
        frames = self._frames
        if frames is not None:
            frames.transport.close()
            self._lost(frames, ConnectionError(f"channel to {self.address} closed"))


class _CallerFrames(_Frames):
    """The caller's side of a connection: reply frames go to their batches."""

    def __init__(self, client: ChannelClient, writer: asyncio.StreamWriter) -> None:
        super().__init__(writer)
        self.client = client
        self.error: BaseException = ConnectionError(f"channel to {client.address} closed")

    def too_big(self, size: int) -> None:
        self.error = ConnectionError(f"channel to {self.client.address} broke: a {size}-byte "
                                     "frame, over the limit")

    def frame(self, batch_id: int, body: memoryview) -> bool:
        try:
            self.client._reply(batch_id, body)
        except Exception as e:  # noqa: BLE001 - a broken frame: the channel is done
            self.error = ConnectionError(f"channel to {self.client.address} broke: {e!r}")
            return False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.client._lost(self, self.error)


def connect_all(addresses: list[tuple[str, int]], token: bytes) -> list[ChannelClient]:
    """One (lazily connected) client per host, in host order."""
    return [ChannelClient((host, port), token) for host, port in addresses]


def node_address() -> str:
    """The IP address of this Ray node, where a host listens (loopback outside Ray)."""
    try:
        import ray

        return str(ray.util.get_node_ip_address())
    except Exception:  # noqa: BLE001 - not in a Ray worker
        return "127.0.0.1"
