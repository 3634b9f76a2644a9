"""Small builders shared by the pricing and promotion unit tests."""

from __future__ import annotations

from engine.cart import Cart, LineItem


def make_line(line_id: str = "ln_1", product_id: str = "shirt", quantity: int = 1,
              unit_price: int = 1000, category: str = "tops", variant_id: str | None = None,
              name: str | None = None) -> LineItem:
    return LineItem(line_id=line_id, product_id=product_id,
                    variant_id=variant_id or f"{product_id}-v", sku=product_id.upper(),
                    name=name or product_id.title(), quantity=quantity, unit_price=unit_price,
                    options={}, added_at=0.0, updated_at=0.0, category=category)


def make_cart(*lines: LineItem, codes: tuple[str, ...] = (), currency: str = "USD") -> Cart:
    cart = Cart(cart_id="c1", owner="alice", currency=currency, created_at=0.0, updated_at=0.0,
                expires_at=1e12)
    for ln in lines:
        cart.lines[ln.line_id] = ln
    cart.codes = list(codes)
    return cart
