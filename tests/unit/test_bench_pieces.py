"""The comparative bench's pure pieces: operation mixes, cart shapes, counters read from the
engine's /metrics, ratios and the summary, the command line, the raw ceiling's answer and the
strongest peer's token cache and cart rendering."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import jwt
import orjson
import pytest

from gateway.metrics import Metrics
from loadtest.bench import (
    DEFAULT_SYSTEMS,
    SYSTEMS,
    RunContext,
    add_ratios,
    engine_counters,
    otlp_figures,
    parse_args,
    summarize,
    tracing_overhead,
)
from loadtest.client import Reply
from loadtest.otlp_sink import OtlpSink, tracing_env
from loadtest.peers import raw_asgi
from loadtest.peers.domain import ApiError
from loadtest.peers.lua_peer import TokenCache, render_cart
from loadtest.scenarios import (
    ADD_VIEW_MIX,
    EDIT_MIX,
    MAX_CHURN_UNITS,
    GuestCart,
    Item,
    ScenarioError,
    ShopperCart,
    cart_items,
    churn_step,
    pick,
)

pytestmark = pytest.mark.unit
SECRET = "unit-test-secret-of-at-least-32-bytes"


def test_a_mix_sends_each_operation_in_its_share() -> None:
    draws = [i / 1000 for i in range(1000)]
    assert Counter(pick(ADD_VIEW_MIX, d) for d in draws) == {"add": 600, "view": 400}
    assert Counter(pick(EDIT_MIX, d) for d in draws) == {
        "add": 350, "patch": 150, "delete": 100, "view": 400}


def test_each_prepared_cart_holds_distinct_variants_and_carts_differ() -> None:
    items = [Item(f"p{i}", f"p{i}-v") for i in range(60)]
    first, second = cart_items(items, 0, 50), cart_items(items, 1, 50)
    assert len({i.variant_id for i in first}) == 50
    assert first != second
    with pytest.raises(ScenarioError, match="61 lines per cart need 61 variants"):
        cart_items(items, 0, 61)


def test_engine_counters_sum_the_hosts_of_a_real_metrics_page() -> None:
    metrics = Metrics()
    metrics.engine.hosts = [
        {"host": 0, "actors": 5, "turns": 120, "writes": 40, "flushes": 9},
        {"host": 1, "actors": 2, "turns": 30, "writes": 11, "flushes": 4},
    ]
    found = engine_counters(metrics.render().decode())
    assert found == {"engine_turns": 150.0, "engine_writes": 51.0, "engine_flushes": 13.0}


def rows() -> list[dict[str, Any]]:
    return [
        {"system": "engine", "scenario": "churn", "requests_per_s": 3000.0, "p99_ms": 20.0},
        {"system": "engine", "scenario": "flash", "requests_per_s": 1500.0,
         "buyers_per_s": 600.0, "per_buyer": {"engine_turns": 6.0}},
        {"system": "lua-peer", "scenario": "churn", "requests_per_s": 2000.0},
        {"system": "lua-peer", "scenario": "flash", "requests_per_s": 1200.0,
         "buyers_per_s": 400.0},
        {"system": "raw-asgi", "scenario": "ceiling", "requests_per_s": 30000.0},
        {"system": "engine", "scenario": "read", "failed": "boom"},
    ]


def test_ratios_are_to_the_strongest_peer_and_to_the_http_ceiling() -> None:
    table = rows()
    add_ratios(table)
    engine_churn, engine_flash = table[0], table[1]
    assert engine_churn["vs_lua-peer"] == 1.5 and engine_churn["vs_raw-asgi"] == 0.1
    assert engine_flash["vs_lua-peer"] == 1.5  # buyers/s, not requests/s
    assert engine_flash["vs_raw-asgi"] == 0.05
    assert table[4]["vs_raw-asgi"] == 1.0 and table[4]["vs_lua-peer"] is None
    assert "vs_lua-peer" not in table[5]


def test_the_summary_keeps_per_system_cpu_and_figures() -> None:
    table = rows()
    table[0]["server_cpu_ms_per_request"] = 0.42
    add_ratios(table)
    summary = summarize(table)
    assert summary["engine"]["churn"]["server_cpu_ms_per_request"] == 0.42
    assert summary["engine"]["churn"]["vs_lua-peer"] == 1.5
    assert summary["engine"]["flash"]["per_buyer"] == {"engine_turns": 6.0}
    assert summary["engine"]["read"] == {"failed": True}


def test_rounds_take_ratios_within_each_round_and_summarize_their_median() -> None:
    # Round 2 met a machine 2x slower for everybody: its ratios are the same as round 1's
    # within the round, while a ratio across rounds would be off by 2x.
    table = []
    for r, speed, engine_churn in ((1, 1.0, 3000.0), (2, 0.5, 1200.0), (3, 1.0, 2400.0)):
        for row in rows()[:5]:
            row = dict(row, round=r)
            for key in ("requests_per_s", "buyers_per_s"):
                if key in row:
                    row[key] *= speed
            if row["system"] == "engine" and row["scenario"] == "churn":
                row["requests_per_s"] = engine_churn
            table.append(row)
    table.append({"system": "engine", "scenario": "read", "failed": "boom", "round": 2})
    table.append({"system": "engine", "scenario": "read", "requests_per_s": 1.0, "round": 1})
    add_ratios(table)
    flash = [r for r in table if r["system"] == "engine" and r["scenario"] == "flash"]
    assert [r["vs_lua-peer"] for r in flash] == [1.5, 1.5, 1.5]
    assert [r["vs_raw-asgi"] for r in flash] == [0.05, 0.05, 0.05]
    summary = summarize(table)
    churn = summary["engine"]["churn"]
    assert churn["rounds"] == 3 and churn["vs_lua-peer_rounds"] == [1.5, 1.2, 1.2]
    assert churn["vs_lua-peer"] == 1.2 and churn["requests_per_s"] == 2400.0
    assert summary["engine"]["flash"]["per_buyer"] == {"engine_turns": 6.0}
    assert summary["engine"]["read"] == {"failed": True}  # one failed round fails the entry
    plan, _ = parse_args(["--rounds", "3"])
    assert plan.rounds == 3
    with pytest.raises(SystemExit):
        parse_args(["--rounds", "0"])


def test_the_command_line_defaults_to_realistic_carts_and_the_issue_sale() -> None:
    plan, args = parse_args([])
    assert plan.systems == ["engine", "engine-traced", "lua-peer", "raw-asgi"]
    assert (plan.carts, plan.lines, plan.buyers, plan.units) == (500, 6, 4000, 1000)
    assert "churn-big" not in plan.scenarios and args.placement is None
    plan, _ = parse_args(["--big-carts", "--scenarios", "churn"])
    assert plan.scenarios == ["churn", "churn-big"] and plan.big_lines == 50
    with pytest.raises(SystemExit):
        parse_args(["--lines", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--systems", "engine,nonesuch"])


def test_the_raw_ceiling_answers_any_request_with_its_fixed_body() -> None:
    assert 1100 <= len(raw_asgi.BODY) <= 1400
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": b'{"a":', "more_body": True},
                {"type": "http.request", "body": b"1}", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/carts/x/items"}
    asyncio.run(raw_asgi.app(scope, receive, send))
    assert messages == []  # the request body was read to its end
    assert sent[0]["status"] == 200 and sent[1]["body"] == raw_asgi.BODY
    assert orjson.loads(sent[1]["body"])["totals"]["total"]["amount"] == 4 * 2499


def test_a_verified_token_is_checked_once_and_still_expires(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = TokenCache(SECRET)
    token = cache.guest_token("cart_1", "guest_1")
    first = cache.caller(f"Bearer {token}")
    assert (first.sub, first.cart_id, first.admin) == ("guest_1", "cart_1", False)
    cache.caller(f"Bearer {token}")
    assert cache._verify.cache_info().hits == 1
    now = time.time()
    short = jwt.encode({"sub": "g", "exp": int(now) + 5}, SECRET, algorithm="HS256")
    assert cache.caller(f"Bearer {short}").sub == "g"
    monkeypatch.setattr(time, "time", lambda: now + 10)  # cached, and expired since
    with pytest.raises(ApiError) as refused:
        cache.caller(f"Bearer {short}")
    assert refused.value.status == 401 and cache._verify.cache_info().hits == 2
    forged = jwt.encode({"sub": "x"}, "another-secret-" * 3, algorithm="HS256")
    with pytest.raises(ApiError) as wrong:
        TokenCache(SECRET).caller(f"Bearer {forged}")
    assert wrong.value.code == "invalid_token"


def test_a_cart_hash_renders_as_the_api_cart_in_the_order_lines_were_added() -> None:
    def line(seq: int, variant: str, price: int) -> str:
        return orjson.dumps({"product_id": "p", "variant_id": variant, "name": "P",
                             "unit_price": price, "currency": "USD", "options": "{}",
                             "added_at": "t0", "seq": seq}).decode()

    fields = {"owner": "g", "status": "active", "currency": "USD", "version": "4",
              "created_at": "t0", "updated_at": "t1", "expires_at": "t9", "n": "2",
              "d:ln_b": line(2, "vb", 250), "q:ln_b": "3", "t:ln_b": "t1",
              "d:ln_a": line(1, "va", 1000), "q:ln_a": "1", "t:ln_a": "t0"}
    cart = render_cart("cart_1", fields)
    assert [li["line_id"] for li in cart["lines"]] == ["ln_a", "ln_b"]
    assert cart["lines"][1]["line_total"] == {"amount": 750, "currency": "USD"}
    assert cart["totals"]["total"] == {"amount": 1750, "currency": "USD"}
    assert cart["version"] == 4 and cart["lines"][0]["options"] == {}


class FakeShopper:
    """A virtual user whose server keeps one cart's lines: answers like the API, records."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.lines: dict[str, int] = {}

    async def call(self, method: str, path: str, *, json: Any = None, token: str | None = None,
                   headers: dict[str, str] | None = None) -> Reply:
        self.sent.append((method, path))
        if method == "POST":
            self.lines[json["variant_id"]] = self.lines.get(json["variant_id"], 0) + 1
        elif method == "PATCH":
            self.lines[path.rsplit("/ln_", 1)[1]] = json["quantity"]
        elif method == "DELETE":
            del self.lines[path.rsplit("/ln_", 1)[1]]
        body = {"lines": [{"line_id": f"ln_{v}", "variant_id": v, "quantity": q}
                          for v, q in self.lines.items()]}
        return Reply(200, body, {})


def test_churn_steps_keep_the_cart_near_its_size_and_its_lines_below_the_cap() -> None:
    vu = FakeShopper()
    shopper = ShopperCart(GuestCart("c1", "tok"), [Item("p", f"v{i}") for i in range(3)])
    rng = random.Random(7)

    def step(kind: str) -> str:
        return asyncio.run(churn_step(vu, shopper, kind, rng))  # type: ignore[arg-type]

    assert step("add") == "add" and step("delete") == "add"  # no delete while lines miss
    assert step("add") == "add" and set(vu.lines) == {"v0", "v1", "v2"}  # missing ones first
    assert shopper.line_ids == {f"v{i}": f"ln_v{i}" for i in range(3)}
    assert step("delete") == "delete" and len(vu.lines) == 2 and len(shopper.line_ids) == 2
    assert step("delete") == "add" and len(vu.lines) == 3  # the deleted line comes back first
    assert step("patch") == "patch" and step("view") == "view"
    assert vu.sent[-1] == ("GET", "/v1/carts/c1")
    shopper.units["v0"] = MAX_CHURN_UNITS
    shopper.items = [shopper.items[0]]
    assert step("add") == "patch" and vu.lines["v0"] == 1 and shopper.units["v0"] == 1


def test_the_engine_starts_on_its_own_defaults_unless_told_otherwise(tmp_path: Any) -> None:
    ctx = RunContext(catalog_path=tmp_path / "c.json", auth_secret=SECRET,
                     redis_url="redis://127.0.0.1:6379/15", hosts=None, ray_carts=16)
    command = SYSTEMS["engine"].command(8000, ctx)
    assert command[0].endswith("cart-engine") and command[1] == "serve"
    assert "--placement" not in command and "--hosts" not in command
    told = SYSTEMS["engine"].command(8000, replace(ctx, placement="local", hosts=2))
    assert told[told.index("--placement") + 1] == "local" and told[told.index("--hosts") + 1] == "2"
    assert "--placement" in SYSTEMS["engine-ray"].command(8000, ctx)
    peer = SYSTEMS["lua-peer"].command(8000, replace(ctx, workers=3))
    assert peer[peer.index("--workers") + 1] == "3"


# -- the traced engine (tracing overhead) ---------------------------------------------------


def test_the_traced_engine_is_the_engine_with_tracing_pointed_at_the_sink(tmp_path: Any) -> None:
    ctx = RunContext(catalog_path=tmp_path / "c.json", auth_secret=SECRET,
                     redis_url="redis://127.0.0.1:6379/15", hosts=None, ray_carts=16)
    traced, plain = SYSTEMS["engine-traced"], SYSTEMS["engine"]
    assert traced.traced and not plain.traced and traced.kind == "engine"
    assert traced.command(8000, ctx) == plain.command(8000, ctx)
    assert DEFAULT_SYSTEMS.index("engine-traced") == DEFAULT_SYSTEMS.index("engine") + 1
    env = tracing_env("http://127.0.0.1:4318")
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"


def test_the_sink_takes_the_sdk_exporters_batches_and_counts_their_spans() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    with OtlpSink(count_spans=True) as sink:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{sink.url}/v1/traces")))
        tracer = provider.get_tracer("bench-test")
        for i in range(1100):
            with tracer.start_as_current_span("turn cart.add", attributes={"i": i}):
                pass
        provider.shutdown()  # flushes what is left
        stats = sink.stats()
        # batches of at most 512 spans: three posts at least, every span received
        assert stats["spans"] == 1100 and stats["exports"] >= 3 and stats["bytes"] > 1100
        import httpx

        assert httpx.post(f"{sink.url}/v1/metrics", content=b"x").status_code == 404
        assert httpx.post(f"{sink.url}/v1/traces", content=b"\xff\xff").status_code == 400
        assert sink.stats() == stats


def test_what_the_traced_engine_exported_is_counted_per_scenario() -> None:
    before = {"exports": 3, "bytes": 10_000, "spans": 0}
    after = {"exports": 7, "bytes": 10_000 + 2048 * 100, "spans": 0}
    assert otlp_figures(before, after, 100) == {"exports": 4, "bytes": 204_800,
                                                "kb_per_request": 2.0}
    assert otlp_figures(None, after, 100) is None


def test_tracing_overhead_sets_the_traced_engine_against_the_untraced() -> None:
    rows: list[dict[str, Any]] = [
        {"system": "engine", "scenario": "churn", "requests_per_s": 2000.0,
         "server_cpu_ms_per_request": 0.8},
        {"system": "engine-traced", "scenario": "churn", "requests_per_s": 1500.0,
         "server_cpu_ms_per_request": 1.2, "otlp": {"exports": 9, "kb_per_request": 1.5}},
        {"system": "engine", "scenario": "flash", "requests_per_s": 900.0,
         "buyers_per_s": 300.0, "server_cpu_ms_per_request": 1.0},
        {"system": "engine-traced", "scenario": "flash", "requests_per_s": 800.0,
         "buyers_per_s": 240.0, "server_cpu_ms_per_request": 1.1},
        {"system": "engine-traced", "scenario": "read", "failed": "boom"},
        {"system": "lua-peer", "scenario": "churn", "requests_per_s": 3000.0,
         "server_cpu_ms_per_request": 0.5},
    ]
    churn, flash = tracing_overhead(rows)
    assert churn == {"scenario": "churn", "rate": 1500.0, "untraced_rate": 2000.0,
                     "rate_ratio": 0.75, "server_cpu_ms_per_request": 1.2,
                     "untraced_server_cpu_ms_per_request": 0.8, "cpu_ratio": 1.5,
                     "otlp": {"exports": 9, "kb_per_request": 1.5}}
    # a flash race is compared by buyers/s
    assert (flash["rate"], flash["rate_ratio"], flash["otlp"]) == (240.0, 0.8, None)
    assert tracing_overhead(rows[:1]) == []
