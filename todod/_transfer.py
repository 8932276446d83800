"""Changes that span lists: the mover, which commits moves, import publishes and saga steps.

A list's state is owned by its server, and a change to two lists must be
one transaction, so neither server can make it alone.  The :class:`Mover`
is the one task that makes such changes: it takes every piece of work
queued (up to :data:`MAX_ROUND`), asks the server of every list they touch
for its state (a :class:`~todod._server.Hold`, answered once the list's
writes are durable), applies the works in order to drafts of those states,
hands the store one :class:`~todod.store.Transaction` for the whole round,
and gives each server its new state back.

Why this never deadlocks: the mover is the only task that ever waits while
it holds a list, and it holds lists one round at a time.  A list server
waits only for its own pipeline (the store's writer, which waits for
nobody) and, when held, for the mover.  The mover waits for the servers'
grants and the writer.  No cycle can form: A to B and B to A in the same
round are two steps applied one after the other to the same two drafts.
The servers are asked in name order all the same, so a second mover
(there is none today) could not make a cycle either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import outcome
import trio

from todod._model import Change, Draft, TodoList
from todod._registry import Registry
from todod._reply import ReplySlot
from todod._server import Grant, Hold
from todod.protocol import Timeout, TodoError, Unavailable
from todod.store import Hook, Part, Store, Transaction, WriteContext

log = logging.getLogger("todod.transfer")

#: Works queued beyond this make their callers wait (backpressure).
QUEUE = 1024
#: Most works in one round, hence in one transaction: 256 moves between two
#: lists are two grants and one fsync; more would delay the round's first
#: caller behind a long one.
MAX_ROUND = 256


@attrs.frozen
class Applied:
    """What a work's ``apply`` did: its result, changes per list, SQL, and the lists it wrote past the drafts."""

    result: Any
    changes: dict[str, tuple[Change, ...]] = attrs.field(factory=dict)
    hook: Hook | None = None
    reload: tuple[str, ...] = ()
    bulk: bool = False


class Work(ReplySlot):
    """One change over ``lists``: ``apply`` gets their drafts (by name) and raises a TodoError to refuse.

    ``apply`` must raise before it changes any draft: a refused work leaves
    the round's other works alone.
    """

    __slots__ = ("apply", "lists")

    def __init__(self, lists: Sequence[str], apply: Callable[[dict[str, Draft]], Applied]) -> None:
        super().__init__()
        self.lists = tuple(lists)
        self.apply = apply


@attrs.define(eq=False)
class Mover:
    """The task that commits changes spanning lists; :meth:`run` is a permanent child of the supervisor."""

    store: Store
    registry: Registry
    _send: trio.MemorySendChannel[Work] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[Work] = attrs.field(init=False)
    rounds: int = attrs.field(default=0, init=False)
    works: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[Work](QUEUE)

    async def do(self, work: Work, within: float) -> Any:
        """Queue ``work`` and return its result once its transaction is committed.

        Raises:
            Timeout: no answer within ``within`` seconds (it may still be applied).
            TodoError: the work's own refusal, or the store's error (nothing applied).
        """
        with trio.move_on_after(within):
            await self._send.send(work)
            return await work.wait()
        work.abandon()
        raise Timeout(f"the change was not done within {within:g} s; it may still be applied")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve rounds of works; never returns."""
        task_status.started()
        while True:
            round_ = [await self._receive.receive()]
            while len(round_) < MAX_ROUND:
                try:
                    round_.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            round_ = [work for work in round_ if work.is_wanted()]
            if round_:
                await self._round(round_)

    async def _round(self, works: list[Work]) -> None:
        grants: dict[str, Grant] = {}
        released = False
        try:
            for name in sorted({name for work in works for name in work.lists}):
                grant = Grant()
                try:
                    grants[name] = await self.registry.call(name, Hold(grant))
                except TodoError as exc:
                    grant.release()  # granted after we gave up: the server goes on unchanged
                    for work in works:
                        if name in work.lists:
                            work.reply(outcome.Error(exc))
            drafts = {name: Draft(grant.state) for name, grant in grants.items() if grant.state is not None}
            done: list[tuple[Work, Applied]] = []
            for work in works:
                if not work.is_wanted() or any(name not in drafts for name in work.lists):
                    continue
                try:
                    done.append((work, work.apply(drafts)))
                except TodoError as exc:
                    work.reply(outcome.Error(exc))
            if not done:
                return
            changes: dict[str, list[Change]] = {}
            hooks: list[Hook] = []
            reload: set[str] = set()
            for _work, applied in done:
                for name, list_changes in applied.changes.items():
                    changes.setdefault(name, []).extend(list_changes)
                if applied.hook is not None:
                    hooks.append(applied.hook)
                reload.update(applied.reload)
            states: dict[str, TodoList] = {name: drafts[name].freeze() for name in changes}
            parts = [Part(name, states[name].next_id, tuple(changes[name])) for name in sorted(changes)]
            transaction = Transaction(
                parts, _chain(hooks) if hooks else None, sorted(grants), bulk=any(a.bulk for _w, a in done)
            )
            try:
                await self.store.submit(transaction)
                await transaction.wait()
            except TodoError as exc:
                for work, _applied in done:
                    work.reply(outcome.Error(exc))
                return  # nothing was written: the servers go on as they were
            except BaseException:
                # Cancelled with the transaction in doubt: the servers read the store again.
                for grant in grants.values():
                    grant.release(reload=True)
                released = True
                raise
            for name, grant in grants.items():
                grant.release(states.get(name), reload=name in reload)
            released = True
            self.rounds += 1
            self.works += len(done)
            for work, applied in done:
                work.reply(outcome.Value(applied.result))
        finally:
            if not released:
                for grant in grants.values():
                    grant.release()
            for work in works:
                if work.is_wanted():
                    work.reply(outcome.Error(Unavailable("the change could not be made; try again")))


def _chain(hooks: list[Hook]) -> Hook:
    def run(context: WriteContext) -> None:
        for hook in hooks:
            hook(context)

    return run


__all__ = ["MAX_ROUND", "Applied", "Mover", "Work"]
