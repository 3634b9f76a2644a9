"""Issue 9, defect 4: rate limits key on the verified identity, else the client address;
neither made-up tokens nor a forged ``X-Forwarded-For`` buy a fresh window."""

from __future__ import annotations

import secrets

import pytest

from gateway.auth import issue_token
from tests.security.conftest import SECRET, ClientAt, assert_error

pytestmark = pytest.mark.security

RATE = "3/minute"


async def test_a_new_invalid_token_each_time_does_not_escape_the_limit(
        client_at: ClientAt) -> None:
    async with client_at(rate_limit=RATE) as (c, _):
        answers = [await c.get("/v1/products",
                               headers={"Authorization": f"Bearer {secrets.token_hex(16)}"})
                   for _ in range(5)]
        assert [a.status_code for a in answers[:3]] == [200, 200, 200]  # a public route
        assert_error(answers[3], 429, "rate_limited")
        assert_error(answers[4], 429, "rate_limited")
        # and on a route that reads the token: 401 until the address's window is spent
        async with client_at(rate_limit=RATE) as (c2, _):
            codes = [(await c2.get("/v1/saved", headers={
                "Authorization": f"Bearer {secrets.token_hex(16)}"})).status_code
                for _ in range(5)]
            assert codes == [401, 401, 401, 429, 429]


async def test_a_users_tokens_share_one_window_and_users_do_not_share(
        client_at: ClientAt) -> None:
    async with client_at(rate_limit=RATE) as (c, _):
        tokens = [issue_token(SECRET, "alice", ttl=600 + i) for i in range(5)]
        assert len(set(tokens)) == 5
        codes = [(await c.get("/v1/saved", headers={"Authorization": f"Bearer {t}"}))
                 .status_code for t in tokens]
        assert codes == [200, 200, 200, 429, 429]
        # the address's own window is untouched: bob, from the same address, is served
        bob = {"Authorization": f"Bearer {issue_token(SECRET, 'bob')}"}
        assert (await c.get("/v1/saved", headers=bob)).status_code == 200


async def test_x_forwarded_for_is_ignored_from_an_untrusted_peer(client_at: ClientAt) -> None:
    async with client_at(rate_limit=RATE) as (c, _):
        codes = [(await c.get("/v1/products",
                              headers={"X-Forwarded-For": f"198.51.100.{i}"})).status_code
                 for i in range(5)]
        assert codes == [200, 200, 200, 429, 429]


async def test_x_forwarded_for_names_the_client_behind_a_trusted_proxy(
        client_at: ClientAt) -> None:
    async with client_at(("10.0.0.5", 443), rate_limit=RATE,
                         trusted_proxies=["10.0.0.0/24"]) as (c, _):
        def via(client: str) -> dict[str, str]:
            # a client-supplied entry first, then the address the proxy saw
            return {"X-Forwarded-For": f"192.0.2.99, {client}"}

        first = [(await c.get("/v1/products", headers=via("198.51.100.1"))).status_code
                 for _ in range(4)]
        second = [(await c.get("/v1/products", headers=via("198.51.100.2"))).status_code
                  for _ in range(2)]
        assert first == [200, 200, 200, 429]
        assert second == [200, 200]


def test_serve_does_not_let_uvicorn_trust_x_forwarded_for_from_loopback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn by default rewrites the client address from ``X-Forwarded-For`` when the peer
    is 127.0.0.1; only ``--trusted-proxies`` may say whose header counts."""
    import uvicorn

    import gateway.app
    from gateway.cli import main

    seen: dict[str, object] = {}
    monkeypatch.setattr(gateway.app, "create_app", lambda settings: "app")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("CART_ENGINE_REDIS_URL", raising=False)
    assert main(["serve", "--port", "0", "--placement", "local"]) == 0
    assert seen["proxy_headers"] is False
