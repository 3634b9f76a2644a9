"""Prove that a flash sale holds: no unit oversold, none left unsold while buyers were refused.

Usage (against a running cart engine, or any server speaking API.md):

    python -m loadtest.flash_sale --url http://127.0.0.1:8000 --admin-token T \\
        --variant V --units 50 --buyers 300 [--product P] [--connections 64] \\
        [--duration 60] [--json]

    --admin-token T   an admin JWT (HS256, claims sub, exp, role "admin"), e.g. from
                      `cart-engine token --sub ops --admin`; or give --auth-secret S instead
                      and one is made here
    --variant V       the variant on sale; --product P names its product (default: found by
                      paging GET /v1/products, else V itself)
    --units N         units on sale: the variant's stock is SET to N first (admin
                      POST /v1/admin/stock/V {"set": N}); this overwrites its stock
    --buyers B        guest buyers, one unit each

Each buyer makes a guest cart (`POST /v1/carts`) and adds one unit; then all buyers check out
at once with `tok_ok` and their own `Idempotency-Key`, `--connections` at a time. Afterwards the
admin stock call `{"delta": 0}` gives on_hand, reserved and available, and the sale is judged:

- oversold: units sold (in the paid orders) > N, or on_hand + sold != N (the ledger disagrees);
- unsold while refused: fewer than N units sold although some buyer got `out_of_stock`
  (counting the buyers a server refused already when adding the unit);
- broken: a buyer got neither an order nor a clean `out_of_stock` (5xx, timeouts, other codes),
  or never got to buy within the time limit.

Exit status: 0 the sale held; 1 any of the three above; 2 the sale could not be run (server
unreachable, an admin call refused). Every phase is bounded by `--duration` seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtest.client import run_async
from loadtest.scenarios import Item, ScenarioError, Target, flash_sale, make_admin_token

console = Console()


def problems(result: dict[str, Any]) -> list[str]:
    """Why the sale did not hold (empty when it held)."""
    found = []
    if result["oversold_units"] > 0:
        found.append(f"oversold by {result['oversold_units']} units")
    if result["ledger_gap"] != 0:
        found.append(f"on_hand + sold = {result['units'] - result['ledger_gap']}, "
                     f"not the {result['units']} units on sale")
    if result["unsold_units"] > 0 and result["refused"] > 0:
        found.append(f"{result['unsold_units']} units unsold while {result['refused']} buyers "
                     "were refused")
    broken = sum(result["other_outcomes"].values())
    if broken:
        found.append(f"{broken} buyers got neither an order nor out_of_stock: "
                     f"{result['other_outcomes']}")
    if result["untried"]:
        found.append(f"{result['untried']} buyers never got to buy within --duration")
    return found


def summary_table(result: dict[str, Any]) -> Table:
    """The sale's figures as a two-column table."""
    table = Table(title=f"flash sale of {result['variant_id']}", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("units on sale", result["units"]), ("buyers", result["buyers"]),
        ("paid orders", result["paid_orders"]), ("units sold", result["units_sold"]),
        ("refused (out_of_stock)", result["refused"]),
        ("other outcomes", result["other_outcomes"] or "none"),
        ("buyers left out by the time limit", result["untried"]),
        ("on_hand / reserved / available after",
         f"{result['on_hand']} / {result['reserved']} / {result['available']}"),
        ("oversold units", result["oversold_units"]), ("ledger gap", result["ledger_gap"]),
        ("checkouts/s", result["checkouts_per_s"]),
        ("checkout p50 / p99 / p99.9 ms",
         f"{result['p50_ms']} / {result['p99_ms']} / {result['p999_ms']}"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.flash_sale",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    token = parser.add_mutually_exclusive_group(required=True)
    token.add_argument("--admin-token", help="admin JWT")
    token.add_argument("--auth-secret", help="the server's HS256 secret (a token is made)")
    parser.add_argument("--variant", required=True, help="variant id on sale")
    parser.add_argument("--product", help="its product id (default: looked up)")
    parser.add_argument("--units", type=int, required=True, help="units on sale (stock is set)")
    parser.add_argument("--buyers", type=int, required=True, help="buyers, one unit each")
    parser.add_argument("--connections", type=int, default=64, help="concurrent buyers")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="time limit of each phase, seconds")
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = parser.parse_args(argv)
    if args.units < 0 or args.buyers < 1:
        parser.error("--units must be >= 0 and --buyers >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the sale, print the summary; the exit status says whether it held."""
    args = parse_args(argv)
    target = Target(
        base_url=args.url.rstrip("/"),
        admin_token=args.admin_token or make_admin_token(args.auth_secret),
        system="flash-sale",
        connections=args.connections,
        duration_s=args.duration,
        max_requests=max(args.buyers, 1),
        setup_s=args.duration,
    )
    item = Item(args.product, args.variant) if args.product else None
    try:
        result = run_async(flash_sale(target, buyers=args.buyers, units=args.units, item=item,
                                      variant_id=args.variant))
    except ScenarioError as exc:
        console.print(f"[red]the sale could not run:[/] {exc}")
        return 2
    console.print(summary_table(result))
    if args.json:
        print(json.dumps(result, indent=2))
    found = problems(result)
    for problem in found:
        console.print(f"[red]FAILED:[/] {problem}")
    if not found:
        console.print(f"[green]HELD:[/] {result['units_sold']} of {result['units']} units sold, "
                      f"{result['refused']} buyers refused, none oversold")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
