"""The ingress's uvicorn protocol sends a response's writes of one loop step as one write."""

from __future__ import annotations

import asyncio

import pytest

from gateway.http_protocol import _CoalescingTransport

pytestmark = pytest.mark.unit


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.eof = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def _step() -> None:
    await asyncio.sleep(0)


async def test_writes_of_one_step_go_out_as_one_write_in_order() -> None:
    raw = _Recorder()
    t = _CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    t.write(b"{}")
    assert raw.writes == []  # nothing sent inside the step
    await _step()
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
    t.write(b"next")
    await _step()
    assert raw.writes[-1] == b"next" and len(raw.writes) == 2


async def test_close_and_eof_send_what_is_buffered_first() -> None:
    raw = _Recorder()
    t = _CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"a")
    t.write_eof()
    assert raw.writes == [b"a"] and raw.eof
    t.write(b"b")
    t.close()
    assert raw.writes == [b"a", b"b"] and raw.closed
    await _step()  # the step's scheduled flush finds nothing more to send
    assert raw.writes == [b"a", b"b"]
    assert t.get_extra_info("peername") == "info:peername"  # the rest is the transport's
