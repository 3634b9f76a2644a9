"""The README's recipe: `ray start` a head and a worker, then `cart-engine serve --ray-address`,
with Ray's default token authentication and no RAY_AUTH_MODE in the operator's shell."""

from __future__ import annotations

import os
import subprocess
import sys
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
    """``ray start --head`` and ``ray start --address`` (``--block``: they stop with us)."""
    port = free_port()
    common = ["--num-cpus", "1", "--disable-usage-stats", "--block",
              "--min-worker-port", "0", "--max-worker-port", "0"]
    head = subprocess.Popen(
        [RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false",
         "--ray-client-server-port", str(free_port()), "--node-ip-address", "127.0.0.1",
         *common], env=_shell_env(), stdout=open(tmp_path / "head.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT)
    procs = [head]
    try:
        address = f"127.0.0.1:{port}"
        _wait_for_gcs(address, head)
        procs.append(subprocess.Popen(
            [RAY, "start", "--address", address, "--node-ip-address", "127.0.0.1", *common],
            env=_shell_env(), stdout=open(tmp_path / "worker.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT))
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait_for_gcs(address: str, head: subprocess.Popen[bytes]) -> None:
    """Until the head answers ``ray status`` (or has died)."""
    for _ in range(120):
        assert head.poll() is None, "ray start --head exited"
        ok = subprocess.run([RAY, "status", "--address", address], env=_shell_env(),
                            capture_output=True, timeout=30).returncode == 0
        if ok:
            return
    raise AssertionError("the Ray head did not come up")


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
