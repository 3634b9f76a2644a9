"""Session fixtures: one Redis (``REDIS_URL`` or a bundled server) and one local Ray cluster.

Each test that touches Redis works under its own key prefix and deletes it afterwards.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from snapshots.bundled import BundledRedis
from snapshots.redis_store import RedisStore, connect

# Property tests judge results, not speed: a loaded CI machine must not fail them on time.
settings.register_profile("cart-engine", deadline=None)
settings.load_profile("cart-engine")

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "examples" / "catalog.json"


@pytest.fixture(autouse=True)
def _no_logging_left_behind() -> Iterator[None]:
    """`cart-engine serve` configures the process's JSON logs (gateway.logging_setup); a test
    that runs it must not hand that configuration, or its inherited level, to the next."""
    yield
    import logging

    import structlog

    from gateway.logging_setup import INHERITED

    if structlog.is_configured():
        structlog.reset_defaults()
        logging.getLogger().handlers[:] = []
        logging.getLogger().setLevel(logging.WARNING)
    os.environ.pop(INHERITED, None)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = BundledRedis(Path(tempfile.mkdtemp(prefix="ce-test-redis-")))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """Start one local Ray cluster for the whole session; its GCS address."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False,
             namespace="cart-engine-tests",
             object_store_memory=200 * 1024 * 1024, configure_logging=False,
             log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
async def redis_store(redis_url: str, prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(connect(redis_url), prefix)
    yield store
    await store.clear()
    await store.close()
