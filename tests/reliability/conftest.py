"""A multi-node local Ray cluster and a `cart-engine serve` on it, for failure tests.

These tests run in a pytest process of their own (the Makefile's second command): a process
can join one Ray cluster only, and the other suites share a single-node one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import Server

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[object]:
    """A head node and one worker node, each a raylet of its own on this machine (one module
    at a time: the recipe test starts a cluster of its own with ``ray start``)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "object_store_memory": 100 * 2**20})
    cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


class Cluster:
    """A served engine on the Ray cluster, with admin helpers."""

    def __init__(self, server: Server, prefix: str, ray_cluster: object) -> None:
        self.server = server
        self.prefix = prefix
        self.ray = ray_cluster
        self.admin = httpx.Client(base_url=server.url, timeout=60, headers={
            "Authorization": f"Bearer {server.token('ops', admin=True)}"})

    def hosts(self) -> dict[str, dict[str, object]]:
        r = self.admin.get("/v1/admin/cluster")
        r.raise_for_status()
        return r.json()["hosts"]  # type: ignore[no-any-return]


@pytest.fixture
def engine(redis_url: str, ray_cluster: object, tmp_path: Path) -> Iterator[Cluster]:
    """`cart-engine serve` with two hosts (an ingress each) over the two nodes."""
    prefix = "rel" + uuid.uuid4().hex[:8]
    srv = Server("--redis-url", redis_url, "--redis-prefix", prefix, "--ray-address",
                 ray_cluster.address, "--hosts", "2",  # type: ignore[attr-defined]
                 log=tmp_path / "server.log").start()
    c = Cluster(srv, prefix, ray_cluster)
    try:
        yield c
    finally:
        c.admin.close()
        srv.stop()
        import redis

        r = redis.Redis.from_url(redis_url)
        for k in r.scan_iter(match=f"{prefix}:*", count=1000):
            r.delete(k)
        r.close()
