"""Actors whose keys a host minted itself activate without reading the store (in-process)."""

from __future__ import annotations

from typing import Any

import pytest

from actors.clock import ManualClock
from actors.runtime import partition_of
from actors.service import CartService
from snapshots.memory_store import MemoryStore

pytestmark = pytest.mark.actors


class _CountingStore(MemoryStore):
    """A memory store that records the keys it was asked to activate."""

    def __init__(self) -> None:
        super().__init__()
        self.activated: list[str] = []

    async def activate(self, key: str, partition: int) -> tuple[int, dict[str, Any]]:
        self.activated.append(key)
        return await super().activate(key, partition)


async def test_a_cart_minted_by_its_host_skips_the_read_and_is_still_persisted() -> None:
    store = _CountingStore()
    svc = await CartService.in_process(store, clock=ManualClock(), hosts=1)
    try:
        cart = (await svc.active_cart("u1"))["cart"]
        host = svc.placement.hosts[0]  # type: ignore[attr-defined]
        key = f"cart:{cart['cart_id']}"
        assert "user:u1" in store.activated  # not minted here: read as always
        assert key not in store.activated  # minted by the user actor's turn: no read
        assert key not in host.fresh  # used once, then forgotten
        assert key in store.hashes  # its first write created it (answered once persisted)
        # Out of memory and back: now it is read like any stored actor.
        host.drop({partition_of("cart", cart["cart_id"])})
        again = await svc.get_cart("u1", cart["cart_id"])
        assert again["cart_id"] == cart["cart_id"] and key in store.activated
    finally:
        await svc.close()


async def test_a_minted_key_whose_partition_leaves_reads_the_store_when_it_comes_back() -> None:
    svc = await CartService.in_process(MemoryStore(), clock=ManualClock(), hosts=1)
    try:
        host = svc.placement.hosts[0]  # type: ignore[attr-defined]
        key = host.ctx.local_key("cart", lambda: "c_minted")
        assert "cart:c_minted" in host.fresh
        # Another host may create it while the partition is away: the mark must not survive.
        host.drop({partition_of("cart", key)})
        assert "cart:c_minted" not in host.fresh
    finally:
        await svc.close()
