"""One engine server for the e2e session, joined to the session's Ray cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CATALOG
from tests.e2e.server import Server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def server(redis_url: str, ray_address: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    log = Path(tmp_path_factory.mktemp("server")) / "server.log"
    prefix = "e2e" + uuid.uuid4().hex[:8]
    srv = Server("--redis-url", redis_url, "--redis-prefix", prefix, "--ray-address",
                 ray_address, "--catalog", str(CATALOG), "--hosts", "2", log=log).start()
    yield srv
    srv.stop()
    import redis

    r = redis.Redis.from_url(redis_url)
    for k in r.scan_iter(match=f"{prefix}:*", count=1000):
        r.delete(k)
    r.close()
