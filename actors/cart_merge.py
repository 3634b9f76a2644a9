"""Guest merge on login: the guest's cart gives up its lines (``take_lines``) and the user's
cart takes them in (``absorb``) by the merge strategy; mixed into `actors.cart.CartActor`."""

from __future__ import annotations

from typing import Any

from engine.cart import Cart
from engine.errors import DomainError
from engine.events import (
    CART_MERGED,
    event,
)
from engine.limits import MAX_QUANTITY_PER_LINE


class GuestMerge:
    """The ``take_lines`` and ``absorb`` messages of a cart actor."""

    cart: Cart | None
    ctx: Any
    key: str

    async def take_lines(self, caller: str, into_cart_id: str) -> dict[str, Any]:
        """Merge source side: hand over this (guest) cart's lines and codes, end as ``merged``.

        Idempotent: a cart already merged into ``into_cart_id`` answers the same lines.
        """
        cart = self._own(caller)
        if cart.merged_into != into_cart_id:
            cart.ensure_active()
            held = [ln for ln in cart.lines.values() if ln.hold_until is not None]
            await self._release([ln.line_id for ln in held], [ln.variant_id for ln in held])
            cart.mark_merged(into_cart_id, self.now)
            self.mark("meta", *(f"l:{ln.line_id}" for ln in held))
            self.emit(event(CART_MERGED, self.now, cart_id=cart.cart_id,
                            owner=cart.owner, into=into_cart_id))
            self.expire_record_after(self.ctx.settings.finished_cart_retention)
        return {"lines": [{"product_id": ln.product_id, "variant_id": ln.variant_id,
                           "quantity": ln.quantity, "options": ln.options, "name": ln.name,
                           "unit_price": ln.unit_price, "added_at": ln.added_at}
                          for ln in cart.lines.values()],
                "codes": list(cart.codes), "currency": cart.currency}

    async def absorb(self, caller: str, source_cart_id: str, lines: list[dict[str, Any]],
                     codes: list[str], currency: str, strategy: str) -> dict[str, Any]:
        """Merge target side: fold a guest cart's lines and codes in; ``{cart, report}``.

        Strategies for a variant both carts hold: ``sum`` the quantities, keep the ``larger``,
        or ``keep_user`` (the user's line wins). Quantities are clamped to the 999-per-line
        limit and to the units available; a line or code that cannot come along is reported,
        never silently dropped.
        """
        cart = self._mutable(caller, None)
        report: dict[str, Any] = {"source_cart_id": source_cart_id, "strategy": strategy,
                                  "already_merged": source_cart_id in cart.merged_from,
                                  "lines_added": [], "lines_merged": [], "clamped": [],
                                  "lines_dropped": [], "codes_kept": [], "codes_dropped": []}
        if report["already_merged"]:
            return {"cart": self._view(), "report": report}
        cart.merged_from = (*cart.merged_from, source_cart_id)
        self.mark("meta")
        if currency != cart.currency:
            report["lines_dropped"] = [{"product_id": g["product_id"],
                                        "variant_id": g["variant_id"],
                                        "reason": "currency_mismatch"} for g in lines]
            lines = []
        for g in lines:
            await self._absorb_line(cart, g, strategy, report)
        for code in codes:
            if code in cart.codes:
                report["codes_kept"].append(code)
                continue
            try:
                await self.add_code(caller, code)
                report["codes_kept"].append(code)
            except DomainError as e:
                report["codes_dropped"].append({"code": code, "reason": e.code,
                                                "message": e.message})
        return {"cart": self._view(), "report": report}

    async def _absorb_line(self, cart: Cart, g: dict[str, Any], strategy: str,
                           report: dict[str, list[Any]]) -> None:
        mine = cart.find_line(g["variant_id"], g["options"])
        have = mine.quantity if mine else 0
        want = {"sum": have + g["quantity"], "larger": max(have, g["quantity"]),
                "keep_user": have if mine else g["quantity"]}[strategy]
        want = min(want, MAX_QUANTITY_PER_LINE)
        available = (await self.stock.status(g["variant_id"]))["available"]
        if mine is not None and mine.hold_until is not None:
            available += mine.quantity  # its own hold counts as available to it
        target = min(want, max(available, have))
        if target < want:
            report["clamped"].append({"variant_id": g["variant_id"], "requested": want,
                                      "quantity": target, "reason": "stock"
                                      if want <= MAX_QUANTITY_PER_LINE else "limit"})
        try:
            if mine is None:
                if target <= 0:
                    report["lines_dropped"].append({"variant_id": g["variant_id"],
                                                    "reason": "out_of_stock"})
                    return
                await self._add(cart.owner, g["product_id"], target, g["variant_id"],
                                g["options"], unit_price=g["unit_price"],
                                added_at=g["added_at"])
                report["lines_added"].append({"variant_id": g["variant_id"],
                                              "quantity": target})
            elif target != have:
                await self._set(cart.owner, mine.line_id, target)
                report["lines_merged"].append({"line_id": mine.line_id,
                                               "variant_id": g["variant_id"],
                                               "quantity": target, "was": have})
            else:
                report["lines_merged"].append({"line_id": mine.line_id,
                                               "variant_id": g["variant_id"],
                                               "quantity": have, "was": have})
        except DomainError as e:
            report["lines_dropped"].append({"variant_id": g["variant_id"], "reason": e.code,
                                            "message": e.message})
