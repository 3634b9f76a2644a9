"""Placements: where hosts live and how a message reaches its actor's host.

``LocalPlacement`` runs N hosts in the caller's event loop (embedding, simulations, unit
tests). ``actors.ray_placement.RayPlacement`` runs each host inside a Ray actor. Both route
by the same stable hash and expose the same ``send`` / ``publish`` / ``close``.
"""

from __future__ import annotations

from typing import Any, Protocol

from actors.cart import CartActor
from actors.clock import Clock
from actors.inventory import InventoryActor
from actors.order import OrderActor
from actors.payments import TestPaymentProvider
from actors.promotion_usage import PromotionUsageActor
from actors.reference import ReferenceData
from actors.runtime import Actor, Host, Message, Reply, host_of
from actors.settings import EngineSettings
from actors.tracing import traced_payments
from actors.user import UserActor
from snapshots.store import SnapshotStore

#: Every actor kind the engine hosts.
REGISTRY: dict[str, type[Actor]] = {
    cls.kind: cls for cls in (CartActor, InventoryActor, OrderActor, UserActor,
                              PromotionUsageActor)
}


class Placement(Protocol):
    n_hosts: int

    async def send(self, msg: Message) -> Reply: ...

    async def publish(self, kind: str, value: Any) -> None:
        """Install reference data (product, promotion) on every host."""
        ...

    async def stats(self) -> list[dict[str, Any]]: ...

    async def close(self) -> None: ...


def build_host(index: int, n_hosts: int, store: SnapshotStore, clock: Clock,
               settings: EngineSettings, reference: ReferenceData) -> Host:
    """A host with the engine's actor registry and the built-in test payment provider."""
    return Host(index=index, n_hosts=n_hosts, store=store, clock=clock, registry=REGISTRY,
                settings=settings, reference=reference,
                payments=traced_payments(TestPaymentProvider(delay=settings.slow_payment_delay)),
                sweep_interval=settings.sweep_interval)


class LocalPlacement:
    """``n_hosts`` hosts in this event loop, sharing one reference-data replica."""

    def __init__(self, store: SnapshotStore, clock: Clock, settings: EngineSettings,
                 n_hosts: int = 2) -> None:
        self.store = store
        self.clock = clock
        self.n_hosts = n_hosts
        self.reference = ReferenceData()
        self.hosts = [build_host(i, n_hosts, store, clock, settings, self.reference)
                      for i in range(n_hosts)]
        for h in self.hosts:
            h.route = self.send

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

    async def close(self) -> None:
        for h in self.hosts:
            h.stop_sweeper()
            await h.drain()
