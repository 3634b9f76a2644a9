"""Admin-request actor: one per admin Idempotency-Key; runs one admin change exactly once.

An admin stock change may span several inventory actors (a sharded variant), so no one
inventory actor can remember the request. The gateway sends it instead to the actor named by
the (caller-scoped) key, with the key as request id: the runtime records the reply in that
actor before answering, and a retry with the same key and body gets the recorded reply
without running the change again (`actors.runtime`). Calls go one way: adminop -> inventory.
The record is dropped 24 hours after the change (as any idempotency record).
"""

from __future__ import annotations

from typing import Any

from actors.runtime import IDEMPOTENCY_TTL, Actor
from actors.stock_client import StockClient, shards_of


class AdminOpActor(Actor):
    kind = "adminop"
    keeps_requests = True
    __slots__ = ()

    def field_value(self, name: str) -> Any:
        return None

    def exists(self) -> bool:
        return False  # nothing of its own: only the runtime's record of the request

    async def stock(self, variant_id: str, set: int | None = None,
                    delta: int | None = None) -> dict[str, Any]:
        """``{variant_id, on_hand, reserved, available, sold}`` after the change.

        Raises ValidationFailed ``invalid_stock``, Conflict ``stock_below_reserved``.
        """
        client = StockClient(self.ctx.ask, shards_of(self.ctx.catalog))
        out = await client.adjust(variant_id, set=set, delta=delta)
        self.expire_record_after(IDEMPOTENCY_TTL)
        return {"variant_id": variant_id, **out}
