"""Structured JSON logs: one line per request with its request id, carried into the actor
turns that serve it; never a token."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from actors.cart import CartActor
from gateway.logging_setup import (
    INHERITED,
    AccessLogMiddleware,
    configure_logging,
    valid_request_id,
)
from tests.integration.inprocess import bearer, gateway

pytestmark = pytest.mark.integration


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Configures JSON logs at INFO (here: pytest gives the test phase its own stdout) and
    answers the JSON lines written since the last call; restores logging afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configured = False
    monkeypatch.setenv(INHERITED, "")  # whatever configure_logging sets, undone afterwards

    def lines() -> list[dict[str, Any]]:
        nonlocal configured
        if not configured:
            configure_logging("info")
            configured = True
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()
                if line.startswith("{")]

    yield lines
    structlog.reset_defaults()
    root.handlers[:], root.level = saved


def requests_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [ln for ln in lines if ln["event"] == "request"]


async def test_one_line_per_request_with_route_template_caller_and_request_id(logs: Any
                                                                              ) -> None:
    logs()
    async with gateway() as (http, service):
        await service.put_product("mug", {"name": "Mug", "stock": 5,
                                          "price": {"amount": 900, "currency": "USD"}})
        logs()  # start from here
        r = await http.post("/v1/carts", headers={"X-Request-ID": "edge-42:a.b_c"})
        assert r.status_code == 201 and r.headers["x-request-id"] == "edge-42:a.b_c"
        guest = r.json()
        r2 = await http.post(f"/v1/carts/{guest['cart_id']}/items",
                             headers={"Authorization": f"Bearer {guest['token']}"},
                             json={"product_id": "mug", "quantity": 1})
        assert r2.status_code == 200
        r3 = await http.post("/v1/carts", headers=bearer("alice"))
        r4 = await http.post("/v1/admin/stock/mug", headers=bearer("ops", "admin"),
                             json={"delta": 0})
        r5 = await http.get("/v1/carts/nope", headers=bearer("alice"))
        lines = requests_of(logs())
    assert len(lines) == 5
    first, add, user, admin, missing = lines
    assert first["request_id"] == "edge-42:a.b_c" and first["caller"] == "anonymous"
    assert first["route"] == "/v1/carts" and first["method"] == "POST"
    assert first["status"] == 201 and first["level"] == "info"
    assert first["latency_ms"] > 0 and first["timestamp"].endswith("Z")
    assert add["route"] == "/v1/carts/{cart_id}/items" and add["caller"] == "guest"
    assert add["request_id"] == r2.headers["x-request-id"]
    assert len(add["request_id"]) == 32 and int(add["request_id"], 16) >= 0  # generated
    assert (user["caller"], user["status"]) == ("user", r3.status_code)
    assert (admin["caller"], admin["route"]) == ("admin", "/v1/admin/stock/{variant_id}")
    assert r4.status_code == 200
    assert (missing["status"], missing["route"]) == (r5.status_code, "/v1/carts/{cart_id}")
    assert len({ln["request_id"] for ln in lines}) == 5


async def test_a_bad_request_id_is_replaced_and_no_token_is_ever_logged(logs: Any) -> None:
    logs()
    async with gateway() as (http, _):
        r = await http.post("/v1/carts", headers={"X-Request-ID": "x" * 129})
        token = r.json()["token"]
        r2 = await http.get(f"/v1/carts/{r.json()['cart_id']}",
                            headers={"Authorization": f"Bearer {token}",
                                     "X-Request-ID": "bad id\u00e9".encode("latin-1")})
        r3 = await http.get("/v1/carts/c1", headers={"Authorization": "Bearer not.a.jwt"})
        out = logs()
    lines = requests_of(out)
    assert r.headers["x-request-id"] != "x" * 129 and len(r.headers["x-request-id"]) == 32
    assert r2.headers["x-request-id"] == lines[1]["request_id"] not in ("bad id", "bad id\u00e9")
    assert r3.status_code == 401 and lines[2]["caller"] == "anonymous"
    text = json.dumps(out)
    assert token not in text and "not.a.jwt" not in text and "Bearer" not in text


def test_request_ids_are_bounded_and_plain() -> None:
    assert valid_request_id("a" * 128) == "a" * 128
    for bad in ("", "a" * 129, "a b", "a\nb", "<script>", "a/b", None):
        assert valid_request_id(bad) is None


async def test_a_line_logged_inside_an_actor_turn_carries_the_request_id(
        logs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: CartActor, **_: Any) -> Any:
        raise RuntimeError("a bug inside the turn")

    logs()
    async with gateway() as (http, _):
        cart = (await http.post("/v1/carts", headers=bearer("bob"))).json()
        monkeypatch.setattr(CartActor, "view", broken)
        r = await http.get(f"/v1/carts/{cart['cart_id']}",
                           headers={**bearer("bob"), "X-Request-ID": "trace-me-1"})
        out = logs()
    assert r.status_code == 503
    turn = [ln for ln in out if "failed; restarting" in ln["event"]]
    assert len(turn) == 1 and turn[0]["request_id"] == "trace-me-1"
    assert turn[0]["logger"] == "actors.runtime" and turn[0]["level"] == "error"
    assert "a bug inside the turn" in turn[0]["exception"]


def test_secret_fields_are_redacted_whatever_logs_them(logs: Any) -> None:
    logs()
    structlog.get_logger("x").warning("oops", token="abc.def.ghi", auth_secret="s3cr3t",
                                      Authorization="Bearer zzz", cart_id="c1")
    logging.getLogger("y").warning("plain %s", "message")
    out = logs()
    line = next(ln for ln in out if ln["event"] == "oops")
    assert line["token"] == line["auth_secret"] == line["Authorization"] == "[redacted]"
    assert line["cart_id"] == "c1"
    assert any(ln["event"] == "plain message" and ln["logger"] == "y" for ln in out)


def test_a_process_started_by_a_configured_one_configures_itself(
        logs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    logs()  # this process configured: a child inherits the level in its environment
    import os

    assert os.environ[INHERITED] == "info"
    structlog.reset_defaults()  # as a fresh Ray host process would be
    assert not structlog.is_configured()
    middleware = AccessLogMiddleware(app=None)
    assert structlog.is_configured() and middleware.log is not None

