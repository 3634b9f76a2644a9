"""Stock on add and purchase limits (`engine.purchase`), and the catalog fields behind them."""

from __future__ import annotations

import pytest

from engine.catalog import product_from_dict
from engine.errors import Conflict, Forbidden, ValidationFailed
from engine.purchase import LimitScope, check_account, check_available, check_purchase_limit


def test_adding_within_what_is_available_passes():
    check_available("v", 3, 3)


def test_adding_beyond_what_is_available_is_out_of_stock_with_the_count():
    with pytest.raises(Conflict) as e:
        check_available("v", 50, 3)
    assert e.value.code == "out_of_stock"
    assert e.value.details == [{"variant_id": "v", "requested": 50, "available": 3}]


def test_a_sold_out_variant_refuses_one_unit():
    with pytest.raises(Conflict) as e:
        check_available("v", 1, 0)
    assert e.value.details[0]["available"] == 0


def test_a_purchase_limit_counts_the_cart_and_earlier_orders():
    scope = LimitScope("v:x", 2, frozenset({"x"}))
    check_purchase_limit(scope, 1, 1)
    with pytest.raises(Conflict) as e:
        check_purchase_limit(scope, 2, 1)
    assert e.value.code == "purchase_limit_exceeded"
    assert e.value.details == [{"scope": "v:x", "limit": 2, "already": 1, "requested": 2}]


def test_a_product_limit_counts_every_variant_of_the_product():
    body = {"name": "Shoe", "price": {"amount": 100, "currency": "USD"}, "purchase_limit": 3,
            "variants": [{"variant_id": "s-40"}, {"variant_id": "s-41", "purchase_limit": 1}]}
    p = product_from_dict("s", body)
    own, whole = p.limits_of(p.variant("s-41"))
    assert (own.scope, own.limit, whole.scope, whole.limit) == ("v:s-41", 1, "p:s", 3)
    assert whole.in_cart([("s-40", 2), ("s-41", 1), ("other", 9)]) == 3
    assert [s.scope for s in p.limits_of(p.variant("s-40"))] == ["p:s"]


def test_a_product_without_variants_carries_its_limit_on_the_implicit_variant():
    p = product_from_dict("t", {"name": "Tee", "price": {"amount": 100, "currency": "USD"},
                                "purchase_limit": 2, "account_required": True})
    [scope] = p.limits_of(p.variant(None))
    assert scope.scope == "v:t" and p.requires_account(p.variant(None))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_a_purchase_limit_is_a_positive_whole_number(bad: object):
    with pytest.raises(ValidationFailed):
        product_from_dict("t", {"name": "Tee", "price": {"amount": 1, "currency": "USD"},
                                "variants": [{"variant_id": "t1", "purchase_limit": bad}]})


def test_a_guest_cannot_add_what_requires_an_account():
    check_account(True, "alice", "v")
    check_account(False, None, "v")
    with pytest.raises(Forbidden) as e:
        check_account(True, None, "v")
    assert e.value.code == "account_required"


def test_a_product_with_commerce_fields_survives_the_codec_and_old_records_still_load():
    from snapshots.codec import decode, encode

    body = {"name": "Shoe", "price": {"amount": 100, "currency": "USD"}, "purchase_limit": 3,
            "account_required": True,
            "variants": [{"variant_id": "s-40", "purchase_limit": 1, "offer_ttl": 60}]}
    p = product_from_dict("s", body)
    assert decode(encode(p)) == p
    plain = product_from_dict("t", {"name": "Tee", "price": {"amount": 1, "currency": "USD"}})
    record = encode(plain)
    assert b"purchase_limit" not in record and b"offer_ttl" not in record  # readable before
    assert decode(record) == plain
