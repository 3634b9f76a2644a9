"""Every test here runs against both placements: in-process and Ray (pykka-style)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from actors.service import CartService
from snapshots.memory_store import MemoryStore
from snapshots.redis_store import RedisStore, connect
from tests.actors.harness import Harness


@pytest.fixture(params=["local", "ray"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    store = None
    if request.param == "local":
        h = Harness("local", MemoryStore())
    else:
        request.getfixturevalue("ray_address")
        url = request.getfixturevalue("redis_url")
        store = RedisStore(connect(url), "t" + uuid.uuid4().hex[:10])
        h = Harness("ray", store, url, store.prefix)
    await h.start()
    yield h
    await h.close()
    if store is not None:
        await store.clear()
        await store.close()


@pytest.fixture
def svc(harness: Harness) -> CartService:
    """The harness's service (a test that restarts the engine uses what restart returns)."""
    assert harness.service is not None
    return harness.service
