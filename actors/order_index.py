"""Order-index actor: one per customer (or guest); the ids of their orders, newest first.

The checkout saga adds each new order here beside the order's creation (cart -> index; the
index asks nobody), so ``GET /v1/orders`` reads one actor for the page of ids, then each
order; an id whose order is not stored (its creation failed, or has not ended) is skipped.
Fields: ``o:{order_id}`` = created_at (epoch seconds).
"""

from __future__ import annotations

import bisect
from typing import Any

from actors.runtime import Actor

#: Largest page of orders one request may ask for.
MAX_PAGE = 100


class OrderIndexActor(Actor):
    kind = "orders"
    __slots__ = ("entries",)

    def __init__(self, key: str, ctx: Any) -> None:
        super().__init__(key, ctx)
        #: (-created_at, order_id), ascending: newest first.
        self.entries: list[tuple[float, str]] = []

    def load(self, fields: dict[str, Any]) -> None:
        self.entries = sorted((-float(at), f[2:]) for f, at in fields.items()
                              if f.startswith("o:"))

    def field_value(self, name: str) -> Any:
        oid = name[2:]
        for at, known in self.entries:
            if known == oid:
                return -at
        return None

    def exists(self) -> bool:
        return bool(self.entries)

    async def add(self, order_id: str, created_at: float) -> None:
        """List ``order_id`` (idempotent)."""
        if any(oid == order_id for _, oid in self.entries):
            return
        bisect.insort(self.entries, (-created_at, order_id))
        self.mark(f"o:{order_id}")

    async def page(self, cursor: str | None = None, limit: int = 20) -> dict[str, Any]:
        """``{order_ids, next_cursor}``: up to ``limit`` ids after ``cursor`` (an order id of
        the previous page; unknown: from the start), newest first."""
        start = 0
        if cursor:
            for i, (_, oid) in enumerate(self.entries):
                if oid == cursor:
                    start = i + 1
                    break
        chunk = [oid for _, oid in self.entries[start:start + limit]]
        more = start + limit < len(self.entries)
        return {"order_ids": chunk, "next_cursor": chunk[-1] if more and chunk else None}
