"""engine.money: integer minor units, allocation by largest remainder, rounding half up."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ValidationFailed
from engine.money import Money, allocate, check_currency, format_amount, percent_of, round_half_up

pytestmark = pytest.mark.unit


# -- Money ---------------------------------------------------------------------------------

def test_money_adds_and_subtracts_in_one_currency():
    assert Money(1999, "USD") + Money(1, "USD") == Money(2000, "USD")
    assert Money(500, "EUR") - Money(700, "EUR") == Money(-200, "EUR")


def test_money_refuses_to_mix_currencies():
    with pytest.raises(ValidationFailed) as e:
        Money(1, "USD") + Money(1, "EUR")
    assert e.value.code == "currency_mismatch"


def test_money_refuses_floats_and_booleans():
    for bad in (19.99, True):
        with pytest.raises(ValidationFailed) as e:
            Money(bad, "USD")  # type: ignore[arg-type]
        assert e.value.code == "invalid_amount"


def test_money_refuses_an_unknown_currency():
    with pytest.raises(ValidationFailed) as e:
        Money(1, "XXX")
    assert e.value.code == "unknown_currency"
    assert check_currency("JPY") == "JPY"


def test_money_has_the_api_shape_and_human_text():
    assert Money(1999, "USD").to_dict() == {"amount": 1999, "currency": "USD"}
    assert Money(1200, "USD").format() == "12.00 USD"


# -- format_amount -------------------------------------------------------------------------

def test_format_amount_uses_the_iso_4217_exponent():
    assert format_amount(1200, "USD") == "12.00 USD"
    assert format_amount(5, "EUR") == "0.05 EUR"
    assert format_amount(1200, "JPY") == "1200 JPY"
    assert format_amount(1234, "KWD") == "1.234 KWD"
    assert format_amount(1, "KWD") == "0.001 KWD"


def test_format_amount_puts_the_sign_before_the_major_units():
    assert format_amount(-5, "USD") == "-0.05 USD"
    assert format_amount(-1200, "JPY") == "-1200 JPY"
    assert format_amount(0, "USD") == "0.00 USD"


# -- round_half_up -------------------------------------------------------------------------

def test_round_half_up_rounds_halves_away_from_zero():
    assert round_half_up(5, 10) == 1
    assert round_half_up(15, 10) == 2
    assert round_half_up(25, 10) == 3  # not banker's rounding
    assert round_half_up(-5, 10) == -1
    assert round_half_up(-25, 10) == -3


def test_round_half_up_rounds_below_half_down():
    assert round_half_up(14, 10) == 1
    assert round_half_up(-14, 10) == -1
    assert round_half_up(0, 7) == 0


def test_round_half_up_refuses_a_non_positive_denominator():
    with pytest.raises(ValueError):
        round_half_up(1, 0)
    with pytest.raises(ValueError):
        round_half_up(1, -3)


@given(st.integers(-10**15, 10**15), st.integers(1, 10**6))
def test_round_half_up_matches_exact_rational_rounding(n, d):
    exact = Fraction(n, d)
    result = round_half_up(n, d)
    assert abs(exact - result) <= Fraction(1, 2)
    if abs(exact - result) == Fraction(1, 2):
        assert abs(result) > abs(exact)


def test_percent_of_is_basis_points_rounded_half_up():
    assert percent_of(1999, 1000) == 200  # 199.9 -> 200
    assert percent_of(1005, 1000) == 101  # 100.5 -> 101
    assert percent_of(1000, 825) == 83  # 82.5 -> 83
    assert percent_of(1234, 10_000) == 1234


# -- allocate ------------------------------------------------------------------------------

def test_allocate_splits_proportionally():
    assert allocate(100, [1, 1, 2]) == [25, 25, 50]


def test_allocate_gives_leftover_units_to_the_largest_remainders():
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(10, [3, 3, 4]) == [3, 3, 4]
    assert allocate(5, [1, 2]) == [2, 3]  # shares 1.67 and 3.33: the .67 gets the unit


def test_allocate_breaks_remainder_ties_toward_the_earlier_weight():
    assert allocate(1, [5, 5]) == [1, 0]


def test_allocate_splits_evenly_over_zero_weights():
    assert allocate(5, [0, 0]) == [3, 2]


def test_allocate_keeps_the_sign_of_a_negative_total():
    assert allocate(-100, [1, 1, 1]) == [-34, -33, -33]


def test_allocate_over_no_weights():
    assert allocate(0, []) == []
    with pytest.raises(ValueError):
        allocate(1, [])


def test_allocate_refuses_negative_weights():
    with pytest.raises(ValueError):
        allocate(10, [1, -1])


@given(st.integers(-10**12, 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=30))
def test_allocate_sums_exactly_and_stays_within_one_unit_of_the_exact_share(total, weights):
    parts = allocate(total, weights)
    assert len(parts) == len(weights)
    assert sum(parts) == total
    wsum = sum(weights) or len(weights)
    for w, part in zip(weights or [], parts, strict=True):
        share = Fraction(abs(total) * (w if sum(weights) else 1), wsum)
        assert share - 1 < abs(part) < share + 1


@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=30))
def test_allocate_never_gives_a_part_more_than_its_weight_when_the_total_fits(total, weights):
    total = min(total, sum(weights))
    for w, part in zip(weights, allocate(total, weights), strict=True):
        assert 0 <= part <= w or sum(weights) == 0
