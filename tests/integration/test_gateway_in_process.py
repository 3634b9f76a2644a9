"""The gateway over an in-process engine (no Ray, no server): rate limits and validation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from actors.service import CartService
from gateway.app import create_app
from gateway.auth import issue_token
from gateway.settings import GatewaySettings
from snapshots.memory_store import MemoryStore
from tests.integration.inprocess import SECRET, gateway

pytestmark = pytest.mark.integration


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with gateway(rate_limit="5/minute") as (c, _):
        yield c


async def test_a_client_over_its_rate_gets_429_with_retry_after(
        client: httpx.AsyncClient) -> None:
    h = {"Authorization": f"Bearer {issue_token(SECRET, 'busy')}"}
    answers = [await client.post("/v1/carts", headers=h) for _ in range(7)]
    assert [a.status_code for a in answers] == [201, 200, 200, 200, 200, 429, 429]
    body = answers[-1].json()["error"]
    assert body["code"] == "rate_limited" and int(answers[-1].headers["Retry-After"]) >= 1
    # Another client has its own window; operations routes are never limited.
    other = {"Authorization": f"Bearer {issue_token(SECRET, 'calm')}"}
    assert (await client.post("/v1/carts", headers=other)).status_code == 201
    health = [(await client.get("/healthz")).status_code for _ in range(10)]
    assert health == [200] * 10


async def test_a_store_that_is_down_is_a_503_with_retry_after() -> None:
    class DownStore(MemoryStore):
        async def put_reference(self, kind: str, ref_id: str, value: object) -> None:
            raise ConnectionError("redis is gone")

    service = await CartService.in_process(store=DownStore())
    app = create_app(GatewaySettings(auth_secret=SECRET), service)
    app.state.service = service
    admin = {"Authorization": f"Bearer {issue_token(SECRET, 'ops', 'admin')}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://test") as c:
        r = await c.put("/v1/admin/products/p1", headers=admin, json={
            "name": "P", "price": {"amount": 100, "currency": "USD"}})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["error"]["code"] == "dependency_unavailable"
    await service.close()
