"""Operators' subcommands of ``cart-engine``: ``simulate`` (a sale in process) and
``loadtest`` (scenarios against a deployment, judged by invariants, with an HTML report).

``gateway.cli`` adds each parser here to its own and dispatches to ``run_*``; each answers
the process exit code: 0 when the run held, 1 when something was oversold or lost (or too
many requests failed), 2 on a bad scenario or a target that cannot be set up.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: flag -> (Scenario field, type); None values are not overrides.
_SIM_FLAGS: dict[str, tuple[str, Any, str]] = {
    "--units": ("units", int, "units on sale"),
    "--buyers": ("buyers", int, "buyers who come"),
    "--duration": ("duration", float, "arrival window, simulated seconds"),
    "--arrival": ("arrival", str, "poisson or curve"),
    "--quantity": ("quantity", int, "units each buyer wants"),
    "--abandon-share": ("abandon_share", float, "share of buyers who abandon (0..1)"),
    "--think-time": ("think_time", float, "mean seconds between add and decision"),
    "--payment-failure-share": ("payment_failure_share", float,
                                "share of checkouts whose card is declined (0..1)"),
    "--hold-ttl": ("hold_ttl", float, "hold stock on add for this many seconds"),
    "--shards": ("shards", int, "inventory shards of the sale item (hot SKU)"),
    "--price": ("price", int, "unit price, minor units"),
    "--currency": ("currency", str, "ISO 4217 code"),
    "--cart-ttl": ("cart_ttl", float, "seconds of inactivity before a cart expires"),
    "--reservation-ttl": ("reservation_ttl", float, "seconds a checkout reservation lives"),
    "--tick": ("tick", float, "simulated-time resolution, seconds"),
    "--sample-every": ("sample_every", float, "seconds between stock samples"),
    "--hosts": ("hosts", int, "in-process actor hosts"),
    "--seed": ("seed", int, "random seed"),
    "--purchase-limit": ("purchase_limit", int, "units per customer of the sale item"),
    "--over-limit-share": ("over_limit_share", float,
                           "share of buyers who first ask beyond the limit (0..1)"),
    "--over-limit-units": ("over_limit_units", int,
                           "units they ask for (default: the limit + 1)"),
    "--waitlist-share": ("waitlist_share", float,
                         "share of buyers refused at sell-out who join the waitlist (0..1)"),
    "--offer-ttl": ("offer_ttl", float, "seconds a waitlist offer holds its units"),
    "--offer-take-share": ("offer_take_share", float,
                           "share of offered buyers who take the offer (0..1)"),
    "--offer-response": ("offer_response", float,
                         "mean seconds before a buyer acts on an offer"),
}


def add_simulate_parser(sub: Any) -> None:
    p = sub.add_parser("simulate", help="simulate a flash sale in process (manual clock)",
                       description="Simulate a flash sale in process on the manual clock: "
                       "no servers. Flags override the scenario file.")
    p.add_argument("--scenario", help="TOML or JSON scenario file (examples/flash-sale.toml)")
    for flag, (dest, typ, text) in _SIM_FLAGS.items():
        p.add_argument(flag, dest=dest, type=typ, default=None, help=text)
    p.add_argument("--rate-curve", dest="rate_curve", default=None,
                   help="arrival curve 't:rate,t:rate,...' (seconds: relative rate); "
                        "implies --arrival curve")
    p.add_argument("--out", default="sim-results", help="directory for result.json and PNGs")
    p.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def _curve(text: str) -> list[tuple[float, float]]:
    try:
        return [(float(t), float(r)) for t, r in (pt.split(":") for pt in text.split(","))]
    except ValueError as e:
        raise ValueError(f"--rate-curve: expected 't:rate,t:rate,...', got {text!r}") from e


def run_simulate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table

    from actors.simulation import Scenario, load_scenario, simulate

    console = Console(stderr=False)
    err = Console(stderr=True)
    overrides = {dest: getattr(args, dest) for dest, _, _ in _SIM_FLAGS.values()}
    try:
        if args.rate_curve:
            overrides["rate_curve"] = _curve(args.rate_curve)
            overrides["arrival"] = overrides["arrival"] or "curve"
        if args.scenario:
            scenario = load_scenario(args.scenario, **overrides)
        else:
            scenario = Scenario.model_validate({k: v for k, v in overrides.items()
                                                if v is not None})
    except (ValidationError, ValueError, OSError) as e:
        err.print(f"cart-engine simulate: bad scenario: {e}")
        return 2

    from loadtest.client import run_async  # uvloop when installed: ~15% faster here

    if args.quiet:
        result = run_async(simulate(scenario))
    else:
        with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("buyers, t={task.fields[t]:.0f} s simulated"),
                      TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task("sale", total=scenario.buyers, t=0.0)
            result = run_async(simulate(
                scenario, lambda t, done: bar.update(task, completed=done, t=t)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result.to_json(), indent=2) + "\n",
                                     encoding="utf-8")
    written = [out / "result.json"]
    if not args.no_charts:
        from actors.simulation_charts import write_charts

        written += write_charts(result, out)

    r = result.report
    table = Table(title="Simulated flash sale", show_header=False)
    rows = [
        ("units on sale", f"{r['units']:,}"), ("buyers", f"{r['buyers']:,}"),
        ("sold", f"{r['sold']:,}"), ("refused (at add / at checkout)",
                                    f"{r['refused']:,} ({r['refused_at_add']:,} / "
                                    f"{r['refused_at_checkout']:,})"),
        ("oversold", f"{r['oversold']:,}"),
        ("time to sell out", "not sold out" if r["sold_out_at"] is None
         else f"{r['sold_out_at']:,.0f} s"),
        ("holds taken / expired", f"{r['holds_taken']:,} / {r['holds_expired']:,}"),
        ("payment failures", f"{r['payment_failed']:,}"),
        ("carts expired before checkout", f"{r['cart_expired']:,}"),
        ("abandonment", f"{r['abandoned']:,} ({r['abandonment']:.1%} of carts with the item)"),
        *((("purchase limit", f"{scenario.purchase_limit} per customer; "
             f"{r['refused_by_limit']:,} adds or checkouts refused by it "
             f"({r['over_limit_buyers']:,} buyers asked beyond it, {r['came_back']:,} came "
             f"back for more); most units one customer paid for: "
             f"{r['max_units_per_customer']}"),)
          if scenario.purchase_limit is not None else ()),
        *((("waitlist", f"{r['waitlist_joined']:,} joined; offers made / taken / lapsed "
             f"{r['offers_made']:,} / {r['offers_taken']:,} / {r['offers_lapsed']:,}; "
             f"{r['waitlist_waiting_at_end']:,} still waiting at the end"),)
          if scenario.waitlist_share else ()),
        ("revenue", ", ".join(f"{v:,} {k} minor units" for k, v in r["revenue"].items())
         or "0"),
        ("simulated / wall time", f"{r['simulated_seconds']:,.0f} s / "
                                  f"{r['wall_seconds']:,.1f} s"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    lat = Table(title="Latency per operation (wall time in process, ms)")
    for col in ("operation", "count", "p50", "p99", "p99.9", "max"):
        lat.add_column(col, justify="left" if col == "operation" else "right")
    for kind, f in result.latency.items():
        lat.add_row(kind, f"{f['count']:,}", *(f"{f[k] / 1000:.2f}"
                                               for k in ("p50", "p99", "p99.9", "max")))
    console.print(lat)
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)
    if not result.ok:
        for problem in result.problems:
            err.print(f"[bold red]FAIL[/] {problem}")
        return 1
    console.print("[bold green]OK[/]: nothing oversold, nothing lost")
    return 0


def add_loadtest_parser(sub: Any) -> None:
    from loadtest.remote import SCENARIOS

    p = sub.add_parser("loadtest", help="load-test a deployment and judge its invariants",
                       description="Drive a running deployment with scenarios, judge its "
                       "invariants (oversold, ledger gap, duplicate orders, lost writes) and "
                       "write an HTML report. Non-destructive by default: products are made "
                       "under a run prefix and their stock is zeroed afterwards.")
    p.add_argument("url", help="base URL, e.g. http://127.0.0.1:8000")
    tok = p.add_mutually_exclusive_group()
    tok.add_argument("--admin-token", help="an admin JWT (cart-engine token --sub ops --admin)")
    tok.add_argument("--auth-secret", help="the server's HS256 secret: an admin token is made")
    p.add_argument("--scenario", dest="scenarios", action="append", choices=SCENARIOS,
                   help="repeat for several (default: all of them)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per scenario")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rate", type=float, default=None,
                   help="open loop: requests/s over all connections (default: closed loop)")
    p.add_argument("--units", type=int, default=100, help="flash: units on sale")
    p.add_argument("--buyers", type=int, default=1000, help="flash: buyers")
    p.add_argument("--carts", type=int, default=300, help="read / storm: carts prepared")
    p.add_argument("--variant", dest="variants", action="append", default=[],
                   help="use this existing variant (repeat) instead of creating products; "
                        "its stock now is the baseline")
    p.add_argument("--prefix", default=None, help="run prefix of created products")
    p.add_argument("--keep", action="store_true", help="do not zero created stock afterwards")
    p.add_argument("--max-error-rate", type=float, default=0.01,
                   help="fail above this share of unexpected answers (default 0.01)")
    p.add_argument("--out", default="loadtest-results", help="directory for report files")
    p.add_argument("--quiet", action="store_true", help="no live progress")


def run_loadtest(args: argparse.Namespace) -> int:
    import os
    import time

    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from gateway.auth import issue_token
    from gateway.settings import GatewaySettings
    from loadtest.client import run_async
    from loadtest.remote import SCENARIOS, LoadConfig, LoadTest, LoadTestError, run_loadtest
    from loadtest.report import render_html

    err = Console(stderr=True)
    token = args.admin_token or os.environ.get("CART_ENGINE_ADMIN_TOKEN")
    if not token:
        secret = args.auth_secret or GatewaySettings().auth_secret
        if hasattr(secret, "get_secret_value"):  # a pydantic SecretStr
            secret = secret.get_secret_value()
        token = issue_token(secret, "loadtest", "admin", 6 * 3600.0)
    if args.connections < 1 or args.duration <= 0 or (args.rate is not None and args.rate <= 0):
        err.print("cart-engine loadtest: --connections >= 1, --duration and --rate > 0")
        return 2
    cfg = LoadConfig(url=args.url, admin_token=token,
                     scenarios=tuple(args.scenarios or SCENARIOS), duration=args.duration,
                     connections=args.connections, rate=args.rate, units=args.units,
                     buyers=args.buyers, carts=args.carts, variants=tuple(args.variants),
                     keep=args.keep, max_error_rate=args.max_error_rate)
    if args.prefix:
        cfg.prefix = args.prefix
    t0 = time.perf_counter()

    def board(run: LoadTest) -> Table:
        rec = run.rec
        table = Table(title=f"loadtest {cfg.prefix} -> {cfg.url}  "
                            f"[{run.phase}, {time.perf_counter() - t0:,.0f} s]")
        for col in ("route", "requests", "errors", "p50 ms", "p99 ms"):
            table.add_column(col, justify="left" if col == "route" else "right")
        for r in rec.route_table()[-14:]:
            table.add_row(r["route"], f"{r['requests']:,}", str(r["errors"]),
                          f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}")
        return table

    async def go() -> dict[str, Any]:
        if args.quiet:
            return await run_loadtest(cfg)
        with Live(console=err, refresh_per_second=4, transient=True) as live:
            return await run_loadtest(cfg, lambda run: live.update(board(run)))

    try:
        result = run_async(go())
    except LoadTestError as e:
        err.print(f"cart-engine loadtest: could not run: {e}")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"loadtest-{cfg.prefix}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".html").write_text(render_html(result), encoding="utf-8")
    console = Console(width=None if sys.stdout.isatty() else 140)  # a log keeps whole rows
    table = Table(title="Latency per route (ms)")
    for col in ("route", "requests", "errors", "p50", "p99", "p99.9", "max"):
        table.add_column(col, justify="left" if col == "route" else "right")
    for r in result["routes"]:
        table.add_row(r["route"], f"{r['requests']:,}", str(r["errors"]), str(r["p50_ms"]),
                      str(r["p99_ms"]), str(r["p999_ms"]), str(r["max_ms"]))
    console.print(table)
    for name, figures in result["figures"].items():
        console.print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in figures.items()),
                      highlight=False)
    console.print(f"report: {stem.with_suffix('.html')} (and .json)", highlight=False)
    if result["verdict"]["passed"]:
        console.print("[bold green]PASSED[/]: nothing oversold, no ledger gap, no duplicate "
                      "order, no acknowledged write lost")
        return 0
    for f in result["verdict"]["failures"]:
        err.print(f"[bold red]FAILED[/] {f}")
    return 1
