"""API.md shapes of carts and orders (plain dicts: they cross processes and become JSON)."""

from __future__ import annotations

from typing import Any

import orjson

from engine.cart import Cart, LineItem
from engine.checkout import Order
from engine.pricing import PricedCart, PricedLine
from engine.timefmt import rfc3339


def money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


class LineEntry:
    """A line's view as a cart actor keeps it between turns (`cart_view`): ``stamp``, what
    it was rendered from; ``view``, the line dict (shared by every view made since: read-only);
    ``json``, its orjson rendering once a view was rendered (`render`), else None."""

    __slots__ = ("stamp", "view", "json")

    def __init__(self, stamp: tuple[Any, ...], view: dict[str, Any]) -> None:
        self.stamp = stamp
        self.view = view
        self.json: orjson.Fragment | None = None


#: Per line id: its `LineEntry` (see `cart_view`).
LineViews = dict[str, LineEntry]


def _line_view(ln: LineItem, pl: PricedLine, cur: str, held: bool) -> dict[str, Any]:
    """A line of the API.md Cart: its own fields (ids, quantity, price at add, RFC 3339
    times) and what pricing says of it (subtotal, total, discounts, a price change)."""
    return {
        "line_id": ln.line_id, "product_id": ln.product_id, "variant_id": ln.variant_id,
        "sku": ln.sku, "name": ln.name, "quantity": ln.quantity,
        "unit_price": money(ln.unit_price, cur), "options": ln.options,
        "added_at": rfc3339(ln.added_at), "updated_at": rfc3339(ln.updated_at),
        "line_subtotal": money(pl.subtotal, cur), "line_total": money(pl.total, cur),
        "discounts": pl.discounts, "price_changed": pl.price_changed,
        "current_unit_price": None if pl.current_unit_price is None
        else money(pl.current_unit_price, cur),
        "held": held,
        "hold_expires_at": rfc3339(ln.hold_until) if ln.hold_until else None,
    }


class CartView(dict):  # type: ignore[type-arg]
    """A cart view (a plain ``dict`` to every reader) carrying its JSON rendering, ``json``:
    UTF-8 bytes of exactly this dict as orjson renders it, or None.

    A cart actor renders the view in its turn, while the view's objects are still in the CPU's
    caches: rendered later, after the turn's write is committed and other requests have run,
    the same rendering of a 6-line cart measured 20-22 us of CPU against 8-9 us in the turn
    (`time.thread_time` around it in a host under the churn benchmark, 2026-11-30), and a
    view of an unchanged cart is not rendered again at all.
    Any change through the dict's own methods drops ``json`` (its nested values are shared
    with the actor's memo and are read-only, as `cart_view` says); ``dict(view)`` is a plain
    copy without it.
    """

    __slots__ = ("json",)

    def __init__(self, view: dict[str, Any], json: bytes | None) -> None:
        super().__init__(view)
        self.json = json

    def __setitem__(self, key: Any, value: Any) -> None:
        self.json = None
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.json = None
        super().__delitem__(key)

    def __ior__(self, other: Any) -> CartView:
        self.json = None
        super().__ior__(other)
        return self

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.json = None
        super().update(*args, **kwargs)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self.json = None
        return super().setdefault(key, default)

    def pop(self, *args: Any) -> Any:
        self.json = None
        return super().pop(*args)

    def popitem(self) -> tuple[Any, Any]:
        self.json = None
        return super().popitem()

    def clear(self) -> None:
        self.json = None
        super().clear()


def rendered(view: Any) -> bytes | None:
    """The JSON rendering a `CartView` carries (None for any other value, or once changed)."""
    return getattr(view, "json", None) if type(view) is CartView else None


def with_field(view: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """A copy of ``view`` with one more top-level field ``name`` (last). A `CartView` keeps
    its rendering: the field's JSON goes in before the closing brace, byte for byte what
    orjson renders for the extended dict, instead of rendering the whole cart again (a new
    guest's cart and its ``token``). Any other view, or a ``name`` it has, is a plain copy."""
    json = rendered(view)
    out = dict(view)
    out[name] = value
    if json is None or not view or name in view:
        return out
    return CartView(out, json[:-1] + b"," + orjson.dumps({name: value})[1:])


def cart_view(cart: Cart, priced: PricedCart, now: float,
              cache: LineViews | None = None) -> dict[str, Any]:
    """The API.md Cart: ids, status, version, times (RFC 3339), lines, discounts, totals.

    ``cache`` (a cart actor's, kept between its turns) holds each line's view, rendered
    again only when the line (quantity, times, unit price, hold), the currency or its
    pricing (subtotal, total, price change) changed; a line with discounts is rendered
    each time. A view of a many-line cart after a one-line change renders one line, and
    reuses the others: with a ``cache`` the line dicts are shared with the views made before
    and after, and like every nested value (money, options, discounts) must be treated as
    read-only (`detached` makes a copy to hand to code that may edit it).
    """
    cur = cart.currency
    lines = []
    for ln in cart.lines.values():
        pl = priced.lines[ln.line_id]
        held = ln.hold_until is not None and ln.hold_until > now
        if cache is None or pl.discounts:
            lines.append(_line_view(ln, pl, cur, held))
            continue
        stamp = (ln.quantity, ln.updated_at, ln.added_at, ln.unit_price, ln.hold_until, held,
                 cur, pl.subtotal, pl.total, pl.current_unit_price)
        hit = cache.get(ln.line_id)
        if hit is None or hit.stamp != stamp:
            hit = cache[ln.line_id] = LineEntry(stamp, _line_view(ln, pl, cur, held))
        lines.append(hit.view)
    if cache is not None and len(cache) > 2 * len(cart.lines) + 8:  # lines removed since
        for line_id in [k for k in cache if k not in cart.lines]:
            del cache[line_id]
    return {
        "cart_id": cart.cart_id, "owner": cart.owner, "status": cart.status.value,
        "currency": cur, "version": cart.version,
        "created_at": rfc3339(cart.created_at), "updated_at": rfc3339(cart.updated_at),
        "expires_at": rfc3339(cart.expires_at) if cart.is_active else None,
        "lines": lines, "codes": list(cart.codes), "discounts": priced.discounts,
        "totals": priced.totals(), "hints": priced.hints,
        "code_problems": [{"code": c, "error": e.code, "message": e.message}
                          for c, e in priced.code_errors.items()],
        "order_id": cart.order_id, "merged_into": cart.merged_into,
    }


def render(view: dict[str, Any], cache: LineViews) -> bytes:
    """``orjson.dumps(view)``, byte for byte, with the lines that are ``cache``'s own line
    dicts (`cart_view`) pasted from their rendering, kept in the cache (rendered once per
    change of the line): after a one-line change of a many-line cart, one line and the
    cart's own fields are rendered."""
    parts: list[Any] = []
    for ln in view["lines"]:
        hit = cache.get(ln["line_id"])
        if hit is None or hit.view is not ln:
            parts.append(ln)  # rendered each time (a line with discounts)
            continue
        if hit.json is None:
            hit.json = orjson.Fragment(orjson.dumps(ln))
        parts.append(hit.json)
    return orjson.dumps({**view, "lines": parts})


def detached(view: dict[str, Any]) -> dict[str, Any]:
    """A copy of a cart view whose top level and line dicts are its own: what an embedder
    gets, free to edit them without touching the views a cart actor keeps (the values
    inside, money, options, discounts, totals, stay shared and read-only)."""
    return {**view, "lines": [dict(ln) for ln in view["lines"]]}


def order_view(order: Order) -> dict[str, Any]:
    """The API.md Order."""
    return {
        "order_id": order.order_id, "cart_id": order.cart_id, "owner": order.owner,
        "status": order.status.value, "currency": order.currency, "lines": order.lines,
        "discounts": order.discounts, "totals": order.totals, "payment": order.payment,
        "failure_reason": order.failure_reason, "shipping_address": order.shipping_address,
        "created_at": rfc3339(order.created_at), "updated_at": rfc3339(order.updated_at),
    }
