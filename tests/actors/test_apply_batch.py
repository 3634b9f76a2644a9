"""`CartService.apply`: batches of line operations over many carts (in-process, manual clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from actors.clock import ManualClock
from actors.service import CartOp, CartService
from snapshots.memory_store import MemoryStore
from snapshots.store import Write

pytestmark = pytest.mark.actors


def product(name: str, amount: int) -> dict[str, Any]:
    return {"name": name, "price": {"amount": amount, "currency": "USD"}, "stock": 100}


async def stocked(service: CartService) -> CartService:
    await service.put_product("p1", product("T", 1999))
    await service.put_product("p2", product("Mug", 850))
    await service.put_product("p3", product("Cap", 1200))
    return service


async def cart_of(service: CartService, owner: str) -> str:
    return (await service.active_cart(owner))["cart"]["cart_id"]  # type: ignore[no-any-return]


async def lines_of(service: CartService, owner: str, cart_id: str) -> dict[str, tuple[str, int]]:
    """``line_id -> (product_id, quantity)`` of the cart as its owner sees it."""
    cart = await service.get_cart(owner, cart_id)
    return {ln["line_id"]: (ln["product_id"], ln["quantity"]) for ln in cart["lines"]}


def codes(replies: list[Any]) -> list[str | None]:
    """Each reply's error code, None for an ``ok``."""
    return [value["code"] if status == "err" else None for status, value in replies]


@pytest.fixture
async def service() -> AsyncIterator[CartService]:
    svc = await CartService.in_process(clock=ManualClock(), hosts=2)
    yield await stocked(svc)
    await svc.close()


async def test_replies_come_back_in_input_order_across_interleaved_carts(
        service: CartService) -> None:
    a, b, c = [await cart_of(service, o) for o in ("alice", "bob", "carol")]
    ops = [
        CartOp(a, "alice", "add", "p1", 2),
        CartOp(b, "bob", "add", "p2", 1),
        CartOp(a, "alice", "add", "p2", 3),
        CartOp(c, "carol", "add", "p3", 1),
        CartOp(b, "bob", "add", "p1", 4),
        CartOp(a, "alice", "set", "ln_1", 5),
        CartOp(c, "carol", "add", "p1", 2),
        CartOp(b, "bob", "remove", "ln_1"),
        CartOp(a, "alice", "add", "p1", 1),   # the same variant again: into line ln_1
        CartOp(c, "carol", "set", "ln_1", 0),  # 0 removes
    ]
    replies = await service.apply(ops)
    assert replies == [
        ("ok", "ln_1"), ("ok", "ln_1"), ("ok", "ln_2"), ("ok", "ln_1"), ("ok", "ln_2"),
        ("ok", None), ("ok", "ln_2"), ("ok", None), ("ok", "ln_1"), ("ok", None),
    ]
    assert await lines_of(service, "alice", a) == {"ln_1": ("p1", 6), "ln_2": ("p2", 3)}
    assert await lines_of(service, "bob", b) == {"ln_2": ("p1", 4)}
    assert await lines_of(service, "carol", c) == {"ln_2": ("p1", 2)}


async def test_a_failed_op_answers_its_error_and_the_cart_s_other_ops_still_apply(
        service: CartService) -> None:
    a = await cart_of(service, "alice")
    replies = await service.apply([
        CartOp(a, "alice", "add", "p1", 1),
        CartOp(a, "alice", "add", "nope", 1),       # no such product
        CartOp(a, "alice", "add", "p2", 0),         # an add needs at least one unit
        CartOp(a, "alice", "set", "ln_9", 3),       # no such line
        CartOp(a, "alice", "remove", "ln_9"),       # no such line
        CartOp(a, "alice", "checkout", "ln_1", 1),  # not a line operation
        CartOp(a, "alice", "set", "ln_1", 1000),    # over the 999-per-line limit
        CartOp(a, "alice", "add", "p2", 2),
        CartOp(a, "alice", "set", "ln_1", 4),
    ])
    assert codes(replies) == [None, "product_not_found", "invalid_quantity", "line_not_found",
                              "line_not_found", "unknown_operation", "invalid_quantity",
                              None, None]
    assert replies[0] == ("ok", "ln_1") and replies[7] == ("ok", "ln_2")
    assert replies[8] == ("ok", None)
    for status, error in replies[1:7]:
        assert status == "err" and error["message"]
        assert error["category"] in ("not_found", "validation")
    # The failed ops changed nothing: no line was made for them, and numbering went on.
    assert await lines_of(service, "alice", a) == {"ln_1": ("p1", 4), "ln_2": ("p2", 2)}


async def test_ops_on_another_owner_s_cart_answer_cart_not_found_and_change_nothing(
        service: CartService) -> None:
    a = await cart_of(service, "alice")
    await service.apply([CartOp(a, "alice", "add", "p1", 2)])
    before = await service.get_cart("alice", a)
    replies = await service.apply([
        CartOp(a, "mallory", "add", "p2", 5),
        CartOp(a, "mallory", "set", "ln_1", 9),
        CartOp(a, "mallory", "remove", "ln_1"),
    ])
    assert codes(replies) == ["cart_not_found"] * 3
    after = await service.get_cart("alice", a)
    assert after["lines"] == before["lines"] and after["version"] == before["version"]


async def test_a_stranger_s_ops_fail_alone_when_the_owner_s_ops_share_the_batch(
        service: CartService) -> None:
    a, m = await cart_of(service, "alice"), await cart_of(service, "mallory")
    replies = await service.apply([
        CartOp(a, "alice", "add", "p1", 1),
        CartOp(a, "mallory", "add", "p2", 5),
        CartOp(m, "mallory", "add", "p3", 1),
        CartOp(a, "mallory", "remove", "ln_1"),
        CartOp(a, "alice", "add", "p3", 2),
    ])
    assert codes(replies) == [None, "cart_not_found", None, "cart_not_found", None]
    assert [r[1] for r in replies if r[0] == "ok"] == ["ln_1", "ln_1", "ln_2"]
    assert await lines_of(service, "alice", a) == {"ln_1": ("p1", 1), "ln_2": ("p3", 2)}
    assert await lines_of(service, "mallory", m) == {"ln_1": ("p3", 1)}


async def test_a_batch_is_persisted_and_a_fresh_engine_over_the_store_sees_its_lines() -> None:
    store = MemoryStore()
    first = await stocked(await CartService.in_process(store=store, clock=ManualClock(),
                                                       hosts=2))
    a, b = await cart_of(first, "alice"), await cart_of(first, "bob")
    await first.apply([
        CartOp(a, "alice", "add", "p1", 2),
        CartOp(b, "bob", "add", "p2", 1),
        CartOp(a, "alice", "add", "p3", 1),
        CartOp(b, "bob", "add", "p1", 7),
        CartOp(a, "alice", "set", "ln_2", 6),
        CartOp(b, "bob", "remove", "ln_1"),
    ])
    expected = {"alice": await lines_of(first, "alice", a), "bob": await lines_of(first, "bob", b)}
    assert expected == {"alice": {"ln_1": ("p1", 2), "ln_2": ("p3", 6)},
                        "bob": {"ln_2": ("p1", 7)}}
    await first.close()

    second = await CartService.in_process(store=store, clock=ManualClock(), hosts=2)
    try:
        assert await lines_of(second, "alice", a) == expected["alice"]
        assert await lines_of(second, "bob", b) == expected["bob"]
        # The line numbering was persisted too: the next add makes a new line id.
        assert await second.apply([CartOp(a, "alice", "add", "p2", 1)]) == [("ok", "ln_3")]
    finally:
        await second.close()


class RecordingStore(MemoryStore):
    """A memory store that keeps every write it was asked to commit."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[Write] = []

    async def commit(self, writes: list[Write]) -> list[int | None]:
        self.writes += writes
        return await super().commit(writes)


async def test_a_batch_writes_each_cart_once_however_many_ops_it_holds() -> None:
    store = RecordingStore()
    svc = await stocked(await CartService.in_process(store=store, clock=ManualClock(), hosts=2))
    try:
        a, b = await cart_of(svc, "alice"), await cart_of(svc, "bob")
        store.writes.clear()
        await svc.apply([CartOp(a, "alice", "add", "p1", 1), CartOp(b, "bob", "add", "p1", 1),
                         CartOp(a, "alice", "add", "p2", 1), CartOp(a, "alice", "add", "p3", 1),
                         CartOp(b, "bob", "set", "ln_1", 3), CartOp(a, "alice", "remove", "ln_2")])
        cart_writes = sorted(w.key for w in store.writes if w.key.startswith("cart:"))
        assert cart_writes == sorted([f"cart:{a}", f"cart:{b}"])
    finally:
        await svc.close()
