"""ray-per-cart: the naive reading of the design, one Ray actor (a whole process) per cart.

Each new cart starts a `CartActor` (about 0.5 s and ~95 MB resident on the reference machine);
every cart request is one Ray call to it. Stock lives in one `InventoryActor` (turn-based,
so the all-or-nothing take never oversells); orders stay in the gateway's memory. The peer
refuses carts beyond `--max-carts` with 503 `capacity`, so a run can never exhaust the machine.
Ray is started in the lifespan (`num_cpus=2`, no dashboard, a new local instance) and shut
down on exit.

    python -m loadtest.peers.ray_per_cart --port 8103 [--max-carts 64] [--catalog FILE]
"""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Mapping
from typing import Any

import ray

from loadtest.peers.common import serve
from loadtest.peers.domain import (
    ApiError,
    Cart,
    CartOp,
    InMemoryOrders,
    OrderBook,
    StockLedger,
    out_of_stock,
    utc_now,
)

#: Memory of Ray's object store, in bytes (the peer moves only small objects).
OBJECT_STORE_BYTES = 128 * 1024 * 1024


@ray.remote
class CartActor:
    """One cart in its own Ray worker process; Ray runs its calls one at a time."""

    def __init__(self, cart: Cart) -> None:
        self.cart = cart

    def read(self) -> Cart:
        return self.cart

    def mutate(self, op: CartOp) -> tuple[Cart | None, ApiError | None]:
        """Apply `op`; a refusal comes back as a value, not as a Ray task error."""
        try:
            op(self.cart)
        except ApiError as error:
            return None, error
        return self.cart, None

    def begin_checkout(self) -> str | None:
        """Move an active cart to checked_out; answers the blocking status otherwise."""
        if self.cart.status != "active":
            return self.cart.status
        self.cart.set_status("checked_out", utc_now())
        return None

    def reopen(self) -> None:
        self.cart.set_status("active", utc_now())


@ray.remote
class InventoryActor:
    """All stock in one actor: a `StockLedger` behind Ray's one-call-at-a-time mailbox."""

    def __init__(self) -> None:
        self.ledger = StockLedger()

    def seed(self, stock: Mapping[str, int]) -> None:
        self.ledger.seed(stock)

    def take(self, wanted: Mapping[str, int]) -> list[dict[str, Any]]:
        return self.ledger.take(wanted)

    def give_back(self, wanted: Mapping[str, int]) -> None:
        self.ledger.give_back(wanted)

    def adjust(
        self, variant_id: str, set_to: int | None, delta: int | None
    ) -> tuple[dict[str, Any] | None, ApiError | None]:
        try:
            return self.ledger.adjust(variant_id, set_to, delta), None
        except ApiError as error:
            return None, error

    def levels(self, variant_ids: list[str]) -> dict[str, int]:
        return self.ledger.levels(variant_ids)


class RayPerCartBackend(InMemoryOrders):
    """Cart actors by cart id, one inventory actor, orders in memory (`common.Backend`)."""

    def __init__(self, max_carts: int) -> None:
        self.max_carts = max_carts
        self.carts: dict[str, Any] = {}
        self.inventory = InventoryActor.remote()
        self.orders = OrderBook()

    async def ready(self) -> bool:
        return ray.is_initialized()

    async def close(self) -> None:
        self.carts.clear()
        ray.shutdown()

    async def seed_stock(self, stock: Mapping[str, int]) -> None:
        await self.inventory.seed.remote(dict(stock))

    async def create_cart(self, cart: Cart) -> None:
        if len(self.carts) >= self.max_carts:
            raise ApiError(503, "capacity", f"this peer holds at most {self.max_carts} carts")
        actor = CartActor.remote(cart)
        self.carts[cart.cart_id] = actor
        await actor.read.remote()  # the answer waits for the actor's process to start

    async def load_cart(self, cart_id: str) -> Cart | None:
        actor = self.carts.get(cart_id)
        return None if actor is None else await actor.read.remote()

    async def mutate_cart(self, cart_id: str, op: CartOp) -> Cart | None:
        actor = self.carts.get(cart_id)
        if actor is None:
            return None
        cart, error = await actor.mutate.remote(op)
        if error is not None:
            raise error
        return cart

    async def take_stock(self, cart_id: str, wanted: Mapping[str, int]) -> None:
        actor = self.carts[cart_id]
        blocking = await actor.begin_checkout.remote()
        if blocking is not None:
            raise ApiError(409, "cart_not_active", f"the cart is {blocking}")
        shortfalls = await self.inventory.take.remote(dict(wanted))
        if shortfalls:
            await actor.reopen.remote()
            raise out_of_stock(shortfalls)

    async def return_stock(self, cart_id: str, wanted: Mapping[str, int]) -> None:
        await self.inventory.give_back.remote(dict(wanted))
        await self.carts[cart_id].reopen.remote()

    async def adjust_stock(
        self, variant_id: str, set_to: int | None, delta: int | None
    ) -> dict[str, Any]:
        level, error = await self.inventory.adjust.remote(variant_id, set_to, delta)
        if error is not None:
            raise error
        return level

    async def stock_levels(self, variant_ids: list[str]) -> dict[str, int]:
        return await self.inventory.levels.remote(variant_ids)


async def make_backend(options: argparse.Namespace) -> RayPerCartBackend:
    """Start a new local Ray instance and the inventory actor.

    `ray.init` replaces the SIGTERM handler with one that exits the process at once; the
    server's own handler is put back so that SIGTERM drains requests and the lifespan's
    `close()` shuts Ray down.
    """
    server_sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        logging_level=logging.WARNING,
    )
    signal.signal(signal.SIGTERM, server_sigterm)
    return RayPerCartBackend(options.max_carts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ray-per-cart peer's own options."""
    parser.add_argument("--max-carts", type=int, default=64,
                        help="carts (Ray actors) held at most; more are refused with 503")


def main(argv: list[str] | None = None) -> None:
    """Serve ray-per-cart (see the module docstring)."""
    serve("ray-per-cart: one Ray actor per cart", make_backend, argv, add_arguments)


if __name__ == "__main__":
    main()
