"""One engine, two placements: what the actor contract tests drive.

``Harness`` gives a :class:`CartService`, a manual clock to ``advance``, and ``restart`` (new
hosts over the same store, as after a crash or a deploy).
"""

from __future__ import annotations

from typing import Any

from actors.clock import ManualClock
from actors.placement import LocalPlacement
from actors.reference import ReferenceData
from actors.service import CartService
from actors.settings import EngineSettings

START = 1_790_000_000.0
SETTINGS = EngineSettings(cart_ttl=1800.0, reservation_ttl=600.0, slow_payment_delay=0.2)


class Harness:
    def __init__(self, kind: str, store: Any, redis_url: str | None = None,
                 prefix: str | None = None) -> None:
        self.kind = kind
        self.store = store
        self.redis_url = redis_url
        self.prefix = prefix
        self.now = START
        self.service: CartService | None = None
        self.clock: ManualClock | None = None

    async def start(self) -> CartService:
        if self.kind == "local":
            self.clock = ManualClock(self.now)
            placement: Any = LocalPlacement(self.store, self.clock, SETTINGS, n_hosts=2)
            await placement.start()
        else:
            from actors.ray_placement import RayPlacement

            placement = RayPlacement(n_hosts=2, redis_url=self.redis_url or "",
                                     prefix=self.prefix or "", settings=SETTINGS,
                                     reference=ReferenceData(), manual_clock_start=self.now)
            for kind in ("product", "promotion"):
                for value in (await self.store.load_reference(kind)).values():
                    placement.reference.apply(kind, value)
            await placement.start()
        self.service = CartService(placement, self.store)
        return self.service

    async def advance(self, seconds: float) -> None:
        """Move every host's manual clock; due timers (expiry) run before this returns."""
        assert self.service is not None
        self.now += seconds
        if self.kind == "local":
            assert self.clock is not None
            await self.clock.advance(seconds)
        else:
            await self.service.placement.advance(seconds)  # type: ignore[attr-defined]

    async def restart(self) -> CartService:
        """Stop every host (their memory is gone) and start new ones over the same store."""
        assert self.service is not None
        await self.service.close()
        return await self.start()

    async def close(self) -> None:
        if self.service is not None:
            await self.service.close()


def product(pid: str, price: int = 1000, variants: int = 1, hold_ttl: float | None = None,
            category: str = "shoes", stock: int | None = None) -> dict[str, Any]:
    """An API.md product body with ``variants`` variants named ``{pid}-v{i}``."""
    body: dict[str, Any] = {"name": pid.title(), "category": category,
                            "price": {"amount": price, "currency": "USD"},
                            "variants": []}
    for i in range(variants):
        v: dict[str, Any] = {"variant_id": f"{pid}-v{i}", "sku": f"SKU-{pid}-{i}"}
        if hold_ttl is not None:
            v["hold_ttl"] = hold_ttl
        if stock is not None:
            v["stock"] = stock
        body["variants"].append(v)
    return body


def make_inventory_oversell(monkeypatch: Any) -> None:
    """Plant the bug the invariant checks must catch: inventory makes stock up instead of
    refusing a reservation it cannot cover (undone by ``monkeypatch``)."""
    from actors.inventory import InventoryActor

    real = InventoryActor.reserve

    async def conjuring(self: InventoryActor, reservation_id: str, quantity: int, ttl: float,
                        owner: str) -> dict[str, Any]:
        if self.ledger.available < quantity:
            self.ledger.on_hand += quantity
        return await real(self, reservation_id, quantity, ttl, owner)

    monkeypatch.setattr(InventoryActor, "reserve", conjuring)
