"""A direct batch channel to a Ray host: length-prefixed frames over one TCP stream.

Ray places, starts and stops the hosts; the router's batches need not ride Ray's task calls
too. A Ray call costs about 0.5 ms of CPU on each side whatever it carries, which at a
moderate load (when most batches hold one or two messages) is most of a request's cost: churn
paced at 1,000 requests/s measured p99 23 ms and 1.54 ms of server CPU per request on Ray
calls, against 3 ms and 0.53 ms for the same hosts in-process (``python -m loadtest.bench
--systems engine-ray,engine-local --scenarios churn --rate 1000``, 2026-11-28). So each Ray
host also listens on a TCP port of its node, and each caller (the gateway, every other host)
keeps one connection to it, over which batches go as frames::

    frame = header (body length: u32, batch id: u64, network order) + body (pickle)

A request's body is the pickled list of messages; the reply, under the same batch id, is the
pickled ``(True, replies)``, or ``(False, description)`` when the host failed the whole batch
(the caller raises RuntimeError). Replies may come back in any order. Pickle is what Ray
itself sends between its workers, so this trusts the peers exactly as Ray does; on top of
that a caller must open each connection with the placement's random token (32 bytes), or the
host closes it unread.

Failure is what it is over Ray: if the connection breaks, every batch in flight on it fails
with ``ConnectionError`` and the router answers its callers ``host_unavailable`` (a 503 they
may retry: every mutating message carries its request id); the next batch reconnects. A
host process that dies closes its sockets at once; a host whose node vanishes without a word
is found by TCP keepalive (`KEEPALIVE_IDLE` s of silence, then `KEEPALIVE_PROBES` probes
`KEEPALIVE_INTERVAL` s apart), so no batch waits on a dead peer forever.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import pickle
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from actors.runtime import Message, Reply

log = logging.getLogger(__name__)

#: body length (bytes), batch id
HEADER = struct.Struct("!IQ")
TOKEN_BYTES = 32
#: Largest frame body accepted, bytes (a batch of 256 messages is far below it).
MAX_FRAME = 64 * 2**20

#: TCP keepalive of every channel connection, seconds and probes: a silent peer is given up
#: after about 10 + 3 x 5 = 25 s.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES = 10, 5, 3

Handler = Callable[[list[Message]], Awaitable[list[Reply]]]


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


class ChannelServer:
    """Answers batches sent over TCP with ``handler`` (a host's ``handle_batch``)."""

    def __init__(self, handler: Handler, token: bytes) -> None:
        self.handler = handler
        self.token = token
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str) -> tuple[str, int]:
        """Listen on ``host`` at a free port; answers the ``(host, port)`` to connect to."""
        self._server = await asyncio.start_server(self._serve, host, 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return host, port

    async def close(self) -> None:
        """Stop listening and close every connection (batches in flight fail on the caller's
        side, as if the host had died)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        keep_alive(writer)
        try:
            if not hmac.compare_digest(await reader.readexactly(TOKEN_BYTES), self.token):
                log.warning("channel: a connection without the placement's token, closed")
                return
            while True:
                size, batch_id = HEADER.unpack(await reader.readexactly(HEADER.size))
                if size > MAX_FRAME:
                    log.warning("channel: a %d-byte frame, over the limit; closing", size)
                    return
                body = await reader.readexactly(size)
                task = asyncio.ensure_future(self._answer(writer, batch_id, body))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the caller went away; its batches in flight fail on its side
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, batch_id: int, body: bytes) -> None:
        try:
            answer: tuple[bool, Any] = \
                (True, await self.handler(pickle.loads(body)))  # noqa: S301 - trusted as Ray's
        except Exception as e:  # noqa: BLE001 - the caller learns it, the connection lives on
            log.exception("channel: a batch failed on this host")
            answer = (False, f"{type(e).__name__}: {e}")
        try:
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # noqa: BLE001 - a reply that cannot travel fails its batch
            log.exception("channel: a reply could not be pickled")
            data = pickle.dumps((False, f"unpicklable reply: {type(e).__name__}: {e}"))
        if writer.is_closing():
            return
        writer.write(HEADER.pack(len(data), batch_id) + data)
        try:
            await writer.drain()
        except ConnectionError:
            pass


class ChannelClient:
    """One connection to one host's :class:`ChannelServer`, opened on first use and again
    after it breaks; any number of batches in flight on it at once."""

    def __init__(self, address: tuple[str, int], token: bytes) -> None:
        self.address = address
        self.token = token
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock | None = None
        self._pending: dict[int, asyncio.Future[list[Reply]]] = {}
        self._next_id = 0

    async def call(self, messages: list[Message]) -> list[Reply]:
        """Send one batch and await its replies, in order.

        Raises ConnectionError (or OSError) when the host cannot be reached or the connection
        breaks before the replies arrive.
        """
        writer = self._writer
        if writer is None or writer.is_closing():
            writer = await self._connect()
        self._next_id += 1
        batch_id = self._next_id
        fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        self._pending[batch_id] = fut
        data = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            writer.write(HEADER.pack(len(data), batch_id) + data)
            await writer.drain()
            return await fut
        finally:
            self._pending.pop(batch_id, None)

    async def _connect(self) -> asyncio.StreamWriter:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            reader, writer = await asyncio.open_connection(*self.address)
            keep_alive(writer)
            writer.write(self.token)
            self._writer = writer
            self._reader_task = asyncio.ensure_future(self._read(reader, writer))
            return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        error: BaseException = ConnectionError(f"channel to {self.address} closed")
        try:
            while True:
                size, batch_id = HEADER.unpack(await reader.readexactly(HEADER.size))
                body = await reader.readexactly(size)
                fut = self._pending.get(batch_id)
                if fut is not None and not fut.done():
                    answered, value = pickle.loads(body)  # noqa: S301 - see the module docstring
                    if answered:
                        fut.set_result(value)
                    else:
                        fut.set_exception(RuntimeError(f"host {self.address}: {value}"))
        except asyncio.CancelledError:
            error = ConnectionError(f"channel to {self.address} closed")
            raise
        except Exception as e:  # noqa: BLE001 - a broken stream or frame: the channel is done
            error = ConnectionError(f"channel to {self.address} broke: {e!r}")
        finally:
            writer.close()
            if self._writer is writer:
                self._writer = None
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(error)

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            try:
                await self._reader_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing anyway
                pass
            self._reader_task = None


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

