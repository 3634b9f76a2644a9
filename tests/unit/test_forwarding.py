"""Cart requests are forwarded whole to the host that owns the cart (`gateway.forwarding`).

Two ingresses, A and B, wrap apps that record where a request ran; the channel between them
is the placement's ``forward``, which hands the message to the other ingress's ``run_here``
(or fails the way a channel fails)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from actors.router import unavailable
from actors.runtime import err, ok
from engine.errors import ValidationFailed
from gateway.forwarding import OwnerForwarding, cart_of

pytestmark = pytest.mark.unit


class _Host:
    def __init__(self, host_id: str) -> None:
        self.host_id = host_id
        self.system: dict[str, Any] = {}


class _Placement:
    """Carts whose id starts with ``b`` belong to host B, the rest to A."""

    def __init__(self, host_id: str) -> None:
        self.host = _Host(host_id)
        self.peer: OwnerForwarding | None = None
        self.failure: Any = None  # a reply the channel answers instead of the peer's

    def owner_of(self, kind: str, key: str) -> str | None:
        assert kind == "cart"
        return "B" if key.startswith("b") else "A"

    async def forward(self, host_id: str, msg: Any) -> Any:
        if self.failure is not None:
            return self.failure
        assert self.peer is not None and msg[:3] == ("_host", host_id, "http")
        return ok(await self.peer.host_system_http(**msg[3]))


def _app(name: str, seen: list[tuple[str, str, str, bytes, Any]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        seen.append((name, scope["method"], scope["path"], body, scope["client"]))
        payload = orjson.dumps({"ran_on": name, "path": scope["path"],
                                "query": scope["query_string"].decode(),
                                "auth": dict(scope["headers"]).get(b"authorization", b"")
                                .decode()})
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-type", b"application/json"), (b"etag", b'"7"')]})
        await send({"type": "http.response.body", "body": payload})
    return app


@pytest.fixture
def pair() -> tuple[OwnerForwarding, OwnerForwarding, list[Any]]:
    seen: list[Any] = []
    pa, pb = _Placement("A"), _Placement("B")
    a = OwnerForwarding(_app("A", seen), pa, max_bytes=1024)
    b = OwnerForwarding(_app("B", seen), pb, max_bytes=1024)
    for fwd, placement, peer in ((a, pa, b), (b, pb, a)):
        fwd.host_system_http = placement.host.system["http"]  # type: ignore[attr-defined]
        placement.peer = peer
    return a, b, seen


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("203.0.113.9", 4321)),
                             base_url="http://engine")


def test_cart_of_names_the_cart_of_cart_scoped_paths_only() -> None:
    assert cart_of("/v1/carts/c_1") == "c_1"
    assert cart_of("/v1/carts/c_1/items/l_2") == "c_1"
    assert cart_of("/v1/carts/c_1/checkout") == "c_1"
    assert cart_of("/v1/carts/c_1/events") is None  # streams stay where the client is
    assert cart_of("/v1/carts") is None and cart_of("/v1/carts/") is None
    assert cart_of("/v1/orders/o_1") is None and cart_of("/healthz") is None


async def test_a_request_for_another_hosts_cart_runs_there_and_its_answer_is_relayed(
        pair: Any) -> None:
    a, b, seen = pair
    async with _client(a) as c:
        r = await c.post("/v1/carts/b_7/items?x=1", content=b'{"quantity":2}',
                         headers={"authorization": "Bearer t", "content-type": "application/json"})
    assert r.status_code == 201 and r.headers["etag"] == '"7"'
    assert r.json() == {"ran_on": "B", "path": "/v1/carts/b_7/items", "query": "x=1",
                        "auth": "Bearer t"}
    # it ran once, on B, with the body and the client's own address
    assert seen == [("B", "POST", "/v1/carts/b_7/items", b'{"quantity":2}',
                     ("203.0.113.9", 4321))]
    assert a.stats()["forwarded"] == 1 and b.stats()["ran_for_others"] == 1


async def test_own_carts_streams_and_other_paths_run_here(pair: Any) -> None:
    a, _, seen = pair
    async with _client(a) as c:
        for path in ("/v1/carts/a_1", "/v1/carts/b_1/events", "/v1/products", "/v1/carts"):
            assert (await c.get(path)).json()["ran_on"] == "A"
    assert [s[0] for s in seen] == ["A"] * 4 and a.stats()["forwarded"] == 0


async def test_a_body_without_length_or_over_the_limit_is_judged_here(pair: Any) -> None:
    a, _, seen = pair

    async def chunks() -> Any:
        yield b'{"quantity":'
        yield b"1}"

    async with _client(a) as c:
        assert (await c.post("/v1/carts/b_1/items", content=chunks())).json()["ran_on"] == "A"
        big = b"x" * 2000
        assert (await c.post("/v1/carts/b_1/items", content=big)).json()["ran_on"] == "A"
    assert [(s[0], s[3]) for s in seen] == [("A", b'{"quantity":1}'), ("A", b"x" * 2000)]


@pytest.mark.parametrize("failure", [
    unavailable(False),  # the batch never left
    err(ValidationFailed("unknown_message", "host.http is not a message")),  # no ingress there
])
async def test_a_request_that_did_not_run_on_the_owner_runs_here(pair: Any, failure: Any) -> None:
    a, _, seen = pair
    a.placement.failure = failure
    async with _client(a) as c:
        r = await c.post("/v1/carts/b_1/items", content=b'{"quantity":1}')
    assert r.json()["ran_on"] == "A" and seen == [
        ("A", "POST", "/v1/carts/b_1/items", b'{"quantity":1}', ("203.0.113.9", 4321))]
    assert a.stats()["fell_back"] == 1


async def test_a_lost_answer_reruns_a_read_but_never_a_write(pair: Any) -> None:
    a, _, seen = pair
    a.placement.failure = unavailable(True)  # sent; the owner died before answering
    async with _client(a) as c:
        assert (await c.get("/v1/carts/b_1")).json()["ran_on"] == "A"
        r = await c.post("/v1/carts/b_1/items", content=b'{"quantity":1}')
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "host_unavailable"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert [(s[0], s[1]) for s in seen] == [("A", "GET")]  # the write ran nowhere here
    async with _client(a) as c:  # with a key, running it again answers the first result
        r = await c.post("/v1/carts/b_1/items", content=b'{"quantity":1}',
                         headers={"Idempotency-Key": "k1"})
    assert r.json()["ran_on"] == "A" and [(s[0], s[1]) for s in seen][-1] == ("A", "POST")
