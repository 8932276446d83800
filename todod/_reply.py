"""A one-shot reply slot: how a task waits for another task's answer.

A list server answers its callers through one, and the store's writer answers
the list servers through one.  The waiting task parks itself on the slot and
the answering task reschedules it with the outcome: no Event and no second
object per request (an Event per request was a visible share of the event
loop's CPU per add, measured with bench/core_throughput.py under py-spy).

The first answer wins and later ones are dropped, so a late reply to a caller
that gave up never harms whoever sends it.
"""

from __future__ import annotations

from typing import Any

import outcome
import trio


class ReplySlot:
    """One answer, set once, waited for by at most one task."""

    __slots__ = ("_abandoned", "_result", "_waiter")

    def __init__(self) -> None:
        self._result: outcome.Outcome[Any] | None = None
        self._waiter: trio.lowlevel.Task | None = None
        self._abandoned = False

    def reply(self, result: outcome.Outcome[Any]) -> None:
        """Set the answer unless one is set, and wake the waiter if it still waits."""
        if self._result is not None:
            return
        self._result = result
        if self._waiter is not None:
            task, self._waiter = self._waiter, None
            trio.lowlevel.reschedule(task, result)

    def is_answered(self) -> bool:
        return self._result is not None

    def is_wanted(self) -> bool:
        """Whether somebody still waits for the answer: not answered and not abandoned."""
        return self._result is None and not self._abandoned

    def abandon(self) -> None:
        """Say that nobody will wait for the answer (the requester has left)."""
        self._abandoned = True

    async def wait(self) -> Any:
        """Wait for the answer and unwrap it: return its value or raise its error.

        Cancellable: the waiter then simply stops waiting and the slot counts
        as abandoned; a later answer is kept by nobody.
        """
        if self._result is not None:
            await trio.lowlevel.checkpoint()
            return self._result.unwrap()
        self._waiter = trio.lowlevel.current_task()
        return await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _raise_cancel: Any) -> trio.lowlevel.Abort:
        # Forget the task, so a late reply only stores its outcome and never
        # reschedules a task that has moved on.
        self._waiter = None
        self._abandoned = True
        return trio.lowlevel.Abort.SUCCEEDED


__all__ = ["ReplySlot"]
