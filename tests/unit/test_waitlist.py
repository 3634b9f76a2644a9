"""engine.waitlist: first come, first served offers of returned units."""

from __future__ import annotations

import pytest

from engine.errors import Conflict, NotFound
from engine.waitlist import CLAIMED, LAPSED, OFFERED, WAITING, Waitlist

T0 = 1_800_000_000.0


def line_of(*wants: int) -> Waitlist:
    w = Waitlist("v", {})
    for i, q in enumerate(wants):
        w.join(f"c{i}", q, T0 + i)
    return w


def test_units_are_offered_in_queue_order_each_at_most_what_it_asked():
    w = line_of(2, 1, 3)
    plan = w.plan_offers(4)
    assert [(e.customer, n) for e, n in plan] == [("c0", 2), ("c1", 1), ("c2", 1)]


def test_an_offered_entry_is_not_offered_again_and_keeps_its_place():
    w = line_of(1, 1)
    e, n = w.plan_offers(1)[0]
    w.offer(e, n, T0 + 300)
    assert [(x.customer, k) for x, k in w.plan_offers(5)] == [("c1", 1)]
    assert w.position("c0") == 1 and w.position("c1") == 2


def test_a_lapsed_offer_leaves_the_line_and_the_next_is_first():
    w = line_of(1, 1)
    w.offer(w.entries["c0"], 1, T0 + 300)
    assert w.lapsed(T0 + 299) == []
    assert [e.customer for e in w.lapsed(T0 + 300)] == ["c0"]
    assert w.entries["c0"].state == LAPSED and w.position("c1") == 1
    assert [(e.customer, n) for e, n in w.plan_offers(1)] == [("c1", 1)]


def test_a_claim_needs_a_live_offer():
    w = line_of(1)
    with pytest.raises(NotFound):
        w.claim("c0", T0)
    w.offer(w.entries["c0"], 1, T0 + 300)
    with pytest.raises(NotFound):
        w.claim("c0", T0 + 300)
    assert w.claim("c0", T0 + 10).state == CLAIMED and w.position("c0") is None


def test_joining_again_while_waiting_changes_the_quantity_not_the_place():
    w = line_of(1, 1)
    e = w.join("c0", 3, T0 + 50)
    assert (e.quantity, e.seq, e.state, w.position("c0")) == (3, 1, WAITING, 1)
    w.offer(e, 3, T0 + 300)
    with pytest.raises(Conflict):
        w.join("c0", 1, T0 + 60)
    assert e.state == OFFERED


def test_leaving_needs_an_entry():
    w = line_of(1)
    assert w.leave("c0").customer == "c0"
    with pytest.raises(NotFound):
        w.leave("c0")
