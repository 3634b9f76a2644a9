"""memory-peer: the peer API over a bare in-memory dict, no persistence.

The HTTP stack's own ceiling (FastAPI + uvicorn on one event loop): every operation is a dict
access with no await in between, so each is atomic without locks. State dies with the process.

    python -m loadtest.peers.memory_peer --port 8102 [--catalog FILE] [--auth-secret S]
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

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


class MemoryBackend(InMemoryOrders):
    """Carts, stock and orders in process memory (see `common.Backend` for the contract)."""

    def __init__(self) -> None:
        self.carts: dict[str, Cart] = {}
        self.stock = StockLedger()
        self.orders = OrderBook()

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        self.carts.clear()

    async def seed_stock(self, stock: Mapping[str, int]) -> None:
        self.stock.seed(stock)

    async def create_cart(self, cart: Cart) -> None:
        self.carts[cart.cart_id] = cart

    async def load_cart(self, cart_id: str) -> Cart | None:
        return self.carts.get(cart_id)

    async def mutate_cart(self, cart_id: str, op: CartOp) -> Cart | None:
        cart = self.carts.get(cart_id)
        if cart is not None:
            op(cart)
        return cart

    async def take_stock(self, cart_id: str, wanted: Mapping[str, int]) -> None:
        cart = self.carts[cart_id]
        if cart.status != "active":
            raise ApiError(409, "cart_not_active", f"the cart is {cart.status}")
        shortfalls = self.stock.take(wanted)
        if shortfalls:
            raise out_of_stock(shortfalls)
        cart.set_status("checked_out", utc_now())

    async def return_stock(self, cart_id: str, wanted: Mapping[str, int]) -> None:
        self.stock.give_back(wanted)
        self.carts[cart_id].set_status("active", utc_now())

    async def adjust_stock(
        self, variant_id: str, set_to: int | None, delta: int | None
    ) -> dict[str, Any]:
        return self.stock.adjust(variant_id, set_to, delta)

    async def stock_levels(self, variant_ids: list[str]) -> dict[str, int]:
        return self.stock.levels(variant_ids)


async def make_backend(_options: argparse.Namespace) -> MemoryBackend:
    """A fresh, empty in-memory backend."""
    return MemoryBackend()


def main(argv: list[str] | None = None) -> None:
    """Serve memory-peer (see the module docstring)."""
    serve("memory-peer: in-memory cart API baseline", make_backend, argv)


if __name__ == "__main__":
    main()
