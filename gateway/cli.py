"""``cart-engine``: serve the gateway, print a development token, simulate a sale, load-test.

  cart-engine serve [--port 8000] [--hosts N] [--redis-url URL] [--ray-address ADDR]
                    [--cart-ttl SECONDS] [--reservation-ttl SECONDS] [--auth-secret S]
                    [--catalog FILE] [--placement ray|local] [--ray-transport tcp|ray]
                    [--data-dir DIR]
  cart-engine token --sub alice [--admin] [--ttl SECONDS] [--auth-secret S]
  cart-engine simulate [--scenario FILE] [--units N] [--buyers N] ... [--out DIR]
  cart-engine loadtest URL [--scenario flash|churn|read|storm] [--rate R] [--variant V] ...

Every flag also reads from the environment (``CART_ENGINE_PORT``, ``REDIS_URL``, ...).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway import cli_tools
from gateway.auth import issue_token
from gateway.settings import DEV_SECRET, GatewaySettings

_SERVE_FLAGS = {
    "--host": ("host", str), "--port": ("port", int), "--hosts": ("hosts", int),
    "--redis-url": ("redis_url", str), "--ray-address": ("ray_address", str),
    "--cart-ttl": ("cart_ttl", float), "--reservation-ttl": ("reservation_ttl", float),
    "--auth-secret": ("auth_secret", str), "--catalog": ("catalog", str),
    "--placement": ("placement", str), "--data-dir": ("data_dir", str),
    "--redis-prefix": ("redis_prefix", str), "--tax-rate-bp": ("tax_rate_bp", int),
    "--batch-delay": ("batch_delay", float), "--batch-size": ("batch_size", int),
    "--log-level": ("log_level", str), "--rate-limit": ("rate_limit", str),
    "--keep-alive": ("keep_alive", float), "--ray-transport": ("ray_transport", str),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cart-engine", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP gateway and the actor hosts")
    for flag, (dest, typ) in _SERVE_FLAGS.items():
        serve.add_argument(flag, dest=dest, type=typ, default=None)
    tok = sub.add_parser("token", help="print a development JWT")
    tok.add_argument("--sub", required=True)
    tok.add_argument("--admin", action="store_true")
    tok.add_argument("--ttl", type=float, default=24 * 3600.0, help="seconds")
    tok.add_argument("--auth-secret", dest="auth_secret", default=None)
    cli_tools.add_simulate_parser(sub)
    cli_tools.add_loadtest_parser(sub)
    return p


def settings_from(args: argparse.Namespace) -> GatewaySettings:
    """Environment first, flags on top (pydantic-settings validates both)."""
    overrides: dict[str, Any] = {dest: getattr(args, dest) for dest, _ in _SERVE_FLAGS.values()
                                 if getattr(args, dest, None) is not None}
    return GatewaySettings(**overrides)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "token":
        secret = args.auth_secret or GatewaySettings().auth_secret
        print(issue_token(secret, args.sub, "admin" if args.admin else "user", args.ttl))
        return 0
    if args.command == "simulate":
        return cli_tools.run_simulate(args)
    if args.command == "loadtest":
        return cli_tools.run_loadtest(args)
    import uvicorn

    from gateway.app import create_app
    from gateway.logging_setup import configure_logging

    settings = settings_from(args)
    configure_logging(settings.log_level)
    if settings.auth_secret == DEV_SECRET:
        print("cart-engine: WARNING: tokens are signed with the public development secret; "
              "set --auth-secret or CART_ENGINE_AUTH_SECRET (32+ bytes) in production",
              file=sys.stderr, flush=True)
    print(f"cart-engine: listening on http://{settings.host}:{settings.port} "
          f"(docs at /docs)", flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level, lifespan="on", access_log=False, log_config=None,
                timeout_graceful_shutdown=10, timeout_keep_alive=settings.keep_alive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
