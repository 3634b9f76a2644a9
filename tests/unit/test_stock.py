"""engine.stock.StockLedger: reservations, commits, lazy expiry heap, admin stock changes."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import Conflict, DomainError, NotFound, ValidationFailed
from engine.stock import MAX_ON_HAND, Reservation, StockLedger

pytestmark = pytest.mark.unit

T0 = 1_800_000_000.0


def ledger(on_hand: int = 10, variant_id: str = "tee-s") -> StockLedger:
    return StockLedger(variant_id=variant_id, on_hand=on_hand)


def state(s: StockLedger) -> dict:
    """Everything observable about a ledger, for before/after comparisons.

    ``next_expiry`` is read on a copy: on the ledger itself it would drop stale heap entries
    and hide heap bugs from the operation that follows.
    """
    return {**s.snapshot(), "reservations": {k: dataclasses.astuple(r)
                                             for k, r in s.reservations.items()},
            "next_expiry": copy.deepcopy(s).next_expiry()}


# -- reserve -------------------------------------------------------------------------------

def test_reserving_sets_units_aside():
    s = ledger(10)
    r = s.reserve("r1", 3, T0 + 60, "cart-1")
    assert r == Reservation("r1", 3, T0 + 60, "cart-1")
    assert s.reservations == {"r1": r}
    assert s.snapshot() == {"on_hand": 10, "reserved": 3, "available": 7, "sold": 0}


def test_reserving_everything_available_is_allowed():
    s = ledger(5)
    s.reserve("r1", 2, T0, "a")
    s.reserve("r2", 3, T0, "b")
    assert s.available == 0


def test_cannot_reserve_more_than_available():
    s = ledger(5)
    s.reserve("r1", 4, T0, "a")
    with pytest.raises(Conflict) as e:
        s.reserve("r2", 2, T0, "b")
    assert e.value.code == "out_of_stock"
    assert e.value.details == [{"variant_id": "tee-s", "requested": 2, "available": 1}]
    assert s.reserved == 4
    assert "r2" not in s.reservations


def test_cannot_reserve_from_an_empty_ledger():
    s = ledger(0)
    with pytest.raises(Conflict) as e:
        s.reserve("r1", 1, T0, "a")
    assert e.value.details == [{"variant_id": "tee-s", "requested": 1, "available": 0}]


@pytest.mark.parametrize("quantity", [0, -3, 1.0, True, "2", None])
def test_reserve_refuses_a_non_positive_or_non_integer_quantity(quantity):
    s = ledger(10)
    with pytest.raises(ValidationFailed) as e:
        s.reserve("r1", quantity, T0, "a")
    assert e.value.code == "invalid_quantity"
    assert s.reservations == {}


def test_reserving_again_with_the_same_id_resizes_instead_of_double_counting():
    s = ledger(10)
    first = s.reserve("r1", 3, T0 + 60, "a")
    again = s.reserve("r1", 3, T0 + 60, "a")
    assert again is first
    assert s.reserved == 3
    s.reserve("r1", 8, T0 + 60, "a")
    assert s.reserved == 8
    assert s.available == 2
    s.reserve("r1", 1, T0 + 60, "a")
    assert s.reserved == 1
    assert list(s.reservations) == ["r1"]


def test_resizing_counts_the_units_the_reservation_already_holds():
    s = ledger(10)
    s.reserve("r1", 6, T0, "a")
    s.reserve("r2", 2, T0, "b")
    s.reserve("r1", 8, T0, "a")  # needs 2 more; 2 are available
    assert s.available == 0
    with pytest.raises(Conflict) as e:
        s.reserve("r1", 9, T0, "a")
    assert e.value.details == [{"variant_id": "tee-s", "requested": 9, "available": 8}]
    assert s.reservations["r1"].quantity == 8


def test_renewing_a_reservation_moves_its_deadline_later():
    s = ledger(10)
    s.reserve("r1", 2, T0 + 60, "a")
    s.reserve("r1", 2, T0 + 120, "a")
    assert s.reservations["r1"].expires_at == T0 + 120
    assert s.next_expiry() == T0 + 120
    assert s.expire(T0 + 60) == []
    assert s.reserved == 2


# -- release / commit ----------------------------------------------------------------------

def test_releasing_gives_the_units_back():
    s = ledger(10)
    s.reserve("r1", 4, T0, "a")
    r = s.release("r1")
    assert r == Reservation("r1", 4, T0, "a")
    assert s.snapshot() == {"on_hand": 10, "reserved": 0, "available": 10, "sold": 0}
    assert s.reservations == {}


def test_releasing_twice_or_an_unknown_reservation_is_a_no_op():
    s = ledger(10)
    s.reserve("r1", 4, T0, "a")
    s.release("r1")
    assert s.release("r1") is None
    assert s.release("never") is None
    assert s.reserved == 0


def test_committing_sells_the_reserved_units():
    s = ledger(10)
    s.reserve("r1", 4, T0, "a")
    s.reserve("r2", 1, T0, "b")
    r = s.commit("r1")
    assert r.quantity == 4
    assert s.snapshot() == {"on_hand": 6, "reserved": 1, "available": 5, "sold": 4}
    assert list(s.reservations) == ["r2"]


@pytest.mark.parametrize("setup", ["never", "released", "committed", "expired"])
def test_committing_a_reservation_that_is_not_open_is_not_found(setup):
    s = ledger(10)
    if setup != "never":
        s.reserve("r1", 2, T0, "a")
    if setup == "released":
        s.release("r1")
    elif setup == "committed":
        s.commit("r1")
    elif setup == "expired":
        s.expire(T0)
    before = state(s)
    with pytest.raises(NotFound) as e:
        s.commit("r1")
    assert e.value.code == "reservation_not_found"
    assert state(s) == before


def test_on_hand_plus_sold_is_constant_across_commits():
    s = ledger(20)
    for i in range(5):
        s.reserve(f"r{i}", i + 1, T0, "a")
    for i in range(5):
        s.commit(f"r{i}")
        assert s.on_hand + s.sold == 20
    assert s.sold == 15
    assert s.on_hand == 5


# -- expiry --------------------------------------------------------------------------------

def test_expire_releases_due_reservations_only():
    s = ledger(10)
    s.reserve("early", 1, T0 + 10, "a")
    s.reserve("due", 2, T0 + 20, "b")
    s.reserve("late", 3, T0 + 30, "c")
    out = s.expire(T0 + 20)  # a deadline equal to now is due
    assert sorted(r.reservation_id for r in out) == ["due", "early"]
    assert list(s.reservations) == ["late"]
    assert s.reserved == 3
    assert s.next_expiry() == T0 + 30


def test_expire_with_nothing_due_returns_nothing():
    s = ledger(10)
    s.reserve("r1", 1, T0 + 10, "a")
    assert s.expire(T0 + 9.999) == []
    assert s.reserved == 1


def test_next_expiry_is_none_without_reservations():
    s = ledger(10)
    assert s.next_expiry() is None
    s.reserve("r1", 1, T0, "a")
    s.release("r1")
    assert s.next_expiry() is None


def test_next_expiry_skips_released_and_committed_reservations():
    s = ledger(10)
    s.reserve("a", 1, T0 + 10, "x")
    s.reserve("b", 1, T0 + 20, "x")
    s.reserve("c", 1, T0 + 30, "x")
    s.release("a")
    assert s.next_expiry() == T0 + 20
    s.commit("b")
    assert s.next_expiry() == T0 + 30


def test_a_renewed_reservation_does_not_expire_at_its_old_deadline():
    s = ledger(10)
    s.reserve("r1", 2, T0 + 10, "a")
    s.reserve("r2", 1, T0 + 15, "b")
    s.reserve("r1", 2, T0 + 50, "a")
    assert [r.reservation_id for r in s.expire(T0 + 20)] == ["r2"]
    assert list(s.reservations) == ["r1"]
    assert s.next_expiry() == T0 + 50
    assert [r.reservation_id for r in s.expire(T0 + 50)] == ["r1"]
    assert s.reserved == 0


def test_a_released_then_re_made_reservation_expires_once_at_its_new_deadline():
    s = ledger(10)
    s.reserve("r1", 2, T0 + 10, "a")
    s.release("r1")
    s.reserve("r1", 3, T0 + 40, "a")
    assert s.expire(T0 + 10) == []
    assert s.reserved == 3
    out = s.expire(T0 + 40)
    assert out == [Reservation("r1", 3, T0 + 40, "a")]
    assert s.reserved == 0
    assert s.expire(T0 + 1000) == []


def test_a_ledger_rebuilt_with_reservations_recomputes_reserved_and_the_heap():
    rs = {"a": Reservation("a", 2, T0 + 30, "x"), "b": Reservation("b", 5, T0 + 10, "y")}
    s = StockLedger("tee-s", on_hand=10, reservations=rs)
    assert s.reserved == 7
    assert s.next_expiry() == T0 + 10
    assert [r.reservation_id for r in s.expire(T0 + 10)] == ["b"]
    assert s.reserved == 2


# -- admin stock changes -------------------------------------------------------------------

def test_set_on_hand_replaces_the_count():
    s = ledger(10)
    s.reserve("r1", 3, T0, "a")
    s.set_on_hand(25)
    assert s.snapshot() == {"on_hand": 25, "reserved": 3, "available": 22, "sold": 0}
    s.set_on_hand(3)
    assert s.available == 0


def test_set_on_hand_below_reserved_is_refused():
    s = ledger(10)
    s.reserve("r1", 4, T0, "a")
    with pytest.raises(Conflict) as e:
        s.set_on_hand(3)
    assert e.value.code == "stock_below_reserved"
    assert e.value.details == [{"reserved": 4}]
    assert s.on_hand == 10


@pytest.mark.parametrize("value", [-1, MAX_ON_HAND + 1, 5.0, True, "5", None])
def test_set_on_hand_refuses_values_outside_0_to_a_billion(value):
    s = ledger(10)
    with pytest.raises(ValidationFailed) as e:
        s.set_on_hand(value)
    assert e.value.code == "invalid_stock"
    assert s.on_hand == 10


def test_set_on_hand_accepts_the_bounds():
    s = ledger(10)
    s.set_on_hand(MAX_ON_HAND)
    assert s.on_hand == MAX_ON_HAND
    s.set_on_hand(0)
    assert s.on_hand == 0


def test_adjust_adds_a_signed_delta():
    s = ledger(10)
    s.adjust(5)
    assert s.on_hand == 15
    s.adjust(-15)
    assert s.on_hand == 0


def test_adjust_cannot_take_on_hand_below_reserved_or_zero():
    s = ledger(10)
    s.reserve("r1", 4, T0, "a")
    with pytest.raises(Conflict) as e:
        s.adjust(-7)
    assert e.value.code == "stock_below_reserved"
    s.release("r1")
    with pytest.raises(ValidationFailed) as e:
        s.adjust(-11)
    assert e.value.code == "invalid_stock"
    assert s.on_hand == 10


@pytest.mark.parametrize("delta", [1.0, True, "1", None])
def test_adjust_refuses_a_non_integer_delta(delta):
    s = ledger(10)
    with pytest.raises(ValidationFailed) as e:
        s.adjust(delta)
    assert e.value.code == "invalid_stock"
    assert s.on_hand == 10


# -- property: any sequence of operations keeps the ledger consistent -----------------------

#: One operation: (kind, reservation id, quantity, time offset, stock delta/level); each kind
#: reads the fields it needs. Reserves are weighted up and times kept in a narrow range so
#: that renewals, re-reservations and expiries interleave often (where the lazy heap can go
#: wrong).
OPS = st.tuples(
    st.sampled_from(["reserve"] * 4 + ["release", "commit", "expire", "expire", "adjust", "set"]),
    st.sampled_from(["r1", "r2", "r3"]),
    st.integers(-1, 8),
    st.integers(0, 30),
    st.integers(-15, 30),
)


@settings(max_examples=500, deadline=None, database=None)
@given(initial=st.integers(0, 40), ops=st.lists(OPS, max_size=50))
def test_any_sequence_of_operations_keeps_the_ledger_consistent(initial, ops):
    s = ledger(initial)
    adjustments = 0
    for op in ops:
        before = state(s)
        on_hand_before = s.on_hand
        kind, rid, qty, at, n = op
        try:
            if kind == "reserve":
                s.reserve(rid, qty, T0 + at, "cart")
                assert s.reservations[rid].quantity == qty  # a resize, never a second count
                assert s.reservations[rid].expires_at >= T0 + at
            elif kind == "release":
                s.release(rid)
            elif kind == "commit":
                s.commit(rid)
            elif kind == "expire":
                expired = s.expire(T0 + at)
                assert all(r.expires_at <= T0 + at for r in expired)
                assert all(r.expires_at > T0 + at for r in s.reservations.values())
            elif kind == "adjust":
                s.adjust(n // 2)
                adjustments += s.on_hand - on_hand_before
            else:
                s.set_on_hand(n)
                adjustments += s.on_hand - on_hand_before
        except DomainError:
            assert state(s) == before, f"{op} failed but changed the ledger"
        assert 0 <= s.reserved <= s.on_hand
        assert s.available >= 0
        assert s.reserved == sum(r.quantity for r in s.reservations.values())
        assert s.on_hand + s.sold == initial + adjustments
        expected_next = min((r.expires_at for r in s.reservations.values()), default=None)
        assert copy.deepcopy(s).next_expiry() == expected_next


def test_a_committed_reservation_is_sold_once_however_often_it_is_reserved_or_committed_again(
        ) -> None:
    ledger = StockLedger("v", on_hand=5)
    ledger.reserve("r1", 2, expires_at=100.0, owner="c1")
    ledger.commit("r1", now=50.0)
    again = ledger.reserve("r1", 2, expires_at=700.0, owner="c1")  # a retried checkout
    assert again.committed and again.quantity == 2
    assert ledger.commit("r1", now=60.0).committed
    assert ledger.snapshot() == {"on_hand": 3, "reserved": 0, "available": 3, "sold": 2}
    assert ledger.release("r1") is None  # a compensation cannot give sold units back


def test_committed_ids_are_forgotten_after_their_memory_runs_out() -> None:
    from engine.stock import COMMITTED_MEMORY

    ledger = StockLedger("v", on_hand=5)
    for i, at in enumerate((10.0, 20.0)):
        ledger.reserve(f"r{i}", 1, expires_at=at + 600, owner="c")
        ledger.commit(f"r{i}", now=at)
    assert ledger.forget_committed(10.0 + COMMITTED_MEMORY) == ["r0"]
    assert list(ledger.committed) == ["r1"]
    with pytest.raises(NotFound):
        ledger.commit("r0")
