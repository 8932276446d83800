"""A one-shot reply slot: how a task waits for another task's answer.

A list server answers its callers through one, and the store's writer answers
the list servers through one.  The waiting task parks itself on the slot and
the answering task reschedules it with the outcome: no Event and no second
object per request (an Event per request was a visible share of the event
loop's CPU per add, measured with bench/core_throughput.py under py-spy).

A slot can instead carry a callback (``on_reply``): the answer is then handed
to it, in the answering task, and nobody waits.  The socket's connections use
this, so a request needs no task of its own: the list server, the store's
writer or the call timer hands the answer straight to the connection.

The first answer wins and later ones are dropped, so a late reply to a caller
that gave up never harms whoever sends it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import outcome
import trio


class ReplySlot:
    """One answer, set once, waited for by at most one task.

    The slot keeps the answer only until its waiter takes it: once taken, or
    once the waiter has left, the slot holds nothing but its state, so a
    slot that outlives its request (in the call timer's queue, say) does not
    keep a large result alive.
    """

    __slots__ = ("_abandoned", "_answered", "_on_reply", "_result", "_waiter")

    def __init__(self, on_reply: Callable[[outcome.Outcome[Any]], None] | None = None) -> None:
        self._answered = False
        self._abandoned = False
        self._result: outcome.Outcome[Any] | None = None
        self._waiter: trio.lowlevel.Task | None = None
        #: Called with the answer instead of waking a waiter.  It runs in the
        #: answering task, so it must be synchronous, quick and never raise.
        self._on_reply = on_reply

    def reply(self, result: outcome.Outcome[Any]) -> None:
        """Set the answer unless one is set, and wake the waiter if it waits (or call the callback).

        An answer to a slot whose waiter has left is dropped at once.
        """
        if self._answered:
            return
        self._answered = True
        if self._on_reply is not None:
            callback, self._on_reply = self._on_reply, None
            if not self._abandoned:
                callback(result)
        elif self._waiter is not None:
            task, self._waiter = self._waiter, None
            trio.lowlevel.reschedule(task, result)
        elif not self._abandoned:
            self._result = result  # until the waiter comes for it

    def is_answered(self) -> bool:
        return self._answered

    def is_wanted(self) -> bool:
        """Whether somebody still waits for the answer: not answered and not abandoned."""
        return not self._answered and not self._abandoned

    def abandon(self) -> None:
        """Say that nobody will wait for the answer (the requester has left)."""
        self._abandoned = True
        self._result = None
        self._on_reply = None

    async def wait(self) -> Any:
        """Wait for the answer and unwrap it: return its value or raise its error.

        Call it once.  Cancellable: the waiter then simply stops waiting and
        the slot counts as abandoned; a later answer is dropped.
        """
        if self._answered:
            result, self._result = self._result, None
            assert result is not None, "the answer was taken or abandoned"
            await trio.lowlevel.checkpoint()
            return result.unwrap()
        self._waiter = trio.lowlevel.current_task()
        return await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _raise_cancel: Any) -> trio.lowlevel.Abort:
        # Forget the task, so a late reply never reschedules a task that has
        # moved on.
        self._waiter = None
        self._abandoned = True
        return trio.lowlevel.Abort.SUCCEEDED


class Wakeup:
    """Wakes one waiting task; a wake-up with nobody waiting is kept for the next wait.

    Cheaper than an Event that must be replaced after every use: a
    connection's writer and a list server at its pipeline's depth wait on one.
    """

    __slots__ = ("_pending", "_task")

    def __init__(self) -> None:
        self._pending = False
        self._task: trio.lowlevel.Task | None = None

    def set(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            trio.lowlevel.reschedule(task)
        else:
            self._pending = True

    async def wait(self) -> None:
        if self._pending:
            self._pending = False
            await trio.lowlevel.checkpoint()
            return
        self._task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _raise_cancel: Any) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED


__all__ = ["ReplySlot", "Wakeup"]
