"""`cart-engine loadtest` (loadtest.remote) against the gateway served over a real socket by
uvicorn in this event loop, over an in-process engine (no Ray)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from actors.service import CartService
from gateway.app import create_app
from gateway.auth import issue_token
from gateway.settings import GatewaySettings
from loadtest.remote import LoadConfig, LoadTestError, run_loadtest, verdict
from loadtest.report import render_html
from tests.actors.harness import make_inventory_oversell
from tests.integration.inprocess import SECRET

pytestmark = pytest.mark.integration
ADMIN = issue_token(SECRET, "ops", "admin")


@pytest.fixture
async def url() -> AsyncIterator[str]:
    service = await CartService.in_process()
    app = create_app(GatewaySettings(auth_secret=SECRET), service)
    app.state.service = service
    # A socket listening before uvicorn starts: clients can connect at once (the backlog
    # holds them), so nothing waits for the server to come up.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning",
                                           access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await task
    await service.close()


def config(url: str, **kw: Any) -> LoadConfig:
    base: dict[str, Any] = {"url": url, "admin_token": ADMIN, "duration": 1.5,
                            "connections": 8, "units": 20, "buyers": 60, "carts": 30}
    return LoadConfig(**{**base, **kw})


async def test_every_scenario_runs_and_the_invariants_hold(url: str) -> None:
    result = await run_loadtest(config(url))
    assert result["verdict"] == {"passed": True, "failures": []}, result["findings"]
    flash = result["figures"]["flash"]
    # refused at checkout, or at add once the stock ran out (stock on add)
    assert flash["paid"] == 20 and flash["refused"] + flash.get("refused at add", 0) == 40
    storm = result["figures"]["storm"]
    assert storm["paid"] + storm["refused"] == 30 and storm["second key"] == storm["paid"]
    assert result["checks"]["orders verified"] == 20 + storm["paid"]
    assert result["checks"]["carts verified"] == result["figures"]["churn"]["carts"] > 0
    assert result["figures"]["read"]["mismatched_reads"] == 0
    routes = {r["route"]: r for r in result["routes"]}
    assert routes["flash POST /v1/carts/{id}/checkout"]["requests"] == \
        60 - flash.get("refused at add", 0)
    assert routes["read GET /v1/carts/{id}"]["p99_ms"] > 0
    assert [p["scenario"] for p in result["phases"]] == ["flash", "churn", "read", "storm"]
    assert "admin_token" not in result["config"]
    # non-destructive: every variant the run made has no stock left to sell
    async with _client(url) as http:
        for vid in (f"{result['prefix']}-flash-v0", f"{result['prefix']}-churn-v3"):
            stock = (await http.post(f"/v1/admin/stock/{vid}", json={"delta": 0})).json()
            assert stock["available"] == 0
    page = render_html(result)
    assert "PASSED" in page and page.count("data:image/png;base64,") == 2
    assert "flash POST /v1/carts/{id}/checkout" in page


async def test_open_loop_pacing_holds_the_offered_rate(url: str) -> None:
    result = await run_loadtest(config(url, scenarios=("read",), rate=80.0, duration=2.0,
                                       carts=10))
    reads = next(r for r in result["routes"] if r["route"] == "read GET /v1/carts/{id}")
    # 80 requests/s for 2 s, scheduled: about 160, never the hundreds a closed loop makes
    assert 140 <= reads["requests"] <= 170
    assert result["verdict"]["passed"]


async def test_given_variants_are_judged_from_their_stock_at_the_start(url: str) -> None:
    async with _client(url) as http:
        r = await http.put("/v1/admin/products/real-tee", json={
            "name": "Real Tee", "price": {"amount": 2000, "currency": "USD"},
            "variants": [{"variant_id": "real-tee-m", "sku": "RT-M", "stock": 7}]})
        assert r.status_code == 200
        await http.post("/v1/admin/stock/real-tee-m", json={"delta": 0})
    result = await run_loadtest(config(url, scenarios=("flash",), variants=("real-tee-m",),
                                       buyers=15))
    assert result["verdict"]["passed"], result["findings"]
    assert result["figures"]["flash"]["paid"] == 7
    assert result["cleanup"] == []  # nothing was created, nothing is zeroed


async def test_a_server_that_oversells_fails_the_verdict(url: str,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    make_inventory_oversell(monkeypatch)
    result = await run_loadtest(config(url, scenarios=("flash",), units=5, buyers=12))
    assert not result["verdict"]["passed"]
    assert result["findings"]["oversold"] and result["findings"]["ledger gap"]
    assert any(f.startswith("oversold: 1 (") for f in result["verdict"]["failures"])


async def test_an_unreachable_target_is_a_setup_error() -> None:
    with pytest.raises(LoadTestError, match="healthz"):
        await run_loadtest(config("http://127.0.0.1:9", scenarios=("read",)))


def test_the_verdict_fails_on_each_finding_and_on_too_many_errors() -> None:
    clean = {"findings": {"oversold": [], "ledger gap": [], "duplicate orders": [],
                          "lost acknowledged writes": []},
             "error_rate": 0.0, "errors": 0, "requests": 100}
    assert verdict(clean, 0.01) == {"passed": True, "failures": []}
    lost = {**clean, "findings": {**clean["findings"],
                                  "lost acknowledged writes": ["cart c1: a", "cart c2: b"]}}
    assert verdict(lost, 0.01)["failures"] == ["lost acknowledged writes: 2 (cart c1: a ...)"]
    noisy = {**clean, "error_rate": 0.05, "errors": 5}
    assert verdict(noisy, 0.01)["failures"][0].startswith("error rate 5.00% over 1.00%")


def _client(url: str) -> Any:
    import httpx

    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"})
