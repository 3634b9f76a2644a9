"""`SystemClock`: timers in one heap, one loop timer armed for the earliest, on real time.

Delays are a few milliseconds; tests wait on events with a 2-second bound, never on sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from actors.clock import SystemClock

pytestmark = pytest.mark.unit

MS = 0.001


class Log:
    """Records which named callbacks ran, in order; ``done`` is set once ``expected`` ran."""

    def __init__(self, expected: int) -> None:
        self.fired: list[str] = []
        self.expected = expected
        self.done = asyncio.Event()

    def callback(self, name: str) -> Callable[[], None]:
        def run() -> None:
            self.fired.append(name)
            if len(self.fired) >= self.expected:
                self.done.set()
        return run


async def test_timers_fire_in_deadline_order_even_when_set_out_of_order() -> None:
    clock = SystemClock()
    log = Log(expected=4)
    now = clock.now()
    for name, delay in (("third", 15), ("first", 5), ("fourth", 20), ("second", 10)):
        clock.call_at(now + delay * MS, log.callback(name))
    await asyncio.wait_for(log.done.wait(), 2)
    assert log.fired == ["first", "second", "third", "fourth"]
    assert clock.now() >= now + 20 * MS  # none fired before its deadline


async def test_a_timer_earlier_than_the_armed_one_re_arms_and_fires_first() -> None:
    clock = SystemClock()
    log = Log(expected=1)
    late = clock.call_at(clock.now() + 30.0, log.callback("late"))  # armed for 30 s from now
    clock.call_at(clock.now() + 5 * MS, log.callback("early"))
    # Within 2 s only if setting the earlier timer moved the loop timer to it.
    await asyncio.wait_for(log.done.wait(), 2)
    assert log.fired == ["early"]
    late.cancel()


async def test_cancelled_timers_never_fire_while_the_ones_after_them_do() -> None:
    clock = SystemClock()
    log = Log(expected=2)
    now = clock.now()
    head = clock.call_at(now + 5 * MS, log.callback("cancelled-head"))  # the armed one
    clock.call_at(now + 10 * MS, log.callback("kept-1"))
    middle = clock.call_at(now + 15 * MS, log.callback("cancelled-middle"))
    clock.call_at(now + 20 * MS, log.callback("kept-2"))
    head.cancel()
    middle.cancel()
    await asyncio.wait_for(log.done.wait(), 2)
    assert log.fired == ["kept-1", "kept-2"]


async def test_an_async_callback_runs_as_a_task_without_holding_up_later_timers() -> None:
    clock = SystemClock()
    started, later_fired, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        started.set()
        await later_fired.wait()  # set by a timer due after this one
        finished.set()

    now = clock.now()
    clock.call_at(now + 5 * MS, slow)
    clock.call_at(now + 10 * MS, later_fired.set)
    await asyncio.wait_for(started.wait(), 2)
    # ``slow`` is suspended until the later timer fires: it finishes only if it runs as its
    # own task and the clock went on firing timers meanwhile.
    await asyncio.wait_for(finished.wait(), 2)


@pytest.mark.parametrize("delay", [5 * MS, -1.0], ids=["in-the-future", "already-due"])
async def test_a_timer_set_from_inside_a_timer_callback_fires_too(delay: float) -> None:
    clock = SystemClock()
    log = Log(expected=2)
    inner = log.callback("inner")
    outer_log = log.callback("outer")

    def outer() -> None:
        outer_log()
        clock.call_at(clock.now() + delay, inner)

    clock.call_at(clock.now() + 5 * MS, outer)
    await asyncio.wait_for(log.done.wait(), 2)
    assert log.fired == ["outer", "inner"]


async def test_a_timer_set_from_an_async_callback_fires_too() -> None:
    clock = SystemClock()
    done = asyncio.Event()

    async def outer() -> None:
        await asyncio.sleep(0)  # set the next timer after a suspension, from the task
        clock.call_at(clock.now() + 5 * MS, done.set)

    clock.call_at(clock.now() + 5 * MS, outer)
    await asyncio.wait_for(done.wait(), 2)  # times out if the inner timer never fires


async def test_a_callback_that_raises_does_not_stop_the_timers_after_it() -> None:
    clock = SystemClock()
    log = Log(expected=1)

    def boom() -> None:
        raise RuntimeError("a failing timer callback")

    now = clock.now()
    clock.call_at(now + 5 * MS, boom)
    clock.call_at(now + 10 * MS, log.callback("after"))
    await asyncio.wait_for(log.done.wait(), 2)
    assert log.fired == ["after"]
