"""The bench's peers as real processes, driven by the bench's scenarios at toy sizes: the
strongest peer (lua-peer, two uvicorn workers, on Redis), the raw ASGI ceiling, and one short
run of ``python -m loadtest.bench`` itself on a private Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from loadtest.bench import (
    SYSTEMS,
    RunContext,
    ServerProcess,
    SystemSpec,
    main,
    peer_command,
)
from loadtest.client import run_async
from loadtest.peers import raw_asgi
from loadtest.scenarios import (
    EDIT_MIX,
    Target,
    cart_churn,
    catalog_items,
    flash_race,
    make_admin_token,
    make_catalog,
    request_mix,
)

pytestmark = pytest.mark.e2e
SECRET = "e2e-bench-secret-of-at-least-32-bytes"


def context(tmp_path: Path, redis_url: str, workers: int) -> RunContext:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(make_catalog(10, 2, stock=1000)))
    return RunContext(catalog_path=catalog, auth_secret=SECRET, redis_url=redis_url,
                      hosts=None, ray_carts=16, workers=workers)


def started(spec: SystemSpec, ctx: RunContext, log: Path) -> ServerProcess:
    server = ServerProcess(spec, ctx, log)
    server.start()
    try:
        asyncio.run(server.wait_ready(60))
    except Exception:
        server.stop(10)
        raise
    return server


@pytest.fixture
def lua_peer(tmp_path: Path, redis_url: str, prefix: str) -> Iterator[ServerProcess]:
    key_prefix = f"{prefix}:"
    spec = SystemSpec("lua-peer", peer_command("lua_peer", "--redis-url", "{redis_url}",
                                               "--key-prefix", key_prefix,
                                               "--workers", "{workers}"), uses_redis=True)
    server = started(spec, context(tmp_path, redis_url, workers=2), tmp_path / "peer.log")
    yield server
    server.stop(10)
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{key_prefix}*", count=1000):
        client.delete(key)
    client.close()


def target(server: ServerProcess, requests: int) -> Target:
    return Target(base_url=server.base_url, admin_token=make_admin_token(SECRET),
                  system=server.spec.name, connections=8, duration_s=60,
                  max_requests=requests, setup_s=60, server_cpu=server.cpu_seconds,
                  counters=server.counters)


def test_the_strongest_peer_churns_shared_carts_and_holds_a_flash_race(
        lua_peer: ServerProcess) -> None:
    items = catalog_items(make_catalog(10, 2, stock=1000))
    churn = run_async(cart_churn(target(lua_peer, 400), items, carts=20, lines=6))
    assert churn["error_count"] == 0 and churn["requests"] == 400
    assert churn["carts"] == 20 and churn["setup"]["requests"] == 20 * 7
    assert sum(churn["operations"].values()) == 400
    assert 0.45 < churn["operations"]["add"] / 400 < 0.75
    assert churn["server_cpu_ms_per_request"] > 0

    edit = run_async(cart_churn(target(lua_peer, 400), items, carts=20, lines=6,
                                mix=EDIT_MIX, scenario="churn-edit"))
    assert edit["error_count"] == 0 and edit["scenario"] == "churn-edit"
    assert edit["operations"]["patch"] > 0 and edit["operations"]["delete"] > 0

    sale = run_async(flash_race(target(lua_peer, 1000), buyers=60, units=20))
    assert sale["error_count"] == 0 and sale["untried"] == 0
    assert (sale["paid_orders"], sale["units_sold"], sale["refused"]) == (20, 20, 40)
    assert sale["oversold_units"] == 0 and sale["ledger_gap"] == 0 and sale["on_hand"] == 0
    # every buyer adds (one EVALSHA), refused once the units on hand are gone, and each of
    # the 20 who paid checked out (one more); the shared Redis may add more
    assert sale["per_buyer"]["redis_evalsha"] >= (60 + 20) / 60
    assert sale["per_buyer"]["redis_commands"] > sale["per_buyer"]["redis_evalsha"]
    assert 0 < sale["purchase_p50_ms"] <= sale["purchase_p99_ms"]
    assert sale["buyers_per_s"] > 0


def test_the_raw_ceiling_answers_the_churn_requests_alike(tmp_path: Path) -> None:
    ctx = context(tmp_path, "redis://127.0.0.1:1/0", workers=2)
    server = started(SYSTEMS["raw-asgi"], ctx, tmp_path / "raw.log")
    try:
        items = catalog_items(make_catalog(10, 2, stock=1))
        row = run_async(request_mix(target(server, 300), items))
    finally:
        server.stop(10)
    assert row["requests"] == 300 and row["error_count"] == 0
    assert row["body_bytes"] == len(raw_asgi.BODY)
    assert row["operations"]["add"] + row["operations"]["view"] == 300


def test_a_short_bench_run_writes_ratios_cpu_and_counts_per_buyer(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    status = main(["--systems", "lua-peer,raw-asgi", "--scenarios", "churn,flash",
                   "--duration", "2", "--carts", "20", "--buyers", "60", "--units", "20",
                   "--connections", "8", "--workers", "2", "--own-redis",
                   "--out", str(out)])
    assert status == 0
    document = json.loads(out.read_text())
    summary = document["summary"]
    churn, flash = summary["lua-peer"]["churn"], summary["lua-peer"]["flash"]
    ceiling = summary["raw-asgi"]["ceiling"]
    assert churn["vs_lua-peer"] == 1.0 and churn["error_count"] == 0
    assert churn["vs_raw-asgi"] == round(churn["requests_per_s"] / ceiling["requests_per_s"], 3)
    assert churn["server_cpu_ms_per_request"] > 0 and ceiling["requests_per_s"] > 0
    assert flash["paid_orders"] == 20 and flash["oversold_units"] == 0
    # a private Redis: the counts are the peer's alone. Every buyer adds, at least the 20
    # who paid check out (late buyers are refused at the add), and each worker's first call
    # of each of its 5 scripts may meet NOSCRIPT once and retry (2 workers: at most 10 more)
    assert (60 + 20) / 60 <= flash["per_buyer"]["redis_evalsha"] <= 2.0 + 2 * 5 / 60
    assert flash["server_cpu_ms_per_buyer"] > 0
    assert document["config"]["peer_workers"] == 2 and document["config"]["lines_per_cart"] == 6


def test_the_strongest_peer_refuses_what_the_contract_refuses(lua_peer: ServerProcess) -> None:
    with httpx.Client(base_url=lua_peer.base_url, timeout=10) as client:
        mine, theirs = client.post("/v1/carts").json(), client.post("/v1/carts").json()
        auth = {"Authorization": f"Bearer {mine['token']}"}
        items = f"/v1/carts/{mine['cart_id']}/items"
        assert client.get(f"/v1/carts/{theirs['cart_id']}", headers=auth).status_code == 404
        assert client.get(f"/v1/carts/{mine['cart_id']}").json()["error"]["code"] == \
            "unauthenticated"
        checkout = f"/v1/carts/{mine['cart_id']}/checkout"
        body = {"payment": {"token": "tok_ok"}}
        assert client.post(checkout, json=body, headers=auth).json()["error"]["code"] == \
            "cart_empty"
        line = {"product_id": "bench-p1", "variant_id": "bench-p1-v0", "quantity": 999}
        assert client.post(items, json=line, headers=auth).status_code == 200
        over = client.post(items, json=dict(line, quantity=1), headers=auth)
        assert over.status_code == 422 and over.json()["error"]["code"] == "invalid_quantity"
        wrong = client.post(items, json=dict(line, variant_id="bench-p2-v0"), headers=auth)
        assert wrong.json()["error"]["code"] == "variant_not_found"
        line_id = client.get(f"/v1/carts/{mine['cart_id']}", headers=auth).json()["lines"][0][
            "line_id"]
        patched = client.patch(f"{items}/{line_id}", json={"quantity": 2}, headers=auth).json()
        assert patched["lines"][0]["quantity"] == 2 and patched["totals"]["total"]["amount"] == \
            2 * 2499
        declined = client.post(checkout, json={"payment": {"token": "tok_declined"}},
                               headers=auth)
        assert declined.status_code == 402
        keyed = {**auth, "Idempotency-Key": "k-1"}
        first = client.post(checkout, json=body, headers=keyed)
        again = client.post(checkout, json=body, headers=keyed)
        assert first.status_code == again.status_code == 201 and first.json() == again.json()
        assert first.json()["totals"]["total"]["amount"] == 2 * 2499
        after = client.get(f"/v1/carts/{mine['cart_id']}", headers=auth).json()
        assert after["status"] == "checked_out"
        # 998 of the 1,000 units are left: an add beyond them is refused, as the engine does.
        other = client.post("/v1/carts").json()
        other_auth = {"Authorization": f"Bearer {other['token']}"}
        short = client.post(f"/v1/carts/{other['cart_id']}/items", json=line,
                            headers=other_auth)
        assert short.status_code == 409 and short.json()["error"]["code"] == "out_of_stock"
        fits = client.post(f"/v1/carts/{other['cart_id']}/items",
                           json=dict(line, quantity=998), headers=other_auth)
        assert fits.status_code == 200


def test_a_short_bench_run_sets_the_traced_engine_beside_the_engine(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    status = main(["--systems", "engine,engine-traced", "--scenarios", "churn",
                   "--duration", "2", "--requests", "300", "--carts", "20",
                   "--connections", "8", "--placement", "local", "--own-redis",
                   "--out", str(out)])
    assert status == 0
    document = json.loads(out.read_text())
    plain, traced = (document["summary"][name]["churn"] for name in ("engine", "engine-traced"))
    assert plain["requests_per_s"] > 0 and traced["requests_per_s"] > 0
    assert traced["server_cpu_ms_per_request"] > 0
    (overhead,) = document["tracing_overhead"]
    assert overhead["scenario"] == "churn"
    assert overhead["rate_ratio"] == round(traced["requests_per_s"] / plain["requests_per_s"], 3)
    assert overhead["cpu_ratio"] == round(traced["server_cpu_ms_per_request"]
                                          / plain["server_cpu_ms_per_request"], 3)
    # the exporter really sent the spans of the run's requests to the sink
    assert overhead["otlp"]["exports"] >= 1 and overhead["otlp"]["kb_per_request"] > 0
    row = next(r for r in document["results"] if r["system"] == "engine-traced")
    assert row["otlp"] == overhead["otlp"]
    assert (tmp_path / "logs" / "engine-traced-otlp-sink.log").exists()
