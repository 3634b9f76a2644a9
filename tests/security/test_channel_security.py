"""The host channel (`actors.channel`) as an attacker sees it: no code runs on decode, no
secret leaks to a listener, idle and surplus connections are closed (issue 9, item 3).

Every test runs a loopback server, no Ray. Where a test waits for something that must not
happen on a fixed build, ``BOUND`` seconds caps the wait so that the unfixed build fails
instead of hanging; a passing run never waits for it.
"""

from __future__ import annotations

import asyncio
import pickle
import secrets
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import trustme

from actors.channel import (
    HEADER,
    MAGIC,
    NONCE_BYTES,
    PROOF_BYTES,
    TOKEN_BYTES,
    ChannelAuthError,
    ChannelClient,
    ChannelServer,
)
from actors.runtime import Message, Reply, ok

pytestmark = pytest.mark.security

TOKEN = secrets.token_bytes(TOKEN_BYTES)
#: Seconds after which a wait that a fixed build never reaches gives up (see the docstring).
BOUND = 10.0

#: What a pickle payload did when it was unpickled (nothing, if the channel holds).
RAN: list[str] = []


def _ran(who: str) -> list[str]:
    RAN.append(who)
    return []


class Evil:
    """Unpickling this calls ``_ran``: a stand-in for ``os.system``."""

    def __init__(self, who: str) -> None:
        self.who = who

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return _ran, (self.who,)


def frame(batch_id: int, body: bytes) -> bytes:
    return HEADER.pack(len(body), batch_id) + body


def msg(i: int, method: str = "view") -> Message:
    return ("cart", f"c{i}", method, {"i": i}, None, None)


class Host:
    """Answers each message with its ``i``; ``hold`` waits for ``release``; ``decimal``
    answers a value the wire codec has no form for (pickle would carry it)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = asyncio.Event()
        self.batches = 0

    async def __call__(self, batch: list[Message]) -> list[Reply]:
        self.batches += 1
        if batch[0][2] == "hold":
            self.holding.set()
            await self.release.wait()
        if batch[0][2] == "decimal":
            return [ok(Decimal("1.50"))]
        return [ok(m[3]["i"]) for m in batch]


@pytest.fixture(autouse=True)
def nothing_ran() -> None:
    RAN.clear()


@pytest.fixture
async def served() -> AsyncIterator[tuple[Host, ChannelServer, tuple[str, int]]]:
    host = Host()
    server = ChannelServer(host, TOKEN)
    address = await server.start("127.0.0.1")
    yield host, server, address
    host.release.set()
    await server.close()


async def test_a_pickle_sent_after_a_valid_handshake_runs_nothing_and_closes_only_its_connection(
        served) -> None:  # type: ignore[no-untyped-def]
    host, server, address = served
    bystander, attacker = ChannelClient(address, TOKEN), ChannelClient(address, TOKEN)
    assert await bystander.call([msg(1)]) == [ok(1)]
    assert await attacker.call([msg(2)]) == [ok(2)]  # a peer that passed the handshake
    attacker_frames = attacker._frames
    assert attacker_frames is not None
    attacker_frames.writer.write(frame(99, pickle.dumps([Evil("host")])))
    # the host closes that connection (the attacker's side sees the end of its stream)
    done, _ = await asyncio.wait({attacker_frames.lost}, timeout=BOUND)
    assert RAN == []
    assert attacker_frames.lost in done
    assert server.refused["an undecodable frame"] == 1
    # the other connection never noticed, and the attacker's next batch reconnects
    bystander_frames = bystander._frames
    assert await bystander.call([msg(3)]) == [ok(3)]
    assert bystander._frames is bystander_frames
    assert await attacker.call([msg(4)]) == [ok(4)]
    assert host.batches == 4
    await bystander.close()
    await attacker.close()


async def test_a_pickle_in_a_reply_runs_nothing_in_the_caller(served) -> None:  # type: ignore[no-untyped-def]
    host, server, address = served
    client = ChannelClient(address, TOKEN)
    held = asyncio.ensure_future(client.call([msg(1, "hold")]))
    await host.holding.wait()
    (host_side,) = server._writers
    host_side.write(frame(client._next_id, pickle.dumps((True, [Evil("caller")]))))
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(held, BOUND)
    assert RAN == []
    await client.close()


async def test_a_listener_without_the_secret_learns_nothing_and_is_refused() -> None:
    """A process on a dead host's port answers like a host but cannot make the proof: the
    client sends it nothing but its opening (no secret, no batch) and raises."""
    received = bytearray()
    done = asyncio.Event()

    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await reader.readexactly(len(MAGIC) + NONCE_BYTES))
        writer.write(MAGIC + secrets.token_bytes(NONCE_BYTES + PROOF_BYTES))
        received.extend(await reader.read())  # up to the client's close
        done.set()
        writer.close()

    listener = await asyncio.start_server(impostor, "127.0.0.1", 0)
    address = listener.sockets[0].getsockname()[:2]
    client = ChannelClient(address, TOKEN)
    with pytest.raises(ChannelAuthError):
        await asyncio.wait_for(client.call([msg(1)]), BOUND)
    await asyncio.wait_for(done.wait(), BOUND)
    assert TOKEN not in received
    assert len(received) == len(MAGIC) + NONCE_BYTES  # its opening, and then it hung up
    listener.close()
    await listener.wait_closed()

    # a real channel server that holds another secret is refused the same way
    other = Host()
    wrong = ChannelServer(other, secrets.token_bytes(TOKEN_BYTES))
    client = ChannelClient(await wrong.start("127.0.0.1"), TOKEN)
    with pytest.raises(ChannelAuthError):
        await client.call([msg(1)])
    assert other.batches == 0
    await wrong.close()


async def test_a_relay_to_a_live_host_elsewhere_is_refused(served) -> None:  # type: ignore[no-untyped-def]
    """A process on a dead host's port that forwards the handshake to a live host gets
    nowhere: the live host's proof names its own address, not the one the client dialed."""
    host, _, address = served

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*address)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    listener = await asyncio.start_server(relay, "127.0.0.1", 0)
    client = ChannelClient(listener.sockets[0].getsockname()[:2], TOKEN)
    with pytest.raises(ChannelAuthError):
        await asyncio.wait_for(client.call([msg(1)]), BOUND)
    assert host.batches == 0
    listener.close()
    await listener.wait_closed()


async def test_a_connection_that_never_authenticates_is_closed_after_the_preauth_timeout() -> None:
    host = Host()
    server = ChannelServer(host, TOKEN, preauth_timeout=0.2)
    address = await server.start("127.0.0.1")
    silent_reader, silent = await asyncio.open_connection(*address)
    partial_reader, partial = await asyncio.open_connection(*address)
    partial.write(MAGIC)  # starts the opening and stalls
    # the host hangs up on both: each reader sees the end of its stream, and nothing else
    assert await asyncio.wait_for(silent_reader.read(), BOUND) == b""
    assert await asyncio.wait_for(partial_reader.read(), BOUND) == b""
    assert server.refused["not authenticated in time"] == 2
    client = ChannelClient(address, TOKEN)
    assert await client.call([msg(1)]) == [ok(1)]  # an honest caller is unaffected
    silent.close()
    partial.close()
    await client.close()
    await server.close()


async def test_connections_over_the_caps_are_closed_at_once() -> None:
    # the pre-auth timeout is far beyond the test's bound: only the caps can close anything
    host = Host()
    server = ChannelServer(host, TOKEN, preauth_timeout=600, max_connections=3,
                           max_unauthenticated=1)
    address = await server.start("127.0.0.1")
    first = ChannelClient(address, TOKEN)
    assert await first.call([msg(1)]) == [ok(1)]
    _idle_reader, idle = await asyncio.open_connection(*address)  # takes the one free slot
    extra_reader, extra = await asyncio.open_connection(*address)
    assert await asyncio.wait_for(extra_reader.read(), BOUND) == b""
    late = ChannelClient(address, TOKEN)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(late.call([msg(2)]), BOUND)
    assert server.refused["over the cap of unauthenticated connections"] == 2
    assert await first.call([msg(3)]) == [ok(3)]  # the authenticated one lives on
    for w in (idle, extra):
        w.close()
    await first.close()
    await server.close()

    server = ChannelServer(host, TOKEN, preauth_timeout=600, max_connections=2,
                           max_unauthenticated=2)
    address = await server.start("127.0.0.1")
    clients = [ChannelClient(address, TOKEN) for _ in range(3)]
    assert await clients[0].call([msg(4)]) == [ok(4)]
    assert await clients[1].call([msg(5)]) == [ok(5)]
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(clients[2].call([msg(6)]), BOUND)
    assert server.refused["over the connection cap"] == 1
    assert await clients[0].call([msg(7)]) == [ok(7)]
    for c in clients:
        await c.close()
    await server.close()


async def test_a_reply_the_codec_cannot_carry_fails_only_its_batch(served) -> None:  # type: ignore[no-untyped-def]
    """Pickle would have carried any object (and so run any code); the wire codec refuses what
    is not plain data, and only that batch fails: others in flight on the connection and
    after it are answered."""
    host, _, address = served
    client = ChannelClient(address, TOKEN)
    held = asyncio.ensure_future(client.call([msg(1, "hold"), msg(2)]))
    await host.holding.wait()
    with pytest.raises(RuntimeError, match="unencodable reply"):
        await asyncio.wait_for(client.call([msg(3, "decimal")]), BOUND)
    host.release.set()
    assert await held == [ok(1), ok(2)]
    assert await client.call([msg(4)]) == [ok(4)]
    await client.close()


def write_tls_files(ca: trustme.CA, directory: Path, name: str) -> dict[str, str]:
    """A node certificate signed by ``ca`` and Ray's three TLS variables naming its files."""
    cert = ca.issue_cert("ray-node.internal")  # not the address dialed: names are not checked
    paths = {"RAY_TLS_SERVER_CERT": directory / f"{name}.crt",
             "RAY_TLS_SERVER_KEY": directory / f"{name}.key",
             "RAY_TLS_CA_CERT": directory / f"{name}-ca.crt"}
    cert.cert_chain_pems[0].write_to_path(str(paths["RAY_TLS_SERVER_CERT"]))
    cert.private_key_pem.write_to_path(str(paths["RAY_TLS_SERVER_KEY"]))
    ca.cert_pem.write_to_path(str(paths["RAY_TLS_CA_CERT"]))
    return {k: str(v) for k, v in paths.items()}


def use_tls(monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> None:
    monkeypatch.setenv("RAY_USE_TLS", "1")
    for k, v in files.items():
        monkeypatch.setenv(k, v)


async def test_with_ray_tls_on_the_channel_is_tls_both_ways_on_rays_certificates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_tls(monkeypatch, write_tls_files(trustme.CA(), tmp_path, "node"))
    host = Host()
    server = ChannelServer(host, TOKEN)
    address = await server.start("127.0.0.1")
    client = ChannelClient(address, TOKEN)
    assert await client.call([msg(1)]) == [ok(1)]
    assert client._frames is not None
    assert client._frames.writer.get_extra_info("ssl_object") is not None
    (host_side,) = server._writers
    peer = host_side.get_extra_info("peercert")  # the host required the caller's certificate
    assert peer is not None and "ray-node.internal" in str(peer)
    await client.close()

    # a caller without TLS, or with a certificate from another CA, gets nowhere
    monkeypatch.setenv("RAY_USE_TLS", "0")
    plain = ChannelClient(address, TOKEN)
    with pytest.raises(OSError):
        await asyncio.wait_for(plain.call([msg(2)]), BOUND)
    assert server.refused["TLS handshake failed"] == 1
    use_tls(monkeypatch, write_tls_files(trustme.CA(), tmp_path, "stranger"))
    stranger = ChannelClient(address, TOKEN)
    with pytest.raises(OSError):
        await asyncio.wait_for(stranger.call([msg(3)]), BOUND)
    assert host.batches == 1
    await server.close()
