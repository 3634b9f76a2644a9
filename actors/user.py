"""User actor: one per shopper (user or guest id); knows the shopper's one active cart."""

from __future__ import annotations

import uuid
from typing import Any

from actors.runtime import Actor


def new_cart_id() -> str:
    return "c_" + uuid.uuid4().hex[:24]


class UserActor(Actor):
    kind = "user"
    __slots__ = ("active",)

    def __init__(self, key: str, ctx: Any) -> None:
        super().__init__(key, ctx)
        self.active: str | None = None

    def load(self, fields: dict[str, Any]) -> None:
        self.active = (fields.get("meta") or {}).get("active_cart")

    def field_value(self, name: str) -> Any:
        return {"active_cart": self.active}

    def exists(self) -> bool:
        return self.active is not None

    async def active_cart(self, currency: str | None = None) -> dict[str, Any]:
        """The shopper's active cart, creating one when there is none.

        Returns ``{"cart": Cart, "created": bool}``. One active cart per shopper: an expired,
        merged or checked-out cart is replaced by a new one.
        """
        if self.active is not None:
            st = await self.ctx.ask("cart", self.active, "status")
            if st["status"] == "active":
                view = await self.ctx.ask("cart", self.active, "view", {"caller": self.key})
                return {"cart": view, "created": False}
        cart_id = new_cart_id()
        view = await self.ctx.ask("cart", cart_id, "create",
                                  {"owner": self.key, "currency": currency})
        self.active = cart_id
        self.mark("meta")
        return {"cart": view, "created": True}

    async def current(self) -> str | None:
        """The active cart id, if any (it may have expired since)."""
        return self.active
