"""``cart-engine``: serve the gateway, print a development token, simulate a sale, load-test.

  cart-engine serve [--port 8000] [--hosts N] [--redis-url URL] [--ray-address ADDR]
                    [--cart-ttl SECONDS] [--reservation-ttl SECONDS] [--auth-secret S]
                    [--catalog FILE] [--placement ray|local] [--ingress hosts|gateway]
                    [--data-dir DIR] [--rate-limit RATE] [--trusted-proxies IP,CIDR,...]
                    [--merge-strategy sum|larger|keep_user]
                    [--payment-provider module:attr] [--payment-capture immediate|on_shipment]
                    [--webhook-secret S] [--webhook-tolerance SECONDS]
  cart-engine hosts --url URL [--token T] [N]     show the cluster, or ask for N hosts
  cart-engine token --sub alice [--admin] [--ttl SECONDS] [--auth-secret S]
  cart-engine simulate [--scenario FILE] [--units N] [--buyers N] ... [--out DIR]
  cart-engine loadtest URL [--scenario flash|churn|read|storm] [--rate R] [--variant V] ...

Every flag also reads from the environment (``CART_ENGINE_PORT``, ``REDIS_URL``, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from pydantic import ValidationError

from gateway import cli_tools
from gateway.auth import issue_token
from gateway.redis_url import RedisUnusable, check_redis
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
    "--keep-alive": ("keep_alive", float), "--ingress": ("ingress", str),
    "--handoff": ("handoff", str), "--pin-cores": ("pin_cores", str),
    "--sse-heartbeat": ("sse_heartbeat", float),
    "--trusted-proxies": ("trusted_proxies", lambda v: [p for p in v.split(",") if p.strip()]),
    "--merge-strategy": ("merge_strategy", str),
    "--payment-provider": ("payment_provider", str),
    "--payment-capture": ("payment_capture", str),
    "--webhook-secret": ("webhook_secret", str),
    "--webhook-tolerance": ("webhook_tolerance", float),
}
_FLAG_OF = {dest: flag for flag, (dest, _) in _SERVE_FLAGS.items()}


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
    hosts = sub.add_parser("hosts", help="show the cluster's hosts and partitions, or ask "
                                         "for N hosts (added or retired while serving)")
    hosts.add_argument("count", nargs="?", type=int, default=None)
    hosts.add_argument("--url", default="http://127.0.0.1:8000")
    hosts.add_argument("--token", default=None,
                       help="an admin token (default: CART_ENGINE_ADMIN_TOKEN)")
    cli_tools.add_simulate_parser(sub)
    cli_tools.add_loadtest_parser(sub)
    return p


def hosts_command(args: argparse.Namespace) -> int:
    """GET (or PUT with a count) ``/v1/admin/cluster``; prints the JSON answer."""
    import json
    import os

    import httpx

    token = args.token or os.environ.get("CART_ENGINE_ADMIN_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=args.url, headers=headers, timeout=60) as client:
        r = client.get("/v1/admin/cluster") if args.count is None else \
            client.put("/v1/admin/cluster", json={"hosts": args.count})
    print(json.dumps(r.json(), indent=2))
    return 0 if r.is_success else 1


def settings_from(args: argparse.Namespace) -> GatewaySettings:
    """Environment first, flags on top (pydantic-settings validates both). Raises
    pydantic.ValidationError, which never holds the refused value (see GatewaySettings)."""
    overrides: dict[str, Any] = {dest: getattr(args, dest) for dest, _ in _SERVE_FLAGS.values()
                                 if getattr(args, dest, None) is not None}
    return GatewaySettings(**overrides)


def _one_line(e: ValidationError) -> str:
    """A settings error as one line naming each flag and the rule, never the value given."""
    problems = []
    for err in e.errors(include_url=False, include_input=False, include_context=False):
        dest = str(err["loc"][0]) if err["loc"] else "settings"
        msg = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{_FLAG_OF.get(dest, dest)}: {msg}")
    return "cart-engine: invalid settings: " + "; ".join(problems)


def main(argv: list[str] | None = None) -> int:
    """Run a command; 0 on success, 2 for invalid settings (one line on stderr, no secret
    shown), 1 when a configured Redis is not usable."""
    args = _parser().parse_args(argv)
    if args.command == "hosts":
        return hosts_command(args)
    if args.command == "simulate":
        return cli_tools.run_simulate(args)
    if args.command == "loadtest":
        return cli_tools.run_loadtest(args)
    try:
        settings = (GatewaySettings(**({"auth_secret": args.auth_secret} if args.auth_secret
                                       else {}))
                    if args.command == "token" else settings_from(args))
    except ValidationError as e:
        print(_one_line(e), file=sys.stderr, flush=True)
        return 2
    secret = settings.auth_secret.get_secret_value()
    if args.command == "token":
        print(issue_token(secret, args.sub, "admin" if args.admin else "user", args.ttl))
        return 0
    import uvicorn

    from gateway.app import create_app
    from gateway.logging_setup import configure_logging

    configure_logging(settings.log_level)
    if settings.redis_url is not None and settings.redis_url.get_secret_value():
        try:
            asyncio.run(check_redis(settings.redis_url.get_secret_value()))
        except RedisUnusable as e:
            print(f"cart-engine: {e}; fix --redis-url / REDIS_URL, or unset it to use the "
                  "bundled Redis", file=sys.stderr, flush=True)
            return 1
    if secret == DEV_SECRET:
        print("cart-engine: WARNING: tokens are signed with the public development secret; "
              "set --auth-secret or CART_ENGINE_AUTH_SECRET (32+ bytes) in production",
              file=sys.stderr, flush=True)
    if settings.placement == "ray" and settings.ingress == "hosts":
        from gateway.bootstrap import serve_on_hosts

        return asyncio.run(serve_on_hosts(settings))
    print(f"cart-engine: listening on http://{settings.host}:{settings.port} "
          f"(docs at /docs)", flush=True)
    from gateway.http_protocol import CoalescingHttpProtocol

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level, lifespan="on", access_log=False, log_config=None,
                # X-Forwarded-For only from --trusted-proxies (the app's own middleware);
                # uvicorn's default would trust it from 127.0.0.1.
                proxy_headers=False, server_header=False,  # as `ingress.uvicorn_config`
                timeout_graceful_shutdown=10, timeout_keep_alive=settings.keep_alive,
                http=CoalescingHttpProtocol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
