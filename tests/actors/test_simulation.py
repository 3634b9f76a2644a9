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
    real = InventoryActor.reserve

    async def conjuring(self: InventoryActor, reservation_id: str, quantity: int, ttl: float,
                        owner: str) -> dict[str, Any]:
        if self.ledger.available < quantity:  # the bug: make stock up instead of refusing
            self.ledger.on_hand += quantity
        return await real(self, reservation_id, quantity, ttl, owner)

    monkeypatch.setattr(InventoryActor, "reserve", conjuring)
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
