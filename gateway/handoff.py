"""Connection hand-off: a cart request goes to its owner on the same machine with its connection.

Every host serves the API on the shared port (`gateway.ingress`), and the kernel hands a
connection to any of them, so with N hosts on a machine a request reaches its cart's owner
1 time in N. Forwarding it (`gateway.forwarding`) costs both hosts a round trip on the
channel and the ingress an HTTP request of its own; on the 2-core machine of the benchmark,
two hosts that forwarded made fewer requests a second than one host alone (3,525 against
3,900 under churn), while two engines that never needed to forward made 5,220 together
(`python -m loadtest.bench`, 2026-11-30).

So when a request arrives, idle connection, for a cart that a host on the *same machine*
owns, the ingress does not read it: it passes the connection's socket itself to the owner
(``SCM_RIGHTS`` over a Unix socket, the way a server hands a listening socket to its next
generation) with the bytes it has already read, and *parks* its own copy: reading paused,
keep-alive timer off. The owner serves the request, and the connection's next ones, as if it
had accepted it. One that comes back to a host holding a parked copy takes up that copy again
(the new descriptor is closed): no socket, transport or protocol is set up twice. The
ingress does no HTTP work for the request, and nothing waits for a reply on the channel.
Hosts on other machines are still reached by forwarding.

Rules, so that a hand-off never weakens what the API promises:

- only at a request's start, on a connection with nothing in flight: no request being read,
  none answered or queued (pipelining), no response bytes waiting to be written;
- the first bytes must hold the whole request line, of a cart path (`forwarding.cart_of`)
  without percent-escapes; anything else is served here as before;
- the hand-off is one datagram (``SOCK_SEQPACKET``): it reaches the owner whole, or the
  send fails and the request is served here (forwarded) as if no hand-off had been tried;
- exactly one host reads and writes a connection: the sender pauses its copy before it
  sends, the receiver resumes (or sets up) its own after it received;
- a connection goes back to a host that has held it (its list of holders says so) by its
  key alone, no descriptor: that host resumes its parked copy. One that has no copy left
  (closed after the keep-alive, or when a host went away) sends the message back on the
  same socket, and the sender, whose copy is parked since the send, resumes it and serves
  the request itself (forwarded to the owner);
- a parked copy keeps the socket open, so it must not outlive the connection: the host
  that closes a connection tells every host that may hold a copy (each hand-off carries
  that list), a copy parked longer than the keep-alive is closed, and when a host of the
  machine goes away (its hand-off socket closes) the others close every copy they parked;
  a closed copy costs nothing but a new set-up if the connection comes back;
- a host that receives a descriptor checks that it is a TCP socket before it serves it;
- between hosts of one cluster only: the sockets live in a directory named by a digest of
  the cluster's channel token, created ``0700`` and refused if another user owns it, and a
  receiver accepts a peer only with its own user id (``SO_PEERCRED``);
- a stopping host shuts its hand-off socket for reading first (new hand-offs fail at the
  sender, and are served there), then serves the ones already queued, and closes its
  parked copies once its HTTP server has stopped.

A host that dies holding queued hand-offs drops their connections, as it drops the ones it
had accepted: the client sees the connection close without an answer, as for any request a
dying host was serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.machine import private_dir
from gateway.forwarding import cart_of

log = logging.getLogger(__name__)

#: Largest first read handed along with a connection; a bigger one is served here.
MAX_HANDOFF_BYTES = 32 * 1024
#: Failed hand-offs to a host before it is tried again (after a failed connect or send).
RETRY_AFTER = 1000
_METHODS = (b"GET ", b"POST ", b"PATCH ", b"DELETE ", b"PUT ", b"HEAD ")
_CARTS = b" /v1/carts/"
_CREDS = struct.Struct("3i")


def handoff_dir(cluster_key: bytes, base: str | None = None) -> Path:
    """The directory of a cluster's hand-off sockets on this machine:
    ``<tmp>/cart-engine-<uid>/<digest>``, the digest a SHA-256 of ``cluster_key`` (the
    channel token: the name says nothing of it). Created ``0700``.

    Raises PermissionError if either directory exists and is not this user's, or is open
    to others (`actors.machine.private_dir`)."""
    return private_dir(hashlib.sha256(b"cart-engine hand-off\0" + cluster_key).hexdigest()[:20],
                       base=base)


def request_cart(data: bytes) -> str | None:
    """The cart id of the cart-scoped request whose first bytes are ``data``, if they hold
    its whole request line; None otherwise (another path, an escaped one, a partial line)."""
    if not data.startswith(_METHODS):
        return None
    start = data.find(_CARTS, 0, 7 + len(_CARTS))
    if start < 0:
        return None
    end = data.find(b" ", start + 1, start + 512)
    if end < 0 or b"%" in data[start:end] or data.find(b"\r\n", end, end + 16) < 0:
        return None
    target = data[start + 1:end].partition(b"?")[0]
    try:
        return cart_of(target.decode("ascii"))
    except UnicodeDecodeError:
        return None


class HandOff:
    """The hand-off endpoint of one host: it receives connections from the hosts of its
    cluster on this machine (`start`), and passes them connections whose next request is for
    a cart they own (`pass_on`), keeping a parked copy of each.

    ``host_id``: this host's id; ``directory``: the cluster's `handoff_dir`; ``owner_of``:
    cart id -> the id of the host that owns it (None: none known); ``park_for``: seconds a
    parked copy is kept at most (the HTTP keep-alive).
    """

    def __init__(self, host_id: str, directory: Path,
                 owner_of: Callable[[str], str | None], park_for: float = 75.0) -> None:
        self.host_id = host_id
        self.directory = directory
        self.owner_of = owner_of
        self.park_for = park_for
        self.sent = 0
        self.received = 0
        self.resumed = 0
        self.refused = 0
        #: Hand-offs by key alone sent back to this host: the receiver had no copy left.
        self.bounced = 0
        #: Parked copies by socket key (`HandOffHttpProtocol.key`).
        self.parked: dict[tuple[int, int], Any] = {}
        self._listener: socket.socket | None = None
        self._peers: dict[int, socket.socket] = {}
        self._out: dict[str, socket.socket] = {}
        self._skip: dict[str, int] = {}
        self._serve: Callable[..., Any] | None = None
        #: The loop this host runs in (made in it: the ingress builds it while serving).
        self._loop = asyncio.get_running_loop()
        self._sweeping: asyncio.TimerHandle | None = None
        #: Where a hand-off is received: one buffer for all, a message is copied out of it.
        self._room = [memoryview(bytearray(_MESSAGE_BYTES))]

    # -- receiving -------------------------------------------------------------------------
    def start(self, serve: Callable[..., Any]) -> None:
        """Listen for hand-offs; ``serve(sock, first_bytes, key, holders)`` takes each
        connection received that has no parked copy here. Raises OSError if the socket
        cannot be bound."""
        self._serve = serve
        path = self._path(self.host_id)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a socket of this host's previous incarnation
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(str(path))
        os.chmod(path, 0o600)
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self._loop.add_reader(listener.fileno(), self._accept)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                peer, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.exception("hand-off: accept failed")
                return
            pid, uid, gid = _CREDS.unpack(peer.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDS.size))
            if uid != os.getuid():
                log.warning("hand-off: refused a peer of uid %d (pid %d)", uid, pid)
                peer.close()
                continue
            peer.setblocking(False)
            self._peers[peer.fileno()] = peer
            self._loop.add_reader(peer.fileno(), self._drain, peer)

    def _drain(self, peer: socket.socket) -> None:
        """Take every message waiting from ``peer``: several hand-offs that arrived together
        cost one wake-up."""
        while self._read(peer):
            pass

    def _receive(self, sock: socket.socket) -> tuple[bytes, list[int], int] | None:
        """One message waiting on ``sock``: its bytes, the descriptors it carried and the
        ``recvmsg`` flags (``b"", [], 0`` when the other side closed); None when nothing
        waits. Raises OSError if the socket failed."""
        try:
            size, ancillary, flags, _ = sock.recvmsg_into(self._room, _ANCILLARY_BYTES)
        except (BlockingIOError, InterruptedError):
            return None
        fds = [fd for level, kind, body in ancillary
               if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
               for fd in _fds_of(body)]
        return bytes(self._room[0][:size]), fds, flags

    def _read(self, peer: socket.socket) -> bool:
        """Take one message from ``peer``; True if there was one."""
        try:
            got = self._receive(peer)
        except OSError:
            self._drop_peer(peer)
            return False
        if got is None:
            return False
        data, fds, flags = got
        if not data and not fds:  # the sender closed: it went away, or it stopped
            self._drop_peer(peer)
            self._close_parked()
            return False
        self._take(data, fds, flags, peer)
        return True

    def _take(self, message: bytes, fds: list[int], flags: int, peer: socket.socket) -> None:
        kind, head = _parse(message) if not flags & _TRUNCATED else (None, None)
        if kind == _DROP and not fds:
            copy = self.parked.pop(head, None)  # type: ignore[call-overload]
            if copy is not None:
                copy.transport.abort()  # this copy only: the socket closes with the last
            return
        if kind == _RESUME and not fds:
            key, holders, data = head  # type: ignore[misc]
            if self._resume(key, data, holders):
                return
            # No copy here any more: back to the sender, whose copy is parked since it sent.
            try:
                peer.send(_resume_message(key, holders - {self.host_id}, data))
            except OSError as e:  # the sender is gone or behind: the connection is lost
                log.warning("hand-off: could not send connection %s back: %s", key, e)
            return
        if kind != _HANDOFF or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            self.refused += 1
            log.warning("hand-off: refused a malformed message (%d fds, flags %#x)",
                        len(fds), flags)
            return
        holders, data = head  # type: ignore[misc]
        fd = fds[0]
        try:
            info = os.fstat(fd)
            key = (info.st_dev, info.st_ino)
            if stat.S_ISSOCK(info.st_mode) and self._resume(key, data, holders):
                os.close(fd)  # the same socket: this host's parked copy took it back
                return
            sock = socket.socket(fileno=fd)
        except OSError:  # not a socket at all
            os.close(fd)
            sock = None
        if sock is None or sock.type != socket.SOCK_STREAM or sock.family not in (
                socket.AF_INET, socket.AF_INET6):
            if sock is not None:
                sock.close()
            self.refused += 1
            log.warning("hand-off: refused a socket that is not TCP")
            return
        sock.setblocking(False)
        self.received += 1
        assert self._serve is not None
        self._serve(sock, data, key, holders)

    def _resume(self, key: tuple[int, int], data: bytes, holders: frozenset[str]) -> bool:
        """Take connection ``key`` back into its parked copy here, with the bytes read of its
        next request; False if there is no such copy (any more)."""
        copy = self.parked.pop(key, None)
        if copy is None or copy.transport.is_closing():
            return False
        self.resumed += 1
        self.received += 1
        copy.resume(data, holders)
        return True

    def _drop_peer(self, peer: socket.socket) -> None:
        if self._peers.pop(peer.fileno(), None) is not None:
            self._loop.remove_reader(peer.fileno())
        peer.close()

    async def stop_receiving(self) -> None:
        """Stop receiving: new hand-offs fail at their sender (which serves them itself),
        the ones already queued are served, then the receiving sockets are closed."""
        if self._listener is not None:
            self._accept()  # hosts that connected and were not accepted yet
            self._loop.remove_reader(self._listener.fileno())
            with contextlib.suppress(FileNotFoundError):
                self._path(self.host_id).unlink()
            self._listener.close()
            self._listener = None
        for peer in list(self._peers.values()):
            with contextlib.suppress(OSError):
                peer.shutdown(socket.SHUT_RD)
            self._drain(peer)
            self._drop_peer(peer)

    async def close(self) -> None:
        """`stop_receiving`, then close the parked copies and the sockets to other hosts
        (after the HTTP server stopped: a connection it closes tells its holders first)."""
        await self.stop_receiving()
        self._close_parked()
        for owner in list(self._out):
            self._forget(owner)

    # -- parked copies ---------------------------------------------------------------------
    def _park(self, protocol: Any) -> None:
        protocol.park()
        self.parked[protocol.key] = protocol
        if self._sweeping is None:
            self._sweeping = self._loop.call_later(self.park_for / 2, self._sweep)

    def _sweep(self) -> None:
        """Close the copies parked longer than ``park_for``; again while any is parked."""
        self._sweeping = None
        oldest = self._loop.time() - self.park_for
        for key, protocol in list(self.parked.items()):
            if protocol.parked_at <= oldest:
                del self.parked[key]
                protocol.transport.abort()
        if self.parked:
            self._sweeping = self._loop.call_later(self.park_for / 2, self._sweep)

    def _close_parked(self) -> None:
        parked, self.parked = self.parked, {}
        for protocol in parked.values():
            protocol.transport.abort()
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None

    def lost(self, protocol: Any) -> None:
        """A connection of this host closed (`HandOffHttpProtocol.connection_lost`): a
        parked copy is forgotten; an active one tells the hosts that may hold a copy."""
        if protocol.parked:
            if self.parked.get(protocol.key) is protocol:
                del self.parked[protocol.key]
            return
        if protocol.key is not None:
            self.abandon(protocol.key, protocol.holders)

    def abandon(self, key: tuple[int, int], holders: frozenset[str]) -> None:
        """Tell ``holders`` to close their parked copies of connection ``key``: it closed
        here, or could not be served."""
        message = _DROP + _key_bytes(key)
        for holder in holders:
            if holder != self.host_id:
                self._tell(holder, message)

    def _tell(self, owner: str, message: bytes) -> None:
        out = self._out.get(owner)
        try:
            if out is None:
                out = self._connect(owner)
            out.send(message)
        except (BlockingIOError, InterruptedError):
            # The owner is behind: a drop must get there.
            self._loop.call_later(0.05, self._tell, owner, message)
        except OSError:
            self._forget(owner)  # gone: its copies went with it

    # -- passing on ------------------------------------------------------------------------
    def owner_here(self, data: bytes) -> str | None:
        """The host on this machine that owns the cart the request in ``data`` is for, if it
        is not this one and can take hand-offs; None otherwise."""
        if len(data) > MAX_HANDOFF_BYTES:
            return None
        cart_id = request_cart(data)
        if cart_id is None:
            return None
        owner = self.owner_of(cart_id)
        if not owner or owner == self.host_id:
            return None
        skip = self._skip.get(owner)
        if skip:
            self._skip[owner] = skip - 1
            return None
        return owner

    def pass_on(self, protocol: Any, owner: str, data: bytes) -> bool:
        """Send ``protocol``'s connection with its first bytes ``data`` to ``owner`` and park
        it here; True if it left, False if not (serve it here)."""
        try:
            fd = protocol.fileno()
            if protocol.key is None:
                info = os.fstat(fd)
                protocol.key = (info.st_dev, info.st_ino)
            holders = protocol.holders
            if self.host_id not in holders:  # once per connection and host
                holders = holders | {self.host_id}
            out = self._out.get(owner)
            if out is None:
                out = self._connect(owner)
            if owner in holders:  # it has held the connection: its parked copy takes it
                out.send(_resume_message(protocol.key, holders, data))
            else:
                out.sendmsg([_HANDOFF + _holders_bytes(holders) + data],
                            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _FD.pack(fd))])
        except (BlockingIOError, InterruptedError):
            return False  # the owner is behind: serve it here this time
        except (OSError, ValueError):
            # No such host on this machine (another one's, or gone), or it stopped.
            self._skip[owner] = RETRY_AFTER
            self._forget(owner)
            return False
        self.sent += 1
        self._park(protocol)
        return True

    def _connect(self, owner: str) -> socket.socket:
        out = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            out.setblocking(False)
            out.connect(str(self._path(owner)))
        except OSError:
            out.close()
            raise
        self._out[owner] = out
        # What comes back: hand-offs by key the owner had no copy for, or the end (it
        # stopped or died, and with it every copy of a connection it held).
        self._loop.add_reader(out.fileno(), self._from_owner, owner, out)
        return out

    def _from_owner(self, owner: str, out: socket.socket) -> None:
        while True:
            try:
                got = self._receive(out)
            except OSError:
                got = b"", [], 0  # as if it closed
            if got is None:
                return
            data, fds, flags = got
            for fd in fds:  # nothing is ever sent this way with a descriptor
                os.close(fd)
            if not data and not fds:
                if self._out.get(owner) is out:
                    self._forget(owner)
                self._close_parked()
                return
            kind, head = _parse(data) if not flags & _TRUNCATED else (None, None)
            if kind != _RESUME or fds:
                self.refused += 1
                log.warning("hand-off: refused a malformed message back from %s", owner)
                continue
            key, holders, data = head
            if self._resume(key, data, holders):
                self.bounced += 1
            else:  # closed here too since: the connection is gone
                log.info("hand-off: connection %s came back and is no longer here", key)

    def _forget(self, owner: str) -> None:
        out = self._out.pop(owner, None)
        if out is not None:
            self._loop.remove_reader(out.fileno())
            out.close()

    def _path(self, host_id: str) -> Path:
        return self.directory / f"{host_id}.sock"

    def stats(self) -> dict[str, int]:
        """Connections handed to other hosts, received from them (of which taken up again
        by a parked copy), refused, and sent back by key for lack of a copy there."""
        return {"handed_off": self.sent, "handed_in": self.received,
                "handed_back": self.resumed, "handoffs_refused": self.refused,
                "handoffs_bounced": self.bounced}


#: Message kinds: a connection (one descriptor) with its first bytes, the same by its key
#: alone (to a host holding a parked copy), or a connection closed.
_HANDOFF, _RESUME, _DROP = b"H", b"R", b"D"
MAX_HOLDERS_BYTES = 4096
_KEY = struct.Struct("!QQ")


_FD = struct.Struct("i")
#: A received message's room: its kind, holders and first bytes; one descriptor's control data.
_MESSAGE_BYTES = 1 + _KEY.size + 2 + MAX_HOLDERS_BYTES + MAX_HANDOFF_BYTES
_ANCILLARY_BYTES = socket.CMSG_SPACE(_FD.size)
#: ``recvmsg`` flags of a message cut short (as a plain int: `socket.MsgFlag` arithmetic
#: is slow).
_TRUNCATED = int(socket.MSG_TRUNC | socket.MSG_CTRUNC)


def _fds_of(body: bytes) -> list[int]:
    """The descriptors in the data of an ``SCM_RIGHTS`` control message (whole ones)."""
    return [fd for (fd,) in _FD.iter_unpack(body[:len(body) - len(body) % _FD.size])]


@functools.lru_cache(maxsize=64)
def _holders_bytes(holders: frozenset[str]) -> bytes:
    names = ",".join(sorted(holders)).encode()
    if len(names) > MAX_HOLDERS_BYTES:
        raise ValueError("too many hosts hold this connection")
    return struct.pack("!H", len(names)) + names


def _key_bytes(key: tuple[int, int]) -> bytes:
    return _KEY.pack(*key)


def _resume_message(key: tuple[int, int], holders: frozenset[str], data: bytes) -> bytes:
    return _RESUME + _KEY.pack(*key) + _holders_bytes(holders) + data


def _parse(message: bytes) -> tuple[bytes | None, Any]:
    """A message's kind and contents: (holders, first bytes) of a hand-off, (key, holders,
    first bytes) of one by key, the socket key of a drop; (None, None) for anything else."""
    kind = message[:1]
    if kind == _DROP and len(message) == 1 + _KEY.size:
        return kind, _KEY.unpack_from(message, 1)
    if kind == _HANDOFF:
        rest = _holders_and_data(message, 1)
        return (kind, rest) if rest is not None else (None, None)
    if kind == _RESUME and len(message) > 1 + _KEY.size:
        rest = _holders_and_data(message, 1 + _KEY.size)
        return (kind, (_KEY.unpack_from(message, 1), *rest)) if rest is not None \
            else (None, None)
    return None, None


def _holders_and_data(message: bytes, at: int) -> tuple[frozenset[str], bytes] | None:
    """The holders and first bytes of a message from offset ``at``; None if malformed."""
    if len(message) < at + 2:
        return None
    (size,) = struct.unpack_from("!H", message, at)
    names = message[at + 2:at + 2 + size]
    data = message[at + 2 + size:]
    if len(names) != size or not data:
        return None
    holders = _holders_of(names)
    return None if holders is None else (holders, data)


@functools.lru_cache(maxsize=64)
def _holders_of(names: bytes) -> frozenset[str] | None:
    try:
        return frozenset(n for n in names.decode("ascii").split(",") if n)
    except UnicodeDecodeError:
        return None
