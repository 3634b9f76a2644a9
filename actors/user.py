"""User actor: one per shopper (user or guest id).

It knows the shopper's one active cart and keeps the saved-for-later list, and it
orchestrates what spans carts (saved for later, guest merge). Calls go one way only,
user -> cart -> inventory / order / promotion usage, so no two turns can wait on each other.
Fields: ``meta`` (active cart, item sequence) and ``s:{item_id}`` per saved item.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from actors.runtime import Actor
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.limits import MAX_SAVED_FOR_LATER
from engine.money import check_currency
from engine.timefmt import rfc3339

MERGE_STRATEGIES = ("sum", "larger", "keep_user")
#: User ids of guests (`gateway.auth`): their records expire.
GUEST_PREFIX = "guest_"


def new_cart_id() -> str:
    return "c_" + uuid.uuid4().hex[:24]


def first_cart_id(guest: str) -> str:
    """The id of guest ``guest``'s first cart, derived from the guest id (a BLAKE2b digest,
    same shape as `new_cart_id`): ``POST /v1/carts`` opens it without the guest's user
    actor, whose record stays unwritten until it has something of its own (another active
    cart, saved items, waitlists); until then that cart is the guest's active cart."""
    return "c_" + hashlib.blake2b(guest.encode(), digest_size=12).hexdigest()


class UserActor(Actor):
    kind = "user"
    idempotent = frozenset({"active_cart", "current", "saved_items"})
    __slots__ = ("active", "saved", "saved_seq", "waiting")

    def __init__(self, key: str, ctx: Any) -> None:
        super().__init__(key, ctx)
        self.active: str | None = None
        self.saved: dict[str, dict[str, Any]] = {}
        self.saved_seq = 0
        #: Variants whose waitlist this shopper joined: variant id -> joined at (epoch s).
        self.waiting: dict[str, float] = {}

    def load(self, fields: dict[str, Any]) -> None:
        meta = fields.get("meta") or {}
        self.active = meta.get("active_cart")
        self.saved_seq = meta.get("saved_seq", 0)
        items = sorted(((f[2:], v) for f, v in fields.items() if f.startswith("s:")),
                       key=lambda kv: kv[1]["saved_at"])
        self.saved = dict(items)
        self.waiting = {f[2:]: v for f, v in fields.items() if f.startswith("w:")}

    def field_value(self, name: str) -> Any:
        if name == "meta":
            return {"active_cart": self.active, "saved_seq": self.saved_seq}
        if name.startswith("w:"):
            return self.waiting.get(name[2:])
        return self.saved.get(name[2:])

    def exists(self) -> bool:
        return self.active is not None or bool(self.saved) or bool(self.waiting)

    def retention(self) -> float | None:
        """A guest's record lasts as long as a guest token can (`guest_retention`, renewed
        by each write); a registered shopper's is kept."""
        return self.ctx.settings.guest_retention if self.key.startswith(GUEST_PREFIX) \
            else None

    def _current(self) -> str | None:
        """The active cart's id: the stored one, else a guest's first cart (never stored)."""
        if self.active is None and self.key.startswith(GUEST_PREFIX):
            return first_cart_id(self.key)
        return self.active

    async def _active_view(self, currency: str | None, groups: list[str] | None,
                           request_id: str | None = None,
                           fingerprint: str | None = None) -> tuple[dict[str, Any], bool]:
        current = self._current()
        if current is not None:
            st = await self.ctx.ask("cart", current, "status")
            if st["status"] == "active" and st["owner"] == self.key:
                if self.active is None:
                    # A guest's first cart, opened without this actor: the request's
                    # Idempotency-Key was recorded there, so it is answered there.
                    out = await self.ctx.ask("cart", current, "open", {
                        "owner": self.key, "currency": currency, "groups": groups},
                        request_id, fingerprint)
                    return out["cart"], out["created"]
                view = await self.ctx.ask("cart", current, "view",
                                          {"caller": self.key, "groups": groups})
                return view, False
        cart_id = self.ctx.local_key("cart", new_cart_id)
        view = await self.ctx.ask("cart", cart_id, "create",
                                  {"owner": self.key, "currency": currency, "groups": groups})
        self.active = cart_id
        self.mark("meta")
        return view, True

    async def active_cart(self, currency: str | None = None,
                          groups: list[str] | None = None, request_id: str | None = None,
                          fingerprint: str | None = None) -> dict[str, Any]:
        """The shopper's active cart, creating one when there is none.

        Returns ``{"cart": Cart, "created": bool}``. One active cart per shopper: an expired,
        merged or checked-out cart is replaced by a new one. ``request_id`` and
        ``fingerprint``: this request's (caller-scoped) Idempotency-Key and fingerprint, for
        a guest's first cart, which keeps them (see `_active_view`). Raises
        ValidationFailed ``unknown_currency`` (ISO 4217).
        """
        if currency is not None:
            check_currency(currency)  # refused even when an existing cart is answered
        view, created = await self._active_view(currency, groups, request_id, fingerprint)
        return {"cart": view, "created": created}

    async def current(self) -> str | None:
        """The active cart id, if any (it may have expired since)."""
        return self._current()

    # -- saved for later -------------------------------------------------------------------
    def _saved_view(self) -> dict[str, Any]:
        return {"items": [{**item, "saved_at": rfc3339(item["saved_at"]),
                           "unit_price": {"amount": item["unit_price"],
                                          "currency": item["currency"]}}
                          for item in self.saved.values()]}

    async def save_for_later(self, cart_id: str, line_id: str) -> dict[str, Any]:
        """Move a cart line to the saved list: ``{cart, saved}``. Releases any hold.

        Raises ValidationFailed ``too_many_saved`` (100 items), NotFound (cart, line).
        """
        if len(self.saved) >= MAX_SAVED_FOR_LATER:
            raise ValidationFailed("too_many_saved",
                                   f"at most {MAX_SAVED_FOR_LATER} items can be saved")
        out = await self.ctx.ask("cart", cart_id, "take_line",
                                 {"caller": self.key, "line_id": line_id})
        self.saved_seq += 1
        item_id = f"sv_{self.saved_seq}"
        self.saved[item_id] = {"item_id": item_id, **out["line"], "saved_at": self.now}
        self.mark("meta", f"s:{item_id}")
        return {"cart": out["cart"], "saved": self._saved_view()}

    async def saved_items(self) -> dict[str, Any]:
        """``{items: [{item_id, product_id, variant_id, quantity, options, name, unit_price,
        saved_at}]}``; ``unit_price`` is the price when it was in the cart."""
        return self._saved_view()

    async def move_to_cart(self, item_id: str, groups: list[str] | None = None) -> dict[str, Any]:
        """Put a saved item back into the active cart, at today's price: ``{cart, saved}``.

        Raises NotFound ``saved_item_not_found``; the cart's own errors (stock, limits).
        """
        item = self.saved.get(item_id)
        if item is None:
            raise NotFound("saved_item_not_found", f"no saved item {item_id!r}")
        view, _ = await self._active_view(item["currency"], groups)
        view = await self.ctx.ask("cart", view["cart_id"], "add_item", {
            "caller": self.key, "product_id": item["product_id"],
            "variant_id": item["variant_id"], "quantity": item["quantity"],
            "options": item["options"], "groups": groups})
        del self.saved[item_id]
        self.mark(f"s:{item_id}")
        return {"cart": view, "saved": self._saved_view()}

    async def remove_saved(self, item_id: str) -> dict[str, Any]:
        if self.saved.pop(item_id, None) is None:
            raise NotFound("saved_item_not_found", f"no saved item {item_id!r}")
        self.mark(f"s:{item_id}")
        return self._saved_view()

    # -- guest merge -----------------------------------------------------------------------
    async def merge(self, cart_id: str, guest_owner: str, guest_cart_id: str,
                    strategy: str = "sum") -> dict[str, Any]:
        """Merge the guest's cart into this user's cart ``cart_id``: ``{cart, report}``.

        The guest cart ends ``merged``; a repeat changes nothing (``report.already_merged``).
        Raises ValidationFailed ``invalid_merge_strategy`` / ``cannot_merge_into_itself``,
        NotFound (either cart), Conflict ``cart_not_active``.
        """
        if strategy not in MERGE_STRATEGIES:
            raise ValidationFailed("invalid_merge_strategy",
                                   f"strategy is one of {', '.join(MERGE_STRATEGIES)}")
        if guest_owner == self.key or guest_cart_id == cart_id:
            raise ValidationFailed("cannot_merge_into_itself", "that is this cart")
        target = await self.ctx.ask("cart", cart_id, "view", {"caller": self.key})
        if target["status"] != "active":
            raise Conflict("cart_not_active", f"cart is {target['status']}")
        src = await self.ctx.ask("cart", guest_cart_id, "take_lines",
                                 {"caller": guest_owner, "into_cart_id": cart_id})
        return await self.ctx.ask("cart", cart_id, "absorb", {
            "caller": self.key, "source_cart_id": guest_cart_id, "lines": src["lines"],
            "codes": src["codes"], "currency": src["currency"], "strategy": strategy})

    # -- waitlists (user -> waitlist -> inventory; `actors.waitlist`) ---------------------
    async def join_waitlist(self, variant_id: str, quantity: int) -> dict[str, Any]:
        """Join ``variant_id``'s waitlist: the entry ``{variant_id, quantity, state,
        position, joined_at, offer, created}``. Raises the waitlist's errors."""
        out = await self.ctx.ask("wait", variant_id, "join",
                                 {"customer": self.key, "quantity": quantity})
        if variant_id not in self.waiting:
            self.waiting[variant_id] = self.now
            self.mark(f"w:{variant_id}")
        return out  # type: ignore[no-any-return]

    async def leave_waitlist(self, variant_id: str) -> dict[str, Any]:
        """Leave ``variant_id``'s waitlist. Raises NotFound ``not_waiting``."""
        if variant_id not in self.waiting:
            raise NotFound("not_waiting", f"you are not on the waitlist of {variant_id!r}")
        try:
            out = await self.ctx.ask("wait", variant_id, "leave", {"customer": self.key})
        except NotFound:
            out = {"variant_id": variant_id, "left": True}
        del self.waiting[variant_id]
        self.mark(f"w:{variant_id}")
        return out  # type: ignore[no-any-return]

    async def waitlists(self) -> dict[str, Any]:
        """``{items: [entry]}``: the shopper's waitlist entries, as each waitlist has them."""
        import asyncio

        entries = await asyncio.gather(*(self.ctx.ask("wait", v, "entry", {"customer": self.key})
                                         for v in self.waiting))
        return {"items": [e for e in entries if e is not None]}
