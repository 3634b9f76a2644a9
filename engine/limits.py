"""Documented limits on what a request may ask for (README, "Limits").

Every limit is checked before anything changes, and a breach is a 422 with a clear code.
"""

from __future__ import annotations

import re

from engine.errors import ValidationFailed

MAX_LINES_PER_CART = 100
MAX_QUANTITY_PER_LINE = 999
MAX_ID_LENGTH = 128
MAX_CODES_PER_CART = 10
MAX_OPTIONS = 10
MAX_OPTION_LENGTH = 200
MAX_SAVED_FOR_LATER = 100

#: An id's characters. Matched with ``fullmatch``: a pattern ending in ``$`` would also let an
#: id ending in a newline through (Python's ``$`` matches before a final ``\n``).
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]*")


def check_id(value: object, field: str) -> str:
    """Return ``value`` if it is a valid id: 1..128 characters of ``[A-Za-z0-9._:-]``.

    Raises:
        ValidationFailed: ``invalid_id``.
    """
    if not (isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH
            and _ID_RE.fullmatch(value)):
        raise ValidationFailed(
            "invalid_id",
            f"{field} must be 1..{MAX_ID_LENGTH} characters of letters, digits, "
            "'.', '_', ':' or '-'",
            [{"field": field}],
        )
    return value


def check_quantity(value: object, field: str = "quantity", allow_zero: bool = False) -> int:
    """Return ``value`` if it is an integer quantity in 1..999 (0 allowed with ``allow_zero``).

    Raises:
        ValidationFailed: ``invalid_quantity`` for non-integers, booleans and values out of range.
    """
    low = 0 if allow_zero else 1
    if type(value) is not int or not low <= value <= MAX_QUANTITY_PER_LINE:
        raise ValidationFailed(
            "invalid_quantity",
            f"{field} must be a whole number from {low} to {MAX_QUANTITY_PER_LINE}",
            [{"field": field, "value": value if isinstance(value, int | str) else str(value)}],
        )
    return value
