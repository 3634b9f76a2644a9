"""The direct batch channel to a Ray host (`actors.channel`), without Ray: one loopback server."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import wire
from actors.channel import (
    CLIENT_LABEL,
    HEADER,
    MAGIC,
    NONCE_BYTES,
    PROOF_BYTES,
    TOKEN_BYTES,
    ChannelClient,
    ChannelServer,
    proof,
)
from actors.router import BatchingRouter
from actors.runtime import Message, Reply, ok
from engine.cart import Cart, CartStatus, LineItem
from engine.catalog import product_from_dict
from engine.checkout import Order
from engine.promotions import Promotion, Target
from engine.stock import Reservation

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
        self.seen: list[int] = []

    async def __call__(self, batch: list[Message]) -> list[Reply]:
        self.batches.append(len(batch))
        self.seen.extend(m[3]["i"] for m in batch)
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
    assert host.batches == [1] * 5  # the host runs each message of a batch on its own
    await client.close()


async def test_each_reply_is_heard_as_it_arrives_not_when_the_batch_is_done(served) -> None:  # type: ignore[no-untyped-def]
    # A batch's slow message must not hold its batch-mates' replies: a turn waiting for one
    # of them could be what the slow message waits for, on the other host (a deadlock).
    host, _, address = served
    client = ChannelClient(address, TOKEN)
    heard: dict[int, Reply] = {}
    second = asyncio.Event()

    def on_reply(i: int, reply: Reply) -> None:
        heard[i] = reply
        if i == 1:
            second.set()

    held = asyncio.ensure_future(client.call([msg(1, "hold"), msg(2)], on_reply))
    await second.wait()  # msg(2)'s reply came while msg(1) is still held
    assert heard == {1: ok(2)} and not held.done()
    host.release.set()
    assert await held == [ok(1), ok(2)] and heard == {0: ok(1), 1: ok(2)}
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


async def test_replies_ready_before_a_message_fails_still_reach_their_callers(
        served) -> None:  # type: ignore[no-untyped-def]
    """Message 0 is answered in the same loop step as message 1 fails: its reply is sent
    before the batch's failure, so its caller has its answer and only the batch raises."""
    _, _, address = served
    client = ChannelClient(address, TOKEN)
    heard: dict[int, Reply] = {}
    with pytest.raises(RuntimeError, match="KeyError"):
        await client.call([msg(1), msg(2, "boom")], lambda i, r: heard.__setitem__(i, r))
    assert heard == {0: ok(1)}
    assert await client.call([msg(3)]) == [ok(3)]
    await client.close()


async def test_a_lost_connection_fails_its_own_batches_not_those_of_the_next_one(
        served) -> None:  # type: ignore[no-untyped-def]
    """The end of a broken connection can be delivered after the next one opened: it fails
    the batches that were in flight on it, never those sent since on the new one."""
    host, _, address = served
    client = ChannelClient(address, TOKEN)
    assert await client.call([msg(1)]) == [ok(1)]
    first = client._frames
    assert first is not None
    first.transport.close()
    await first.lost
    held = asyncio.ensure_future(client.call([msg(2, "hold")]))  # on a new connection
    await host.holding.wait()
    assert client._frames is not None and client._frames is not first
    (in_flight,) = client._pending.values()
    client._lost(first, ConnectionError("the first connection's end, delivered late"))
    assert not in_flight.fut.done()
    host.release.set()
    assert await held == [ok(2)]
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
    await server.close(grace=0)  # as if it died: no time to answer
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
    await server.close(grace=0.05)  # the turn outlasts the grace
    with pytest.raises(ConnectionError):
        await held
    host.release.set()  # the host finishes its turn; its reply has nowhere to go
    await client.close()


async def test_a_closing_server_lets_the_batches_under_way_answer_first() -> None:
    """A leaving host finishes what it was asked (a forwarded HTTP request, a turn) before it
    closes its connections: its callers get answers, not lost replies."""
    host = Host()
    server = ChannelServer(host, TOKEN)
    client = ChannelClient(await server.start("127.0.0.1"), TOKEN)
    held = asyncio.ensure_future(client.call([msg(1, "hold"), msg(2)]))
    await host.holding.wait()
    closing = asyncio.ensure_future(server.close())
    await asyncio.sleep(0)
    assert not closing.done()  # waiting for the batch under way
    # a batch sent while it closes is refused unrun: its caller may send it elsewhere
    status, error = (await client.call([msg(9)]))[0]
    assert status == "err" and error["code"] == "host_unavailable"
    assert error["details"][0]["sent"] is False and 9 not in host.seen
    host.release.set()
    assert await held == [ok(1), ok(2)]
    await closing
    with pytest.raises(ConnectionError):  # and then it is closed
        await ChannelClient(client.address, TOKEN).call([msg(3)])
    await client.close()


async def test_channel_connections_keep_tcp_keepalive_on(served) -> None:  # type: ignore[no-untyped-def]
    import socket

    _, _, address = served
    client = ChannelClient(address, TOKEN)
    assert await client.call([msg(1)]) == [ok(1)]
    sock = client._frames.writer.get_extra_info("socket")  # type: ignore[union-attr]
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    await client.close()


# -- what travels: the wire codec (`actors.wire`) -------------------------------------------

def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (a tuple is not a list here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def engine_values() -> dict[str, Any]:
    line = LineItem(line_id="ln_1", product_id="tee", variant_id="tee-s", sku="TEE-S",
                    name="Tee", quantity=3, unit_price=2500, options={"gift_wrap": "yes"},
                    added_at=T0, updated_at=T0 + 1.5, category="apparel", hold_until=T0 + 600)
    order = Order("ord_2", "c2", "guest-1", "JPY", [{"line_id": "ln_1", "quantity": 2}],
                  {"total": {"amount": 900, "currency": "JPY"}}, [], T0, T0, T0 + 900)
    product = product_from_dict("tee", {
        "name": "Tee", "category": "apparel", "price": {"amount": 2500, "currency": "USD"},
        "variants": [{"variant_id": "tee-s", "sku": "TEE-S", "attributes": {"size": "S"},
                      "shards": 4}]})
    promotion = Promotion(promotion_id="p9", kind="fixed", value=500, currency="USD",
                          amounts=(("EUR", 450), ("USD", 500)),
                          target=Target("variants", frozenset({"a", "b"}), frozenset({"c"})),
                          customer_groups=frozenset({"vip"}), starts_at=T0)
    return {"line": line, "order": order, "product": product, "promotion": promotion,
            "reservation": Reservation("ord_1:ln_1", 4, T0 + 900, "c1")}


T0 = 1_800_000_000.25

PLAIN = {"tuple": (1, ("a", None), []), "set": {1, 2}, "frozenset": frozenset({"x"}),
         "big": 2**100, "negative big": -(2**70), "u64": 2**64 - 1, "i64": -(2**63),
         "nan": float("nan"), "inf": float("-inf"), "bytes": b"\x00\xff", "bool": True,
         "int keys": {1: "a", (2, 3): "b"}, "nested": [[(1, 2)], {"k": ({3},)}],
         "unicode": "Gr\u00fc\u00dfe \u2603", "none": None}


def test_the_wire_codec_round_trips_what_actors_send_with_its_types() -> None:
    values = {**PLAIN, **engine_values()}
    reply = [("ok", values), ("err", {"code": "x", "message": "y", "details": [{"a": 1}],
                                      "category": "conflict"})]
    assert same(wire.unpack(wire.pack(reply)), reply)
    assert same(wire.unpack(wire.pack(2**5000)), 2**5000)  # past int()'s 4,300-digit limit


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    | st.frozensets(st.integers(), max_size=4), max_leaves=20)


@given(json_like)
def test_any_plain_value_round_trips_with_its_types(value: Any) -> None:
    assert same(wire.unpack(wire.pack(value)), value)


@pytest.mark.parametrize("value", [object(), Decimal("1.5"), CartStatus.ACTIVE,
                                   Cart(cart_id="c1", owner="u", currency="USD", created_at=T0,
                                        updated_at=T0, expires_at=T0)],
                         ids=["object", "decimal", "enum", "cart (header-only record)"])
def test_a_value_without_a_wire_form_is_refused_when_packed(value: Any) -> None:
    with pytest.raises(wire.WireError):
        wire.pack({"v": [value]})


@pytest.mark.parametrize("body", [
    msgpack.packb(msgpack.ExtType(99, b"")),        # an extension code nobody defined
    msgpack.packb(msgpack.ExtType(wire.EXT_ENGINE, b"\x93\x01\xa3zzz\x80")),  # unknown tag
    b"\xc1",                                        # msgpack's never-used byte
    msgpack.packb([1, 2]) + b"\x00",                # trailing bytes
], ids=["unknown ext", "unknown engine tag", "reserved byte", "trailing bytes"])
def test_a_body_that_is_not_valid_is_refused_when_unpacked(body: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.unpack(body)


async def test_values_cross_the_channel_with_their_types(served) -> None:  # type: ignore[no-untyped-def]
    """What pickle used to carry still arrives as it was sent: tuples, sets, ints past 64
    bits, NaN, engine records; both ways."""
    _, server, address = served
    values = {**PLAIN, **engine_values()}
    got: list[list[Message]] = []

    async def echo(batch: list[Message]) -> list[Reply]:
        got.append(batch)
        return [ok(m[3]) for m in batch]

    server.handler = echo
    client = ChannelClient(address, TOKEN)
    batch: list[Message] = [("cart", "c1", "apply", values, "rid", "fp"),
                            ("cart", "c2", "view", {"if_match": 2**100}, None, None)]
    replies = await client.call(batch)
    assert same(got, [[m] for m in batch])  # each message handled on its own
    assert same(replies, [ok(values), ok({"if_match": 2**100})])
    await client.close()


async def test_a_batch_that_cannot_be_encoded_is_refused_before_anything_is_sent(
        served) -> None:  # type: ignore[no-untyped-def]
    host, _, address = served
    client = ChannelClient(address, TOKEN)
    assert await client.call([msg(1)]) == [ok(1)]
    with pytest.raises(wire.WireError):
        await client.call([("cart", "c1", "view", {"i": 1, "x": object()}, None, None)])
    assert await client.call([msg(2)]) == [ok(2)]
    assert host.batches == [1, 1]
    await client.close()


async def _handshake(address: tuple[str, int]) -> tuple[asyncio.StreamReader,
                                                         asyncio.StreamWriter, bytes]:
    """Open a raw connection and run the client's side of the handshake up to its proof,
    which it answers without sending it: the caller sends it with whatever follows."""
    reader, writer = await asyncio.open_connection(*address)
    nonce = secrets.token_bytes(NONCE_BYTES)
    writer.write(MAGIC + nonce)
    answer = await reader.readexactly(len(MAGIC) + NONCE_BYTES + PROOF_BYTES)
    host_nonce = answer[len(MAGIC):len(MAGIC) + NONCE_BYTES]
    return reader, writer, proof(TOKEN, CLIENT_LABEL, nonce, host_nonce, address)


def _frame(batch_id: int, messages: list[Message]) -> bytes:
    body = wire.pack([list(m) for m in messages])
    return HEADER.pack(len(body), batch_id) + body


async def _reply(reader: asyncio.StreamReader) -> tuple[int, Any]:
    size, batch_id = HEADER.unpack(await reader.readexactly(HEADER.size))
    return batch_id, wire.unpack(await reader.readexactly(size))


async def test_batches_sent_with_the_proof_and_split_anyhow_are_each_answered(served) -> None:  # type: ignore[no-untyped-def]
    """The host reads frames off the transport once the handshake is done: bytes that came
    in the same read as the proof are not lost, and frames cut at any byte, or several in
    one write, are each answered once."""
    host, _, address = served
    reader, writer, own_proof = await _handshake(address)
    frames = _frame(1, [msg(1)]) + _frame(2, [msg(2), msg(3)]) + _frame(3, [msg(4)])
    writer.write(own_proof + frames[:5])  # the proof, and a frame's first bytes behind it
    await writer.drain()
    for i in range(5, len(frames), 7):  # the rest in 7-byte pieces, one loop step apart
        writer.write(frames[i:i + 7])
        await writer.drain()
        await asyncio.sleep(0)
    replies: dict[int, list[Any]] = {}
    while sum(len(r) for r in replies.values()) < 4:
        batch_id, (answered, value) = await _reply(reader)
        assert answered is True
        replies.setdefault(batch_id, []).extend(value)
    assert {b: sorted(r) for b, r in replies.items()} == {
        1: [[0, "ok", 1]], 2: [[0, "ok", 2], [1, "ok", 3]], 3: [[0, "ok", 4]]}
    assert sorted(host.seen) == [1, 2, 3, 4]
    writer.close()
