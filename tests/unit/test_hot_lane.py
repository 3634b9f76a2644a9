"""The hot lane (`gateway.hot_lane`) answers exactly what the app's whole stack answers.

Each request is sent twice to the same app, once through the lane and once with the lane
off (``app.lane = None``), with a fixed ``X-Request-ID`` so that every header can be
compared; a spy on `HotLane.serve` proves the lane did serve the first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from actors.service import CartService
from gateway.app import CartApp, create_app
from gateway.auth import issue_token
from gateway.deps import LeanRoute, _call_headers
from gateway.hot_lane import HotLane, _overlaps
from gateway.metrics import Metrics
from gateway.routes._respond import CartResponse
from gateway.settings import GatewaySettings

SECRET = "hot-lane-suite-secret-0123456789abcdef"
PRODUCT = {"name": "Lamp", "category": "home", "price": {"amount": 2500, "currency": "USD"},
           "variants": [{"variant_id": "lamp-red", "attributes": {"color": "red"}}]}
RID = {"X-Request-ID": "lane-test-1"}


def bearer(sub: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, sub, 'user')}", **RID}


class Lane:
    """An app over an in-process engine, a client, and a count of requests the lane served."""

    def __init__(self, app: CartApp, client: httpx.AsyncClient, service: CartService) -> None:
        self.app, self.client, self.service = app, client, service
        self.served = 0
        lane = app.lane
        assert lane is not None
        serve = lane.serve

        async def counted(*args: Any) -> None:
            self.served += 1
            await serve(*args)

        lane.serve = counted  # type: ignore[method-assign]
        self.lane = lane

    @contextmanager
    def off(self) -> Iterator[None]:
        self.app.lane = None
        try:
            yield
        finally:
            self.app.lane = self.lane

    async def both(self, method: str, path: str, **kw: Any) -> tuple[httpx.Response,
                                                                    httpx.Response]:
        """The request through the lane, then through the whole stack."""
        before = self.served
        on = await self.client.request(method, path, **kw)
        assert self.served == before + 1, f"the lane did not serve {method} {path}"
        with self.off():
            off = await self.client.request(method, path, **kw)
        assert self.served == before + 1
        return on, off


@pytest.fixture
async def lane() -> AsyncIterator[Lane]:
    service = await CartService.in_process()
    app = create_app(GatewaySettings(auth_secret=SECRET), service)
    app.state.service = service
    await service.put_product("lamp", PRODUCT)
    await service.set_stock("lamp-red", set=3)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as c:
            yield Lane(app, c, service)
    finally:
        await service.close()


def same(on: httpx.Response, off: httpx.Response) -> None:
    assert on.status_code == off.status_code, (on.text, off.text)
    assert on.content == off.content
    assert sorted(on.headers.multi_items()) == sorted(off.headers.multi_items())


async def test_refusals_and_reads_are_the_same_through_the_lane(lane: Lane) -> None:
    alice, bob = bearer("alice"), bearer("bob")
    r = await lane.client.post("/v1/carts", headers=alice)
    assert r.status_code == 201
    cart = f"/v1/carts/{r.json()['cart_id']}"
    add = {"product_id": "lamp", "variant_id": "lamp-red", "quantity": 1}
    r = await lane.client.post(f"{cart}/items", headers=alice, json=add)
    assert r.status_code == 200
    line = f"{cart}/items/{r.json()['lines'][0]['line_id']}"
    json_body = {**alice, "Content-Type": "application/json"}
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("GET", cart, {"headers": alice}, 200),
        ("GET", cart, {"headers": RID}, 401),
        ("GET", cart, {"headers": {**RID, "Authorization": "Bearer nope"}}, 401),
        ("GET", cart, {"headers": bob}, 404),
        ("GET", "/v1/carts/bad%20id", {"headers": alice}, 422),
        ("POST", f"{cart}/items", {"headers": json_body, "content": b"{"}, 400),
        ("POST", f"{cart}/items", {"headers": {**alice, "Content-Type": "text/plain"},
                                   "content": b"x"}, 415),
        ("POST", f"{cart}/items", {"headers": json_body, "content": b" " * 70_000}, 413),
        ("POST", f"{cart}/items", {"headers": alice, "json": {**add, "quantity": -1}}, 422),
        ("POST", f"{cart}/items", {"headers": alice, "json": {**add, "quantity": 5}}, 409),
        ("PATCH", line, {"headers": {**alice, "If-Match": '"0"'}, "json": {"quantity": 2}},
         409),
        ("PATCH", line, {"headers": {**alice, "If-Match": "soon"}, "json": {"quantity": 2}},
         422),
        ("DELETE", f"{cart}/items/ln_none", {"headers": alice}, 404),
        ("POST", f"{cart}/items", {"headers": {**alice, "Idempotency-Key": "k" * 300},
                                   "json": add}, 422),
    ]
    for method, path, kw, status in cases:
        on, off = await lane.both(method, path, **kw)
        assert on.status_code == status, (method, path, on.text)
        same(on, off)
        assert on.headers["x-content-type-options"] == "nosniff"
        assert on.headers["cache-control"] == "no-store"
        assert on.headers["x-request-id"] == "lane-test-1"


async def test_mutations_through_the_lane_answer_as_the_stack_does(lane: Lane) -> None:
    alice = bearer("alice")
    before = lane.served
    r = await lane.client.post("/v1/carts", headers=alice)
    assert r.status_code == 201 and lane.served == before + 1
    cart = f"/v1/carts/{r.json()['cart_id']}"
    add = {"product_id": "lamp", "variant_id": "lamp-red", "quantity": 1}
    on = await lane.client.post(f"{cart}/items", headers=alice, json=add)
    with lane.off():
        off = await lane.client.post(f"{cart}/items", headers=alice, json=add)
    assert on.status_code == off.status_code == 200
    assert on.json()["lines"][0]["quantity"] == 1 and off.json()["lines"][0]["quantity"] == 2
    assert set(on.headers) == set(off.headers)
    assert (on.headers["etag"], off.headers["etag"]) == (f'"{on.json()["version"]}"',
                                                         f'"{off.json()["version"]}"')
    # the checkout route is in the lane too: the order is paid and counted
    r = await lane.client.post(f"{cart}/checkout", headers={**alice, "Idempotency-Key": "k1"},
                               json={"payment": {"token": "tok_ok"}})
    assert r.status_code == 201, r.text
    assert lane.served == before + 3
    text = (await lane.client.get("/metrics")).text
    assert 'cart_engine_checkouts_total{outcome="paid"} 1.0' in text
    assert ('cart_engine_http_requests_total{method="POST",route="/v1/carts/{cart_id}/items",'
            'status="200"} 2.0') in text


async def test_stock_refusals_are_counted_from_the_lane(lane: Lane) -> None:
    alice = bearer("alice")
    cart = f"/v1/carts/{(await lane.client.post('/v1/carts', headers=alice)).json()['cart_id']}"
    r = await lane.client.post(f"{cart}/items", headers=alice,
                               json={"product_id": "lamp", "variant_id": "lamp-red",
                                     "quantity": 4})
    assert r.status_code == 409 and r.json()["error"]["code"] == "out_of_stock"
    text = (await lane.client.get("/metrics")).text
    assert ('cart_engine_stock_refused_total{route="/v1/carts/{cart_id}/items"} 1.0'
            in text)


async def test_an_unexpected_error_is_the_api_500_and_is_raised_again(lane: Lane) -> None:
    alice = bearer("alice")
    cart = f"/v1/carts/{(await lane.client.post('/v1/carts', headers=alice)).json()['cart_id']}"

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    async def gone(*_: Any, **__: Any) -> Any:
        raise ConnectionError("redis went away")

    lane.service.get_cart = broken  # type: ignore[method-assign]
    r = await lane.client.get(cart, headers=alice)
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert r.headers["x-content-type-options"] == "nosniff"
    strict = httpx.ASGITransport(app=lane.app)  # raises what the app raised
    async with httpx.AsyncClient(transport=strict, base_url="http://shop.test") as c:
        with pytest.raises(RuntimeError, match="boom"):
            await c.get(cart, headers=alice)
    lane.service.get_cart = gone  # type: ignore[method-assign]
    on, off = await lane.both("GET", cart, headers=alice)
    assert on.status_code == off.status_code == 503
    assert on.json() == off.json() and on.json()["error"]["code"] == "dependency_unavailable"
    assert on.headers["retry-after"] == "1"


async def test_a_chunked_body_goes_through_the_whole_stack(lane: Lane) -> None:
    alice = bearer("alice")
    cart = f"/v1/carts/{(await lane.client.post('/v1/carts', headers=alice)).json()['cart_id']}"
    before = lane.served

    async def chunks(body: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    headers = {**alice, "Content-Type": "application/json"}
    r = await lane.client.post(f"{cart}/items", headers=headers,
                               content=chunks(b'{"product_id": "lamp", "quantity": 1}'))
    assert r.status_code == 200, r.text
    r = await lane.client.post(f"{cart}/items", headers=headers, content=chunks(b" " * 70_000))
    assert r.status_code == 413
    assert lane.served == before


async def test_a_middleware_added_later_shuts_the_lane() -> None:
    service = await CartService.in_process()
    app = create_app(GatewaySettings(auth_secret=SECRET), service)
    app.state.service = service

    class Stamp:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            async def stamped(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message["headers"], (b"x-stamp", b"1")]}
                await send(message)

            await self.inner(scope, receive, stamped)

    app.add_middleware(Stamp)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://shop.test") as c:
            r = await c.post("/v1/carts", headers=bearer("alice"))
            assert r.status_code == 201 and r.headers["x-stamp"] == "1"
    finally:
        await service.close()


async def test_settings_with_layers_the_lane_lacks_have_no_lane() -> None:
    service = await CartService.in_process()
    try:
        assert create_app(GatewaySettings(auth_secret=SECRET), service).lane is not None
        assert create_app(GatewaySettings(auth_secret=SECRET, rate_limit="5/second"),
                          service).lane is None
        assert create_app(GatewaySettings(auth_secret=SECRET, trusted_proxies=["10.0.0.0/8"]),
                          service).lane is None
    finally:
        await service.close()


async def test_a_route_listed_before_a_lean_route_keeps_its_requests() -> None:
    app = CartApp()
    plain = APIRouter()
    lean = APIRouter(route_class=LeanRoute)

    @plain.get("/things/special")
    async def special() -> dict[str, str]:
        return {"by": "plain"}

    async def thing(request: Request) -> JSONResponse:
        return JSONResponse({"by": "lean", "id": request.path_params["thing_id"]})

    async def shadowed(request: Request) -> JSONResponse:
        return JSONResponse({"by": "shadowed"})

    lean.add_api_route("/things/{thing_id}", thing, methods=["GET"])
    lean.add_api_route("/other/{thing_id}", shadowed, methods=["GET"])
    app.router.routes.append(plain.routes[0])
    app.router.routes.extend(lean.routes)
    app.lane = HotLane(app, Metrics(), 1024)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t.test") as c:
        assert (await c.get("/things/special")).json() == {"by": "plain"}
        assert (await c.get("/things/t1")).json() == {"by": "lean", "id": "t1"}
        assert (await c.get("/things/")).status_code == 404
    table = app.lane._table
    assert table is not None and [r.path for r, _, _ in table[("GET", 3)]] == [
        "/other/{thing_id}"]  # /things/{thing_id} is shadowed by the route before it
    assert _overlaps(("", "a", None), ("", None, "b"))
    assert not _overlaps(("", "a", None), ("", "b", None))
    assert not _overlaps(("", "a"), ("", "a", None))
    assert _overlaps(("", "a"), None)


def test_a_cart_response_is_what_starlette_would_build() -> None:
    view = {"version": 7, "cart_id": "c_1", "lines": []}
    fast = CartResponse(view, 201)
    slow = JSONResponse(view, status_code=201, headers={"ETag": '"7"'})
    assert (fast.status_code, fast.body, fast.raw_headers, fast.media_type) == (
        slow.status_code, orjson.dumps(view), slow.raw_headers, slow.media_type)


def test_hot_routes_read_the_first_of_repeated_headers_as_starlette_does() -> None:
    raw = [(b"authorization", b"Bearer a"), (b"if-match", b'"3"'), (b"authorization", b"b"),
           (b"x-other", b"1"), (b"idempotency-key", b"k\xe9")]
    scope = {"type": "http", "headers": raw}
    starlette = Request(scope).headers
    assert _call_headers(scope) == {
        name.encode(): starlette[name] for name in ("authorization", "if-match",
                                                   "idempotency-key")}
