"""The cart engine's domain: pure Python, no I/O, no clock reads.

Public surface (import from here or from the named module):
money (Money, allocate, round_half_up), errors (DomainError and kinds), catalog (Product,
Variant, Catalog), cart (Cart, LineItem, CartStatus), pricing (price_cart, PricingContext),
promotions (Promotion), stock (StockLedger, Reservation), checkout (Order, OrderStatus),
events.
"""

from engine.cart import Cart, CartStatus, LineItem
from engine.catalog import Catalog, Product, Variant, product_from_dict, product_to_dict
from engine.checkout import Order, OrderStatus
from engine.errors import (
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    PaymentDeclined,
    Unavailable,
    ValidationFailed,
)
from engine.money import Money, allocate, round_half_up
from engine.pricing import PricedCart, PricingContext, price_cart
from engine.promotions import Promotion, promotion_from_dict
from engine.stock import Reservation, StockLedger

__all__ = [
    "Cart", "CartStatus", "LineItem", "Catalog", "Product", "Variant", "product_from_dict",
    "product_to_dict", "Order", "OrderStatus", "Conflict", "DomainError", "Forbidden",
    "NotFound", "PaymentDeclined", "Unavailable", "ValidationFailed", "Money", "allocate",
    "round_half_up", "PricedCart", "PricingContext", "price_cart", "Promotion",
    "promotion_from_dict", "Reservation", "StockLedger",
]
