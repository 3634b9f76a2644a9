"""Ids the cart and its checkout saga derive: orders, reservations, purchase-limit actors,
and the customer of an owner."""

from __future__ import annotations

import hashlib

from actors.runtime import key_hash


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


def limit_key(customer: str, scope: str) -> str:
    """The purchase-limit actor of one customer and one limit scope (`engine.purchase`)."""
    return f"{customer}/{scope}"


def customer_of(owner: str) -> str | None:
    """The customer id for per-customer limits: None for guests (ids ``guest_...``)."""
    return None if owner.startswith("guest_") else owner
