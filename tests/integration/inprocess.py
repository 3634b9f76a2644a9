"""The gateway over an in-process engine, driven through ASGI (no server, no Ray)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from actors.service import CartService
from actors.settings import EngineSettings
from gateway.app import create_app
from gateway.auth import issue_token
from gateway.settings import GatewaySettings

SECRET = "in-process-test-secret-0123456789abcdef"


@asynccontextmanager
async def gateway(engine: EngineSettings | None = None, clock: Any = None, store: Any = None,
                  **settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, CartService]]:
    """An HTTP client to a fresh app (``GatewaySettings(**settings)``) and its engine (on
    ``clock`` and ``store`` when given: `CartService.in_process`)."""
    service = await CartService.in_process(store=store, clock=clock, settings=engine)
    app = create_app(GatewaySettings(auth_secret=SECRET, **settings), service)
    app.state.service = service  # the lifespan would do this; ASGITransport does not run it
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test") as client:
            yield client, service
    finally:
        await service.close()


def bearer(sub: str, role: str = "user") -> dict[str, str]:
    """The Authorization header of a JWT for ``sub`` (``role`` user or admin)."""
    return {"Authorization": f"Bearer {issue_token(SECRET, sub, role)}"}
