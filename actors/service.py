"""``CartService``: the one entry point to the engine, for the gateway and for embedders.

Every method sends a message to the actor that owns the data and returns plain API.md
dicts, or raises a :class:`engine.errors.DomainError`. ``request_id`` is the client's
Idempotency-Key and ``fingerprint`` a digest of its request: a repeat answers the first reply.

Embedding, no servers at all::

    service = await CartService.in_process()           # memory store, system clock
    cart = (await service.active_cart("alice"))["cart"]
    await service.add_item("alice", cart["cart_id"], product_id="p1", quantity=2)

Simulations drive many carts at once with `CartService.apply`: a batch of `CartOp`s, one
turn and one write per cart, and a lean answer per op instead of a rendered cart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from actors.clock import Clock, SystemClock
from actors.order import ADMIN
from actors.placement import LocalPlacement, Placement
from actors.runtime import Reply, unwrap
from actors.settings import EngineSettings
from actors.stock_client import StockClient, shards_of
from actors.user import first_cart_id
from engine.catalog import Product, product_from_dict, product_to_dict
from engine.errors import Conflict, NotFound
from engine.limits import check_id
from engine.promotions import promotion_from_dict, promotion_to_dict
from engine.stock import check_stock
from snapshots.memory_store import MemoryStore
from snapshots.store import SnapshotStore

__all__ = ["ADMIN", "CartOp", "CartService"]


class CartOp(NamedTuple):
    """One line operation of a `CartService.apply` batch.

    ``action`` is ``"add"`` (``target`` a product id, ``quantity`` units >= 1, optional
    ``variant_id``), ``"set"`` (``target`` a line id, ``quantity`` 0..999; 0 removes) or
    ``"remove"`` (``target`` a line id). ``owner`` is the caller, as ``caller`` elsewhere.
    """

    cart_id: str
    owner: str
    action: str
    target: str
    quantity: int = 0
    variant_id: str | None = None


class CartService:
    """Carts, catalog, stock, promotions and orders over a placement of actor hosts."""

    def __init__(self, placement: Placement, store: SnapshotStore) -> None:
        self.placement = placement
        self.store = store
        self.reference = placement.reference  # type: ignore[attr-defined]

    @classmethod
    async def in_process(cls, store: SnapshotStore | None = None, clock: Clock | None = None,
                         settings: EngineSettings | None = None, hosts: int = 2,
                         payment_provider: Any = None) -> CartService:
        """An engine in this event loop: ``MemoryStore`` and ``SystemClock`` by default;
        ``payment_provider`` (an `actors.payments.PaymentProvider`) instead of the one the
        settings name."""
        store = store or MemoryStore()
        placement = LocalPlacement(store, clock or SystemClock(), settings or EngineSettings(),
                                   n_hosts=hosts, payments=payment_provider)
        await placement.start()
        return cls(placement, store)

    async def call(self, kind: str, key: str, method: str, args: dict[str, Any],
                   request_id: str | None = None, fingerprint: str | None = None) -> Any:
        """Send one message and return its reply value (or raise its DomainError)."""
        return unwrap(await self.placement.send((kind, key, method, args, request_id,
                                                 fingerprint)))

    def new_key(self, kind: str, make: Callable[[], str],
                via: Callable[[str], tuple[str, str]] | None = None) -> str:
        """A new id for an actor of ``kind`` from ``make()``; where the placement can say,
        one that this process's host owns, so the actor starts beside the request that made
        it. ``via``: the ``(kind, key)`` the new id's first message goes to instead (a new
        guest's first cart), placed and known fresh in its stead."""
        local_key = getattr(self.placement, "local_key", None)
        return make() if local_key is None else local_key(kind, make, via=via)

    def serve_http(self) -> None:
        """An HTTP app answers from this service: the hosts in this process render each cart
        view to JSON in its turn, for the app to send as it is (`actors.views.CartView`).
        Hosts in other processes (behind a Ray gateway) are left as they are: their views
        travel as plain dicts."""
        local_hosts = getattr(self.placement, "local_hosts", None)
        for host in local_hosts() if local_hosts is not None else ():
            host.renders_json = True

    @staticmethod
    def _scoped(caller: str, request_id: str | None) -> str | None:
        """Idempotency keys are per caller: another caller's key never answers for this one
        (nor reveals that a cart or key exists)."""
        return None if request_id is None else f"{caller}\x1f{request_id}"

    async def close(self) -> None:
        await self.placement.close()

    # -- catalog and stock (admin) ---------------------------------------------------------
    async def put_product(self, product_id: str, body: dict[str, Any],
                          initial_stock_only: bool = False) -> dict[str, Any]:
        """Create or replace a product; its stock (``"stock"`` per variant) is set when given.

        With ``initial_stock_only`` (catalog files loaded at start-up) stock is set only for
        variants that never had any, so a restart does not undo sales.
        Raises ValidationFailed (``invalid_product``, ``variant_id_taken``, ``invalid_stock``);
        Conflict ``shards_in_use`` when the body changes the ``shards`` of a variant whose
        inventory ever held stock (its ledger lives in the shards it has: a new count would
        strand it; sell through a new variant instead).
        """
        product = product_from_dict(product_id, body)
        stocks = {v["variant_id"]: v["stock"] for v in body.get("variants") or []
                  if isinstance(v, dict) and "stock" in v}
        if not body.get("variants") and "stock" in body:
            stocks[product_id] = body["stock"]
        for n in stocks.values():
            check_stock(n)  # every part of the body is valid before anything is written
        self.reference.catalog.check(product)
        await self._check_reshard(product)
        await self.store.put_reference("product", product_id, product)
        await self.placement.publish("product", product)
        for vid, n in stocks.items():
            await self.stock_client.adjust(vid, set=n, only_if_new=initial_stock_only)
        return product_to_dict(product)

    async def _check_reshard(self, product: Product) -> None:
        """Refuse a new ``shards`` count for a variant whose ledger ever held stock."""
        current = self.reference.catalog.find(product.product_id)
        if current is None:
            return
        before = {v.variant_id: v.shards for v in current.variants}
        for v in product.variants:
            if before.get(v.variant_id, v.shards) == v.shards:
                continue
            stock = await self.stock_client.status(v.variant_id)  # the current layout's
            if stock["on_hand"] or stock["reserved"] or stock["sold"]:
                raise Conflict(
                    "shards_in_use",
                    f"variant {v.variant_id!r} has stock in {before[v.variant_id]} shard(s); "
                    "its shard count cannot change (sell through a new variant instead)",
                    [{"variant_id": v.variant_id, "shards": before[v.variant_id], **stock}])

    async def get_product(self, product_id: str) -> dict[str, Any]:
        """Product with each variant's available units. Raises NotFound ``product_not_found``."""
        product = self.reference.catalog.get(product_id)
        avail = {}
        for v in product.variants:
            avail[v.variant_id] = (await self.stock(v.variant_id))["available"]
        return product_to_dict(product, avail)

    async def list_products(self, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        items, nxt = self.reference.catalog.page(limit, cursor)
        return {"items": [product_to_dict(p) for p in items], "next_cursor": nxt}

    def _known_variant(self, variant_id: str) -> None:
        check_id(variant_id, "variant_id")
        if self.reference.catalog.product_of_variant(variant_id) is None:
            raise NotFound("variant_not_found", f"no variant {variant_id!r} in the catalog")

    async def set_stock(self, variant_id: str, set: int | None = None,
                        delta: int | None = None) -> dict[str, Any]:
        """Admin stock change; answers ``{variant_id, on_hand, reserved, available, sold}``."""
        self._known_variant(variant_id)
        out = await self.stock_client.adjust(variant_id, set=set, delta=delta)
        return {"variant_id": variant_id, **out}

    async def stock(self, variant_id: str) -> dict[str, Any]:
        """``{variant_id, on_hand, reserved, available, sold}`` (units, all shards)."""
        return {"variant_id": variant_id, **await self.stock_client.status(variant_id)}

    @property
    def stock_client(self) -> StockClient:
        async def ask(kind: str, key: str, method: str, args: dict[str, Any]) -> Any:
            return await self.call(kind, key, method, args)
        return StockClient(ask, shards_of(self.reference.catalog))

    async def put_promotion(self, promotion_id: str, body: dict[str, Any]) -> dict[str, Any]:
        promo = promotion_from_dict(promotion_id, body)
        await self.store.put_reference("promotion", promotion_id, promo)
        await self.placement.publish("promotion", promo)
        return {"promotion_id": promotion_id, **promotion_to_dict(promo)}

    # -- carts -----------------------------------------------------------------------------
    # ``caller`` is the shopper's id (JWT ``sub``); ``groups`` its membership tiers (token
    # claim), kept on the cart for group-only promotions. A cart of another owner is NotFound.

    async def active_cart(self, owner: str, currency: str | None = None,
                          request_id: str | None = None, fingerprint: str | None = None,
                          groups: list[str] | None = None) -> dict[str, Any]:
        """``{"cart": Cart, "created": bool}``: the owner's one active cart."""
        scoped = self._scoped(owner, request_id)
        return await self.call("user", owner, "active_cart",
                               {"currency": currency, "groups": groups, "request_id": scoped,
                                "fingerprint": fingerprint}, scoped, fingerprint)

    async def open_guest_cart(self, new_guest: Callable[[], str], currency: str | None = None,
                              request_id: str | None = None, fingerprint: str | None = None,
                              ) -> tuple[str, dict[str, Any]]:
        """A new guest (its id from ``new_guest()``) and its first cart: ``(guest id,
        {"cart": Cart, "created": True})``.

        One turn of the cart actor (`actors.user.first_cart_id`), placed on this process's
        host where the placement can say: the guest's user actor is neither activated nor
        written until it has something of its own. The Idempotency-Key (``request_id``) is
        the new guest's, kept by that cart. Raises ValidationFailed ``unknown_currency``.
        """
        guest = self.new_key("user", new_guest, via=lambda g: ("cart", first_cart_id(g)))
        out = await self.call("cart", first_cart_id(guest), "open",
                              {"owner": guest, "currency": currency, "groups": None},
                              self._scoped(guest, request_id), fingerprint)
        return guest, out

    async def apply(self, ops: Sequence[CartOp]) -> list[Reply]:
        """Run a batch of line operations: each cart's ops (same owner) in one turn, in order.

        Answers one reply per op, in the order given: ``("ok", line_id)`` for an add,
        ``("ok", None)`` for a set or remove, ``("err", {"code", "message", ...})`` for an op
        that failed (it changed nothing; the others still ran). Persistence is one write per
        cart per batch, acknowledged before this returns. Raises nothing for a failed op.
        """
        groups: dict[tuple[str, str], list[int]] = {}
        for i, op in enumerate(ops):
            groups.setdefault((op.cart_id, op.owner), []).append(i)
        sends = [self.placement.send(("cart", cart_id, "apply", {"caller": owner, "ops": [
            (ops[i].action, ops[i].target, ops[i].quantity, ops[i].variant_id) for i in idx]},
            None, None)) for (cart_id, owner), idx in groups.items()]
        out: list[Reply] = [("ok", None)] * len(ops)
        for idx, reply in zip(groups.values(), await asyncio.gather(*sends), strict=True):
            answers = reply[1] if reply[0] == "ok" else [reply] * len(idx)
            for i, answer in zip(idx, answers, strict=True):
                out[i] = answer
        return out

    async def get_cart(self, caller: str, cart_id: str, groups: list[str] | None = None,
                       destination: dict[str, Any] | None = None) -> dict[str, Any]:
        """The cart view; ``destination`` (``{"country": "US", "region": "CA"}``, ISO 3166)
        estimates its tax and shipping there. Raises NotFound ``cart_not_found``,
        ValidationFailed ``invalid_destination``."""
        args: dict[str, Any] = {"caller": caller, "groups": groups}
        if destination:
            args["destination"] = destination
        return await self.call("cart", cart_id, "view", args)

    async def _cart(self, method: str, caller: str, cart_id: str, args: dict[str, Any],
                    request_id: str | None, fingerprint: str | None,
                    groups: list[str] | None) -> dict[str, Any]:
        return await self.call("cart", cart_id, method,
                               {"caller": caller, "groups": groups, **args},
                               self._scoped(caller, request_id), fingerprint)

    async def add_item(self, caller: str, cart_id: str, *, product_id: str, quantity: int,
                       variant_id: str | None = None, options: dict[str, Any] | None = None,
                       if_match: int | None = None, request_id: str | None = None,
                       fingerprint: str | None = None,
                       groups: list[str] | None = None) -> dict[str, Any]:
        return await self._cart("add_item", caller, cart_id, {
            "product_id": product_id, "variant_id": variant_id, "quantity": quantity,
            "options": options, "if_match": if_match}, request_id, fingerprint, groups)

    async def set_quantity(self, caller: str, cart_id: str, line_id: str, quantity: int, *,
                           if_match: int | None = None, request_id: str | None = None,
                           fingerprint: str | None = None,
                           groups: list[str] | None = None) -> dict[str, Any]:
        return await self._cart("set_quantity", caller, cart_id, {
            "line_id": line_id, "quantity": quantity, "if_match": if_match},
            request_id, fingerprint, groups)

    async def remove_line(self, caller: str, cart_id: str, line_id: str, *,
                          if_match: int | None = None, request_id: str | None = None,
                          fingerprint: str | None = None,
                          groups: list[str] | None = None) -> dict[str, Any]:
        return await self._cart("remove_line", caller, cart_id, {
            "line_id": line_id, "if_match": if_match}, request_id, fingerprint, groups)

    async def add_code(self, caller: str, cart_id: str, code: str, *,
                       if_match: int | None = None, request_id: str | None = None,
                       fingerprint: str | None = None,
                       groups: list[str] | None = None) -> dict[str, Any]:
        return await self._cart("add_code", caller, cart_id, {
            "code": code, "if_match": if_match}, request_id, fingerprint, groups)

    async def remove_code(self, caller: str, cart_id: str, code: str, *,
                          if_match: int | None = None, request_id: str | None = None,
                          fingerprint: str | None = None,
                          groups: list[str] | None = None) -> dict[str, Any]:
        return await self._cart("remove_code", caller, cart_id, {
            "code": code, "if_match": if_match}, request_id, fingerprint, groups)

    async def checkout(self, caller: str, cart_id: str, *, payment_token: str,
                       idempotency_key: str, accept_price_changes: bool = False,
                       shipping_address: dict[str, Any] | None = None,
                       fingerprint: str | None = None, groups: list[str] | None = None,
                       if_match: int | None = None) -> dict[str, Any]:
        """Run the checkout saga; the Order. Idempotent on ``idempotency_key``."""
        return await self._cart("checkout", caller, cart_id, {
            "payment_token": payment_token, "idempotency_key": idempotency_key,
            "accept_price_changes": accept_price_changes,
            "shipping_address": shipping_address, "if_match": if_match},
            idempotency_key, fingerprint, groups)

    async def merge(self, caller: str, cart_id: str, guest_owner: str, strategy: str = "sum",
                    request_id: str | None = None,
                    fingerprint: str | None = None) -> dict[str, Any]:
        """Merge the guest's active cart into ``cart_id``: ``{cart, report}``.

        Raises NotFound ``guest_cart_not_found`` when the guest has no cart.
        """
        guest_cart = await self.call("user", guest_owner, "current", {})
        if guest_cart is None:
            raise NotFound("guest_cart_not_found", "the guest token has no cart")
        return await self.call("user", caller, "merge", {
            "cart_id": cart_id, "guest_owner": guest_owner, "guest_cart_id": guest_cart,
            "strategy": strategy}, self._scoped(caller, request_id), fingerprint)

    # -- saved for later -------------------------------------------------------------------
    async def save_for_later(self, caller: str, cart_id: str, line_id: str,
                             request_id: str | None = None,
                             fingerprint: str | None = None) -> dict[str, Any]:
        """Move a line from the cart to the caller's saved list: ``{cart, saved}``."""
        return await self.call("user", caller, "save_for_later",
                               {"cart_id": cart_id, "line_id": line_id},
                               self._scoped(caller, request_id), fingerprint)

    async def saved_items(self, caller: str) -> dict[str, Any]:
        return await self.call("user", caller, "saved_items", {})

    async def move_to_cart(self, caller: str, item_id: str, request_id: str | None = None,
                           fingerprint: str | None = None,
                           groups: list[str] | None = None) -> dict[str, Any]:
        """Put a saved item back into the caller's active cart: ``{cart, saved}``."""
        return await self.call("user", caller, "move_to_cart",
                               {"item_id": item_id, "groups": groups},
                               self._scoped(caller, request_id), fingerprint)

    async def remove_saved(self, caller: str, item_id: str, request_id: str | None = None,
                           fingerprint: str | None = None) -> dict[str, Any]:
        return await self.call("user", caller, "remove_saved", {"item_id": item_id},
                               self._scoped(caller, request_id), fingerprint)

    # -- orders and events -----------------------------------------------------------------
    async def get_order(self, caller: str, order_id: str) -> dict[str, Any]:
        check_id(order_id, "order_id")
        return await self.call("order", order_id, "get", {"caller": caller})

    async def ship_order(self, order_id: str, request_id: str | None = None,
                         fingerprint: str | None = None) -> dict[str, Any]:
        """Admin: paid -> shipped (once: a shipped order answers as it is)."""
        check_id(order_id, "order_id")
        return await self.call("order", order_id, "ship", {"caller": ADMIN},
                               self._scoped(ADMIN, request_id), fingerprint)

    async def events(self, count: int = 1000) -> list[dict[str, Any]]:
        """The most recent outbox events (order.*, cart.*, stock.*), oldest first."""
        return await self.store.events(count)

    # -- commerce: admin idempotency, promotions, order lifecycle, payments ----------------
    async def set_stock_once(self, variant_id: str, set: int | None = None,
                             delta: int | None = None, request_id: str | None = None,
                             fingerprint: str | None = None) -> dict[str, Any]:
        """`set_stock` honouring an Idempotency-Key: a repeat answers the first reply and
        changes nothing (one admin-request actor per key runs the change and records it)."""
        if request_id is None:
            return await self.set_stock(variant_id, set=set, delta=delta)
        self._known_variant(variant_id)
        return await self.call("adminop", self._scoped(ADMIN, request_id) or "", "stock",
                               {"variant_id": variant_id, "set": set, "delta": delta},
                               self._scoped(ADMIN, request_id), fingerprint)

    async def get_promotion(self, promotion_id: str) -> dict[str, Any]:
        """The promotion's admin JSON with ``uses``: ``{used, held}`` (counted for
        promotions with a usage or per-customer limit; None otherwise).
        Raises NotFound ``promotion_not_found``."""
        promo = self.reference.promotions.get(promotion_id)
        if promo is None:
            raise NotFound("promotion_not_found", f"no promotion {promotion_id!r}")
        uses = None
        if promo.usage_limit is not None or promo.per_customer_limit is not None:
            u = await self.call("promo", promotion_id, "usage", {})
            uses = {"used": u["used"], "held": u["held"]}
        return {"promotion_id": promotion_id, **promotion_to_dict(promo), "uses": uses}

    async def delete_promotion(self, promotion_id: str) -> None:
        """Remove a promotion: no longer applied, its code unknown. Carts holding its code
        show it under ``code_problems``. Raises NotFound ``promotion_not_found``."""
        if promotion_id not in self.reference.promotions:
            raise NotFound("promotion_not_found", f"no promotion {promotion_id!r}")
        tombstone = {"deleted": promotion_id}
        await self.store.put_reference("promotion", promotion_id, tombstone)
        await self.placement.publish("promotion", tombstone)

    async def list_orders(self, caller: str, cursor: str | None = None,
                          limit: int = 20) -> dict[str, Any]:
        """``{items: [Order], next_cursor}``: the caller's orders, newest first.

        An id the index lists whose order is not stored is left out: a checkout lists its
        order beside creating it (`actors.checkout_saga`), so the id can come first, or stay
        alone when the creation failed (the checkout then failed, and its retry creates it).
        """
        page = await self.call("orders", caller, "page", {"cursor": cursor, "limit": limit})
        found = await asyncio.gather(*(self.call("order", oid, "get", {"caller": caller})
                                       for oid in page["order_ids"]), return_exceptions=True)
        items = []
        for item in found:
            if isinstance(item, NotFound):
                continue
            if isinstance(item, BaseException):
                raise item
            items.append(item)
        return {"items": items, "next_cursor": page["next_cursor"]}

    async def cancel_order(self, caller: str, order_id: str, request_id: str | None = None,
                           fingerprint: str | None = None) -> dict[str, Any]:
        """Cancel before shipment (owner or ADMIN): void or refund, restock; the Order."""
        check_id(order_id, "order_id")
        return await self.call("order", order_id, "cancel", {"caller": caller},
                               self._scoped(caller, request_id), fingerprint)

    async def refund_order(self, order_id: str, amount: int | None = None,
                           restock: bool | None = None, request_id: str | None = None,
                           fingerprint: str | None = None) -> dict[str, Any]:
        """Admin: refund ``amount`` minor units (all that is left by default); the Order."""
        check_id(order_id, "order_id")
        return await self.call("order", order_id, "refund",
                               {"caller": ADMIN, "amount": amount, "restock": restock},
                               self._scoped(ADMIN, request_id), fingerprint)

    async def confirm_payment(self, order_id: str, succeeded: bool, event_id: str,
                              reason: str | None = None) -> dict[str, Any]:
        """A verified provider event for ``order_id`` (`actors.webhooks`): ``{order,
        changed}``; exactly once however often it is delivered."""
        check_id(order_id, "order_id")
        return await self.call("order", order_id, "confirm_payment",
                               {"succeeded": succeeded, "event_id": event_id,
                                "reason": reason})

    # -- waitlists -------------------------------------------------------------------------
    async def join_waitlist(self, caller: str, variant_id: str, quantity: int,
                            request_id: str | None = None,
                            fingerprint: str | None = None) -> dict[str, Any]:
        """Join a sold-out variant's line: the entry with its ``position`` (``created``
        False when the caller was already in line)."""
        self._known_variant(variant_id)
        return await self.call("user", caller, "join_waitlist",
                               {"variant_id": variant_id, "quantity": quantity},
                               self._scoped(caller, request_id), fingerprint)

    async def leave_waitlist(self, caller: str, variant_id: str,
                             request_id: str | None = None,
                             fingerprint: str | None = None) -> dict[str, Any]:
        check_id(variant_id, "variant_id")
        return await self.call("user", caller, "leave_waitlist", {"variant_id": variant_id},
                               self._scoped(caller, request_id), fingerprint)

    async def waitlists(self, caller: str) -> dict[str, Any]:
        """``{items: [{variant_id, quantity, state, position, joined_at, offer}]}``."""
        return await self.call("user", caller, "waitlists", {})
