"""Call deadlines kept by one task, rather than one cancel scope per call.

Every call to a list server waits under a deadline.  ``trio.fail_after`` (or
a bare cancel scope) per call did that, at about 18 us a call on the benchmark
machine: more than a third of the event loop's CPU per add on a busy list
(bench/core_throughput.py under py-spy).  :class:`CallTimer` gives the same
bound for the price of a deque append: it keeps the watched calls in one
first-in, first-out queue per time limit (the deadlines in one queue only
grow, since trio's clock never goes back) and one task answers each call
whose deadline passes with :class:`~todod.protocol.Timeout`, which wakes its
caller as the server's own answer would.

Calls that are answered leave their queue from the front as new ones arrive,
and a queue that grows behind a slow call is compacted, so it holds about
twice the calls still waiting; an answered call keeps no result (see
:class:`~todod._reply.ReplySlot`).
"""

from __future__ import annotations

import collections
import math

import attrs
import outcome
import trio

from todod._reply import ReplySlot
from todod.protocol import Timeout

#: A queue is compacted (its answered calls dropped wherever they are) when
#: it reaches this length, or twice its length after the last compaction.
COMPACT_AT = 1024


def call_timed_out(list_name: str, limit: float) -> Timeout:
    """The error of a call to ``list_name`` that got no answer within ``limit`` seconds."""
    return Timeout(f"list {list_name!r} did not answer within {limit:.3g} s")


@attrs.define(eq=False)
class CallTimer:
    """Answers watched calls with Timeout when their deadline passes.

    :meth:`run` is the timer's task; :meth:`watch` is synchronous and can be
    used before the task has started.
    """

    _queues: dict[float, collections.deque[tuple[float, ReplySlot, str]]] = attrs.field(factory=dict, init=False)
    _compact_at: dict[float, int] = attrs.field(factory=dict, init=False)
    _wake_at: float = attrs.field(default=math.inf, init=False)
    _sleep: trio.CancelScope | None = attrs.field(default=None, init=False)

    def watch(self, call: ReplySlot, limit: float, list_name: str) -> float:
        """Answer ``call`` with Timeout unless it is answered within ``limit`` seconds.

        ``list_name`` is the list the call is for (the error message names
        it).  Returns the deadline.
        """
        deadline = trio.current_time() + limit
        if deadline == math.inf:
            return deadline
        queue = self._queues.get(limit)
        if queue is None:
            queue = self._queues[limit] = collections.deque()
        queue.append((deadline, call, list_name))
        # Drop the answered calls at the front: each call leaves once, so
        # watching stays O(1) however many calls pass through.
        while not queue[0][1].is_wanted():
            queue.popleft()
            if not queue:
                break
        if len(queue) >= self._compact_at.get(limit, COMPACT_AT):
            # A call stuck at the front keeps the answered ones behind it:
            # drop those too.  The threshold doubles with what remains, so
            # this stays O(1) per call, and a queue holds about twice the
            # calls still waiting, not every call of the last time limit.
            queue = self._queues[limit] = collections.deque(item for item in queue if item[1].is_wanted())
            self._compact_at[limit] = max(COMPACT_AT, 2 * len(queue))
        if deadline < self._wake_at:
            self._wake_at = deadline
            if self._sleep is not None:
                self._sleep.deadline = deadline
        return deadline

    def watched(self) -> int:
        """How many calls the queues hold (answered ones not yet dropped included)."""
        return sum(len(queue) for queue in self._queues.values())

    def expire(self) -> float:
        """Answer every call past its deadline; return the next deadline (inf if none)."""
        now = trio.current_time()
        wake = math.inf
        for limit in list(self._queues):
            queue = self._queues[limit]
            while queue:
                deadline, call, list_name = queue[0]
                if not call.is_wanted():
                    queue.popleft()
                elif deadline <= now:
                    queue.popleft()
                    call.reply(outcome.Error(call_timed_out(list_name, limit)))
                else:
                    wake = min(wake, deadline)
                    break
            if not queue:
                del self._queues[limit]
                self._compact_at.pop(limit, None)
        return wake

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Expire calls as their deadlines pass.  Never returns unless cancelled."""
        task_status.started()
        while True:
            self._wake_at = self.expire()
            try:
                with trio.CancelScope(deadline=self._wake_at) as self._sleep:
                    await trio.sleep_forever()
            finally:
                self._sleep = None


__all__ = ["CallTimer", "call_timed_out"]
