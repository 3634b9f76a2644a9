"""Placements: where hosts live and how a message reaches its actor's host.

``LocalPlacement`` runs N hosts in the caller's event loop (embedding, simulations, unit
tests). ``actors.ray_placement.RayPlacement`` runs each host inside a Ray actor. Both route
by the same stable hash and expose the same ``send`` / ``publish`` / ``close``.
"""

from __future__ import annotations

from typing import Any, Protocol

from actors.admin_ops import AdminOpActor
from actors.cart import CartActor
from actors.clock import Clock
from actors.inventory import InventoryActor
from actors.order import OrderActor
from actors.order_index import OrderIndexActor
from actors.payments import load_provider
from actors.promotion_usage import PromotionUsageActor
from actors.purchase_limits import PurchaseLimitActor
from actors.reference import ReferenceData
from actors.runtime import Actor, Host, Message, Ownership, Reply, StaticOwnership, host_of
from actors.settings import EngineSettings
from actors.tracing import traced_payments
from actors.user import UserActor
from actors.waitlist import WaitlistActor
from engine.errors import Conflict
from snapshots.store import SnapshotStore

#: Every actor kind the engine hosts.
REGISTRY: dict[str, type[Actor]] = {
    cls.kind: cls for cls in (CartActor, InventoryActor, OrderActor, UserActor,
                              PromotionUsageActor, PurchaseLimitActor, OrderIndexActor,
                              AdminOpActor, WaitlistActor)
}


class Placement(Protocol):
    async def send(self, msg: Message) -> Reply: ...

    async def publish(self, kind: str, value: Any) -> None:
        """Install reference data (product, promotion) on every host."""
        ...

    async def stats(self) -> list[dict[str, Any]]: ...

    def health(self) -> dict[str, Any]:
        """``{serving, unowned, hosts}``: whether this process can serve, partitions without
        a live owner, live host ids."""
        ...

    async def cluster(self) -> dict[str, Any]:
        """Hosts, partitions per host, hand-offs (`actors.membership.cluster_summary`)."""
        ...

    async def scale(self, n: int) -> None:
        """Ask for ``n`` hosts (added or retired while serving)."""
        ...

    async def close(self) -> None: ...


def build_host(host_id: str, ownership: Ownership, store: SnapshotStore, clock: Clock,
               settings: EngineSettings, reference: ReferenceData,
               payments: Any = None) -> Host:
    """A host with the engine's actor registry and a payment provider: ``payments`` if
    given, else the one ``settings.payment_provider`` names (`load_provider`: the built-in
    test provider by default); its calls are traced (`actors.tracing`)."""
    return Host(host_id=host_id, ownership=ownership, store=store, clock=clock,
                registry=REGISTRY, settings=settings, reference=reference,
                payments=traced_payments(payments if payments is not None else
                                         load_provider(settings.payment_provider, settings)),
                sweep_interval=settings.sweep_interval)


def resendable(msg: Message) -> bool:
    """Whether ``msg`` may be sent again when its reply was lost: it carries a request id
    (the actor answers a repeat from its record) or its method is idempotent by design
    (``Actor.idempotent``: reads, and operations keyed by a reservation or order id)."""
    if msg[4] is not None:
        return True
    cls = REGISTRY.get(msg[0])
    return cls is not None and msg[2] in cls.idempotent


class LocalPlacement:
    """``n_hosts`` hosts in this event loop, sharing one reference-data replica."""

    def __init__(self, store: SnapshotStore, clock: Clock, settings: EngineSettings,
                 n_hosts: int = 2, payments: Any = None) -> None:
        self.store = store
        self.clock = clock
        self.n_hosts = n_hosts
        self.reference = ReferenceData()
        self.hosts = [build_host(f"h{i}", StaticOwnership(i, n_hosts), store, clock, settings,
                                 self.reference, payments) for i in range(n_hosts)]
        for h in self.hosts:
            h.route = self.send

    def local_hosts(self) -> list[Host]:
        """The hosts in this process: all of them."""
        return list(self.hosts)

    async def start(self) -> None:
        """Load reference data from the store and start the deadline sweepers."""
        for kind in ("product", "promotion"):
            for value in (await self.store.load_reference(kind)).values():
                self.reference.apply(kind, value)
        for h in self.hosts:
            h.start_sweeper()

    async def send(self, msg: Message) -> Reply:
        return await self.hosts[host_of(msg[0], msg[1], self.n_hosts)].deliver(msg)

    async def publish(self, kind: str, value: Any) -> None:
        self.reference.apply(kind, value)  # one replica serves every local host

    async def stats(self) -> list[dict[str, Any]]:
        return [h.stats() for h in self.hosts]

    def health(self) -> dict[str, Any]:
        return {"serving": True, "unowned": [], "hosts": [h.host_id for h in self.hosts]}

    async def cluster(self) -> dict[str, Any]:
        """The static placement in `actors.membership.cluster_summary`'s shape."""
        per = {h.host_id: len(h.ownership.partitions()) for h in self.hosts}
        return {"version": 0, "hosts": {h: {"partitions": n, "leaving": False}
                                        for h, n in per.items()},
                "unowned": [], "moving": 0, "desired": len(self.hosts), "rehomed": 0,
                "handoffs": 0}

    async def scale(self, n: int) -> None:
        """In-process hosts are fixed at start. Raises Conflict ``not_elastic``."""
        raise Conflict("not_elastic", "the in-process placement runs a fixed number of hosts")

    async def close(self) -> None:
        for h in self.hosts:
            h.stop_sweeper()
            await h.drain()
