"""Issue 9, defect 6: secrets are never shown, and an explicitly configured Redis that does not
answer or refuses the password stops the start instead of falling back to the bundled one."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.settings import GatewaySettings
from snapshots.bundled import free_port, redis_server_binary
from tests.e2e.server import Server

pytestmark = pytest.mark.security

ROOT = Path(__file__).resolve().parents[2]
GOOD_SECRET = "a-long-enough-secret-for-the-test-suite-01"


def serve(*args: str, env: dict[str, str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``cart-engine serve ARGS`` run to its end (it must end on its own: bad settings)."""
    return subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--placement", "local",
                           "--port", str(free_port()), *args],
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def one_line_error(run: subprocess.CompletedProcess[str], code: int, secret: str) -> str:
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    assert secret not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    return lines[0]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_short_auth_secret_is_a_one_line_error_that_does_not_show_it(how: str) -> None:
    secret = "short-" + uuid.uuid4().hex[:8]
    run = serve("--auth-secret", secret) if how == "flag" else \
        serve(env={"CART_ENGINE_AUTH_SECRET": secret})
    line = one_line_error(run, 2, secret)
    assert "--auth-secret" in line and "32 bytes" in line


def test_settings_never_show_their_secrets() -> None:
    s = GatewaySettings(auth_secret=GOOD_SECRET, redis_url="redis://:pa55word@db:6379/0")
    for shown in (repr(s), str(s), str(s.model_dump())):
        assert GOOD_SECRET not in shown and "pa55word" not in shown


@pytest.mark.parametrize("url,shown", [
    ("redis://:pa55word@db:6379/0", "redis://:***@db:6379/0"),
    ("rediss://app:pa55word@db.internal:6380/2", "rediss://app:***@db.internal:6380/2"),
    ("redis://db:6379/0?password=pa55word&ssl_cert_reqs=none",
     "redis://db:6379/0?password=***&ssl_cert_reqs=none"),
    ("redis://db:6379/0", "redis://db:6379/0"),
])
def test_a_redis_url_is_shown_without_its_password(url: str, shown: str) -> None:
    from gateway.redis_url import redacted  # here: a module that main did not have

    assert redacted(url) == shown


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """A private redis-server that requires a password: (port, password)."""
    password = "right-" + uuid.uuid4().hex
    port = free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--requirepass", password, "--logfile", "",
         "--dir", str(tmp_path_factory.mktemp("locked-redis"))],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # wait for the server's own word that it is ready
        if "Ready to accept connections" in line:
            break
    else:
        raise RuntimeError("redis-server did not start")
    try:
        yield port, password
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_wrong_redis_password_stops_the_start(locked_redis: tuple[int, str]) -> None:
    port, _ = locked_redis
    wrong = "wrong-" + uuid.uuid4().hex
    run = serve("--auth-secret", GOOD_SECRET, "--redis-url", f"redis://:{wrong}@127.0.0.1:{port}")
    line = one_line_error(run, 1, wrong)
    assert f"redis://:***@127.0.0.1:{port}" in line


def test_an_unreachable_redis_stops_the_start() -> None:
    secret = "pw-" + uuid.uuid4().hex
    run = serve("--auth-secret", GOOD_SECRET,
                env={"REDIS_URL": f"redis://:{secret}@127.0.0.1:{free_port()}/0"})
    one_line_error(run, 1, secret)


def test_the_redis_url_is_printed_without_its_password(locked_redis: tuple[int, str],
                                                       tmp_path: Path) -> None:
    port, password = locked_redis
    log = tmp_path / "serve.log"
    server = Server("--placement", "local", "--redis-url",
                    f"redis://:{password}@127.0.0.1:{port}/0", "--redis-prefix",
                    "sec" + uuid.uuid4().hex[:8], log=log)
    server.start()
    try:
        assert server.client().get("/healthz").status_code == 200
    finally:
        server.stop()
    out = log.read_text()
    assert f"redis://:***@127.0.0.1:{port}/0" in out
    assert password not in out and "(bundled)" not in out
