"""The call timer: one task answers overdue calls with Timeout, instead of a cancel scope per call."""

from __future__ import annotations

import gc
import math
import weakref

import outcome
import pytest
import trio
import trio.testing

from todod._reply import ReplySlot
from todod._timers import COMPACT_AT, CallTimer
from todod.protocol import Timeout


async def test_an_unanswered_call_times_out_at_its_deadline(autojump_clock: trio.testing.MockClock) -> None:
    """The waiter is woken with Timeout exactly when its deadline passes, naming the list and the limit."""
    timer = CallTimer()
    async with trio.open_nursery() as nursery:
        await nursery.start(timer.run)
        call = ReplySlot()
        start = trio.current_time()
        timer.watch(call, 5.0, "home")
        with pytest.raises(Timeout, match="list 'home' did not answer within 5 s"):
            await call.wait()
        assert trio.current_time() - start == pytest.approx(5.0)
        nursery.cancel_scope.cancel()


async def test_an_answered_call_is_never_timed_out(autojump_clock: trio.testing.MockClock) -> None:
    """A call answered before its deadline keeps its answer; the timer drops it."""
    timer = CallTimer()
    async with trio.open_nursery() as nursery:
        await nursery.start(timer.run)
        call = ReplySlot()
        timer.watch(call, 5.0, "home")
        await trio.sleep(4.9)
        call.reply(outcome.Value("served"))
        await trio.sleep(10)
        assert await call.wait() == "served"
        assert timer.watched() == 0
        nursery.cancel_scope.cancel()


async def test_a_shorter_limit_wakes_a_timer_that_sleeps_longer(autojump_clock: trio.testing.MockClock) -> None:
    """A call with a nearer deadline than any watched one is timed out on time, not at the later deadline."""
    timer = CallTimer()
    async with trio.open_nursery() as nursery:
        await nursery.start(timer.run)
        slow, fast = ReplySlot(), ReplySlot()
        timer.watch(slow, 60.0, "slow")
        await trio.testing.wait_all_tasks_blocked()  # the timer now sleeps until the 60 s deadline
        start = trio.current_time()
        timer.watch(fast, 1.0, "fast")
        with pytest.raises(Timeout, match="'fast'"):
            await fast.wait()
        assert trio.current_time() - start == pytest.approx(1.0)
        assert slow.is_wanted(), "the later deadline fired early"
        nursery.cancel_scope.cancel()


async def test_answered_calls_leave_as_new_ones_arrive() -> None:
    """Watching many calls that are answered in turn keeps the queue short: memory does not grow with traffic."""
    timer = CallTimer()  # no task: watch() alone must prune
    for _ in range(10_000):
        call = ReplySlot()
        timer.watch(call, 5.0, "home")
        call.reply(outcome.Value(None))
    assert timer.watched() <= 1


async def test_an_infinite_limit_is_not_watched() -> None:
    """A call with no time limit waits as long as it takes: the timer does not even hold it."""
    timer = CallTimer()
    assert timer.watch(ReplySlot(), math.inf, "home") == math.inf
    assert timer.watched() == 0


async def test_a_cancelled_waiter_abandons_its_slot() -> None:
    """A waiter cancelled while it waits leaves the slot abandoned; a late answer wakes nobody and is kept by nobody."""
    slot = ReplySlot()
    with trio.move_on_after(0):
        await slot.wait()
    assert not slot.is_wanted()
    slot.reply(outcome.Value(1))  # must not try to reschedule the task that left
    assert slot.is_answered()


async def test_a_stuck_call_does_not_make_the_timer_keep_every_call_behind_it() -> None:
    """One call that is never answered at the front of a queue: the answered calls behind it are still dropped,
    so the queue stays about as long as the calls that still wait."""
    timer = CallTimer()
    stuck = ReplySlot()
    timer.watch(stuck, 5.0, "stuck")
    for _ in range(100_000):
        call = ReplySlot()
        timer.watch(call, 5.0, "home")
        call.reply(outcome.Value(None))
    assert timer.watched() <= COMPACT_AT
    assert stuck.is_wanted()


class Big:
    """A result that can be tracked with a weak reference."""


async def test_a_taken_answer_is_not_kept_by_its_slot() -> None:
    """Once the waiter has its answer, or has left, the slot no longer holds the result: a slot that outlives
    its request (in the timer's queue) cannot keep a big result alive."""
    taken = ReplySlot()
    big = Big()
    ref = weakref.ref(big)
    taken.reply(outcome.Value(big))
    assert await taken.wait() is big
    del big
    gc.collect()
    assert ref() is None, "the slot kept the answer after the waiter took it"

    left = ReplySlot()
    left.abandon()
    late = Big()
    late_ref = weakref.ref(late)
    left.reply(outcome.Value(late))
    del late
    gc.collect()
    assert late_ref() is None, "the slot kept an answer nobody waits for"
    assert left.is_answered() and not left.is_wanted()
