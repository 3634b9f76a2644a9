"""Destinations for tax and shipping: ISO 3166 codes, validated before anything is priced."""

from __future__ import annotations

import pytest

from engine.errors import ValidationFailed
from engine.policies import check_destination


@pytest.mark.parametrize(("country", "region", "expected"), [
    (None, None, (None, None)),
    ("us", None, ("US", None)),
    (" de ", None, ("DE", None)),
    ("US", "ca", ("US", "CA")),
    ("US", "US-CA", ("US", "US-CA")),
    (None, "us-ca", (None, "US-CA")),
    ("GB", "ENG", ("GB", "ENG")),
])
def test_iso_3166_codes_are_accepted_and_upper_cased(
        country: object, region: object, expected: tuple[str | None, str | None]) -> None:
    assert check_destination(country, region) == expected


@pytest.mark.parametrize(("country", "region", "field"), [
    ("USA", None, "country"),
    ("U1", None, "country"),
    ("", None, "country"),
    (840, None, "country"),
    (["US"], None, "country"),
    ("US", "CALIF", "region"),
    ("US", "", "region"),
    (None, "CA", "region"),        # a bare subdivision without its country
    ("DE", "US-CA", "region"),     # a subdivision of another country
    ("US", 6, "region"),
])
def test_anything_else_is_invalid_destination_naming_the_field(
        country: object, region: object, field: str) -> None:
    with pytest.raises(ValidationFailed) as e:
        check_destination(country, region)
    assert e.value.code == "invalid_destination"
    assert e.value.details[0]["field"] == field
