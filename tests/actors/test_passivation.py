"""Passivation never strands queued messages (in-process placement, manual clock)."""

from __future__ import annotations

import asyncio

import pytest

from actors.clock import ManualClock
from actors.service import CartService
from snapshots.memory_store import MemoryStore
from snapshots.store import Write


class _YieldingStore(MemoryStore):
    """A memory store whose calls give the loop a turn, as a network store's do."""

    async def activate(self, key: str, partition: int):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)
        return await super().activate(key, partition)

    async def commit(self, writes: list[Write]) -> list[int | None]:
        await asyncio.sleep(0)
        return await super().commit(writes)

pytestmark = pytest.mark.actors


async def test_a_burst_to_an_actor_that_passivates_after_each_turn_is_answered_in_full() -> None:
    # An unused promotion's usage actor keeps no state, so it leaves memory after each turn;
    # the messages queued behind a turn must find it still there, not retry until refused.
    svc = await CartService.in_process(_YieldingStore(), clock=ManualClock(), hosts=1)
    try:
        replies = await asyncio.gather(*(svc.placement.send(
            ("promo", "unused", "usage", {"customer": f"u{i}"}, None, None))
            for i in range(300)))
    finally:
        await svc.close()
    assert [r[0] for r in replies] == ["ok"] * 300
    assert {r[1]["used"] for r in replies} == {0}
