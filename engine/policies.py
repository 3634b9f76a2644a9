"""Shipping and tax policies: small Protocols and the built-in implementations.

Pricing asks a :class:`ShippingQuoter` for the shipping charge and a :class:`TaxCalculator` for
the tax; anything with these methods plugs in (a carrier table, a tax service's cached rates).
All amounts are integer minor units of the cart's currency; rates are basis points
(1 bp = 0.01 %, so 825 bp = 8.25 %). Pure: no I/O, no clock.

Built in:

- :class:`ShippingPolicy`: a flat rate per currency, free from a threshold per currency on
  (measured on the subtotal after item discounts: the amount the shopper actually pays).
- :class:`TaxPolicy`: a rate by destination (ISO 3166-2 region ``"US-CA"``, else ISO 3166-1
  country ``"US"``, else a default), with tax-exclusive prices (tax added on top) or
  tax-inclusive prices (tax already contained in the prices, as is usual in the EU).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from engine.errors import ValidationFailed
from engine.money import round_half_up


@runtime_checkable
class ShippingQuoter(Protocol):
    """Quotes shipping for a cart, in minor units of ``currency``."""

    def quote(self, currency: str, discounted_subtotal: int, has_lines: bool,
              country: str | None = None, region: str | None = None) -> int:
        """Shipping charge before shipping promotions; 0 for an empty cart."""
        ...

    def free_shipping_threshold(self, currency: str, country: str | None = None,
                                region: str | None = None) -> int | None:
        """Discounted subtotal from which shipping is free, or None (used for hints)."""
        ...


@runtime_checkable
class TaxCalculator(Protocol):
    """Computes the tax on an amount for a destination."""

    @property
    def prices_include_tax(self) -> bool:
        """True when prices already contain tax (the tax is then not added to the total)."""
        ...

    @property
    def tax_shipping(self) -> bool:
        """True when shipping is part of the taxable amount."""
        ...

    def tax(self, taxable: int, country: str | None = None, region: str | None = None) -> int:
        """Tax in minor units on (tax-exclusive) or contained in (tax-inclusive) ``taxable``."""
        ...


def _default_flat() -> dict[str, int]:
    return {"USD": 499, "EUR": 499}


def _default_free_over() -> dict[str, int]:
    return {"USD": 5000, "EUR": 5000}


@dataclass(frozen=True, slots=True)
class ShippingPolicy:
    """Flat-rate shipping per currency (minor units), free from ``free_over`` on.

    ``flat``: currency -> charge; a currency missing here ships free. ``free_over``:
    currency -> discounted subtotal from which shipping is free (inclusive: a subtotal equal to
    the threshold ships free); a currency missing here has no free-shipping threshold.
    """

    flat: Mapping[str, int] = field(default_factory=_default_flat)
    free_over: Mapping[str, int] = field(default_factory=_default_free_over)

    def quote(self, currency: str, discounted_subtotal: int, has_lines: bool,
              country: str | None = None, region: str | None = None) -> int:
        """The flat rate of ``currency``, or 0 for an empty cart or at/over the threshold."""
        if not has_lines:
            return 0
        threshold = self.free_over.get(currency)
        if threshold is not None and discounted_subtotal >= threshold:
            return 0
        return self.flat.get(currency, 0)

    def free_shipping_threshold(self, currency: str, country: str | None = None,
                                region: str | None = None) -> int | None:
        """``free_over[currency]`` or None."""
        return self.free_over.get(currency)


#: Alias naming what the built-in shipping policy is.
FlatRateShipping = ShippingPolicy


_COUNTRY = re.compile(r"[A-Z]{2}")
_REGION = re.compile(r"(?:[A-Z]{2}-)?[A-Z0-9]{1,3}")


def check_destination(country: object, region: object) -> tuple[str | None, str | None]:
    """A destination for shipping and tax, validated and upper-cased: ``(country, region)``.

    ``country``: an ISO 3166-1 alpha-2 code (``"us"`` -> ``"US"``) or None; ``region``: an
    ISO 3166-2 subdivision, bare (``"CA"``, with a country) or full (``"US-CA"``), or None. A
    full region must be of the given country.

    Raises ValidationFailed ``invalid_destination`` (details: field, value) otherwise.
    """
    def bad(field: str, value: object, why: str) -> ValidationFailed:
        return ValidationFailed("invalid_destination", f"{field}: {why}",
                                [{"field": field, "value": value}])

    out: list[str | None] = []
    for name, value, pattern, what in (
            ("country", country, _COUNTRY, "an ISO 3166-1 alpha-2 code such as US or DE"),
            ("region", region, _REGION, "an ISO 3166-2 subdivision such as CA or US-CA")):
        if value is None:
            out.append(None)
            continue
        if not isinstance(value, str) or not pattern.fullmatch(value.strip().upper()):
            raise bad(name, value if isinstance(value, str | int | float | bool) else None,
                      f"is {what}")
        out.append(value.strip().upper())
    c, r = out
    if r is not None and "-" not in r and c is None:
        raise bad("region", region, "a bare subdivision needs its country (or give US-CA)")
    if r is not None and "-" in r and c is not None and not r.startswith(c + "-"):
        raise bad("region", region, f"is not a subdivision of {c}")
    return c, r


def region_key(country: str | None, region: str | None) -> str | None:
    """ISO 3166-2 key of a destination: ``("us", "ca")`` and ``(None, "US-CA")`` -> ``"US-CA"``."""
    if not region:
        return None
    region = region.strip().upper()
    if "-" in region or not country:
        return region
    return f"{country.strip().upper()}-{region}"


@dataclass(frozen=True, slots=True)
class TaxPolicy:
    """Tax rates in basis points by destination (825 = 8.25 %).

    ``rates`` maps an ISO 3166-2 region (``"US-CA"``) or an ISO 3166-1 country (``"DE"``) to a
    rate; the most specific match wins, and ``rate_bp`` applies when nothing matches (or when
    no destination is known). ``prices_include_tax`` selects tax-inclusive prices;
    ``tax_shipping`` includes shipping in the taxable amount (the common rule in most EU
    countries and many US states).
    """

    rate_bp: int = 0
    rates: Mapping[str, int] = field(default_factory=dict)
    prices_include_tax: bool = False
    tax_shipping: bool = True

    def rate_for(self, country: str | None = None, region: str | None = None) -> int:
        """The rate in basis points for a destination: region, then country, then ``rate_bp``."""
        key = region_key(country, region)
        if key is not None and key in self.rates:
            return self.rates[key]
        if country and country.strip().upper() in self.rates:
            return self.rates[country.strip().upper()]
        return self.rate_bp

    def tax(self, taxable: int, country: str | None = None, region: str | None = None) -> int:
        """Tax on ``taxable`` minor units, computed once on the cart's taxable amount.

        Rounding rule (applied here, once per cart, not per line): round half up
        (``engine.money.round_half_up``) to the minor unit.

        - tax-exclusive: ``taxable * rate / 10_000``;
        - tax-inclusive: the tax contained in a gross amount,
          ``taxable * rate / (10_000 + rate)`` (so 119.00 EUR at 19 % contains 19.00 EUR).
        """
        rate = self.rate_for(country, region)
        if rate <= 0 or taxable <= 0:
            return 0
        if self.prices_include_tax:
            return round_half_up(taxable * rate, 10_000 + rate)
        return round_half_up(taxable * rate, 10_000)
