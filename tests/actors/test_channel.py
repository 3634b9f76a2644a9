"""The direct batch channel to a Ray host (`actors.channel`), without Ray: one loopback server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from actors.channel import TOKEN_BYTES, ChannelClient, ChannelServer
from actors.router import BatchingRouter
from actors.runtime import Message, Reply, ok

pytestmark = pytest.mark.actors

TOKEN = secrets.token_bytes(TOKEN_BYTES)


def msg(i: int, method: str = "view") -> Message:
    return ("cart", f"c{i}", method, {"i": i}, None, None)


class Host:
    """Answers each message with its ``i``; a batch whose first message is ``hold`` waits for
    ``release``; ``boom`` fails the whole batch."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = asyncio.Event()
        self.batches: list[int] = []

    async def __call__(self, batch: list[Message]) -> list[Reply]:
        self.batches.append(len(batch))
        if batch[0][2] == "hold":
            self.holding.set()
            await self.release.wait()
        if batch[0][2] == "boom":
            raise KeyError("no such host state")
        if batch[0][2] == "lambda":
            return [ok(lambda: None)]  # a reply the wire codec cannot carry
        return [ok(m[3]["i"]) for m in batch]


@pytest.fixture
async def served() -> AsyncIterator[tuple[Host, ChannelServer, tuple[str, int]]]:
    host = Host()
    server = ChannelServer(host, TOKEN)
    address = await server.start("127.0.0.1")
    yield host, server, address
    await server.close()


async def test_batches_in_flight_on_one_connection_find_their_callers(served) -> None:  # type: ignore[no-untyped-def]
    host, _, address = served
    client = ChannelClient(address, TOKEN)
    held = asyncio.ensure_future(client.call([msg(1, "hold"), msg(2)]))
    await host.holding.wait()
    # the second batch overtakes the first, which its host is still working on
    assert await client.call([msg(3), msg(4), msg(5)]) == [ok(3), ok(4), ok(5)]
    assert not held.done()
    host.release.set()
    assert await held == [ok(1), ok(2)]
    assert host.batches == [2, 3]
    await client.close()


async def test_a_batch_the_host_fails_raises_for_its_caller_and_the_connection_lives_on(
        served) -> None:  # type: ignore[no-untyped-def]
    _, _, address = served
    client = ChannelClient(address, TOKEN)
    with pytest.raises(RuntimeError, match="KeyError"):
        await client.call([msg(1, "boom")])
    with pytest.raises(RuntimeError, match="unencodable reply"):
        await client.call([msg(1, "lambda")])
    assert await client.call([msg(2)]) == [ok(2)]
    await client.close()


async def test_a_caller_without_the_token_is_turned_away(served) -> None:  # type: ignore[no-untyped-def]
    host, _, address = served
    client = ChannelClient(address, secrets.token_bytes(TOKEN_BYTES))
    with pytest.raises(ConnectionError):
        await client.call([msg(1)])
    assert host.batches == []
    await client.close()


async def test_a_host_that_dies_mid_call_fails_the_batch_and_the_next_one_reconnects() -> None:
    """A host drops the connection with a batch in flight; the router answers that batch's
    callers host_unavailable, and the next batch reaches a healthy host started at the same
    address over a new connection."""
    dying = Host()
    server = ChannelServer(dying, TOKEN)
    address = await server.start("127.0.0.1")
    client = ChannelClient(address, TOKEN)

    async def call(i: int, batch: list[Message]) -> list[Reply]:
        return await client.call(batch)

    router = BatchingRouter(call, n_hosts=1)
    sent = asyncio.ensure_future(router.send(msg(1, "hold")))
    await dying.holding.wait()
    await server.close()
    status, error = await sent
    assert status == "err" and error["code"] == "host_unavailable"
    healthy = ChannelServer(Host(), TOKEN)
    assert await healthy.start(*address) == address
    assert await router.send(msg(2)) == ok(2)
    dying.release.set()
    await client.close()
    await healthy.close()


async def test_closing_the_server_fails_what_is_in_flight_instead_of_hanging() -> None:
    host = Host()
    server = ChannelServer(host, TOKEN)
    client = ChannelClient(await server.start("127.0.0.1"), TOKEN)
    held = asyncio.ensure_future(client.call([msg(1, "hold")]))
    await host.holding.wait()
    await server.close()
    with pytest.raises(ConnectionError):
        await held
    host.release.set()  # the host finishes its turn; its reply has nowhere to go
    await client.close()


async def test_channel_connections_keep_tcp_keepalive_on(served) -> None:  # type: ignore[no-untyped-def]
    import socket

    _, _, address = served
    client = ChannelClient(address, TOKEN)
    assert await client.call([msg(1)]) == [ok(1)]
    sock = client._writer.get_extra_info("socket")  # type: ignore[union-attr]
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    await client.close()
