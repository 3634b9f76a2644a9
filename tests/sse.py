"""A small Server-Sent Events reader over httpx for the tests: waits on bytes, never sleeps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    id: str | None
    data: Any


class EventStream:
    """The events (and heartbeat comments) of one open ``text/event-stream`` response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []
        self.last_id: str | None = None

    async def _next_block(self) -> list[str]:
        block: list[str] = []
        async for line in self.lines:
            if line == "":
                if block:
                    return block
                continue
            block.append(line)
        raise EOFError("the stream ended")

    async def next(self, within: float = 10.0, comments: bool = False) -> Event | str:
        """The next event (a comment block too, as its text, when ``comments``)."""
        async def read() -> Event | str:
            while True:
                block = await self._next_block()
                if all(ln.startswith(":") for ln in block):
                    text = "\n".join(ln[1:].strip() for ln in block)
                    self.comments.append(text)
                    if comments:
                        return text
                    continue
                fields: dict[str, str] = {}
                for ln in block:
                    if ln.startswith(":"):
                        continue
                    name, _, value = ln.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
                if "id" in fields:
                    self.last_id = fields["id"]
                return Event(fields.get("event", "message"), fields.get("id"),
                             json.loads(fields["data"]) if "data" in fields else None)
        return await asyncio.wait_for(read(), within)

    async def event(self, within: float = 10.0) -> Event:
        ev = await self.next(within)
        assert isinstance(ev, Event)
        return ev

    async def until(self, kind: str, within: float = 10.0, **match: Any) -> tuple[Event,
                                                                                 list[Event]]:
        """The first ``kind`` event whose data has ``match``, and the events before it."""
        skipped: list[Event] = []
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while True:
            ev = await self.event(max(0.01, end - loop.time()))
            if ev.event == kind and all(ev.data.get(k) == v for k, v in match.items()):
                return ev, skipped
            skipped.append(ev)


@asynccontextmanager
async def open_stream(client: httpx.AsyncClient, path: str, token: str | None,
                      last_event_id: str | None = None) -> AsyncIterator[EventStream]:
    headers = {"Accept": "text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    async with client.stream("GET", path, headers=headers) as response:
        yield EventStream(response)
