"""Cart actor: one per cart, with its own inactivity timer and the checkout saga.

Persistence is O(change): the cart header is field ``meta`` and each line item field
``l:{line_id}``. The deadline is the cart's ``expires_at``: when it passes with no activity the
cart expires, gives back the stock it holds and leaves memory.

Checkout (a saga, run as one turn of the cart so the cart cannot change under it):
1. re-price every line against the catalog; a moved price is a 409 ``price_changed`` unless
   the client accepted it;
2. reserve every line at its inventory actor, in parallel; if any fails, release the others
   (compensation) and answer 409 ``out_of_stock`` with a reason per line; hold a use of
   each limited promotion (a use limit reached releases the stock again). A cart with
   coupon codes is priced before step 2, one without after it;
3. create the order (id derived from cart and Idempotency-Key, so a retry finds it);
4. authorize the payment; on failure release every reservation, record why on the order
   and keep the cart usable (402 / 503);
5. commit the reservations, mark the order paid and the cart checked out; events go out in
   the same commits.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from actors.order import ADMIN
from actors.runtime import Actor, err, key_hash
from actors.settings import EngineSettings
from actors.stock_client import StockClient, availability_reads, shards_of
from actors.views import cart_view
from engine.analytics import compact_lines
from engine.cart import Cart, LineItem, normalize_code, normalize_options
from engine.catalog import Product, Variant
from engine.errors import Conflict, DomainError, NotFound, ValidationFailed
from engine.events import (
    CART_CHECKED_OUT,
    CART_CREATED,
    CART_EXPIRED,
    CART_MERGED,
    CART_UPDATED,
    event,
)
from engine.limits import MAX_QUANTITY_PER_LINE, check_quantity
from engine.money import check_currency
from engine.policies import check_destination
from engine.pricing import (
    PricedCart,
    PricingContext,
    ShippingPolicy,
    TaxPolicy,
    check_code,
    price_cart,
)
from engine.promotions import Promotion
from engine.purchase import (
    LimitScope,
    check_account,
    check_available,
    check_purchase_limit,
)


def order_id_for(cart_id: str, idempotency_key: str) -> str:
    """Deterministic order id: the same cart and key always name the same order.

    ``ord_``, the cart's partition (4 hex digits, so the order is placed on the cart's host:
    `actors.runtime.key_hash`), then 16 hex digits of a BLAKE2b digest of cart and key.
    """
    digest = hashlib.blake2b(f"{cart_id}\x00{idempotency_key}".encode(), digest_size=8)
    return f"ord_{key_hash('cart', cart_id):04x}{digest.hexdigest()}"


def reservation_id_for(cart_id: str, line_id: str) -> str:
    """One reservation per cart line: a hold on add becomes the checkout reservation in place."""
    return f"{cart_id}/{line_id}"


class CartActor(Actor):
    kind = "cart"
    idempotent = frozenset({"view", "status"})
    passivate_after = None  # an active cart stays until it expires, checks out or merges
    __slots__ = ("cart", "_available")

    def __init__(self, key: str, ctx: Any) -> None:
        super().__init__(key, ctx)
        self.cart: Cart | None = None
        #: Within one ``apply`` turn: variant id -> units available when first read.
        self._available: dict[str, int] | None = None

    # -- persistence -----------------------------------------------------------------------
    def load(self, fields: dict[str, Any]) -> None:
        cart = fields.get("meta")
        if cart is None:
            return
        lines = sorted((v for f, v in fields.items() if f.startswith("l:")),
                       key=lambda ln: int(ln.line_id.rpartition("_")[2]))
        cart.lines = {ln.line_id: ln for ln in lines}
        self.cart = cart

    def field_value(self, name: str) -> Any:
        assert self.cart is not None
        if name == "meta":
            return self.cart
        return self.cart.lines.get(name[2:])

    def exists(self) -> bool:
        return self.cart is not None

    def _take_write(self, storage_key: str) -> Any:
        # A turn that changed the cart tells real-time subscribers (`gateway.cart_events`)
        # which version to show: one small outbox entry in the turn's own commit.
        dirty = self._dirty
        if dirty and self.cart is not None and self.ctx.settings.cart_update_events and (
                "meta" in dirty or any(n.startswith("l:") for n in dirty)):
            self.emit(event(CART_UPDATED, self.now, cart_id=self.key,
                            version=self.cart.version))
        return super()._take_write(storage_key)

    def resident(self) -> bool:
        return self.cart is not None and self.cart.is_active

    def deadline(self) -> float | None:
        c = self.cart
        return c.expires_at if c is not None and c.is_active else None

    async def on_deadline(self) -> None:
        cart = self.cart
        assert cart is not None
        held = cart.expire(self.now)
        await self._release([ln.line_id for ln in held], [ln.variant_id for ln in held])
        self.mark("meta", *(f"l:{ln.line_id}" for ln in held))
        # ``lines`` and ``value`` (the lines at their captured prices) are for abandonment
        # analytics (engine.analytics).
        lines = compact_lines([{"product_id": ln.product_id, "variant_id": ln.variant_id,
                                "quantity": ln.quantity, "unit_price": ln.unit_price,
                                "line_total": ln.unit_price * ln.quantity}
                               for ln in cart.lines.values()])
        self.emit(event(CART_EXPIRED, self.now, cart_id=cart.cart_id, owner=cart.owner,
                        released=[{"variant_id": ln.variant_id, "quantity": ln.quantity}
                                  for ln in held], currency=cart.currency, lines=lines,
                        value={"amount": sum(ln["line_total"] for ln in lines),
                               "currency": cart.currency}))
        self.expire_record_after(self.ctx.settings.finished_cart_retention)

    # -- helpers ---------------------------------------------------------------------------
    @property
    def ttl(self) -> float:
        return float(self.ctx.settings.cart_ttl)

    def _own(self, caller: str) -> Cart:
        """The cart, if ``caller`` owns it. Another owner's cart is a 404 (API.md)."""
        c = self.cart
        if c is None or (caller != ADMIN and caller != c.owner):
            raise NotFound("cart_not_found", f"no cart {self.key!r}",
                           [{"cart_id": self.key}])
        return c

    def _mutable(self, caller: str, if_match: int | None) -> Cart:
        c = self._own(caller)
        c.check_version(if_match)
        c.ensure_active()
        return c

    def _pricing_context(self, destination: dict[str, Any] | None = None,
                         usage_exhausted: frozenset[str] = frozenset(),
                         customer_uses: dict[str, int] | None = None) -> PricingContext:
        ref = self.ctx.reference
        s = self.ctx.settings
        cart = self.cart
        assert cart is not None
        current: dict[str, int | None] = {}
        for ln in cart.lines.values():
            product = ref.catalog.find(ln.product_id)
            try:
                current[ln.variant_id] = None if product is None else \
                    product.price_of(product.variant(ln.variant_id), cart.currency)
            except DomainError:
                current[ln.variant_id] = None
        dest = destination or {}
        shipping, tax = policies(s)
        return PricingContext(
            now=self.now, promotions=ref.by_code, automatic=ref.automatic(),
            current_prices=current,
            shipping=shipping, tax=tax,
            customer_id=customer_of(cart.owner),
            customer_groups=frozenset(cart.customer_groups),
            customer_uses=customer_uses or {}, usage_exhausted=usage_exhausted,
            country=_str_or_none(dest.get("country")), region=_str_or_none(dest.get("region")))

    @staticmethod
    def _destination(address: dict[str, Any] | None) -> dict[str, Any] | None:
        """``address`` with its ``country`` / ``region`` validated and upper-cased
        (`engine.policies.check_destination`); raises ValidationFailed ``invalid_destination``."""
        if not address:
            return None
        if not isinstance(address, dict):
            raise ValidationFailed("invalid_destination", "the address is a JSON object",
                                   [{"field": "shipping_address"}])
        country, region = check_destination(address.get("country"), address.get("region"))
        out = dict(address)
        for key, value in (("country", country), ("region", region)):
            if value is not None:
                out[key] = value
        return out

    def _price(self, destination: dict[str, Any] | None = None) -> PricedCart:
        assert self.cart is not None
        return price_cart(self.cart, self._pricing_context(destination))

    def _view(self) -> dict[str, Any]:
        assert self.cart is not None
        return cart_view(self.cart, self._price(), self.now)

    def _note_groups(self, cart: Cart, groups: list[str] | None) -> None:
        """Keep the owner's membership tiers (token claim) for group-only promotions."""
        if groups is not None and tuple(sorted(groups)) != cart.customer_groups:
            cart.customer_groups = tuple(sorted(groups))
            self.mark("meta")

    async def _usage(self, promos: list[Promotion]) -> tuple[frozenset[str], dict[str, int]]:
        """Which of ``promos`` are used up, and this customer's uses, from the usage actors."""
        assert self.cart is not None
        customer = customer_of(self.cart.owner)
        limited = [p for p in promos if p.usage_limit is not None or
                   p.per_customer_limit is not None]
        answers = await asyncio.gather(*(self.ctx.ask("promo", p.promotion_id, "usage",
                                                      {"customer": customer})
                                         for p in limited))
        # Only committed uses count here: a held use may still be given back, and a false
        # "used up" while other checkouts are in flight is worse than a 409 at checkout.
        exhausted = frozenset(p.promotion_id for p, a in zip(limited, answers, strict=True)
                              if p.usage_limit is not None and a["used"] >= p.usage_limit)
        return exhausted, {p.promotion_id: a["customer_uses"]
                           for p, a in zip(limited, answers, strict=True)}

    def _lookup(self, product_id: str, variant_id: str | None) -> tuple[Product, Variant, int]:
        assert self.cart is not None
        product = self.ctx.catalog.get(product_id)
        variant = product.variant(variant_id)
        return product, variant, product.price_of(variant, self.cart.currency)

    @property
    def stock(self) -> StockClient:
        return StockClient(self.ctx.ask, shards_of(self.ctx.catalog))

    async def _hold(self, cart: Cart, line_id: str, variant: Variant, quantity: int) -> float:
        """Reserve ``quantity`` of a held line (a hold-on-add variant, or units claimed from
        a waitlist offer, held for the reservation TTL); the hold's deadline."""
        ttl = variant.hold_ttl or self.ctx.settings.reservation_ttl
        return await self.stock.reserve(variant.variant_id,
                                        reservation_id_for(cart.cart_id, line_id), quantity,
                                        ttl, cart.cart_id)

    async def _release(self, line_ids: list[str], variant_ids: list[str]) -> None:
        """Release the reservations of these lines (idempotent; used for compensation)."""
        cid = self.key
        await asyncio.gather(*(self.stock.release(v, reservation_id_for(cid, lid))
                               for lid, v in zip(line_ids, variant_ids, strict=True)))

    async def _renew_holds(self, cart: Cart, skip: str | None = None) -> None:
        """Activity renews holds that have used up half their time (hold on add)."""
        now = self.now
        for ln in list(cart.lines.values()):
            if ln.hold_until is None or ln.line_id == skip:
                continue
            product = self.ctx.catalog.find(ln.product_id)
            ttl = product.variant(ln.variant_id).hold_ttl if product else None
            if ttl and ln.hold_until - now < ttl / 2:
                try:
                    ln.hold_until = await self._hold(cart, ln.line_id,
                                                     product.variant(ln.variant_id),  # type: ignore[union-attr]
                                                     ln.quantity)
                except DomainError:
                    ln.hold_until = None  # stock went elsewhere; checkout will try again
                self.mark(f"l:{ln.line_id}")

    # -- messages --------------------------------------------------------------------------
    async def create(self, owner: str, currency: str | None = None,
                     groups: list[str] | None = None) -> dict[str, Any]:
        """Create the cart for ``owner`` (idempotent for the same owner)."""
        if self.cart is None:
            now = self.now
            cur = check_currency(currency or self.ctx.settings.default_currency)
            self.cart = Cart(cart_id=self.key, owner=owner, currency=cur, created_at=now,
                             updated_at=now, expires_at=now + self.ttl,
                             customer_groups=tuple(sorted(groups or [])))
            self.mark("meta")
            self.emit(event(CART_CREATED, now, cart_id=self.key, owner=owner, currency=cur))
        return self._view()

    async def view(self, caller: str, groups: list[str] | None = None,
                   destination: dict[str, Any] | None = None) -> dict[str, Any]:
        """The cart view; with ``destination`` (``{"country": "US", "region": "CA"}``) its tax
        and shipping are estimated for that destination instead of the defaults.

        Raises NotFound ``cart_not_found``, ValidationFailed ``invalid_destination``.
        """
        dest = self._destination(destination)
        cart = self._own(caller)
        self._note_groups(cart, groups)
        if dest is None:
            return self._view()
        return cart_view(cart, self._price(dest), self.now)

    async def status(self) -> dict[str, Any]:
        """``{exists, status, owner}``: for the owner's user actor."""
        c = self.cart
        return {"exists": c is not None, "status": c.status.value if c else None,
                "owner": c.owner if c else None}

    async def add_item(self, caller: str, product_id: str, quantity: int,
                       variant_id: str | None = None, options: dict[str, Any] | None = None,
                       if_match: int | None = None, groups: list[str] | None = None,
                       unit_price: int | None = None,
                       added_at: float | None = None) -> dict[str, Any]:
        """Add a line (or add to the equal line). Holds stock first for hold-on-add variants.

        ``unit_price``/``added_at`` are for merges only: a guest's line keeps the price and
        time it was captured with. Raises NotFound (product/variant), ValidationFailed
        (quantity, options, currency, limits), Conflict (cart_not_active, version_mismatch,
        out_of_stock for held items).
        """
        await self._add(caller, product_id, quantity, variant_id, options, if_match, groups,
                        unit_price, added_at)
        return self._view()

    async def set_quantity(self, caller: str, line_id: str, quantity: int,
                           if_match: int | None = None,
                           groups: list[str] | None = None) -> dict[str, Any]:
        """Set a line's quantity; 0 removes it. Resizes the hold of a held line first."""
        await self._set(caller, line_id, quantity, if_match, groups)
        return self._view()

    async def remove_line(self, caller: str, line_id: str, if_match: int | None = None,
                          groups: list[str] | None = None) -> dict[str, Any]:
        await self._remove(caller, line_id, if_match, groups)
        return self._view()

    async def apply(self, caller: str, ops: list[tuple[str, str, int, str | None]]) -> list[Any]:
        """A batch of line operations in one turn and one write (``CartService.apply``).

        ``ops`` items: ``("add", product_id, quantity, variant_id)``,
        ``("set", line_id, quantity, None)`` (0 removes), ``("remove", line_id, 0, None)``.
        Each succeeds or fails alone, in order. Answers one runtime reply per op:
        ``("ok", line_id)`` for an add, ``("ok", None)`` otherwise, or ``("err", error)``.
        No view is rendered (``view`` for that). Raises NotFound ``cart_not_found`` for the
        whole batch when ``caller`` does not own the cart.
        """
        self._own(caller)
        out: list[Any] = []
        self._available = {}  # one stock read per variant for the whole batch
        try:
            await self._apply(caller, ops, out)
        finally:
            self._available = None
        return out

    async def _apply(self, caller: str, ops: list[tuple[str, str, int, str | None]],
                     out: list[Any]) -> None:
        done = ("ok", None)
        for action, target, quantity, variant_id in ops:
            try:
                if action == "add":
                    line = await self._add(caller, target, quantity, variant_id)
                    out.append(("ok", line.line_id))
                    continue
                if action == "set":
                    await self._set(caller, target, quantity)
                elif action == "remove":
                    await self._remove(caller, target)
                else:
                    raise ValidationFailed("unknown_operation",
                                           f"{action!r} is not add, set or remove")
                out.append(done)
            except DomainError as e:
                out.append(err(e))

    # Adding, and raising a quantity, checks stock and purchase limits first (one message to
    # the variant's inventory, batched by the router with the cart's others; one to each
    # purchase-limit actor of a signed-in customer, only for variants that carry a limit).
    # Lowering a quantity or removing a line needs no message: ``_set_now`` / ``_remove_now``
    # do it at once, without a coroutine, when the cart holds no stock, and answer a false
    # value having changed nothing otherwise; ``_*_held`` does the rest.

    @staticmethod
    def _holding(cart: Cart) -> bool:
        for ln in cart.lines.values():
            if ln.hold_until is not None:
                return True
        return False

    async def _check_addable(self, cart: Cart, product: Product, variant: Variant,
                             extra: int) -> None:
        """Whether ``extra`` more units of ``variant`` may go into ``cart`` (changes nothing).

        Stock: the cart's unheld units of the variant after the change against what is
        available (a held line's units are already set aside for it). Purchase limits: the
        cart's units under each limit plus the customer's paid and pending orders.
        Raises Forbidden ``account_required``, Conflict ``out_of_stock`` /
        ``purchase_limit_exceeded`` (`engine.purchase`).
        """
        customer = customer_of(cart.owner)
        vid = variant.variant_id
        if product.account_required or variant.account_required:
            check_account(True, customer, vid)
        scopes = product.limits_of(variant) if product.purchase_limit is not None or \
            variant.purchase_limit is not None else []
        ask_stock = variant.hold_ttl is None
        known = self._available.get(vid) if self._available is not None else None
        if ask_stock and known is None and not scopes:  # the common case: one read
            answers = [await availability_reads(self.ctx.host).status(self.stock, vid)]
        else:
            asks = []
            if ask_stock and known is None:
                asks.append(availability_reads(self.ctx.host).status(self.stock, vid))
            if customer is not None:
                asks.extend(self.ctx.ask("limit", limit_key(customer, s.scope), "usage", {})
                            for s in scopes)
            answers = list(await asyncio.gather(*asks)) if asks else []
        stock = None
        if ask_stock:
            stock = {"available": known} if known is not None else answers.pop(0)
            if self._available is not None:
                self._available[vid] = stock["available"]
        if scopes:  # limits first: a waitlist offer must not get round them
            pairs = [(ln.variant_id, ln.quantity) for ln in cart.lines.values()]
            pairs.append((vid, extra))
            for s in scopes:
                already = answers.pop(0)["used"] if customer is not None else 0
                check_purchase_limit(s, s.in_cart(pairs), already)
        if stock is not None:
            unheld = extra + sum(ln.quantity for ln in cart.lines.values()
                                 if ln.variant_id == vid and ln.hold_until is None)
            try:
                check_available(vid, unheld, stock["available"])
            except Conflict as e:
                if stock.get("waitlist"):
                    e.details[0]["waitlist"] = True
                raise

    def _set_now(self, caller: str, line_id: str, quantity: int,
                 if_match: int | None = None, groups: list[str] | None = None) -> bool:
        cart = self._mutable(caller, if_match)
        if self._holding(cart):
            return False
        line = cart.lines.get(line_id)
        if line is not None and quantity > line.quantity:
            return False  # more units: stock and limits are checked first
        self._note_groups(cart, groups)
        cart.set_quantity(line_id, quantity, self.now, self.ttl)
        self.mark("meta", f"l:{line_id}")
        return True

    def _remove_now(self, caller: str, line_id: str, if_match: int | None = None,
                    groups: list[str] | None = None) -> bool:
        cart = self._mutable(caller, if_match)
        if self._holding(cart):
            return False
        self._note_groups(cart, groups)
        cart.remove_line(line_id, self.now, self.ttl)
        self.mark("meta", f"l:{line_id}")
        return True

    async def _add(self, caller: str, product_id: str, quantity: int,
                   variant_id: str | None = None, options: dict[str, Any] | None = None,
                   if_match: int | None = None, groups: list[str] | None = None,
                   unit_price: int | None = None, added_at: float | None = None) -> LineItem:
        cart = self._mutable(caller, if_match)
        self._note_groups(cart, groups)
        product, variant, price = self._lookup(product_id, variant_id)
        now = self.now
        # Checks first, so a refused check or hold changes nothing (``cart.add_item`` checks
        # the line's total quantity itself).
        check_quantity(quantity)
        existing = hold_until = None
        vid = variant.variant_id
        if variant.hold_ttl is not None or any(
                ln.variant_id == vid and ln.quantity + quantity > MAX_QUANTITY_PER_LINE
                for ln in cart.lines.values()):
            # The line's new total is validated (422) before any stock is looked at (409).
            options = normalize_options(options)
            existing = cart.find_line(variant.variant_id, options)
            total = quantity + (existing.quantity if existing else 0)
            check_quantity(total)
        seq = cart.line_seq
        try:
            await self._check_addable(cart, product, variant, quantity)
            if variant.hold_ttl is not None:
                line_id = existing.line_id if existing else f"ln_{cart.line_seq + 1}"
                hold_until = await self._hold(cart, line_id, variant, total)
        except Conflict as e:
            if e.code != "out_of_stock" or not e.details or not e.details[0].get("waitlist"):
                raise
            # Units may be on offer for this customer (a waitlist): claim them for the line.
            options = normalize_options(options)
            existing = cart.find_line(variant.variant_id, options)
            total = quantity + (existing.quantity if existing else 0)
            check_quantity(total)
            line_id = existing.line_id if existing else f"ln_{cart.line_seq + 1}"
            try:
                claimed = await self.ctx.ask("wait", variant.variant_id, "claim", {
                    "customer": cart.owner,
                    "reservation_id": reservation_id_for(cart.cart_id, line_id),
                    "quantity": total, "owner": cart.cart_id,
                    "ttl": variant.hold_ttl or self.ctx.settings.reservation_ttl})
            except DomainError:
                raise e from None
            hold_until = float(claimed["expires_at"])
        try:
            line = cart.add_item(product, variant, quantity, options,
                                 price if unit_price is None else unit_price, now, self.ttl)
        except DomainError:
            if hold_until is not None and existing is None:
                await self._release([f"ln_{cart.line_seq + 1}"], [variant.variant_id])
            raise
        if hold_until is not None:
            line.hold_until = hold_until
        if added_at is not None and cart.line_seq != seq:  # a new line
            line.added_at = added_at
        self.mark("meta", f"l:{line.line_id}")
        if hold_until is not None or self._holding(cart):
            await self._renew_holds(cart, skip=line.line_id)
        return line

    async def _set(self, caller: str, line_id: str, quantity: int,
                   if_match: int | None = None, groups: list[str] | None = None) -> None:
        if not self._set_now(caller, line_id, quantity, if_match, groups):
            await self._set_held(caller, line_id, quantity, if_match, groups)

    async def _set_held(self, caller: str, line_id: str, quantity: int,
                        if_match: int | None = None, groups: list[str] | None = None) -> None:
        cart = self._mutable(caller, if_match)
        self._note_groups(cart, groups)
        check_quantity(quantity, allow_zero=True)
        line = cart.line(line_id)
        if quantity == 0:
            await self._remove_held(caller, line_id, if_match)
            return
        product = self.ctx.catalog.find(line.product_id)
        if quantity > line.quantity and product is not None:
            await self._check_addable(cart, product, product.variant(line.variant_id),
                                      quantity - line.quantity)
        if line.hold_until is not None:
            if product is not None:
                line.hold_until = await self._hold(cart, line_id,
                                                   product.variant(line.variant_id), quantity)
        cart.set_quantity(line_id, quantity, self.now, self.ttl)
        self.mark("meta", f"l:{line_id}")
        await self._renew_holds(cart, skip=line_id)

    async def _remove(self, caller: str, line_id: str, if_match: int | None = None,
                      groups: list[str] | None = None) -> None:
        if not self._remove_now(caller, line_id, if_match, groups):
            await self._remove_held(caller, line_id, if_match, groups)

    async def _remove_held(self, caller: str, line_id: str, if_match: int | None = None,
                           groups: list[str] | None = None) -> None:
        cart = self._mutable(caller, if_match)
        self._note_groups(cart, groups)
        line = cart.line(line_id)
        if line.hold_until is not None:
            await self._release([line_id], [line.variant_id])
        cart.remove_line(line_id, self.now, self.ttl)
        self.mark("meta", f"l:{line_id}")
        await self._renew_holds(cart)

    async def take_line(self, caller: str, line_id: str) -> dict[str, Any]:
        """Remove a line and hand it over (saved for later): ``{line, cart}``."""
        cart = self._mutable(caller, None)
        ln = cart.line(line_id)
        item = {"product_id": ln.product_id, "variant_id": ln.variant_id,
                "quantity": ln.quantity, "options": ln.options, "name": ln.name,
                "unit_price": ln.unit_price, "currency": cart.currency}
        view = await self.remove_line(caller, line_id)
        return {"line": item, "cart": view}

    async def add_code(self, caller: str, code: str, if_match: int | None = None,
                       groups: list[str] | None = None) -> dict[str, Any]:
        """Apply a coupon code (case-insensitive).

        Raises NotFound ``unknown_code``; ValidationFailed ``code_expired``,
        ``code_not_yet_valid``, ``minimum_not_met``, ``too_many_codes``, ``not_combinable``,
        ``customer_not_eligible``, ``no_eligible_items``, ``usage_limit_reached``.
        """
        cart = self._mutable(caller, if_match)
        self._note_groups(cart, groups)
        norm = normalize_code(code)
        if norm in cart.codes:
            return self._view()
        promo = self.ctx.reference.by_code.get(norm)
        exhausted, uses = await self._usage([promo] if promo is not None else [])
        ctx = self._pricing_context(usage_exhausted=exhausted, customer_uses=uses)
        subtotal = sum(ln.unit_price * ln.quantity for ln in cart.lines.values())
        check_code(promo, norm, subtotal, cart.currency, self.now, cart=cart, ctx=ctx)
        cart.add_code(norm, self.now, self.ttl)
        self.mark("meta")
        return self._view()

    async def remove_code(self, caller: str, code: str, if_match: int | None = None,
                          groups: list[str] | None = None) -> dict[str, Any]:
        cart = self._mutable(caller, if_match)
        self._note_groups(cart, groups)
        cart.remove_code(code, self.now, self.ttl)
        self.mark("meta")
        return self._view()

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
            settled = await self.ctx.ask("order", order_id, "settled", {})
            if settled is None:
                raise
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
        order = await self.ctx.ask("order", order_id, "create", {"data": {
            "cart_id": cart.cart_id, "owner": cart.owner, "currency": cart.currency,
            "lines": cart_view(cart, priced, self.now)["lines"], "totals": priced.totals(),
            "discounts": priced.discounts,
            "expires_at": self.now + self.ctx.settings.reservation_ttl,
            "reservations": [[reservation_id_for(cart.cart_id, ln.line_id), ln.variant_id,
                              ln.quantity] for ln in lines],
            "promotion_uses": [p.promotion_id for p in limited],
            "limit_holds": limit_keys,
            "shipping_address": shipping_address}})
        if order["status"] == "paid":  # paid before (a reply lost with a dead host):
            await self._release_lines(lines)  # what this try reserved again goes back
        elif order["status"] != "requires_action":
            order = await self._pay(cart, lines, limited, limit_keys, order_id, priced,
                                    payment_token)
        return self._checked_out(cart, lines, order_id, order)

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

    # -- guest merge -----------------------------------------------------------------------
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


_POLICIES: list[tuple[EngineSettings, tuple[ShippingPolicy, TaxPolicy]]] = []


def policies(s: EngineSettings) -> tuple[ShippingPolicy, TaxPolicy]:
    """The shipping and tax policies of a settings object (built once, not per turn)."""
    for known, built in _POLICIES:
        if known is s:
            return built
    built = (ShippingPolicy(flat=s.shipping_flat, free_over=s.free_shipping_over),
             TaxPolicy(rate_bp=s.tax_rate_bp, rates=s.tax_rates,
                       prices_include_tax=s.prices_include_tax))
    _POLICIES[:] = [*_POLICIES[-7:], (s, built)]
    return built


def limit_key(customer: str, scope: str) -> str:
    """The purchase-limit actor of one customer and one limit scope (`engine.purchase`)."""
    return f"{customer}/{scope}"


def customer_of(owner: str) -> str | None:
    """The customer id for per-customer limits: None for guests (ids ``guest_...``)."""
    return None if owner.startswith("guest_") else owner


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
