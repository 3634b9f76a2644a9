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
generation) with the bytes it has already read, and forgets the connection. The owner serves
the request, and the connection's next ones, as if it had accepted it; one handed the other
way comes back. The ingress does no HTTP work for the request at all, and nothing waits for a
reply on the channel. Hosts on other machines are still reached by forwarding.

Rules, so that a hand-off never weakens what the API promises:

- only at a request's start, on a connection with nothing in flight: no request being read,
  none answered or queued (pipelining), no response bytes waiting to be written;
- the first bytes must hold the whole request line, of a cart path (`forwarding.cart_of`)
  without percent-escapes; anything else is served here as before;
- the hand-off is one datagram (``SOCK_SEQPACKET``): it reaches the owner whole, or the
  send fails and the request is served here (forwarded) as if no hand-off had been tried;
- a host that receives one checks that it is a TCP socket before it serves it;
- between hosts of one cluster only: the sockets live in a directory named by a digest of the
  cluster's channel token, created ``0700`` and refused if another user owns it, and a
  receiver accepts a peer only with its own user id (``SO_PEERCRED``);
- a stopping host shuts its hand-off sockets for reading first (new hand-offs fail at the
  sender, and are served there), then serves the ones already queued.

A host that dies holding queued hand-offs drops their connections, as it drops the ones it
had accepted: the client sees the connection close without an answer, as for any request a
dying host was serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import stat
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    to others."""
    root = Path(base or tempfile.gettempdir()) / f"cart-engine-{os.getuid()}"
    path = root / hashlib.sha256(b"cart-engine hand-off\0" + cluster_key).hexdigest()[:20]
    for d in (root, path):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
        info = d.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() \
                or info.st_mode & 0o077:
            raise PermissionError(f"{d} is not a private directory of this user")
    return path


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
    a cart they own (`pass_on`).

    ``host_id``: this host's id; ``directory``: the cluster's `handoff_dir`; ``owner_of``:
    cart id -> the id of the host that owns it (None: none known).
    """

    def __init__(self, host_id: str, directory: Path,
                 owner_of: Callable[[str], str | None]) -> None:
        self.host_id = host_id
        self.directory = directory
        self.owner_of = owner_of
        self.sent = 0
        self.received = 0
        self.refused = 0
        self._listener: socket.socket | None = None
        self._peers: dict[int, socket.socket] = {}
        self._out: dict[str, socket.socket] = {}
        self._skip: dict[str, int] = {}
        self._serve: Callable[[socket.socket, bytes], Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- receiving -------------------------------------------------------------------------
    def start(self, serve: Callable[[socket.socket, bytes], Any]) -> None:
        """Listen for hand-offs; ``serve(sock, first_bytes)`` takes each connection received.
        Raises OSError if the socket cannot be bound."""
        self._loop = asyncio.get_running_loop()
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
        assert self._listener is not None and self._loop is not None
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
            self._loop.add_reader(peer.fileno(), self._read, peer)

    def _read(self, peer: socket.socket) -> None:
        while True:
            try:
                data, fds, flags, _ = socket.recv_fds(peer, MAX_HANDOFF_BYTES, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop_peer(peer)
                return
            if not data and not fds:  # the sender closed
                self._drop_peer(peer)
                return
            self._take(data, fds, flags)

    def _take(self, data: bytes, fds: list[int], flags: int) -> None:
        if len(fds) != 1 or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or not data:
            for fd in fds:
                os.close(fd)
            self.refused += 1
            log.warning("hand-off: refused a malformed message (%d fds, flags %#x)",
                        len(fds), flags)
            return
        try:
            sock = socket.socket(fileno=fds[0])
        except OSError:  # not a socket at all
            os.close(fds[0])
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
        self._serve(sock, data)

    def _drop_peer(self, peer: socket.socket) -> None:
        if self._peers.pop(peer.fileno(), None) is not None and self._loop is not None:
            self._loop.remove_reader(peer.fileno())
        peer.close()

    async def close(self) -> None:
        """Stop receiving: new hand-offs fail at their sender (which serves them itself),
        the ones already queued are served, then every socket is closed."""
        if self._listener is not None and self._loop is not None:
            self._accept()  # hosts that connected and were not accepted yet
            self._loop.remove_reader(self._listener.fileno())
            with contextlib.suppress(FileNotFoundError):
                self._path(self.host_id).unlink()
            self._listener.close()
            self._listener = None
        for peer in list(self._peers.values()):
            with contextlib.suppress(OSError):
                peer.shutdown(socket.SHUT_RD)
            self._read(peer)
            self._drop_peer(peer)
        for out in self._out.values():
            out.close()
        self._out.clear()

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

    def pass_on(self, owner: str, data: bytes, fd: int) -> bool:
        """Send connection ``fd`` with its first bytes ``data`` to ``owner``; True if it left
        (the caller then forgets the connection), False if not (serve it here)."""
        out = self._out.get(owner)
        try:
            if out is None:
                out = self._connect(owner)
            socket.send_fds(out, [data], [fd])
        except (BlockingIOError, InterruptedError):
            return False  # the owner is behind: serve it here this time
        except OSError:
            # No such host on this machine (another one's, or gone), or it stopped.
            self._skip[owner] = RETRY_AFTER
            bad = self._out.pop(owner, None)
            if bad is not None:
                bad.close()
            return False
        self.sent += 1
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
        return out

    def _path(self, host_id: str) -> Path:
        return self.directory / f"{host_id}.sock"

    def stats(self) -> dict[str, int]:
        """Connections handed to other hosts, received from them, and refused."""
        return {"handed_off": self.sent, "handed_in": self.received,
                "handoffs_refused": self.refused}
