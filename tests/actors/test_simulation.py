"""The flash-sale simulator (`actors.simulation`) and `cart-engine simulate`: in process,
manual clock, memory store."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from actors.inventory import InventoryActor
from actors.simulation import Scenario, arrival_times, load_scenario, simulate
from gateway.cli import main
from tests.actors.harness import make_inventory_oversell

pytestmark = pytest.mark.actors
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flash-sale.toml"


def sale(**kw: Any) -> Scenario:
    base: dict[str, Any] = {"units": 50, "buyers": 400, "duration": 120.0, "think_time": 5.0,
                            "abandon_share": 0.0, "payment_failure_share": 0.0,
                            "price": 6000, "cart_ttl": 600.0, "reservation_ttl": 300.0}
    return Scenario(**{**base, **kw})


async def test_a_sale_with_more_buyers_than_units_sells_every_unit_and_no_more() -> None:
    r = await simulate(sale())
    assert r.ok, r.problems
    rep = r.report
    assert rep["sold"] == 50 and rep["paid_orders"] == 50 and rep["oversold"] == 0
    assert rep["unsold"] == 0
    assert rep["refused"] == 350  # at checkout, or at add once stock ran out (stock on add)
    assert rep["refused_at_add"] + rep["refused_at_checkout"] == 350
    # 6000 minor units each, free shipping over 5000 (EngineSettings), no tax
    assert rep["revenue"] == {"USD": 50 * 6000}
    assert rep["sold_out_at"] is not None and 0 < rep["sold_out_at"] <= 130
    assert r.samples[-1]["sold"] == 50 and r.samples[-1]["reserved"] == 0
    # every buyer whose add was taken checked out; the others were refused at add
    assert r.latency["checkout"]["count"] == 400 - rep["refused_at_add"]


async def test_holds_of_buyers_who_all_abandon_expire_and_the_stock_comes_back() -> None:
    r = await simulate(sale(hold_ttl=60.0, abandon_share=1.0))
    assert r.ok, r.problems
    rep = r.report
    assert rep["sold"] == 0 and rep["unsold"] == 50 and rep["sold_out_at"] is None
    # every hold lapsed: the inventory counted each expiry
    assert rep["holds_taken"] == rep["holds_expired"] == rep["abandoned"] == \
        rep["abandoned_holding"]
    # while every unit was held, later buyers were refused at add; once holds lapsed, more
    # buyers got one: at least the first 50 held, and no more than the units at a time
    assert rep["holds_taken"] >= 50
    assert rep["refused_at_add"] == 400 - rep["holds_taken"]
    assert max(s["reserved"] for s in r.samples) <= 50
    assert rep["abandonment"] == 1.0


async def test_a_buyer_who_thinks_past_the_hold_loses_it_and_checks_out_afresh() -> None:
    r = await simulate(sale(hold_ttl=10.0, think_time=1000.0, units=5, buyers=5,
                            cart_ttl=10**6))
    assert r.ok, r.problems
    rep = r.report
    # nobody abandons, yet holds lapse while buyers think; their checkouts reserve again
    assert rep["abandoned_holding"] == 0 and rep["holds_expired"] >= 4
    assert rep["sold"] == 5


async def test_a_buyer_who_thinks_past_the_cart_expiry_finds_it_expired() -> None:
    r = await simulate(sale(think_time=1000.0, cart_ttl=60.0, units=5, buyers=5))
    assert r.ok, r.problems
    rep = r.report
    assert rep["cart_expired"] >= 4 and rep["errors"] == {"cart_not_active": rep["cart_expired"]}
    assert rep["sold"] == 5 - rep["cart_expired"] and rep["other_errors"] == 0


async def test_declined_cards_sell_nothing_and_give_every_reservation_back() -> None:
    r = await simulate(sale(payment_failure_share=1.0, buyers=60))
    assert r.ok, r.problems
    assert r.report["sold"] == 0 and r.report["payment_failed"] == 60
    assert r.report["errors"] == {"payment_declined": 60}


async def test_the_same_seed_gives_the_same_sale() -> None:
    a = await simulate(sale(abandon_share=0.3, payment_failure_share=0.1, hold_ttl=30.0))
    b = await simulate(sale(abandon_share=0.3, payment_failure_share=0.1, hold_ttl=30.0))
    skip = {"wall_seconds", "buyers_per_wall_second"}
    assert {k: v for k, v in a.report.items() if k not in skip} == \
        {k: v for k, v in b.report.items() if k not in skip}


async def test_an_inventory_that_sells_stock_it_does_not_have_is_reported_oversold(
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_inventory_oversell(monkeypatch)
    r = await simulate(sale(buyers=80))
    assert not r.ok
    # Buyers refused at add (stock on add reads the honest count) never reach the bug; the
    # ones who checked out after the sell-out each conjured a unit.
    oversold = r.report["oversold"]
    assert oversold >= 1 and r.report["sold"] == 50 + oversold
    assert any(p.startswith(f"oversold {oversold} unit(s)") for p in r.problems)
    assert any(p.startswith("units lost") for p in r.problems)


def test_poisson_arrivals_are_exactly_the_buyers_within_the_window() -> None:
    ts = arrival_times(sale(buyers=1000, duration=60.0), random.Random(3))
    assert len(ts) == 1000 and ts == sorted(ts) and 0 <= ts[0] and ts[-1] <= 60.0


def test_curve_arrivals_follow_the_curve() -> None:
    s = sale(buyers=4000, arrival="curve",
             rate_curve=[(0, 0), (100, 0), (100.5, 10), (200, 10), (200.5, 30), (300, 30)])
    ts = arrival_times(s, random.Random(5))
    assert len(ts) == 4000 and min(ts) >= 99.0
    late = sum(1 for t in ts if t >= 200.5)
    mid = sum(1 for t in ts if 100.5 <= t < 200)
    assert 2.5 < late / mid < 3.5  # three times the rate over the same length


def test_bad_scenarios_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="abandon_share"):
        Scenario(abandon_share=1.5)
    with pytest.raises(ValidationError, match="byers"):
        Scenario.model_validate({"byers": 10})
    with pytest.raises(ValidationError, match="rate_curve"):
        Scenario(arrival="curve")
    with pytest.raises(ValidationError, match="increasing"):
        Scenario(arrival="curve", rate_curve=[(10, 1), (5, 1)])


def test_the_example_scenario_loads_and_flags_override_it() -> None:
    s = load_scenario(EXAMPLE, buyers=123, hold_ttl=None)
    assert s.buyers == 123 and s.arrival == "curve" and s.hold_ttl == 300.0


def test_cli_simulate_writes_the_result_and_charts(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--scenario", str(EXAMPLE), "--buyers", "300", "--units", "40",
                 "--out", str(tmp_path), "--quiet"])
    assert code == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["ok"] is True and result["report"]["sold"] == 40
    assert result["scenario"]["buyers"] == 300
    for png in ("timeline.png", "latency.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "nothing oversold, nothing lost" in out


def test_cli_simulate_exits_1_when_units_are_oversold(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = InventoryActor.reserve

    async def conjuring(self: InventoryActor, reservation_id: str, quantity: int, ttl: float,
                        owner: str) -> dict[str, Any]:
        self.ledger.on_hand += quantity
        return await real(self, reservation_id, quantity, ttl, owner)

    monkeypatch.setattr(InventoryActor, "reserve", conjuring)
    code = main(["simulate", "--units", "5", "--buyers", "20", "--abandon-share", "0",
                 "--payment-failure-share", "0", "--duration", "30",
                 "--out", str(tmp_path), "--no-charts", "--quiet"])
    assert code == 1
    assert json.loads((tmp_path / "result.json").read_text())["ok"] is False


def test_cli_simulate_answers_2_for_a_bad_scenario(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--abandon-share", "2", "--out", str(tmp_path)]) == 2
    assert "abandon_share" in capsys.readouterr().err
    assert not (tmp_path / "result.json").exists()


# -- purchase limits and the waitlist (issue 10 rules in the simulator) -------------------


async def test_a_purchase_limit_holds_for_buyers_who_ask_beyond_it_and_come_back() -> None:
    r = await simulate(sale(units=300, buyers=150, purchase_limit=2, over_limit_share=0.5,
                            over_limit_units=5))
    assert r.ok, r.problems
    rep = r.report
    greedy = rep["over_limit_buyers"]
    assert 40 < greedy < 110
    # each over-limit buyer is refused once asking for 5, buys 2, comes back and is refused
    # again: the limit counts the paid order
    assert rep["came_back"] == greedy
    assert rep["refused_by_limit"] == 2 * greedy
    assert rep["errors"] == {"purchase_limit_exceeded": 2 * greedy}
    assert rep["sold"] == 2 * greedy + (150 - greedy)
    assert rep["max_units_per_customer"] == 2 and rep["paid_orders"] == 150


async def test_a_limit_the_engine_does_not_enforce_is_reported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import actors.cart
    import actors.purchase_limits

    def lenient(*_: Any, **__: Any) -> None:  # the bug: every limit check passes
        return None

    monkeypatch.setattr(actors.cart, "check_purchase_limit", lenient)
    monkeypatch.setattr(actors.purchase_limits, "check_purchase_limit", lenient)
    r = await simulate(sale(units=300, buyers=60, purchase_limit=2, over_limit_share=0.5))
    assert not r.ok
    assert r.report["max_units_per_customer"] > 2
    assert any("told of paid orders above the purchase limit of 2" in p for p in r.problems)
    assert any("in the engine" in p for p in r.problems)


async def test_units_that_come_back_are_offered_to_the_waitlist_and_taken() -> None:
    r = await simulate(sale(units=20, buyers=200, think_time=20.0, abandon_share=0.3,
                            hold_ttl=30.0, payment_failure_share=0.2, waitlist_share=1.0,
                            offer_take_share=1.0, offer_ttl=60.0, offer_response=10.0))
    assert r.ok, r.problems
    rep = r.report
    # every buyer refused at sell-out joined; lapsed holds and declined cards gave units
    # back, which went to the line first
    assert rep["waitlist_joined"] == rep["refused_at_add"] + rep["refused_at_checkout"] > 100
    assert rep["offers_made"] >= 1 and rep["offers_taken"] >= 1
    assert rep["offers_taken"] + rep["offers_lapsed"] == rep["offers_made"]
    assert rep["waitlist_waiting_at_end"] == rep["waitlist_joined"] - rep["offers_made"]
    assert rep["sold"] == 20 and rep["paid_orders"] == 20
    # the takers' paid orders are counted with the rest; nothing is still on offer
    assert r.samples[-1]["reserved"] == 0


async def test_offers_nobody_takes_lapse_down_the_line_and_the_units_stay_unsold() -> None:
    r = await simulate(sale(units=10, buyers=60, think_time=20.0, abandon_share=0.5,
                            hold_ttl=30.0, waitlist_share=1.0, offer_take_share=0.0,
                            offer_ttl=30.0))
    assert r.ok, r.problems
    rep = r.report
    assert rep["offers_taken"] == 0 and rep["offers_made"] == rep["offers_lapsed"] >= 1
    # each lapsed offer went to the next in line until the line was done or units ran out
    assert rep["sold"] + rep["unsold"] == 10 and rep["unsold"] >= 1
    assert rep["sold"] == rep["paid_orders"]


def test_limit_and_waitlist_fields_are_checked() -> None:
    with pytest.raises(ValidationError, match="purchase_limit"):
        Scenario(over_limit_share=0.2)
    with pytest.raises(ValidationError, match="above purchase_limit"):
        Scenario(purchase_limit=1, quantity=2)
    with pytest.raises(ValidationError, match="over_limit_units"):
        Scenario(purchase_limit=2, over_limit_units=2)
    with pytest.raises(ValidationError, match="shards"):
        Scenario(waitlist_share=0.5, shards=4)
    assert Scenario(purchase_limit=3).asks_over_limit == 4


def test_cli_simulate_takes_limit_and_waitlist_flags(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--units", "10", "--buyers", "80", "--duration", "30",
                 "--purchase-limit", "1", "--over-limit-share", "0.3",
                 "--payment-failure-share", "0.3", "--waitlist-share", "0.8",
                 "--offer-take-share", "0.5", "--offer-ttl", "40",
                 "--out", str(tmp_path), "--no-charts", "--quiet"])
    assert code == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["scenario"]["purchase_limit"] == 1
    assert result["scenario"]["waitlist_share"] == 0.8
    assert result["report"]["max_units_per_customer"] == 1
    out = capsys.readouterr().out
    assert "purchase limit" in out and "offers made / taken / lapsed" in out


def test_the_limits_example_loads_with_a_limit_and_a_waitlist() -> None:
    s = load_scenario(EXAMPLE.with_name("flash-sale-limits.toml"))
    assert s.purchase_limit == 2 and s.asks_over_limit == 4
    assert 0 < s.waitlist_share < 1 and s.shards == 1


async def test_the_same_seed_gives_the_same_sale_with_limits_and_a_waitlist() -> None:
    kw: dict[str, Any] = {"units": 20, "buyers": 200, "think_time": 20.0, "abandon_share": 0.3,
                          "hold_ttl": 30.0, "payment_failure_share": 0.2, "purchase_limit": 2,
                          "over_limit_share": 0.2, "waitlist_share": 0.7,
                          "offer_take_share": 0.5, "offer_ttl": 60.0, "offer_response": 20.0}
    a, b = await simulate(sale(**kw)), await simulate(sale(**kw))
    assert a.ok, a.problems
    skip = {"wall_seconds", "buyers_per_wall_second"}
    assert {k: v for k, v in a.report.items() if k not in skip} == \
        {k: v for k, v in b.report.items() if k not in skip}
    assert a.report["offers_made"] >= 1 and a.report["refused_by_limit"] >= 1
