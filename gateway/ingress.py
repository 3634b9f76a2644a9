"""An HTTP ingress inside each actor host: the API served where the actors live.

Every host process (a Ray actor) serves the whole API on the shared port: the kernel spreads
connections over every process listening on it (``SO_REUSEPORT``), so one machine still
answers on one port while each host runs the requests for its own actors in its own process
and sends only the others' messages over the batched channel, as Orleans' co-hosted clients
and Akka's nodes do. On a cluster, each node's hosts listen on that node's address, behind
the operator's load balancer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from functools import partial
from typing import Any

from actors.machine import claim_core
from gateway.http_protocol import CoalescingHttpProtocol, handoff_protocol, serve_handed
from gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

#: Connections the kernel queues per listening process before accept.
BACKLOG = 2048


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other processes can bind as well
    (``SO_REUSEPORT``, Linux 3.9+): the kernel spreads new connections among them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


class HttpIngress:
    """A running uvicorn server in this event loop; `stop` ends it gracefully."""

    def __init__(self, server: Any, task: asyncio.Task[None], api: Any,
                 forwarding: Any = None, handoff: Any = None) -> None:
        self.server = server
        self.task = task
        self.api = api  # the FastAPI app (under the forwarding layer)
        self.forwarding = forwarding
        self.handoff = handoff

    def forwarding_stats(self) -> dict[str, int]:
        """Requests this ingress forwarded to their cart's owner, ran for other ingresses,
        and ran itself because forwarding was not possible (`OwnerForwarding.stats`), and
        connections it handed to other hosts and received (`gateway.handoff.HandOff`)."""
        out = self.forwarding.stats() if self.forwarding is not None else {}
        if self.handoff is not None:
            out.update(self.handoff.stats())
        return out

    async def stop(self) -> None:
        from gateway.cart_events import shutdown

        if self.handoff is not None:  # before uvicorn stops: the queued ones are served
            await self.handoff.stop_receiving()
        # Open event streams end first: uvicorn waits for running responses before it stops.
        await shutdown(self.api)
        self.server.should_exit = True
        await asyncio.gather(self.task, return_exceptions=True)
        if self.handoff is not None:  # the closed connections have told their holders
            await self.handoff.close()


async def serve(settings: GatewaySettings, service: Any, placement: Any) -> HttpIngress:
    """Serve the API for ``service`` on ``settings.host:port`` from this process; answers
    once it listens. Raises OSError if the port cannot be shared."""
    import uvicorn

    from gateway.app import create_app
    from gateway.forwarding import OwnerForwarding

    # Set on a host of a Ray placement (its own process, one of the cluster's); None in process.
    cluster_key = getattr(placement, "cluster_key", None)
    if settings.pin_cores and cluster_key is not None:
        claim_core()
    api = create_app(settings, service=service)
    app = OwnerForwarding(api, placement, settings.max_body_bytes)
    handoff = _handoff(settings, placement, cluster_key)
    protocol = CoalescingHttpProtocol if handoff is None else handoff_protocol(handoff)
    server = uvicorn.Server(uvicorn_config(settings, app, protocol))
    sock = shared_socket(settings.host, settings.port)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise OSError("the HTTP ingress stopped before it started")
        await asyncio.sleep(0.01)
    if handoff is not None:
        try:
            handoff.start(partial(_serve_handed, server))
        except OSError as e:  # it still passes connections on; the others forward to it
            log.warning("connection hand-off: cannot receive here: %s", e)
    return HttpIngress(server, task, api, app, handoff)


def _handoff(settings: GatewaySettings, placement: Any, key: bytes | None) -> Any:
    """The host's connection hand-off (`gateway.handoff`), or None: off by settings, or
    no cluster ``key`` (not a host of a Ray placement), or no private directory for its
    sockets."""
    from gateway.handoff import HandOff, handoff_dir

    if not settings.handoff or key is None:
        return None
    try:
        directory = handoff_dir(key)
    except OSError as e:
        log.warning("connection hand-off off: %s", e)
        return None
    return HandOff(placement.host.host_id, directory,
                   lambda cart_id: placement.owner_of("cart", cart_id), settings.keep_alive)


def _serve_handed(server: Any, *args: Any) -> None:
    task = asyncio.ensure_future(serve_handed(server, *args))
    _handed.add(task)
    task.add_done_callback(_handed_done)


#: Hand-offs being connected (a reference keeps each task alive until it is done).
_handed: set[asyncio.Task[None]] = set()


def _handed_done(task: asyncio.Task[None]) -> None:
    _handed.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("a connection handed to this host could not be served: %s",
                    task.exception())


def uvicorn_config(settings: GatewaySettings, app: Any, protocol: Any = None) -> Any:
    """uvicorn's configuration for an ingress: the keep-alive outlasts clients' idle expiry
    (`GatewaySettings.keep_alive`), no access log, no proxy headers but from trusted
    proxies, no ``Server`` header (it names the software to whoever asks, and costs every
    response a header), a graceful shutdown of 10 s, one ``send`` per response
    (`gateway.http_protocol`)."""
    import uvicorn

    return uvicorn.Config(app, lifespan="on", log_level=settings.log_level, access_log=False,
                          timeout_keep_alive=int(settings.keep_alive),
                          # X-Forwarded-For only from --trusted-proxies (the app's own
                          # middleware); uvicorn's default would trust it from 127.0.0.1.
                          proxy_headers=False, server_header=False,
                          timeout_graceful_shutdown=10, http=protocol or CoalescingHttpProtocol,
                          ws="none")


def ingress_for(settings: GatewaySettings) -> Any:
    """The ingress factory hosts are started with (`actors.ray_placement.HostConfig`)."""
    return partial(serve, settings)
