"""API.md shapes of carts and orders (plain dicts: they cross processes and become JSON)."""

from __future__ import annotations

from typing import Any

from engine.cart import Cart, LineItem
from engine.checkout import Order
from engine.pricing import PricedCart
from engine.timefmt import rfc3339


def money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


#: Per line id: the fields its static part was rendered from, and that part (see `cart_view`).
LineViews = dict[str, tuple[tuple[Any, ...], dict[str, Any]]]


def _line_static(ln: LineItem, cur: str) -> dict[str, Any]:
    """The part of a line's view that only its own fields decide (ids, quantity, price at
    add, RFC 3339 times)."""
    return {
        "line_id": ln.line_id, "product_id": ln.product_id, "variant_id": ln.variant_id,
        "sku": ln.sku, "name": ln.name, "quantity": ln.quantity,
        "unit_price": money(ln.unit_price, cur), "options": ln.options,
        "added_at": rfc3339(ln.added_at), "updated_at": rfc3339(ln.updated_at),
    }


def cart_view(cart: Cart, priced: PricedCart, now: float,
              cache: LineViews | None = None) -> dict[str, Any]:
    """The API.md Cart: ids, status, version, times (RFC 3339), lines, discounts, totals.

    ``cache`` (a cart actor's, kept between its turns) holds each line's static part,
    rendered again only when the line's quantity, times, unit price or currency changed: a view
    of a many-line cart after a one-line change formats one line's times, not all of them.
    Each view gets its own line dicts; nested values (money, options) are shared and must be
    treated as read-only.
    """
    cur = cart.currency
    lines = []
    for ln in cart.lines.values():
        pl = priced.lines[ln.line_id]
        if cache is None:
            line = _line_static(ln, cur)
        else:
            stamp = (ln.quantity, ln.updated_at, ln.added_at, ln.unit_price, cur)
            hit = cache.get(ln.line_id)
            if hit is None or hit[0] != stamp:
                hit = cache[ln.line_id] = (stamp, _line_static(ln, cur))
            line = dict(hit[1])
        line["line_subtotal"] = money(pl.subtotal, cur)
        line["line_total"] = money(pl.total, cur)
        line["discounts"] = pl.discounts
        line["price_changed"] = pl.price_changed
        line["current_unit_price"] = None if pl.current_unit_price is None \
            else money(pl.current_unit_price, cur)
        line["held"] = ln.hold_until is not None and ln.hold_until > now
        line["hold_expires_at"] = rfc3339(ln.hold_until) if ln.hold_until else None
        lines.append(line)
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


def order_view(order: Order) -> dict[str, Any]:
    """The API.md Order."""
    return {
        "order_id": order.order_id, "cart_id": order.cart_id, "owner": order.owner,
        "status": order.status.value, "currency": order.currency, "lines": order.lines,
        "discounts": order.discounts, "totals": order.totals, "payment": order.payment,
        "failure_reason": order.failure_reason, "shipping_address": order.shipping_address,
        "created_at": rfc3339(order.created_at), "updated_at": rfc3339(order.updated_at),
    }
