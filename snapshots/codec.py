"""Versioned msgpack codec of engine state.

Every record is ``msgpack([SCHEMA_VERSION, tag, payload])``. The engine's classes know nothing
of this module: it maps them from outside. Reading a record written with an unknown schema
version, or an unknown tag, raises :class:`SnapshotVersionError`: never a silent loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgpack

from engine.cart import Cart, CartStatus, LineItem
from engine.catalog import Product, Variant
from engine.checkout import Order, OrderStatus
from engine.promotions import Promotion, Target
from engine.stock import Reservation, StockLedger

SCHEMA_VERSION = 1


class SnapshotVersionError(Exception):
    """A record's schema version or type tag is not one this build can read."""


def _cart_out(c: Cart) -> dict[str, Any]:
    # Lines are stored as their own fields (O(change) persistence), not inside the header.
    return {"cart_id": c.cart_id, "owner": c.owner, "currency": c.currency,
            "created_at": c.created_at, "updated_at": c.updated_at, "expires_at": c.expires_at,
            "status": c.status.value, "version": c.version, "codes": c.codes,
            "line_seq": c.line_seq, "order_id": c.order_id, "merged_into": c.merged_into,
            "customer_groups": list(c.customer_groups), "merged_from": list(c.merged_from)}


def _cart_in(d: dict[str, Any]) -> Cart:
    d = dict(d)
    d["status"] = CartStatus(d["status"])
    for f in ("customer_groups", "merged_from"):
        d[f] = tuple(d.get(f) or ())
    return Cart(**d)


def _line_out(ln: LineItem) -> dict[str, Any]:
    return {f: getattr(ln, f) for f in LineItem.__slots__}  # type: ignore[attr-defined]


def _ledger_out(s: StockLedger) -> dict[str, Any]:
    return {"variant_id": s.variant_id, "on_hand": s.on_hand, "sold": s.sold}


def _reservation_out(r: Reservation) -> list[Any]:
    return [r.reservation_id, r.quantity, r.expires_at, r.owner]


def _order_out(o: Order) -> dict[str, Any]:
    d = {f: getattr(o, f) for f in Order.__slots__}  # type: ignore[attr-defined]
    d["status"] = o.status.value
    return d


def _order_in(d: dict[str, Any]) -> Order:
    d = dict(d)
    d["status"] = OrderStatus(d["status"])
    return Order(**d)


#: Product and variant fields added after the first records were written: left out while at
#: their default, so records not using them stay readable by the build before (rollback).
_PRODUCT_OPTIONAL = {"purchase_limit": None, "account_required": False}
_VARIANT_OPTIONAL = {"purchase_limit": None, "account_required": False, "offer_ttl": 300.0}


def _set_fields(obj: Any, optional: dict[str, Any]) -> dict[str, Any]:
    return {f: getattr(obj, f) for f, default in optional.items() if getattr(obj, f) != default}


def _product_out(p: Product) -> dict[str, Any]:
    return {"product_id": p.product_id, "name": p.name, "description": p.description,
            "category": p.category, "prices": dict(p.prices),
            "variants": [{"variant_id": v.variant_id, "sku": v.sku,
                          "attributes": dict(v.attributes), "prices": dict(v.prices),
                          "hold_ttl": v.hold_ttl, "shards": v.shards,
                          **_set_fields(v, _VARIANT_OPTIONAL)} for v in p.variants],
            **_set_fields(p, _PRODUCT_OPTIONAL)}


def _product_in(d: dict[str, Any]) -> Product:
    d = dict(d)
    d["variants"] = tuple(Variant(**v) for v in d["variants"])
    return Product(**d)


def _plain(v: Any) -> Any:
    """frozensets -> sorted lists, tuples -> lists, recursively (msgpack has neither)."""
    if isinstance(v, frozenset):
        return sorted(v)
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    return v


#: Promotion fields added after the first records were written: left out while unset, so
#: that records of promotions not using them stay readable by the build before (rollback).
_PROMOTION_OPTIONAL = {"max_discounts": (), "get_target": None, "active": True}


def _target_out(t: Target) -> dict[str, Any]:
    return {f.name: _plain(getattr(t, f.name)) for f in dataclasses.fields(t)}


def _target_in(d: dict[str, Any]) -> Target:
    return Target(**{k: frozenset(v) if isinstance(v, list) else v for k, v in d.items()})


def _promotion_out(p: Promotion) -> dict[str, Any]:
    # Field by field, times as epoch floats: lossless (the admin JSON rounds times to ms).
    out: dict[str, Any] = {}
    for f in dataclasses.fields(p):
        v = getattr(p, f.name)
        unset = f.name in _PROMOTION_OPTIONAL and v == _PROMOTION_OPTIONAL[f.name]
        if f.name not in ("target", "get_target") and not unset:
            out[f.name] = _plain(v)
    out["target"] = _target_out(p.target)
    if p.get_target is not None:
        out["get_target"] = _target_out(p.get_target)
    return out


def _promotion_in(d: dict[str, Any]) -> Promotion:
    d = dict(d)
    target = d.pop("target", {})
    get_target = d.pop("get_target", None)
    for key in ("amounts", "min_subtotals", "max_discounts"):
        if key in d:
            d[key] = tuple(tuple(pair) for pair in d[key])
    if "customer_groups" in d:
        d["customer_groups"] = frozenset(d["customer_groups"])
    known = {f.name for f in dataclasses.fields(Promotion)}
    unknown = set(d) - known
    if unknown:
        raise SnapshotVersionError(f"promotion record has unknown fields {sorted(unknown)}")
    return Promotion(**d, target=_target_in(target),
                     get_target=_target_in(get_target) if get_target is not None else None)


#: tag -> (class, encode, decode). Plain data (dict/list/str/int) uses tag "raw".
_CODECS: dict[str, tuple[type, Callable[[Any], Any], Callable[[Any], Any]]] = {
    "cart": (Cart, _cart_out, _cart_in),
    "line": (LineItem, _line_out, lambda d: LineItem(**d)),
    "ledger": (StockLedger, _ledger_out, lambda d: StockLedger(**d)),
    "resv": (Reservation, _reservation_out, lambda d: Reservation(*d)),
    "order": (Order, _order_out, _order_in),
    "product": (Product, _product_out, _product_in),
    "promotion": (Promotion, _promotion_out, _promotion_in),
}
_TAG_OF: dict[type, str] = {cls: tag for tag, (cls, _, _) in _CODECS.items()}


def encode(obj: Any) -> bytes:
    """One record: engine object or plain data -> ``msgpack([version, tag, payload])``."""
    tag = _TAG_OF.get(type(obj))
    if tag is None:
        return msgpack.packb([SCHEMA_VERSION, "raw", obj], use_bin_type=True)
    return msgpack.packb([SCHEMA_VERSION, tag, _CODECS[tag][1](obj)], use_bin_type=True)


def decode(data: bytes) -> Any:
    """Inverse of :func:`encode`. Raises :class:`SnapshotVersionError` on unknown version/tag."""
    try:
        version, tag, payload = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise SnapshotVersionError(f"unreadable snapshot record: {e}") from e
    if version != SCHEMA_VERSION:
        raise SnapshotVersionError(
            f"snapshot schema version {version} is not supported (this build reads "
            f"{SCHEMA_VERSION}); refusing to load rather than lose data")
    if tag == "raw":
        return payload
    entry = _CODECS.get(tag)
    if entry is None:
        raise SnapshotVersionError(f"unknown snapshot record type {tag!r}")
    try:
        return entry[2](payload)
    except (TypeError, KeyError, ValueError) as e:
        raise SnapshotVersionError(f"{tag} record does not match this build: {e}") from e
