"""The security suite: each test is an attack on the gateway's edge that must fail.

``shop`` is the gateway over an in-process engine (its records still go through the msgpack
codec, `snapshots.memory_store`), driven over ASGI, with one product in stock; ``client_at``
builds such a gateway seen from a chosen client address, with chosen settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from actors.service import CartService
from gateway.app import create_app
from gateway.auth import issue_token
from gateway.settings import GatewaySettings

SECRET = "security-suite-secret-0123456789abcdef"
PRODUCT = {"name": "Lamp", "category": "home", "price": {"amount": 2500, "currency": "USD"},
           "variants": [{"variant_id": "lamp-red", "attributes": {"color": "red"}}]}


def bearer(sub: str, role: str = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, sub, role)}"}


@asynccontextmanager
async def app_client(client: tuple[str, int] = ("203.0.113.7", 50000), **settings: Any
                     ) -> AsyncIterator[tuple[httpx.AsyncClient, CartService]]:
    """An HTTP client to a fresh gateway (``GatewaySettings(**settings)``) over an in-process
    engine, its requests arriving from ``client`` (address, port)."""
    service = await CartService.in_process()
    app = create_app(GatewaySettings(auth_secret=SECRET, **settings), service)
    app.state.service = service  # the lifespan would; ASGITransport does not run it
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=client),
                                     base_url="http://shop.test") as c:
            yield c, service
    finally:
        await service.close()


@dataclass
class Shop:
    client: httpx.AsyncClient
    service: CartService
    user: dict[str, str]
    cart_id: str
    version: int

    async def cart(self) -> dict[str, Any]:
        r = await self.client.get(f"/v1/carts/{self.cart_id}", headers=self.user)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    """A gateway with product ``lamp`` (10 in stock) and a user ``alice`` whose cart holds one
    lamp."""
    async with app_client() as (c, service):
        await service.put_product("lamp", PRODUCT)
        await service.set_stock("lamp-red", set=10)
        user = bearer("alice")
        r = await c.post("/v1/carts", headers=user)
        cart_id = r.json()["cart_id"]
        r = await c.post(f"/v1/carts/{cart_id}/items", headers=user,
                         json={"product_id": "lamp", "variant_id": "lamp-red", "quantity": 1})
        assert r.status_code == 200, r.text
        yield Shop(c, service, user, cart_id, r.json()["version"])


ClientAt = Callable[..., AbstractAsyncContextManager[tuple[httpx.AsyncClient, CartService]]]


@pytest.fixture
def client_at() -> ClientAt:
    return app_client


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """``r`` is the API.md error body with ``status`` (and ``code`` when given)."""
    assert r.status_code == status, (r.status_code, r.text)
    error = r.json()["error"]
    assert set(error) == {"code", "message", "details"}, error
    if code is not None:
        assert error["code"] == code, error
    return error  # type: ignore[no-any-return]
