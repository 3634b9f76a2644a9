"""The wire codec of the host channel (`actors.channel`): plain data in msgpack, never pickle.

Decoding a frame can only ever build plain values and the engine's own records, so a peer
cannot make the reader run code by what it sends (pickle calls whatever a frame names).

What travels is a batch's messages ``(kind, key, method, args, request_id, fingerprint)``
and their replies ``("ok", value)`` / ``("err", error_dict)`` (`actors.runtime`), whose values
are dicts, lists, strings, numbers (any float, including NaN and infinities), None, bools and
bytes, which msgpack carries as they are, plus what msgpack has no type for, carried as
extension types (msgpack spec, "ext format family") so that the round trip is faithful:

====  ==========================================================================
code  payload
====  ==========================================================================
1     a tuple: its items, as a msgpack array
2     a set: its items, as a msgpack array
3     a frozenset: its items, as a msgpack array
4     an int outside msgpack's 64-bit range: two's complement, big-endian bytes
5     an engine object whose `snapshots.codec` record is a whole copy (line item,
      reservation, order, product, promotion): that record
====  ==========================================================================

Anything else (an arbitrary object, an enum, a datetime; a cart or a stock ledger, whose
records leave their lines and reservations to records of their own) cannot be encoded: :func:`pack`
raises :class:`WireError` and the channel fails that batch alone. An unknown extension code
or a malformed record fails :func:`unpack` with :class:`WireError`.
"""

from __future__ import annotations

from typing import Any

import msgpack

from actors.views import CartView
from engine.cart import LineItem
from engine.catalog import Product
from engine.checkout import Order
from engine.promotions import Promotion
from engine.stock import Reservation
from snapshots import codec

EXT_TUPLE, EXT_SET, EXT_FROZENSET, EXT_BIGINT, EXT_ENGINE = 1, 2, 3, 4, 5

#: The engine classes that travel as their snapshot record: those whose record holds the whole
#: object (`snapshots.codec`; a cart's or a ledger's leaves out its lines or reservations).
ENGINE_TYPES: frozenset[type] = frozenset({LineItem, Reservation, Order, Product, Promotion})


class WireError(ValueError):
    """A value that cannot travel on the channel, or bytes that are not a valid frame body."""


def _default(obj: Any) -> msgpack.ExtType:
    t = type(obj)
    if t is tuple:
        return msgpack.ExtType(EXT_TUPLE, _packb(list(obj)))
    if t is set:
        return msgpack.ExtType(EXT_SET, _packb(list(obj)))
    if t is frozenset:
        return msgpack.ExtType(EXT_FROZENSET, _packb(list(obj)))
    if t is int:  # only ints msgpack cannot hold natively reach this hook
        return msgpack.ExtType(EXT_BIGINT,
                               obj.to_bytes(obj.bit_length() // 8 + 1, "big", signed=True))
    if t in ENGINE_TYPES:
        return msgpack.ExtType(EXT_ENGINE, codec.encode(obj))
    if t is CartView:  # travels as the plain dict it is (its rendering stays behind)
        return dict(obj)
    raise TypeError(f"a {t.__module__}.{t.__qualname__} cannot travel on the host channel")


def _packb(obj: Any) -> bytes:
    # strict_types: a tuple (or a subclass of a plain type) goes through _default instead of
    # silently becoming a list
    data: bytes = msgpack.packb(obj, default=_default, use_bin_type=True, strict_types=True)
    return data


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_TUPLE:
        return tuple(_unpackb(data))
    if code == EXT_SET:
        return set(_unpackb(data))
    if code == EXT_FROZENSET:
        return frozenset(_unpackb(data))
    if code == EXT_BIGINT:
        return int.from_bytes(data, "big", signed=True)
    if code == EXT_ENGINE:
        return codec.decode(data)
    raise WireError(f"unknown extension type {code} on the host channel")


def _unpackb(data: bytes | memoryview) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False,
                           use_list=True)


def pack(obj: Any) -> bytes:
    """``obj`` (plain data, tuples, sets, big ints, engine records, nested) -> msgpack bytes.

    Raises :class:`WireError` when some value in ``obj`` has no wire form (see the module
    docstring) or nests too deep.
    """
    try:
        return _packb(obj)
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise WireError(f"cannot encode for the host channel: {e}") from e


def unpack(data: bytes | memoryview) -> Any:
    """Inverse of :func:`pack`. Raises :class:`WireError` on anything but a valid body."""
    try:
        return _unpackb(data)
    except WireError:
        raise
    except Exception as e:  # noqa: BLE001 - msgpack, the snapshot codec, deep nesting...
        raise WireError(f"not a valid host channel body: {e!r}") from e
