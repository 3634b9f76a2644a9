"""Money as integer minor units with an ISO 4217 currency.

Amounts are never floats. The exponent of each currency (how many minor units make a major one)
comes from ISO 4217: USD 2 (cents), JPY 0, KWD 3 (fils).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ValidationFailed

#: ISO 4217 minor-unit exponents of the currencies this engine accepts.
CURRENCY_EXPONENTS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "NZD": 2, "SEK": 2, "NOK": 2,
    "DKK": 2, "PLN": 2, "CZK": 2, "INR": 2, "BRL": 2, "MXN": 2, "CNY": 2, "SGD": 2, "HKD": 2,
    "ZAR": 2, "JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "KWD": 3, "BHD": 3, "JOD": 3, "OMR": 3,
}

#: Largest amount accepted anywhere, in minor units: keeps sums far from float-unsafe ranges
#: for JSON clients (2**53) even after multiplying by the largest line quantity.
MAX_AMOUNT = 10**12


def check_currency(currency: str) -> str:
    """Return ``currency`` if it is an ISO 4217 code this engine knows.

    Raises:
        ValidationFailed: ``unknown_currency`` otherwise.
    """
    if currency not in CURRENCY_EXPONENTS:
        raise ValidationFailed(
            "unknown_currency", f"{currency!r} is not a supported ISO 4217 currency code"
        )
    return currency


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units of ``currency`` (ISO 4217): ``Money(1999, "USD")`` is 19.99 USD."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount) is not int:
            raise ValidationFailed("invalid_amount", "money amounts are integers in minor units")
        check_currency(self.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValidationFailed(
                "currency_mismatch", f"cannot combine {self.currency} with {other.currency}"
            )

    def to_dict(self) -> dict[str, object]:
        """The API.md money shape: ``{"amount": 1999, "currency": "USD"}``."""
        return {"amount": self.amount, "currency": self.currency}

    def format(self) -> str:
        """Human text, e.g. ``"12.00 USD"``; used in promotion explanations and hints."""
        return format_amount(self.amount, self.currency)


def format_amount(amount: int, currency: str) -> str:
    """Minor units as a decimal string by the ISO 4217 exponent: 1200 USD -> "12.00 USD"."""
    exp = CURRENCY_EXPONENTS[currency]
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if exp == 0:
        return f"{sign}{amount} {currency}"
    major, minor = divmod(amount, 10**exp)
    return f"{sign}{major}.{minor:0{exp}d} {currency}"


def round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half away from zero, in exact integer arithmetic.

    The rounding rule for percentages and tax in this engine (commercial rounding, as most
    tax authorities ask for amounts in minor units).
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    q, r = divmod(abs(numerator), denominator)
    if 2 * r >= denominator:
        q += 1
    return q if numerator >= 0 else -q


def percent_of(amount: int, basis_points: int) -> int:
    """``amount * basis_points / 10_000`` rounded half up; 1,000 basis points is 10 %."""
    return round_half_up(amount * basis_points, 10_000)


def allocate(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` minor units over ``weights`` so the parts sum exactly to ``total``.

    Largest-remainder method (Hamilton): each part gets the floor of its exact share, and the
    units left over go one each to the largest fractional remainders, ties to the earlier weight.
    All-zero weights split as evenly as possible. Returns a list as long as ``weights``.
    """
    n = len(weights)
    if n == 0:
        if total:
            raise ValueError("cannot allocate a non-zero total over no weights")
        return []
    if any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative")
    wsum = sum(weights)
    if wsum == 0:
        weights = [1] * n
        wsum = n
    sign = -1 if total < 0 else 1
    t = abs(total)
    parts = []
    remainders = []
    for i, w in enumerate(weights):
        q, r = divmod(t * w, wsum)
        parts.append(q)
        remainders.append((-r, i))
    left = t - sum(parts)
    for _, i in sorted(remainders)[:left]:
        parts[i] += 1
    return [sign * p for p in parts]
