"""One task per active list (the book's ``Todo.Server``), with its own supervision.

A :class:`ListServer` owns one list's state; nobody else touches it, so the
list data needs no lock.  Requests arrive over a bounded memory channel (the
mailbox).  The server drains what is queued, applies the whole batch to a
private draft, has the store make the batch durable with one commit, and only
then adopts the new state and answers.  The mailbox outlives a crash: a new
incarnation reloads the durable state and serves what is still queued.
"""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Callable
from typing import Any

import attrs
import outcome
import trio

from todod._model import NOBODY, Change, Draft, Entry, Origin, Step, TodoList
from todod._reply import ReplySlot
from todod._store import Store, StoreError
from todod._supervisor import RestartIntensity
from todod.protocol import Internal, Timeout, TodoError, Unavailable

log = logging.getLogger("todod.server")


# --- the messages -------------------------------------------------------------


@attrs.frozen
class AddEntry:
    date: datetime.date
    title: str
    tags: frozenset[str] = frozenset()
    origin: Origin = NOBODY


@attrs.frozen
class UpdateEntry:
    entry_id: int
    title: str | None = None
    date: datetime.date | None = None
    done: bool | None = None
    tag: frozenset[str] = frozenset()
    untag: frozenset[str] = frozenset()
    if_version: int | None = None
    origin: Origin = NOBODY


@attrs.frozen
class DeleteEntry:
    entry_id: int
    if_version: int | None = None
    origin: Origin = NOBODY


@attrs.frozen
class GetEntries:
    date: datetime.date | None = None


@attrs.frozen
class RevertChanges:
    """An undo or a redo: the plan read from the log for the list at ``head``."""

    op: str
    head: int
    steps: tuple[Step, ...]
    origin: Origin = NOBODY


Op = AddEntry | UpdateEntry | DeleteEntry | GetEntries | RevertChanges


def apply(draft: Draft, op: Op) -> tuple[Any, tuple[Change, ...]]:
    """Apply one op to the batch's draft: its result and the changes to persist."""
    match op:
        case AddEntry(date=date, title=title, tags=tags, origin=origin):
            entry, change = draft.add(date, title, tags, origin)
            return entry, (change,)
        case UpdateEntry(
            entry_id=entry_id, title=title, date=date, done=done, tag=tag, untag=untag, if_version=v, origin=origin
        ):
            entry, change = draft.update(
                entry_id, title=title, date=date, done=done, tag=tag, untag=untag, if_version=v, origin=origin
            )
            return entry, (change,)
        case DeleteEntry(entry_id=entry_id, if_version=v, origin=origin):
            entry, change = draft.delete(entry_id, v, origin)
            return entry, (change,)
        case GetEntries(date=date):
            return draft.list_entries(date), ()
        case RevertChanges(op=name, head=head, steps=steps, origin=origin):
            return draft.revert(name, head, steps, origin)
    raise TypeError(f"unknown op {op!r}")  # pragma: no cover


class Call(ReplySlot):
    """One request and its one-shot reply slot, in one object."""

    __slots__ = ("op",)

    def __init__(self, op: Op) -> None:
        super().__init__()
        self.op = op


# --- configuration and faults ---------------------------------------------------


@attrs.frozen
class ServerConfig:
    #: How long a caller waits for its reply, queueing included.
    call_timeout: float = 5.0
    #: An idle list server stops after this long; the next request restarts it.
    idle_timeout: float = 600.0
    #: Most list servers at once: beyond it the ones that have waited longest
    #: for mail are stopped (their lists load again on their next request),
    #: so memory is bounded however many lists are in use.
    max_servers: int = 2_000
    #: Mailbox capacity: beyond it callers wait (under their timeout).  256 is
    #: four pipelines of 64 and keeps a stuck list from holding unbounded memory.
    mailbox: int = 256
    #: Most requests in one batch, hence in one commit of one list.
    max_batch: int = 256
    #: More than ``max_crashes`` crashes within ``crash_window`` seconds
    #: quarantines the list for ``quarantine`` seconds (OTP's intensity).
    max_crashes: int = 3
    crash_window: float = 5.0
    quarantine: float = 30.0


@attrs.define(eq=False)
class ServerFaults:
    """Hooks to inject faults in tests: called before each op is applied."""

    on_request: Callable[[str, Op], None] | None = None


class Gone(Exception):
    """The server stopped before the call reached it; look it up again."""


# --- the server -------------------------------------------------------------------


@attrs.define(eq=False)
class ListServer:
    """The owner of one list: its mailbox, its state, its restarts.

    Create it through the registry; :meth:`run` is its whole life.
    """

    name: str
    _store: Store
    _config: ServerConfig
    _faults: ServerFaults
    #: Called synchronously when the server stops for good (the registry
    #: forgets it there, before any other task can find it).
    _on_stop: Callable[[ListServer, str | None], None]
    _events: ServerEvents
    _send: trio.MemorySendChannel[Call] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[Call] = attrs.field(init=False)
    _carry: list[Call] = attrs.field(factory=list, init=False)
    _batch: list[Call] = attrs.field(factory=list, init=False)
    _current: Call | None = attrs.field(default=None, init=False)
    _intensity: RestartIntensity = attrs.field(init=False)
    _committing: bool = attrs.field(default=False, init=False)
    _idle: trio.CancelScope | None = attrs.field(default=None, init=False)
    #: When the server started to wait for mail; None while it works.
    _waiting_since: float | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[Call](self._config.mailbox)
        self._intensity = RestartIntensity(self._config.max_crashes, self._config.crash_window)

    # --- the caller's side ----------------------------------------------------

    def offer(self, call: Call) -> bool:
        """Queue ``call`` if the mailbox has room, without a checkpoint.

        Returns False when the mailbox is full (use :meth:`send`).

        Raises:
            Gone: the server stopped before taking the call.
        """
        try:
            self._send.send_nowait(call)
        except trio.WouldBlock:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise Gone(self.name) from None
        return True

    async def send(self, call: Call) -> None:
        """Queue ``call``, waiting for room in the mailbox (backpressure).

        Raises:
            Gone: the server stopped before taking the call.
        """
        try:
            await self._send.send(call)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise Gone(self.name) from None

    def mailbox_depth(self) -> int:
        return self._send.statistics().current_buffer_used

    # --- the server's side ----------------------------------------------------

    async def run(self) -> None:
        """Serve until idle, quarantined or cancelled, restarting after crashes.

        Returns when the list has been idle for ``idle_timeout`` or is
        quarantined.  On every exit, the registry forgets the server first,
        then every call still queued gets an error, so no caller hangs.
        """
        reason: str | None = None
        error: TodoError | None = None
        try:
            while True:
                try:
                    await self._incarnation()
                    return
                except StoreError as exc:
                    # Only loading raises it here (a failed commit is answered
                    # inside _process).  A store that cannot read is not a bug
                    # of this list: answer what is queued with the store's own
                    # reason and stop, without counting a crash; the next
                    # request tries again.
                    log.error("list %r could not be loaded: %s", self.name, exc)
                    error = exc
                    return
                except Exception as exc:
                    reason = self._crashed(exc)
                    if reason is not None:
                        return
        finally:
            self._stop(reason, error)

    async def _incarnation(self) -> None:
        state = await self._store.load(self.name)
        self._events.loaded()
        while True:
            # One idle scope per incarnation, not a timer armed and disarmed
            # around every wait: the registry's reaper cancels it, and only
            # while this task waits for mail (see expire_if_idle).
            with trio.CancelScope() as idle:
                self._idle = idle
                while True:
                    batch = await self._next_batch()
                    if idle.cancel_called:
                        # The reaper fired just as a call arrived, so the call
                        # was received but the scope is spent (its next
                        # checkpoint would raise).  Keep the batch for a fresh
                        # scope rather than fail it as if the list were idle.
                        self._carry = batch + self._carry
                        break
                    state = await self._process(state, batch)
                    if state.next_id == 1 and self._mailbox_empty():
                        # Never written: keeping a task for it would let reads
                        # of made-up names grow the daemon without bound.
                        # No checkpoint from this check to _stop.
                        return
            if idle.cancelled_caught and self._mailbox_empty():
                # Checked after the reaper fired: a caller may have found us
                # and queued a call before this task resumed.  No checkpoint
                # from this check to _stop, so nothing can slip in after it.
                log.debug("list %r idle, stopping", self.name)
                return

    def expire_if_idle(self, now: float, timeout: float) -> float:
        """End the server's wait for mail if it has lasted ``timeout`` seconds.

        The server then stops, unless a call reached its mailbox meanwhile,
        which it serves.  Called by the registry's reaper; synchronous.  Returns when the
        server would next be due, or inf if it is not waiting for mail (a
        server that starts to wait later is due ``timeout`` after that).
        A server is only ever stopped while it waits for mail, never during
        a batch or its commit.
        """
        since = self.waiting_since()
        if since is None:
            return math.inf
        if now - since >= timeout:
            self.evict()
            return math.inf
        return since + timeout

    def waiting_since(self) -> float | None:
        """When the server started to wait for mail, or None if it is working or already stopping."""
        if self._idle is None or self._idle.cancel_called:
            return None
        return self._waiting_since

    def evict(self) -> bool:
        """End the server's wait for mail now, as :meth:`expire_if_idle` does when it is due.

        Returns whether it was waiting (only then is it stopped).
        """
        if self.waiting_since() is None:
            return False
        assert self._idle is not None
        self._idle.cancel()
        return True

    def _mailbox_empty(self) -> bool:
        return self.mailbox_depth() == 0

    async def _next_batch(self) -> list[Call]:
        """The calls carried over, or else the next ones in the mailbox.

        Waits for a first call as long as it takes; the reaper ends the wait
        by cancelling the idle scope.  Calls whose caller has left (timed
        out or cancelled) before the server took them are dropped, not
        applied: nobody waits for their answer.
        """
        batch, self._carry = self._carry, []
        carried = len(batch)
        if not batch:
            self._waiting_since = trio.current_time()
            try:
                batch.append(await self._receive.receive())
            finally:
                self._waiting_since = None
        while len(batch) < self._config.max_batch:
            try:
                batch.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                break
        # The mailbox depth is sampled here, once per batch, rather than by
        # every sender: channel.statistics() builds a record per call (about
        # 3.5 us, a few per cent of the loop's CPU per add).
        depth = len(batch) - carried
        if len(batch) == self._config.max_batch:
            depth += self._receive.statistics().current_buffer_used
        self._events.mailbox_depth(depth)
        wanted = [call for call in batch if call.is_wanted()]
        if len(wanted) < len(batch):
            self._events.dropped(len(batch) - len(wanted))
        return wanted

    async def _process(self, state: TodoList, batch: list[Call]) -> TodoList:
        self._batch = batch
        draft = Draft(state)
        results: list[outcome.Outcome[Any]] = []
        changes: list[Change] = []
        for call in batch:
            self._current = call
            if self._faults.on_request is not None:
                self._faults.on_request(self.name, call.op)
            try:
                result, change = apply(draft, call.op)
            except TodoError as exc:
                results.append(outcome.Error(_in_list(exc, self.name)))
                continue
            results.append(outcome.Value(result))
            changes.extend(change)
        self._current = None
        if changes:
            # Left set if the commit is cancelled: _stop must then know the
            # store may still make this batch durable.
            self._committing = True
            try:
                await self._store.commit(self.name, draft.next_id, changes)
            except StoreError as exc:
                self._committing = False
                for call in batch:
                    call.reply(outcome.Error(exc))
                self._batch = []
                return state
            self._committing = False
            self._events.batch(len(batch))
        for call, result in zip(batch, results, strict=True):
            call.reply(result)
        self._batch = []
        return draft.freeze() if changes else state

    def _crashed(self, exc: Exception) -> str | None:
        """Answer the poison call, keep the rest for the next incarnation.

        Returns the quarantine reason if the list crashed too often, else None.
        """
        current, self._current = self._current, None
        log.error("list server %r crashed; restarting", self.name, exc_info=exc)
        if current is not None:
            current.reply(
                outcome.Error(Internal(f"the list server crashed on this request; it was not applied ({exc!r})"))
            )
        # Nothing of the interrupted batch was committed: serve it again,
        # before what is still queued, so the order is kept.
        self._carry = [c for c in self._batch if c.is_wanted()] + self._carry
        self._batch = []
        if self._intensity.crashed():
            self._events.quarantined()
            return (
                f"list {self.name!r} crashed {self._intensity.recent()} times in "
                f"{self._config.crash_window:g} s and is quarantined for {self._config.quarantine:g} s"
            )
        self._events.restarted()
        return None

    def _stop(self, reason: str | None, error: TodoError | None = None) -> None:
        # No checkpoint from here to the close: no sender can slip a call in
        # between the last receive_nowait and the close, so none is lost.
        self._on_stop(self, reason)
        error = error or Unavailable(reason or f"list {self.name!r} is shutting down; try again")
        if self._committing:
            # Stopped (cancelled) while the store held this batch's commit:
            # the writer may still make it durable, so "not applied" would
            # be a lie that invites a duplicate retry.
            in_doubt = Timeout(f"list {self.name!r} stopped during a commit; the change may have been applied")
            for call in self._batch:
                call.reply(outcome.Error(in_doubt))
            self._batch = []
        pending = self._carry + self._batch
        self._carry, self._batch = [], []
        while True:
            try:
                pending.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        self._receive.close()
        for call in pending:
            call.reply(outcome.Error(error))


def _in_list(exc: TodoError, name: str) -> TodoError:
    return type(exc)(f"{exc.message} in list {name!r}") if exc.code == "not_found" else exc


@attrs.define(eq=False)
class ServerEvents:
    """Counters the servers update; the registry turns them into statistics."""

    loads: int = 0
    restarts: int = 0
    quarantines: int = 0
    #: The most calls one server found in its mailbox when it turned to it
    #: (the call that woke it included).
    mailbox_peak: int = 0
    batches: int = 0
    batched_requests: int = 0
    max_batch: int = 0
    #: Calls dropped unapplied because their caller left before the server took them.
    dropped_calls: int = 0
    #: Servers stopped because more than max_servers were running.
    evictions: int = 0

    def loaded(self) -> None:
        self.loads += 1

    def restarted(self) -> None:
        self.restarts += 1

    def quarantined(self) -> None:
        self.quarantines += 1

    def mailbox_depth(self, depth: int) -> None:
        self.mailbox_peak = max(self.mailbox_peak, depth)

    def evicted(self, servers: int) -> None:
        self.evictions += servers

    def dropped(self, calls: int) -> None:
        self.dropped_calls += calls

    def batch(self, size: int) -> None:
        self.batches += 1
        self.batched_requests += size
        self.max_batch = max(self.max_batch, size)


__all__ = [
    "AddEntry",
    "Call",
    "DeleteEntry",
    "Entry",
    "GetEntries",
    "Gone",
    "ListServer",
    "Op",
    "RevertChanges",
    "ServerConfig",
    "ServerEvents",
    "ServerFaults",
    "Timeout",
    "UpdateEntry",
]
