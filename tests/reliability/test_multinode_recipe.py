"""The README's recipe: `ray start` a head and a worker, then `cart-engine serve --ray-address`,
with Ray's default token authentication and no RAY_AUTH_MODE in the operator's shell."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from snapshots.bundled import free_port
from tests.e2e.server import Server

pytestmark = pytest.mark.reliability

RAY = str(Path(sys.executable).with_name("ray"))


def _shell_env() -> dict[str, str]:
    """An operator's environment: none of Ray's auth variables set."""
    return {k: v for k, v in os.environ.items()
            if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_AUTH_TOKEN")}


@pytest.fixture
def ray_started(tmp_path: Path) -> Iterator[str]:
    """``ray start --head`` and ``ray start --address`` (``--block``: they stop with us).

    The worker node is given ``RAY_AUTH_MODE=token``, as Ray's token authentication asks of
    nodes that join; the engine is not (the README's point)."""
    port = free_port()
    common = ["--num-cpus", "1", "--disable-usage-stats", "--block"]
    procs = []
    try:
        procs.append(_start([RAY, "start", "--head", "--port", str(port),
                             "--include-dashboard", "false", *common],
                            _shell_env(), tmp_path / "head.log"))
        from ray._private.services import get_node_ip_address

        address = f"{get_node_ip_address()}:{port}"  # where Ray binds on this machine
        procs.append(_start([RAY, "start", "--address", address, *common],
                            {**_shell_env(), "RAY_AUTH_MODE": "token"},
                            tmp_path / "worker.log"))
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Run ``ray start ... --block`` and wait until it says the node runs (its log)."""
    proc = subprocess.Popen(cmd, env=env, stdout=open(log, "wb"),  # noqa: SIM115
                            stderr=subprocess.STDOUT)
    end = time.monotonic() + 120
    while b"Ray runtime started" not in log.read_bytes():
        assert proc.poll() is None, f"{' '.join(cmd[:3])} exited: {log.read_text()[-2000:]}"
        assert time.monotonic() < end, f"{' '.join(cmd[:3])} did not start"
        time.sleep(0.2)  # polling the node's log for its start line
    return proc


def test_serve_joins_a_ray_start_cluster_and_spreads_its_hosts(
        ray_started: str, redis_url: str, tmp_path: Path) -> None:
    prefix = "rec" + uuid.uuid4().hex[:8]
    srv = Server("--redis-url", redis_url, "--redis-prefix", prefix, "--ray-address",
                 ray_started, "--hosts", "2", env=_shell_env(), log=tmp_path / "serve.log")
    srv.env = _shell_env()
    srv.start()
    try:
        admin = {"Authorization": f"Bearer {srv.token('ops', admin=True)}"}
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            nodes = set()
            for _ in range(100):  # the worker node may join after the head's hosts started
                hosts = c.get("/v1/admin/cluster", headers=admin).json()["hosts"]
                nodes = {row["node"] for row in hosts.values()}
                if len(hosts) == 2:
                    break
            assert len(hosts) == 2
            r = c.post("/v1/carts")
            assert r.status_code == 201
            assert c.get("/readyz").json()["status"] == "ready"
        print(f"\nhosts {sorted(hosts)} on {len(nodes)} node(s)")
    finally:
        srv.stop()
        import redis

        r = redis.Redis.from_url(redis_url)
        for k in r.scan_iter(match=f"{prefix}:*", count=1000):
            r.delete(k)
        r.close()
