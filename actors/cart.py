"""Cart actor: one per cart, with its own inactivity timer.

Persistence is O(change): the cart header is field ``meta`` and each line item field
``l:{line_id}``. The deadline is the cart's ``expires_at``: when it passes with no activity the
cart expires, gives back the stock it holds and leaves memory. The checkout saga is
`actors.checkout_saga`, the guest merge `actors.cart_merge`; both are mixed in here.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from actors.cart_keys import customer_of, limit_key, reservation_id_for
from actors.cart_merge import GuestMerge
from actors.checkout_saga import CheckoutSaga
from actors.order import ADMIN
from actors.runtime import Actor, err
from actors.settings import EngineSettings
from actors.stock_client import StockClient, availability_reads, shards_of
from actors.views import CartView, LineViews, cart_view, detached, render
from engine.analytics import compact_lines
from engine.cart import Cart, LineItem, normalize_code, normalize_options
from engine.catalog import Product, Variant
from engine.errors import Conflict, DomainError, NotFound, ValidationFailed
from engine.events import (
    CART_CREATED,
    CART_EXPIRED,
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
    check_account,
    check_available,
    check_purchase_limit,
)


class CartActor(CheckoutSaga, GuestMerge, Actor):
    kind = "cart"
    idempotent = frozenset({"view", "status"})
    passivate_after = None  # an active cart stays until it expires, checks out or merges
    __slots__ = ("cart", "_available", "_line_views", "_view_memo", "_prices")

    def __init__(self, key: str, ctx: Any) -> None:
        super().__init__(key, ctx)
        self.cart: Cart | None = None
        #: Within one ``apply`` turn: variant id -> units available when first read.
        self._available: dict[str, int] | None = None
        #: The static part of each line's view, between turns (`actors.views.cart_view`).
        self._line_views: LineViews = {}
        #: The last default view: what it was rendered from, until when it holds, the view.
        self._view_memo: tuple[tuple[Any, ...], float, dict[str, Any], bytes | None] | None = None
        #: Today's unit prices of the lines' variants (`_current_prices`), with the reference
        #: data version and currency they were read for.
        self._prices: tuple[int, str, dict[str, int | None]] | None = None

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
        current = self._current_prices()
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

    def _current_prices(self) -> dict[str, int | None]:
        """Variant id -> today's unit price in the cart's currency (minor units; None when
        the product, variant or price is gone) for every line. Kept between turns while the
        reference data (`actors.reference.ReferenceData.version`, bumped by every product
        or promotion change) and the currency stay the same, so a turn on a many-line cart
        looks up only the variants it has not priced yet. May name variants of lines
        removed since (a few: it starts over past twice the lines): pricing asks it per
        line."""
        cart = self.cart
        assert cart is not None
        ref = self.ctx.reference
        memo = self._prices
        if memo is None or memo[0] != ref.version or memo[1] != cart.currency or \
                len(memo[2]) > 2 * len(cart.lines) + 8:  # many lines removed since: start over
            memo = self._prices = (ref.version, cart.currency, {})
        current = memo[2]
        for ln in cart.lines.values():
            if ln.variant_id in current:
                continue
            product = ref.catalog.find(ln.product_id)
            try:
                current[ln.variant_id] = None if product is None else \
                    product.price_of(product.variant(ln.variant_id), cart.currency)
            except DomainError:
                current[ln.variant_id] = None
        return current

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
        """The cart view (default destination). A view of a cart that has not changed since
        the last one and whose promotion windows and holds have not moved past a boundary is
        that view again, not priced and rendered anew: reads between changes cost no pricing.

        "Not changed": the same version (every change of lines, quantities, codes, status and
        times bumps it: `engine.cart.Cart.touch`), membership tiers and reference data, and
        per line the same price and hold (checkout's re-pricing and holds move those alone).
        Where an HTTP app answers (`Host.renders_json`), the view is a `CartView`, rendered to
        JSON here, once per change.
        """
        cart = self.cart
        assert cart is not None
        now = self.now
        ref = self.ctx.reference
        stamp = (cart.version, cart.customer_groups, ref.version,
                 tuple([(ln.unit_price, ln.hold_until) for ln in cart.lines.values()]))
        memo = self._view_memo
        if memo is None or memo[0] != stamp or now >= memo[1]:
            view = cart_view(cart, self._price(), now, self._line_views)
            # now, while the view is in the CPU's caches (`CartView`), for an HTTP app
            json = render(view, self._line_views) if self.ctx.host.renders_json else None
            memo = self._view_memo = (stamp, self._view_horizon(now), view, json)
        return detached(memo[2]) if memo[3] is None else CartView(memo[2], memo[3])

    def _view_horizon(self, now: float) -> float:
        """The first instant after ``now`` at which time alone changes the view: a hold
        lapsing, or a promotion (automatic, or of one of the cart's codes) starting or
        ending; infinity when none."""
        cart = self.cart
        assert cart is not None
        ref = self.ctx.reference
        instants = [ln.hold_until for ln in cart.lines.values()
                    if ln.hold_until is not None and ln.hold_until > now]
        promos = list(ref.automatic()) + [p for c in cart.codes
                                          if (p := ref.by_code.get(c)) is not None]
        for p in promos:
            instants += [t for t in (p.starts_at, p.ends_at) if t is not None and t > now]
        return min(instants, default=math.inf)

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
        return (await self.open(owner, currency, groups))["cart"]

    async def open(self, owner: str, currency: str | None = None,
                   groups: list[str] | None = None) -> dict[str, Any]:
        """``{"cart": Cart, "created": bool}``: ``owner``'s cart, created when there is none
        (a new guest's first cart, `actors.user.first_cart_id`, opened without its user
        actor). Raises ValidationFailed ``unknown_currency`` (ISO 4217), NotFound
        ``cart_not_found`` when the cart is another owner's."""
        created = self.cart is None
        if created:
            now = self.now
            cur = check_currency(currency or self.ctx.settings.default_currency)
            self.cart = Cart(cart_id=self.key, owner=owner, currency=cur, created_at=now,
                             updated_at=now, expires_at=now + self.ttl,
                             customer_groups=tuple(sorted(groups or [])))
            self.mark("meta")
            self.emit(event(CART_CREATED, now, cart_id=self.key, owner=owner, currency=cur))
        else:
            self._own(owner)  # another shopper's cart is a 404 for this one
        return {"cart": self._view(), "created": created}

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
        return detached(cart_view(cart, self._price(dest), self.now, self._line_views))

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
        available (a held line's units are already set aside for it), read at most half a
        second ago when the variant had plenty (`actors.stock_client.AvailabilityReads`: the
        add reserves nothing; checkout's reservation decides). Purchase limits: the
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
        unheld = extra + sum(ln.quantity for ln in cart.lines.values()
                             if ln.variant_id == vid and ln.hold_until is None)
        if ask_stock and known is None and not scopes:  # the common case: one read
            answers = [await availability_reads(self.ctx.host).status(
                self.stock, vid, self.now, unheld)]
        else:
            asks = []
            if ask_stock and known is None:
                asks.append(availability_reads(self.ctx.host).status(
                    self.stock, vid, self.now, unheld))
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




def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
