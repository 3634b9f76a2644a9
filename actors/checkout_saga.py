"""The checkout saga of a cart actor (`actors.cart.CartActor` runs it as one turn, so the
cart cannot change under it):

1. re-price every line against the catalog; a moved price is a 409 ``price_changed`` unless
   the client accepted it;
2. reserve every line at its inventory actor, in parallel; if any fails, release the others
   (compensation) and answer 409 ``out_of_stock`` with a reason per line; hold a use of
   each limited promotion (a use limit reached releases the stock again). A cart with
   coupon codes is priced before step 2, one without after it;
3. create the order (id derived from cart and Idempotency-Key, so a retry finds it) and,
   beside steps 3 to 5, list it in its owner's order index;
4. authorize the payment; on failure release every reservation, record why on the order
   and keep the cart usable (402 / 503);
5. commit the reservations, mark the order paid and the cart checked out; events go out in
   the same commits.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actors.cart_keys import customer_of, limit_key, order_id_for, reservation_id_for
from actors.runtime import consume_outcome
from actors.views import cart_view
from engine.cart import Cart, LineItem
from engine.errors import Conflict, DomainError, Unavailable
from engine.events import (
    CART_CHECKED_OUT,
    event,
)
from engine.pricing import (
    PricedCart,
)
from engine.promotions import Promotion
from engine.purchase import (
    LimitScope,
    check_account,
    check_purchase_limit,
)
from engine.stock import COMMITTED_MEMORY

#: Seconds the hosts' clocks may disagree by, for `CheckoutSaga._may_have_sold`.
CLOCK_MARGIN = 60.0


class CheckoutSaga:
    """The ``checkout`` message and its steps and compensations; mixed into `CartActor`,
    whose state (``cart``), helpers (``_own``, ``_price``, ``stock``...) it uses."""

    cart: Cart | None
    ctx: Any
    key: str

    async def checkout(self, caller: str, payment_token: str, idempotency_key: str,
                       accept_price_changes: bool = False,
                       shipping_address: dict[str, Any] | None = None,
                       groups: list[str] | None = None,
                       if_match: int | None = None) -> dict[str, Any]:
        """The checkout saga (module docstring). Returns the API.md Order.

        Raises ValidationFailed ``invalid_destination`` (a ``shipping_address`` whose
        ``country`` / ``region`` are not ISO 3166 codes), Conflict ``cart_empty`` /
        ``cart_not_active`` / ``version_mismatch`` / ``price_changed`` / ``out_of_stock`` /
        ``usage_limit_reached``, PaymentDeclined,
        Unavailable (payment provider down), and a code's own error when a code on the cart
        no longer applies.
        """
        shipping_address = self._destination(shipping_address)
        cart = self._own(caller)
        cart.ensure_active()
        cart.check_version(if_match)
        self._note_groups(cart, groups)
        if not cart.lines:
            raise Conflict("cart_empty", "the cart has no lines to check out")
        lines = list(cart.lines.values())
        self._reprice(cart, lines, accept_price_changes)
        # A cart with coupon codes is priced first, so a code that no longer applies fails
        # before any stock is touched (a held line keeps its hold). Without codes nothing in
        # pricing can fail: stock goes first, since in a flash sale most checkouts fail there
        # and should not pay for the promotion pipeline.
        priced = self._price(shipping_address) if cart.codes else None
        if priced is not None and priced.code_errors:
            code, e = sorted(priced.code_errors.items())[0]
            raise type(e)(e.code, f"code {code}: {e.message}", e.details)
        order_id = order_id_for(cart.cart_id, idempotency_key)
        try:
            await self._reserve_all(cart, lines)
        except Conflict:
            # This key's checkout may have paid already, its reply lost with a dead host
            # before this cart's own write: its stock is sold, so reserving fails. Finish it.
            if not self._may_have_sold(lines):
                raise  # a plain refusal (a flash sale's losers): no order actor to wake
            settled = await self.ctx.ask("order", order_id, "settled", {})
            if settled is None:
                raise
            await self._list_order(cart, order_id)  # that try's listing may have failed
            return self._checked_out(cart, lines, order_id, settled)
        try:
            priced = priced or self._price(shipping_address)
            limited = [p for pid in priced.promotion_ids
                       if (p := self.ctx.reference.promotions.get(pid)) is not None and
                       (p.usage_limit is not None or p.per_customer_limit is not None)]
            limit_keys = await self._reserve_limits(order_id, lines)
            try:
                await self._reserve_uses(order_id, limited)
            except DomainError:
                await self._release_limits(order_id, limit_keys)
                raise
        except DomainError:
            await self._release_lines(lines)
            raise
        listed = self._list_order(cart, order_id)
        try:
            order = await self._create_order(order_id, {
                "cart_id": cart.cart_id, "owner": cart.owner, "currency": cart.currency,
                "lines": cart_view(cart, priced, self.now)["lines"],
                "totals": priced.totals(), "discounts": priced.discounts,
                "expires_at": self.now + self.ctx.settings.reservation_ttl,
                "reservations": [[reservation_id_for(cart.cart_id, ln.line_id),
                                  ln.variant_id, ln.quantity] for ln in lines],
                "promotion_uses": [p.promotion_id for p in limited],
                "limit_holds": limit_keys,
                "shipping_address": shipping_address})
            if order["status"] == "paid":  # paid before (a reply lost with a dead host):
                await self._release_lines(lines)  # what this try reserved again goes back
            elif order["status"] != "requires_action":
                order = await self._pay(cart, lines, limited, limit_keys, order_id, priced,
                                        payment_token)
        finally:
            await asyncio.wait([listed])
        listed.result()  # a listing that failed fails the checkout; its retry lists it
        return self._checked_out(cart, lines, order_id, order)

    async def _create_order(self, order_id: str, data: dict[str, Any]) -> Any:
        """Step 3's ``create`` at the order actor, which lives on this host (its id carries
        the cart's partition). Its id is new but for a retried checkout, so its activation
        skips the store's read (`Host.assume_new`); when a retry finds it stored after all,
        the create is sent again and reads it. That read was 12-20 ms of a winner's order
        step in a flash sale under `loadtest.bench` (2026-12-01, median)."""
        self.ctx.host.assume_new("order", order_id)
        try:
            return await self.ctx.ask("order", order_id, "create", {"data": data})
        except Unavailable as e:
            if e.code != "actor_moved":
                raise
            return await self.ctx.ask("order", order_id, "create", {"data": data})

    def _list_order(self, cart: Cart, order_id: str) -> asyncio.Future[Any]:
        """Start adding ``order_id`` to its owner's order index (idempotent there), to run
        beside the order's creation and payment: the checkout answers once both are done.

        A listing skips an id whose order is not stored (`CartService.list_orders`): one
        still being created, or whose creation failed (the checkout failed with it, and its
        retry creates it). A listing that fails fails the checkout after the order's own
        steps; the retry finds the order settled and lists it again.

        Measured in flash sales under `loadtest.bench` (2026-12-01): a winner's order step
        took 62-76 ms (median) with the index asked from the order's own turn, 33-38 ms of
        them the index's (a hop, its activation, its write).
        """
        listed: asyncio.Future[Any] = asyncio.ensure_future(self.ctx.ask(
            "orders", cart.owner, "add", {"order_id": order_id, "created_at": self.now}))
        listed.add_done_callback(consume_outcome)  # a failed checkout does not read it
        return listed

    def _may_have_sold(self, lines: list[LineItem]) -> bool:
        """Whether a refused reservation may hide an earlier, paid try of this checkout.

        Such a try committed each line's reservation after the line's last stored change,
        and its inventory answers a reserve of a committed id with the units it sold
        (`engine.stock.COMMITTED_MEMORY` seconds, from the commit). So when every line is
        of an unsharded variant (one actor holds the memory; a sharded reservation may have
        been spread over other shards) and changed less than that long ago (less
        `CLOCK_MARGIN` for the hosts' clocks), a refusal is a refusal and no order needs
        looking up.
        """
        shards = self.stock.shards_of
        recent = self.now - COMMITTED_MEMORY + CLOCK_MARGIN
        return any(shards(ln.variant_id) > 1 or ln.updated_at <= recent for ln in lines)

    def _checked_out(self, cart: Cart, lines: list[LineItem], order_id: str,
                     order: Any) -> dict[str, Any]:
        cart.check_out(order_id, self.now)
        self.mark("meta", *(f"l:{ln.line_id}" for ln in lines))
        self.emit(event(CART_CHECKED_OUT, self.now, cart_id=cart.cart_id, owner=cart.owner,
                        order_id=order_id))
        self.expire_record_after(self.ctx.settings.finished_cart_retention)
        return order  # type: ignore[no-any-return]

    async def _pay(self, cart: Cart, lines: list[LineItem], limited: list[Promotion],
                   limit_keys: list[str], order_id: str, priced: PricedCart,
                   token: str) -> Any:
        """Steps 4-5: authorize, then commit everything; compensate on any failure."""
        async def undo(reason: str, code: str) -> None:
            await self._release_lines(lines)
            await self._release_limits(order_id, limit_keys)
            await asyncio.gather(*(self.ctx.ask("promo", p.promotion_id, "release",
                                                {"order_id": order_id}) for p in limited))
            await self.ctx.ask("order", order_id, "mark_failed", {"reason": reason,
                                                                   "code": code})

        try:
            auth = await self.ctx.payments.authorize(order_id, priced.total, cart.currency,
                                                     token, f"{order_id}:authorize")
        except DomainError as e:
            await undo(e.message, e.code)
            raise
        if auth.get("status") == "requires_action":
            # The customer confirms with their bank (3-D Secure): the reservations, uses and
            # limit units stay held for the order, which a webhook settles (or its deadline).
            return await self.ctx.ask("order", order_id, "mark_requires_action",
                                      {"payment": auth})
        try:
            await asyncio.gather(*(self.stock.commit(
                ln.variant_id, reservation_id_for(cart.cart_id, ln.line_id), ln.quantity)
                for ln in lines))
        except DomainError as e:
            # A reservation lapsed while the payment was slow: undo the payment too.
            await self.ctx.payments.void(auth.get("reference", ""), f"{order_id}:void")
            await undo("a reservation expired during payment", "reservation_expired")
            raise Conflict("reservation_expired",
                           "stock was released while the payment was pending; try again") from e
        await asyncio.gather(*(self.ctx.ask("promo", p.promotion_id, "commit",
                                            {"order_id": order_id}) for p in limited),
                             *(self.ctx.ask("limit", k, "commit", {"order_id": order_id})
                               for k in limit_keys))
        if self.ctx.settings.payment_capture == "immediate":
            captured = await self.ctx.payments.capture(auth["reference"], priced.total,
                                                       cart.currency, f"{order_id}:capture")
            auth = {**auth, "status": captured.get("status", "captured")}
        return await self.ctx.ask("order", order_id, "mark_paid", {"payment": auth})

    async def _reserve_limits(self, order_id: str, lines: list[LineItem]) -> list[str]:
        """Hold the customer's units under each purchase limit the cart touches, all or
        none (atomic per customer and scope: `actors.purchase_limits`); the actor keys held.
        A guest's cart is checked on its own (limits are per cart for guests).

        Raises Conflict ``purchase_limit_exceeded``, Forbidden ``account_required``.
        """
        assert self.cart is not None
        customer = customer_of(self.cart.owner)
        scopes: dict[str, LimitScope] = {}
        for ln in lines:
            product = self.ctx.catalog.find(ln.product_id)
            if product is None:
                continue
            variant = product.variant(ln.variant_id)
            check_account(product.requires_account(variant), customer, ln.variant_id)
            for sc in product.limits_of(variant):
                scopes[sc.scope] = sc
        pairs = [(ln.variant_id, ln.quantity) for ln in lines]
        if customer is None:
            for sc in scopes.values():
                check_purchase_limit(sc, sc.in_cart(pairs), 0)
            return []
        keys = [limit_key(customer, sc.scope) for sc in scopes.values()]
        ttl = self.ctx.settings.reservation_ttl
        results = await asyncio.gather(*(self.ctx.ask("limit", k, "reserve", {
            "order_id": order_id, "quantity": sc.in_cart(pairs), "limit": sc.limit,
            "ttl": ttl}) for k, sc in zip(keys, scopes.values(), strict=True)),
            return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self._release_limits(order_id, [k for k, r in zip(keys, results, strict=True)
                                                  if not isinstance(r, BaseException)])
            raise failed[0]
        return keys

    async def _release_limits(self, order_id: str, keys: list[str]) -> None:
        await asyncio.gather(*(self.ctx.ask("limit", k, "release", {"order_id": order_id})
                               for k in keys))

    async def _reserve_uses(self, order_id: str, promos: list[Promotion]) -> None:
        """Step 3: hold one use of each limited promotion; all or none."""
        assert self.cart is not None
        customer = customer_of(self.cart.owner)
        ttl = self.ctx.settings.reservation_ttl
        results = await asyncio.gather(*(self.ctx.ask("promo", p.promotion_id, "reserve", {
            "order_id": order_id, "customer": customer, "usage_limit": p.usage_limit,
            "per_customer_limit": p.per_customer_limit, "ttl": ttl}) for p in promos),
            return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if not failed:
            return
        await asyncio.gather(*(self.ctx.ask("promo", p.promotion_id, "release",
                                            {"order_id": order_id})
                               for p, r in zip(promos, results, strict=True)
                               if not isinstance(r, BaseException)))
        raise failed[0]

    async def _release_lines(self, lines: list[LineItem]) -> None:
        """Compensation for stock: release every line's reservation; a line's hold goes too."""
        await self._release([ln.line_id for ln in lines], [ln.variant_id for ln in lines])
        for ln in lines:
            if ln.hold_until is not None:
                ln.hold_until = None
                self.mark(f"l:{ln.line_id}")

    def _reprice(self, cart: Cart, lines: list[LineItem], accept: bool) -> None:
        changed = []
        for ln in lines:
            try:
                _, _, current = self._lookup(ln.product_id, ln.variant_id)
            except DomainError as e:
                raise Conflict("product_unavailable",
                               f"{ln.name} can no longer be bought: {e.message}",
                               [{"line_id": ln.line_id, "product_id": ln.product_id}]) from e
            if current != ln.unit_price:
                changed.append((ln, current))
        if changed and not accept:
            raise Conflict("price_changed", "prices changed since these items were added", [
                {"line_id": ln.line_id, "product_id": ln.product_id,
                 "variant_id": ln.variant_id,
                 "old_price": {"amount": ln.unit_price, "currency": cart.currency},
                 "new_price": {"amount": new, "currency": cart.currency}}
                for ln, new in changed])
        for ln, new in changed:
            ln.unit_price = new
            ln.updated_at = self.now
            self.mark(f"l:{ln.line_id}")

    async def _reserve_all(self, cart: Cart, lines: list[LineItem]) -> None:
        """Step 2: reserve every line or none. A held line's hold becomes its reservation."""
        ttl = self.ctx.settings.reservation_ttl
        stock = self.stock
        results = await asyncio.gather(*(stock.reserve(
            ln.variant_id, reservation_id_for(cart.cart_id, ln.line_id), ln.quantity, ttl,
            cart.cart_id, fresh=ln.hold_until is None) for ln in lines),
            return_exceptions=True)
        failed = [(ln, r) for ln, r in zip(lines, results, strict=True)
                  if isinstance(r, BaseException)]
        if not failed:
            return
        taken = [ln for ln, r in zip(lines, results, strict=True)
                 if not isinstance(r, BaseException) and ln.hold_until is None]
        await self._release([ln.line_id for ln in taken], [ln.variant_id for ln in taken])
        for _, r in failed:
            if not isinstance(r, DomainError):
                raise r
        details = []
        for ln, r in failed:
            assert isinstance(r, DomainError)
            d = {"line_id": ln.line_id, "variant_id": ln.variant_id,
                 "requested": ln.quantity, "reason": r.code}
            if r.details:
                d["available"] = r.details[0].get("available")
            details.append(d)
        raise Conflict("out_of_stock", "some lines could not be reserved", details)
