"""A real ``cart-engine serve`` process for end-to-end tests, and an HTTP client for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.auth import issue_token
from snapshots.bundled import free_port

SECRET = "e2e-test-secret-of-at-least-32-bytes!"


class Server:
    """``cart-engine serve`` on a free loopback port; ``start`` waits for ``/readyz``."""

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.port = free_port()
        self.args = ["serve", "--port", str(self.port), "--auth-secret", SECRET, *args]
        self.env = {**os.environ, **(env or {})}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> Server:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *self.args], env=self.env,
            stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cart-engine exited with {self.proc.returncode}; "
                                   f"see {self.log}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("cart-engine did not become ready")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the clean shutdown path. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def token(self, sub: str, admin: bool = False) -> str:
        return issue_token(SECRET, sub, "admin" if admin else "user", 3600)

    def client(self, sub: str | None = None, admin: bool = False) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(sub, admin)}"} if sub else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def auth(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}
