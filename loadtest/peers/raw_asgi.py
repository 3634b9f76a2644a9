"""raw-asgi: the HTTP ceiling of Python here, a bare ASGI app answering one fixed JSON body.

No framework, no routing, no storage: every HTTP request (any method, any path) has its body
read and dropped and gets the same ~1.2 KB JSON answer (`BODY`, a cart of four lines rendered
once at import) with status 200. Served by uvicorn (uvloop, httptools when installed) with as
many worker processes as cores (`--workers`, default `os.cpu_count()`). Whatever a cart
service does per request comes on top of this, so requests/s against it is the share of
Python's HTTP stack a system keeps.

    python -m loadtest.peers.raw_asgi --port 8103 [--workers N]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import orjson
import uvicorn


def sample_cart(lines: int = 4) -> dict[str, Any]:
    """A cart answer of `lines` lines in the API.md shape (amounts in minor units)."""
    stamp = "2026-11-29T12:00:00Z"

    def usd(amount: int) -> dict[str, Any]:
        return {"amount": amount, "currency": "USD"}

    return {
        "cart_id": "cart_0123456789abcdef0123456789abcdef", "owner": "guest_0123456789abcdef",
        "status": "active", "currency": "USD", "version": 7, "created_at": stamp,
        "updated_at": stamp, "expires_at": stamp,
        "lines": [{"line_id": f"ln_{i:016x}", "product_id": f"bench-p{i}",
                   "variant_id": f"bench-p{i}-v0", "name": f"P{i}", "quantity": 1,
                   "unit_price": usd(2499), "line_total": usd(2499)}
                  for i in range(lines)],
        "discounts": [],
        "totals": {"subtotal": usd(2499 * lines), "discount": usd(0), "shipping": usd(0),
                   "tax": usd(0), "total": usd(2499 * lines)},
    }


#: The fixed answer, about 1.2 KB (1,286 bytes).
BODY = orjson.dumps(sample_cart())
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI 3 application: lifespan accepted, every HTTP request answered with `BODY`."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False) and message["type"] == "http.request"
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main(argv: list[str] | None = None) -> None:
    """Serve `app` with `--workers` uvicorn workers until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="uvicorn worker processes (default: one per core)")
    # accepted and ignored, so the bench can start every peer alike
    parser.add_argument("--catalog", help=argparse.SUPPRESS)
    parser.add_argument("--auth-secret", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    uvicorn.run("loadtest.peers.raw_asgi:app", host=options.host, port=options.port,
                workers=max(1, options.workers), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
