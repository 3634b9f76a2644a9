"""engine.checkout.Order: the order state machine."""

from __future__ import annotations

import dataclasses

import pytest

from engine.checkout import TRANSITIONS, Order, OrderStatus
from engine.errors import Conflict

pytestmark = pytest.mark.unit

T0 = 1_800_000_000.0
S = OrderStatus


def make_order(status: OrderStatus = S.PENDING) -> Order:
    return Order(order_id="ord_1", cart_id="c1", owner="u1", currency="USD",
                 lines=[{"line_id": "ln_1", "quantity": 1}],
                 totals={"total": {"amount": 2500, "currency": "USD"}}, discounts=[],
                 created_at=T0, updated_at=T0, expires_at=T0 + 900, status=status)


ALLOWED = [
    (S.PENDING, S.PAID),
    (S.PENDING, S.PAYMENT_FAILED),
    (S.PENDING, S.CANCELLED),
    (S.PAID, S.SHIPPED),
    (S.PAID, S.CANCELLED),
    (S.PAYMENT_FAILED, S.PENDING),
    (S.PENDING, S.REQUIRES_ACTION),
    (S.REQUIRES_ACTION, S.PAID),
    (S.REQUIRES_ACTION, S.PAYMENT_FAILED),
    (S.REQUIRES_ACTION, S.CANCELLED),
]
REFUSED = [(a, b) for a in S for b in S if a != b and (a, b) not in ALLOWED]


def test_a_new_order_is_pending():
    order = Order("o", "c", "u", "USD", [], {}, [], T0, T0, T0 + 1)
    assert order.status is S.PENDING


def test_the_transition_table_is_exactly_the_documented_one():
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == set(ALLOWED)
    assert set(TRANSITIONS) == set(S)


@pytest.mark.parametrize(("start", "to"), ALLOWED)
def test_an_allowed_transition_moves_the_order_and_its_updated_at(start, to):
    order = make_order(start)
    order.transition(to, T0 + 30)
    assert order.status is to
    assert order.updated_at == T0 + 30
    assert order.created_at == T0


@pytest.mark.parametrize(("start", "to"), REFUSED)
def test_a_refused_transition_is_a_conflict_and_changes_nothing(start, to):
    order = make_order(start)
    before = dataclasses.asdict(order)
    with pytest.raises(Conflict) as e:
        order.transition(to, T0 + 30)
    assert e.value.code == "invalid_order_transition"
    assert start.value in e.value.message and to.value in e.value.message
    assert dataclasses.asdict(order) == before


@pytest.mark.parametrize("status", list(S))
def test_moving_to_the_current_status_is_a_no_op(status):
    order = make_order(status)
    before = dataclasses.asdict(order)
    order.transition(status, T0 + 30)
    assert dataclasses.asdict(order) == before


def test_a_paid_then_shipped_order_cannot_go_back():
    order = make_order()
    order.transition(S.PAID, T0 + 1)
    order.transition(S.SHIPPED, T0 + 2)
    for to in (S.PENDING, S.PAID, S.CANCELLED, S.PAYMENT_FAILED):
        with pytest.raises(Conflict):
            order.transition(to, T0 + 3)
    assert order.status is S.SHIPPED
    assert order.updated_at == T0 + 2


def test_a_refund_is_at_most_what_was_captured_and_not_yet_refunded():
    order = make_order(S.PAID)
    order.captured = 2500
    assert order.check_refund(1000) == 1000
    order.refunded = 1000
    assert order.check_refund(None) == 1500
    with pytest.raises(Conflict) as e:
        order.check_refund(1501)
    assert e.value.code == "refund_exceeds_capture" and e.value.details == [{"refundable": 1500}]


@pytest.mark.parametrize("bad", [0, -5, 1.5, True])
def test_a_refund_is_a_positive_whole_number_of_minor_units(bad: object):
    from engine.errors import ValidationFailed

    order = make_order(S.PAID)
    order.captured = 2500
    with pytest.raises(ValidationFailed):
        order.check_refund(bad)  # type: ignore[arg-type]


def test_nothing_captured_leaves_nothing_to_refund():
    with pytest.raises(Conflict):
        make_order(S.PAID).check_refund(None)
