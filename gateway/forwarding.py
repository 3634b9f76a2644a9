"""Cart requests run on the host that owns the cart: the ingress forwards the HTTP request.

Every host serves the whole API on the shared port, and the kernel hands a connection to any
of them (``SO_REUSEPORT``), so with N hosts a request finds its cart's owner only 1 time in N.
Crossing at the actor-message level costs the receiving ingress the whole HTTP stack (auth,
validation, the route) *and* the hop of the cart view both ways (packed, unpacked, encoded to
JSON again). Here a request under ``/v1/carts/{cart_id}/...`` whose cart another host owns is
forwarded whole, as HTTP, over the hosts' authenticated channel (`actors.channel`), and the
owner runs it through its own app as if it had arrived there: the ingress only reads the
path and the body and relays the answer's bytes. The same idea as a shard region proxy
(Akka) or Orleans' gateway forwarding a call to the silo that activates the grain, one layer
up.

Between hosts of one machine the connection itself is handed over instead
(`gateway.handoff`); forwarding serves the owners on other machines, and every request a
hand-off could not take.

Failure rules, so that forwarding never weakens what the API promises:

- the request never left (no route to the owner, the owner has no ingress, the channel was
  down): it runs here, through the engine's own routing;
- it left and its answer was lost (the owner died mid-request): a safe method (GET, HEAD)
  or a request carrying an Idempotency-Key runs here (the actor answers a repeated key with
  the first result); any other answers 503 ``host_unavailable`` with ``Retry-After``, as an
  HTTP proxy does for a non-idempotent request (RFC 9110 section 9.2.2).

Streams (``.../events``) and bodies without a Content-Length or over the body limit are
never forwarded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actors.runtime import SYSTEM
from gateway.middleware import NO_STORE, NOSNIFF, error_body, replay

log = logging.getLogger(__name__)

CARTS = "/v1/carts/"
#: The `SYSTEM` message an owner answers with the HTTP response of a forwarded request.
RUN_HTTP = "http"
SAFE_METHODS = frozenset({"GET", "HEAD"})
#: Error codes of a reply that says the forwarded request did not run on the owner.
NOT_RUN = frozenset({"unknown_message", "overloaded"})


def cart_of(path: str) -> str | None:
    """The cart id of a cart-scoped path (``/v1/carts/{cart_id}`` and below), None for other
    paths and for the event stream (served where the client is connected)."""
    if not path.startswith(CARTS):
        return None
    cart_id, _, rest = path[len(CARTS):].partition("/")
    if not cart_id or rest == "events" or rest.startswith("events/"):
        return None
    return cart_id


class OwnerForwarding:
    """ASGI middleware (outermost, one per host ingress) forwarding cart requests to their
    owner, and running requests forwarded to this host (`run_here`, registered as the
    host's ``http`` `SYSTEM` message).

    ``placement``: the ingress's `actors.ray_placement.HostPlacement`; ``max_bytes``: the
    request body limit (`GatewaySettings.max_body_bytes`).
    """

    def __init__(self, app: Any, placement: Any, max_bytes: int) -> None:
        self.app = app
        self.placement = placement
        self.max_bytes = max_bytes
        self.forwarded = 0
        self.ran_here = 0
        self.fell_back = 0
        self._server: tuple[str, int] | None = None
        placement.host.system[RUN_HTTP] = self.run_here

    # -- the ingress side ------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._server is None and scope.get("server"):
            self._server = tuple(scope["server"])  # type: ignore[assignment]
        cart_id = cart_of(scope["path"])
        owner = None if cart_id is None else self.placement.owner_of("cart", cart_id)
        if owner is None or owner == self.placement.host.host_id:
            await self.app(scope, receive, send)
            return
        length = _content_length(scope["headers"])
        if length is None or length > self.max_bytes:
            await self.app(scope, receive, send)  # chunked, oversized: the local stack judges
            return
        body = await _read_body(receive, length)
        if body is None:
            return  # the client went away
        answer = await self._forward(owner, scope, body)
        if answer is None:
            self.fell_back += 1
            await self.app(scope, replay(receive, body), send)
            return
        if answer is False:
            await _unavailable(send)
            return
        status, headers, payload = answer
        self.forwarded += 1
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _forward(self, owner: str, scope: dict[str, Any],
                       body: bytes) -> tuple[int, list[Any], bytes] | bool | None:
        """The owner's answer; None if the request did not run there (run it here); False if
        its answer was lost and it is not safe to run again."""
        client = scope.get("client")
        args = {"method": scope["method"], "path": scope["path"],
                "raw_path": scope.get("raw_path") or scope["path"].encode(),
                "query": scope.get("query_string", b""),
                # pairs as lists: msgpack carries those as they are (a tuple is an extension
                # type of `actors.wire`, a Python call each way per header)
                "headers": [[k, v] for k, v in scope["headers"]],
                "body": body, "client": list(client) if client else None}
        reply = await self.placement.forward(owner, (SYSTEM, owner, RUN_HTTP, args, None, None))
        if reply[0] == "ok":  # the channel's codec gives bytes back as bytes
            status, headers, payload = reply[1]
            return int(status), headers, payload
        error = reply[1]
        code = error.get("code")
        if code in NOT_RUN or (code == "host_unavailable" and not any(
                d.get("sent", True) for d in error.get("details") or ())):
            return None
        log.warning("forwarded %s %s: the owner's answer was lost (%s: %s)", scope["method"],
                    scope["path"], code, error.get("message"))
        return None if scope["method"] in SAFE_METHODS or _keyed(scope) else False

    # -- the owner side --------------------------------------------------------------------
    async def run_here(self, method: str, path: str, raw_path: bytes, query: bytes,
                       headers: list[Any], body: bytes,
                       client: list[Any] | None) -> list[Any]:
        """Run a forwarded request through this host's app: ``[status, headers, body]``."""
        self.ran_here += 1
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
                 "http_version": "1.1", "method": method, "scheme": "http", "path": path,
                 "raw_path": bytes(raw_path), "query_string": bytes(query), "root_path": "",
                 "headers": [(bytes(k), bytes(v)) for k, v in headers],
                 "client": tuple(client) if client else None, "server": self._server,
                 "state": {}}
        out: list[Any] = [500, [], b""]
        chunks: list[bytes] = []
        given = False
        done = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            await done.wait()  # the forwarding ingress holds the client's connection
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out[0] = message["status"]
                out[1] = [[k, v] for k, v in message.get("headers", ())]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, send)
        except Exception:
            # The app's outermost handler answers 500 and then re-raises for the server to
            # log: log it here, and relay the 500 that was sent.
            if not chunks:
                raise
            log.exception("forwarded %s %s failed on this host", method, path)
        finally:
            done.set()
        out[2] = b"".join(chunks)
        return out

    def stats(self) -> dict[str, int]:
        """Requests forwarded to their owner, run here for another ingress, and run here
        because forwarding was not possible."""
        return {"forwarded": self.forwarded, "ran_for_others": self.ran_here,
                "fell_back": self.fell_back}


def _keyed(scope: dict[str, Any]) -> bool:
    """Whether the request carries an Idempotency-Key: run again, it answers the first
    result if it had run (the actor records the key with its reply, in the same write)."""
    return any(name == b"idempotency-key" for name, _ in scope["headers"])


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The request's Content-Length; 0 when it has neither that nor Transfer-Encoding;
    None for a chunked (or malformed) one."""
    length = 0
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit():
                return None
            length = int(value)
        elif name == b"transfer-encoding":
            return None
    return length


async def _read_body(receive: Any, length: int) -> bytes | None:
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > length:
            break
    return body


async def _unavailable(send: Any) -> None:
    await error_body(send, 503, "host_unavailable",
                     "the host that owns this cart stopped while answering; send an "
                     "Idempotency-Key to have such a request retried safely",
                     [{"retry_after": 1}], [(b"retry-after", b"1"), NOSNIFF, NO_STORE])
