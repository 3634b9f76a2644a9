"""uvicorn's httptools protocol with one ``send`` per response instead of two.

uvicorn writes a response's status line and headers, then its body, as two writes to the
transport, and uvloop sends each at once: two ``send`` system calls per response, and on
loopback each one runs the receiver's TCP path too. Profiled under the churn benchmark
(py-spy, 2026-11-29) those two writes were 11% of an ingress process's samples. Here the
writes a connection makes within one event-loop step are joined and sent together at the end
of the step (``loop.call_soon``): the headers and body of a response, and the responses of
pipelined requests answered in the same step. Nothing waits longer than the current step.

Used by every uvicorn the service starts (`gateway.ingress.uvicorn_config`, the one-gateway
``serve``); the peers of the benchmark keep uvicorn's own protocol.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _CoalescingTransport:
    """A transport whose ``write`` calls within one loop step go out as one write.

    Everything else is the real transport's; ``close`` and ``write_eof`` send what is
    buffered first, so nothing written is ever dropped or reordered.
    """

    __slots__ = ("_transport", "_loop", "_chunks")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._chunks:
            self._loop.call_soon(self._flush)
        self._chunks.append(data)

    def _flush(self) -> None:
        chunks, self._chunks = self._chunks, []
        if chunks and not self._transport.is_closing():
            self._transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    # The transport methods a served request calls, spelled out: `__getattr__` costs a
    # failed lookup first.
    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` writing through a `_CoalescingTransport`; pass it to uvicorn as
    ``http=CoalescingHttpProtocol``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _CoalescingTransport(  # type: ignore[assignment]
            transport, asyncio.get_running_loop())


class HandOffHttpProtocol(CoalescingHttpProtocol):
    """`CoalescingHttpProtocol` that passes an idle connection to the host on this machine
    owning the cart its next request is for (`gateway.handoff`), and that serves the
    connections handed to this host. Made per ingress by `handoff_protocol`.

    A connection passed on stays here *parked*: its reading paused, its keep-alive timer
    off, this process's descriptor kept, so that when it comes back it goes on where it
    was instead of being set up again. While it is parked, the host it went to is the only
    reader and writer of the socket.
    """

    handoff: Any = None  # the ingress's `gateway.handoff.HandOff`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_message = False
        self._first: bytes | None = None  # the bytes a connection was handed in with
        #: The socket's ``(st_dev, st_ino)``: the same in every process holding it.
        self.key: tuple[int, int] | None = None
        #: Hosts that may hold a parked copy of this connection (told when it closes).
        self.holders: frozenset[str] = frozenset()
        self.parked = False
        #: When this copy was parked (the loop's clock, seconds): one parked longer than the
        #: keep-alive is closed (`gateway.handoff.HandOff`).
        self.parked_at = 0.0
        self._fd = -1

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._fd = transport.get_extra_info("socket").fileno()
        first, self._first = self._first, None
        if first is not None:  # before the transport reads anything more
            super().data_received(first)

    def connection_lost(self, exc: Exception | None) -> None:
        self.handoff.lost(self)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._in_message = True
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._in_message = False
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if not self._in_message and not self.pipeline and (
                self.cycle is None or self.cycle.response_complete):
            owner = self.handoff.owner_here(data)
            if owner is not None and self._idle_transport() and self.handoff.pass_on(
                    self, owner, data):
                return
        super().data_received(data)

    def fileno(self) -> int:
        return self._fd

    def park(self) -> None:
        """Stop reading and forget the keep-alive timer: another host has the connection."""
        self.parked = True
        self.parked_at = self.loop.time()
        self.transport.pause_reading()
        self._unset_keepalive_if_required()

    def resume(self, data: bytes, holders: frozenset[str]) -> None:
        """Take the connection back with the bytes the other host read of its next request."""
        self.parked = False
        self.holders = holders
        self.transport.resume_reading()
        super().data_received(data)  # served here: views of the directory may differ

    def _idle_transport(self) -> bool:
        t = self.transport
        return not t._chunks and t.get_write_buffer_size() == 0  # type: ignore[attr-defined]


def handoff_protocol(handoff: Any) -> type[HandOffHttpProtocol]:
    """A `HandOffHttpProtocol` class bound to one ingress's ``handoff``."""
    return type("HandOffHttpProtocol", (HandOffHttpProtocol,), {"handoff": handoff})


async def serve_handed(server: Any, sock: Any, first: bytes, key: tuple[int, int],
                       holders: frozenset[str]) -> None:
    """Serve a connection handed to this host, with the bytes it came with, through the
    running uvicorn ``server`` (its protocol class, state and app); ``key`` and ``holders``
    as in `HandOffHttpProtocol`. If it cannot be set up, the connection is closed here and
    the hosts holding a copy are told to close theirs, then the error is raised."""
    config = server.config
    try:
        protocol = config.http_protocol_class(config=config, server_state=server.server_state,
                                              app_state=server.lifespan.state)
        protocol._first = first
        protocol.key = key
        protocol.holders = holders
        await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, sock)
    except BaseException:
        sock.close()
        # The hosts holding a copy close theirs: the client sees it closed, not hanging.
        config.http_protocol_class.handoff.abandon(key, holders)
        raise
