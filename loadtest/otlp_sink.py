"""A tiny OTLP/HTTP trace sink on loopback: it accepts exports and discards them.

The bench's ``engine-traced`` system points ``OTEL_EXPORTER_OTLP_ENDPOINT`` here, so the
engine's OTLP exporter does all its real work (batching, protobuf encoding, an HTTP POST per
batch) while nothing is stored. ``POST /v1/traces`` (OTLP/HTTP, binary protobuf, the
OpenTelemetry Protocol specification) answers 200 with an empty
``ExportTraceServiceResponse`` (an empty body: every field is optional); ``GET /stats``
answers ``{"exports", "bytes", "spans"}`` so far (``spans`` only counted with
``count_spans``: decoding costs CPU a bench would rather not spend; otherwise 0).

Run it on its own (it prints ``listening on URL`` once ready)::

    python -m loadtest.otlp_sink --port 4318 [--count-spans]

or in a thread (tests): ``with OtlpSink(count_spans=True) as sink: ... sink.url``. The bench
starts it as a process of its own (`SinkProcess`) so that neither the server's nor the load
generator's CPU figures include it. Built on the standard library's ``http.server``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

__all__ = ["OtlpSink", "SinkProcess", "tracing_env"]

TRACES_PATH = "/v1/traces"
#: Seconds between two probes of `/stats` while a sink process starts.
READY_POLL_S = 0.1


def tracing_env(url: str, service_name: str = "cart-engine-bench") -> dict[str, str]:
    """The environment that turns the engine's tracing on, exporting to the sink at ``url``
    (the SDK's defaults otherwise: batches of up to 512 spans every 5 s at most)."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_SERVICE_NAME": service_name,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}


def count_spans_in(body: bytes) -> int:
    """Spans in an OTLP ``ExportTraceServiceRequest`` (binary protobuf)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest.FromString(body)
    return sum(len(scope.spans) for resource in request.resource_spans
               for scope in resource.scope_spans)


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.exports = self.bytes = self.spans = 0

    def add(self, size: int, spans: int) -> None:
        with self.lock:
            self.exports += 1
            self.bytes += size
            self.spans += spans

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"exports": self.exports, "bytes": self.bytes, "spans": self.spans}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter reuses its connection
    server: _SinkServer

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size)
        if self.path.split("?", 1)[0] != TRACES_PATH:
            self._answer(404, b"", "text/plain")
            return
        spans = 0
        if self.server.count_spans:
            try:
                spans = count_spans_in(body)
            except Exception:  # noqa: BLE001 - not OTLP protobuf: refuse it, keep serving
                self._answer(400, b"", "text/plain")
                return
        self.server.stats.add(size, spans)
        self._answer(200, b"", "application/x-protobuf")

    def do_GET(self) -> None:
        if self.path != "/stats":
            self._answer(404, b"", "text/plain")
            return
        self._answer(200, json.dumps(self.server.stats.snapshot()).encode(),
                     "application/json")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        return  # one line per export would cost more than the export


class _SinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, count_spans: bool) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.stats = _Stats()
        self.count_spans = count_spans


class OtlpSink:
    """The sink in a thread of this process, on ``127.0.0.1:port`` (0: a free port)."""

    def __init__(self, port: int = 0, count_spans: bool = False) -> None:
        self._server = _SinkServer(port, count_spans)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="otlp-sink", daemon=True)

    def stats(self) -> dict[str, int]:
        """``{"exports", "bytes", "spans"}`` received so far."""
        return self._server.stats.snapshot()

    def __enter__(self) -> OtlpSink:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class SinkProcess:
    """The sink as a process of its own (``python -m loadtest.otlp_sink``) on ``port``."""

    def __init__(self, port: int, log_path: Path, count_spans: bool = False) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.command = [sys.executable, "-m", "loadtest.otlp_sink", "--port", str(port),
                        *(["--count-spans"] if count_spans else [])]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start it and wait until `/stats` answers; RuntimeError if it does not."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH")) if p))
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=root, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the OTLP sink exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/stats", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(READY_POLL_S)
        self.stop()
        raise RuntimeError(f"the OTLP sink did not answer within {timeout_s:.0f} s")

    def stats(self) -> dict[str, int] | None:
        """What it received so far, None if it does not answer."""
        try:
            reply = httpx.get(f"{self.url}/stats", timeout=5.0)
            return reply.json() if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.otlp_sink",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--count-spans", action="store_true",
                        help="decode each export to count its spans (costs CPU)")
    args = parser.parse_args(argv)
    server = _SinkServer(args.port, args.count_spans)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
