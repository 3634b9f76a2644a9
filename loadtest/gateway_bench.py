"""The gateway's own CPU per cart request, in process: no sockets, no HTTP parsing, no Ray.

Usage (from the project root, with the project's venv):

    python -m loadtest.gateway_bench [--loops 1000] [--lines 1]

Builds the FastAPI app over an in-process engine (memory store) and drives it with bare ASGI
calls, one cart and one guest token: each loop adds a line, re-quantities it, removes it and
reads the cart (4 requests); ``--lines N`` keeps N - 1 other lines in the cart throughout.
Prints the process CPU time per request in microseconds: the gateway (routing, auth,
validation, JSON) plus the engine's turn, without the server and the network, which
`loadtest.bench` measures whole.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson

from actors.service import CartService
from gateway.app import create_app
from gateway.auth import issue_token
from gateway.middleware import replay
from gateway.settings import GatewaySettings
from loadtest.client import run_async

SECRET = "gateway-bench-secret-0123456789abcdef"
PRODUCT = {"name": "Bench Tee", "price": {"amount": 1999, "currency": "USD"}, "stock": 10**9}


async def call(app: Any, method: str, path: str, body: bytes = b"",
               headers: tuple[tuple[str, str], ...] = ()) -> tuple[int, bytes]:
    """One request through the ASGI app; its status and body."""
    raw = [(b"host", b"bench")] + [(k.lower().encode(), v.encode()) for k, v in headers]
    if body:
        raw += [(b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": raw, "app": app,
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    async def disconnect() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    receive = replay(disconnect, body)

    status, chunks = 0, []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def measure(loops: int, lines: int = 1) -> float:
    """CPU microseconds per request over ``loops`` add / PATCH / DELETE / GET loops, on a
    cart holding ``lines - 1`` other lines."""
    service = await CartService.in_process(hosts=1)
    app = create_app(GatewaySettings(auth_secret=SECRET), service)
    app.state.service = service  # what the lifespan does for an embedded service
    try:
        await service.put_product("tee", PRODUCT)
        auth = (("Authorization", f"Bearer {issue_token(SECRET, 'bench-user')}"),)
        status, body = await call(app, "POST", "/v1/carts", headers=auth)
        cart = f"/v1/carts/{orjson.loads(body)['cart_id']}"
        for i in range(lines - 1):
            await service.put_product(f"other-{i}", PRODUCT)
            status, _ = await call(app, "POST", f"{cart}/items", orjson.dumps(
                {"product_id": f"other-{i}", "quantity": 1}), auth)
            if status != 200:
                raise RuntimeError(f"could not add line {i + 2}: {status}")
        add = orjson.dumps({"product_id": "tee", "quantity": 1})
        started = time.process_time()
        for _ in range(loops):
            status, body = await call(app, "POST", f"{cart}/items", add, auth)
            line = f"{cart}/items/" + next(ln["line_id"] for ln in orjson.loads(body)["lines"]
                                           if ln["product_id"] == "tee")
            answers = [status,
                       (await call(app, "PATCH", line, b'{"quantity": 2}', auth))[0],
                       (await call(app, "DELETE", line, headers=auth))[0],
                       (await call(app, "GET", cart, headers=auth))[0]]
            if answers != [200, 200, 200, 200]:
                raise RuntimeError(f"unexpected statuses {answers}")
        return (time.process_time() - started) / (4 * loops) * 1e6
    finally:
        await service.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=1, help="lines in the cart while measured")
    args = parser.parse_args(argv)
    lines = max(1, args.lines)
    print(f"{run_async(measure(args.loops, lines)):.0f} us of CPU per cart request "
          f"({4 * args.loops} requests, {lines}-line cart, in process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
