"""One task per active list (the book's ``Todo.Server``), with its own supervision.

A :class:`ListServer` owns one list's state; nobody else touches it, so the
list data needs no lock.  Requests arrive over a bounded memory channel (the
mailbox).  The server drains what is queued, applies the whole batch to a
private draft, hands the batch to the store and goes on with the next one
while it commits (a pipeline, at most ``pipeline_depth`` batches deep).  The
store's writer answers the batch's callers itself once the batch is durable,
without waking the server.  A failed commit fails every later batch of the
list built on it (they carry the same epoch), and the server goes back to
the durable state.  The mailbox outlives a crash: a new incarnation reloads
the durable state and serves what is still queued.
"""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import outcome
import trio

from todod._model import NOBODY, Change, Draft, Entry, Origin, Step, TodoList
from todod._pages import PageRequest, Snapshot, Snapshots, page_result, read_page, whole_result
from todod._reply import ReplySlot, Wakeup
from todod._supervisor import RestartIntensity
from todod.protocol import MAX_PAGE_BYTES, MAX_PAGE_ENTRIES, Internal, Timeout, TodoError, Unavailable
from todod.store import StaleList, Store, StoreError

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
    """All entries (or one date's), sorted, as values: for callers inside the daemon and tests."""

    date: datetime.date | None = None


@attrs.frozen
class ReadPage:
    """One page of entries as JSON text, from the list's current version or a cursor's snapshot (wire ``entries``)."""

    page: PageRequest


@attrs.frozen
class Flush:
    """Nothing to apply: answered once every earlier call of the list is durable.

    What a read outside the list server (the log, for history or an undo)
    sends first, so it sees every change queued before it, pipelined ones too.
    """


@attrs.frozen
class RevertChanges:
    """An undo or a redo: the plan read from the log for the list at ``head``."""

    op: str
    head: int
    steps: tuple[Step, ...]
    origin: Origin = NOBODY


@attrs.define(eq=False)
class Grant:
    """A list server's state, lent to a transaction over several lists (todod/_transfer.py) until released.

    While the grant is out, the server serves nothing else: the holder builds
    the list's next state on ``state`` (which is durable: the server's
    pipeline was empty when it granted) and gives it back with
    :meth:`release`: the new state once the holder's transaction is
    committed, None when nothing was written, or ``reload`` when the
    transaction's outcome is in doubt or wrote rows no draft holds (an
    import), so the server takes its state from the store again.
    """

    state: TodoList | None = None
    new_state: TodoList | None = None
    reload: bool = False
    _released: trio.Event = attrs.field(factory=trio.Event, init=False)

    def release(self, new_state: TodoList | None = None, *, reload: bool = False) -> None:
        """Give the list back (once; later calls do nothing)."""
        if self._released.is_set():
            return
        self.new_state, self.reload = new_state, reload
        self._released.set()

    async def wait_released(self) -> None:
        await self._released.wait()


@attrs.frozen
class Hold:
    """Answered with ``grant`` once the list's writes are durable; the server then waits for its release."""

    grant: Grant


Op = AddEntry | UpdateEntry | DeleteEntry | GetEntries | ReadPage | Flush | RevertChanges | Hold


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
        case ReadPage():
            raise TypeError("ReadPage is read by ListServer._read_page")  # pragma: no cover
        case Flush():
            return None, ()
        case RevertChanges(op=name, head=head, steps=steps, origin=origin):
            return draft.revert(name, head, steps, origin)
        case Hold():
            raise TypeError("Hold is served by ListServer._hold")  # pragma: no cover
    raise TypeError(f"unknown op {op!r}")  # pragma: no cover


class Call(ReplySlot):
    """One request and its one-shot reply slot, in one object."""

    __slots__ = ("op",)

    def __init__(self, op: Op, on_reply: Callable[[outcome.Outcome[Any]], None] | None = None) -> None:
        super().__init__(on_reply)
        self.op = op


class _Pipelined:
    """One batch of one list with the store: its calls, their results, the state it leads to (a :class:`Batch`)."""

    __slots__ = ("base_seq", "calls", "changes", "epoch", "name", "next_id", "results", "server", "state")

    def __init__(
        self,
        server: ListServer,
        calls: list[Call],
        results: list[outcome.Outcome[Any]],
        changes: tuple[Change, ...],
        state: TodoList,
        epoch: int,
        base_seq: int | None,
    ) -> None:
        self.server = server
        self.name = server.name
        self.calls = calls
        self.results = results
        self.changes = changes
        self.state = state
        self.next_id = state.next_id
        #: The epoch the batch was built in (taken before it was applied: a
        #: commit may fail, or go stale, while a page of it is read).
        self.epoch = epoch
        #: The list's seq the batch was built on: checked by a shared store.
        self.base_seq = base_seq

    def valid(self) -> bool:
        return self.epoch == self.server._epoch

    def committed(self, error: StoreError | None) -> None:
        self.server._committed(self, error)


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
    #: At least 1: the server takes its mail with receive_nowait only (see
    #: ListServer._queued), so a rendezvous channel (0) would never hand it a call.
    mailbox: int = attrs.field(default=256, validator=attrs.validators.ge(1))
    #: Most requests in one batch, hence in one commit of one list.
    max_batch: int = 256
    #: Most batches of one list with the store at once.  The writer groups
    #: every batch queued while a transaction runs, so two would do; a few
    #: more let a busy list go on batching while the writer is slow, and
    #: bound what one list can put in the writer's queue.
    pipeline_depth: int = 4
    #: More than ``max_crashes`` crashes within ``crash_window`` seconds
    #: quarantines the list for ``quarantine`` seconds (OTP's intensity).
    max_crashes: int = 3
    crash_window: float = 5.0
    quarantine: float = 30.0
    #: The bounds of one ``entries`` page (protocol.py has why these numbers).
    max_page_entries: int = MAX_PAGE_ENTRIES
    max_page_bytes: int = MAX_PAGE_BYTES
    #: A paged read's snapshot lives this long after each page, and a list
    #: keeps at most this many (the least recently used goes first).  A
    #: reader that pages without pause needs milliseconds per page; 30 s
    #: covers a pager held by a slow pipe.  A snapshot pins one version of
    #: the list's map, which shares all but what was written since with the
    #: live one, so its cost is what writers change while it lives.
    snapshot_ttl: float = 30.0
    max_snapshots: int = 32


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
    #: The mailbox; None in it is the reaper's stop signal (see evict).
    _send: trio.MemorySendChannel[Call | None] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[Call | None] = attrs.field(init=False)
    #: Calls to serve again after a crash, before the mailbox.
    _carry: Sequence[Call] = attrs.field(default=(), init=False)
    _batch: Sequence[Call] = attrs.field(default=(), init=False)
    _current: Call | None = attrs.field(default=None, init=False)
    #: Made at the first crash: most lists never crash, and it holds a deque.
    _intensity: RestartIntensity | None = attrs.field(default=None, init=False)
    #: The batches with the store, oldest first; the writer answers them in order.
    _pipeline: list[_Pipelined] = attrs.field(factory=list, init=False)
    #: The state of the last batch the store made durable (or the loaded one).
    _durable: TodoList = attrs.field(factory=TodoList, init=False)
    #: Bumped by each failed commit: batches of an older epoch were built on it.
    _epoch: int = attrs.field(default=0, init=False)
    #: The epoch the server's working state was built in.
    _built: int = attrs.field(default=0, init=False)
    _room: Wakeup = attrs.field(factory=Wakeup, init=False)
    #: The calls (and stop signals) in the mailbox as the server counts
    #: them: each send adds one once it is done, each take removes one, so
    #: 0 <= _queued <= the items in the channel's buffer.  It can be less:
    #: a sender that waited for room has its item moved into the buffer by a
    #: take, and counts it when it runs next, which wakes a parked server.
    #: The server waits for mail only while it is zero, and takes no more
    #: than it says, so it never asks the channel for a call that is not
    #: there (trio's receive() and an empty receive_nowait() each raise
    #: WouldBlock, twice per batch of one call).
    _queued: int = attrs.field(default=0, init=False)
    #: The server's task while it waits for mail (see _wait_mail).
    _sleeper: trio.lowlevel.Task | None = attrs.field(default=None, init=False)
    #: The reaper has sent the stop signal and it has not been overtaken by a call.
    _stop_wanted: bool = attrs.field(default=False, init=False)
    #: When the server started to wait for mail; None while it works.
    _waiting_since: float | None = attrs.field(default=None, init=False)
    #: The versions paged reads are going through (lost when the server
    #: stops); made by the first paged read that keeps one, and dropped
    #: when they are void, so a server that only writes never holds one.
    _snapshots: Snapshots | None = attrs.field(default=None, init=False)
    #: A shared store answered a batch as stale (another daemon changed the
    #: list): reload the list once the pipeline is empty, then apply again
    #: the calls of that batch and of every later one (in ``_carry``).
    _reload: bool = attrs.field(default=False, init=False)
    #: The epochs whose batches are applied again rather than failed; made
    #: by the first stale batch (a shared store only), and dropped at the
    #: reload: an empty set is 216 bytes, a twentieth of an idle server.
    _stale_epochs: set[int] | None = attrs.field(default=None, init=False)
    #: A holder's transaction wrote rows no state of ours holds (see Grant):
    #: the server stops once its mailbox is empty, and loads again if not.
    _stale: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[Call | None](self._config.mailbox)

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
        self._posted()
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
        self._posted()

    def mailbox_depth(self) -> int:
        return self._send.statistics().current_buffer_used

    def _posted(self) -> None:
        """Count one more item in the mailbox and wake the server if it waits for mail."""
        self._queued += 1
        task = self._sleeper
        if task is not None:
            self._sleeper = None
            trio.lowlevel.reschedule(task)

    async def _wait_mail(self) -> None:
        """Wait until a sender posts (the mailbox's channel is read with receive_nowait only).

        A parked task and a reschedule, rather than the channel's receive():
        that raised and caught WouldBlock, made a closure and filled two
        collections at every wait, and a list server of a batch of one add
        waits once per add.
        """
        self._sleeper = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort_wait)

    def _abort_wait(self, _raise_cancel: Any) -> trio.lowlevel.Abort:
        self._sleeper = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _take(self) -> Call | None:
        """The next item of the mailbox (a call, or None: a stop signal); _queued must be positive.

        Raises:
            trio.WouldBlock: the count was ahead of the channel (never
                expected; the count is then set to zero).
        """
        try:
            item = self._receive.receive_nowait()
        except trio.WouldBlock:
            self._queued = 0
            raise
        self._queued -= 1
        return item

    # --- the server's side ----------------------------------------------------

    async def run(self) -> None:
        """Serve until idle, quarantined or cancelled, restarting after crashes.

        Returns when the list has been idle for ``idle_timeout`` or is
        quarantined.  On every exit, the registry forgets the server first,
        then every call still queued gets an error, so no caller hangs.
        """
        reason: str | None = None
        error: TodoError | None = None
        cancelled = True  # until the server stops of its own accord
        try:
            while True:
                try:
                    # One incarnation, in this frame: a list server at rest
                    # is this one coroutine frame and its channel's.  The
                    # load waits for this list's batches still with the
                    # writer, so it sees all of them (committed or failed).
                    state = await self._store.load(self.name)
                    self._durable, self._built = state, self._epoch
                    self._events.loaded()
                    while True:
                        # A full pipeline leaves the calls in the mailbox, where the next
                        # batch grows and abandoned calls are dropped.
                        while len(self._pipeline) >= self._config.pipeline_depth:
                            await self._room.wait()
                        if self._reload:
                            state = await self._resync()
                        first = None
                        if not self._carry:
                            if self._queued <= 0:
                                self._waiting_since = trio.current_time()
                                try:
                                    await self._wait_mail()
                                finally:
                                    self._waiting_since = None
                                if self._queued <= 0:
                                    continue  # the count caught up with a take
                            else:
                                # Mail waiting: no wait, but still a cancellation point.
                                await trio.lowlevel.checkpoint_if_cancelled()
                            try:
                                first = self._take()
                            except trio.WouldBlock:  # pragma: no cover - the count is never ahead
                                continue
                            if first is None:
                                # The reaper's stop signal (see evict).  A call queued
                                # after it is served instead.  No checkpoint from this
                                # check to _stop, so nothing can slip in after it.
                                if self._stop_wanted and self._mailbox_empty() and not self._carry:
                                    log.debug("list %r idle, stopping", self.name)
                                    break
                                self._stop_wanted = False
                                continue
                        self._stop_wanted = False
                        # No local keeps the batch: a server at rest holds no call.
                        state = await self._process(state, self._take_batch(first))
                        first = None
                        if state.next_id == 1 and self._store.shared:
                            # A read of a list not written yet is checked by the
                            # store (another daemon may have written it): wait
                            # for that answer before deciding to stop.
                            while self._pipeline:
                                await self._room.wait()
                        stop = (state.next_id == 1 or self._stale) and self._mailbox_empty()
                        if stop and not self._carry and not self._reload:
                            # Never written: keeping a task for it would let reads of
                            # made-up names grow the daemon without bound.  No
                            # checkpoint from this check to _stop.
                            break
                    cancelled = False
                    return
                except StoreError as exc:
                    # Only loading raises it here (a failed commit is answered
                    # inside _process).  A store that cannot read is not a bug
                    # of this list: answer what is queued with the store's own
                    # reason and stop, without counting a crash; the next
                    # request tries again.
                    log.error("list %r could not be loaded: %s", self.name, exc)
                    error = exc
                    cancelled = False
                    return
                except Exception as exc:
                    reason = self._crashed(exc)
                    if reason is not None:
                        cancelled = False
                        return
        finally:
            self._stop(reason, error, in_doubt=cancelled)

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
        """When the server started to wait for mail, or None if it is working, committing or already stopping.

        A server with batches still with the store is never stopped, so
        that no caller waits on a server that is gone.
        """
        if self._stop_wanted or self._pipeline:
            return None
        return self._waiting_since

    def evict(self) -> bool:
        """End the server's wait for mail now, as :meth:`expire_if_idle` does when it is due.

        The server is sent a stop signal through its own mailbox (no cancel
        scope per server: it cost a tenth of an idle server's memory); it
        stops on it unless a call reached the mailbox first.  Returns whether
        it was waiting (only then is it signalled).
        """
        if self.waiting_since() is None:
            return False
        try:
            self._send.send_nowait(None)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        self._stop_wanted = True
        self._posted()
        return True

    def _mailbox_empty(self) -> bool:
        return self.mailbox_depth() == 0

    def _take_batch(self, first: Call | None) -> list[Call]:
        """The calls carried over, or else ``first`` and the next ones queued behind it.

        Stop signals found among them are dropped (the server is busy, so
        it is not idle).  Calls whose caller has left (timed out or
        cancelled) before the server took them are dropped, not applied:
        nobody waits for their answer.
        """
        if first is not None and not self._carry and self._queued <= 0:
            # A batch of one call, the common case with many lists (each
            # with one caller at a time): none of the copies and scans below.
            if not first.is_wanted():
                self._events.dropped(1)
                return []
            if self._events.mailbox_peak < 1:
                self._events.mailbox_depth(1)
            return [first]
        batch = list(self._carry)
        self._carry = ()
        carried = len(batch)
        if first is not None:
            batch.append(first)
        while len(batch) < self._config.max_batch and self._queued > 0:
            try:
                call = self._take()
            except trio.WouldBlock:  # pragma: no cover - the count is never ahead
                break
            if call is not None:
                batch.append(call)
        # The mailbox depth is sampled here, once per batch, rather than by
        # every sender: channel.statistics() builds a record per call (about
        # 3.5 us, a few per cent of the loop's CPU per add).
        depth = len(batch) - carried + max(self._queued, 0)
        events = self._events
        if depth > events.mailbox_peak:
            events.mailbox_depth(depth)
        wanted = [call for call in batch if call.is_wanted()]
        if len(wanted) < len(batch):
            self._events.dropped(len(batch) - len(wanted))
        # A Hold is a batch of its own: what came before it is applied and
        # submitted first, what came after it waits for its release.
        for index, call in enumerate(wanted):
            if type(call.op) is Hold:
                cut = index or 1
                self._carry = wanted[cut:]
                return wanted[:cut]
        return wanted

    async def _process(self, state: TodoList, batch: list[Call]) -> TodoList:
        """Apply ``batch`` (if any call is left in it) and hand it to the store; return the state it leads to.

        Returns before the batch is durable: the store's writer answers its
        callers (see :meth:`_committed`).  Only a batch without writes and
        with nothing of this list in flight is answered here and now.
        """
        if not batch:
            return state
        if type(batch[0].op) is Hold:
            return await self._hold(state, batch[0])
        if self._built != self._epoch:
            # A commit failed since this state was built: what was built on
            # it is void (the writer fails those batches); start again from
            # what is durable.
            state, self._built = self._durable, self._epoch
        epoch, base_seq = self._epoch, state.seq
        self._batch = batch
        draft = Draft(state)
        results: list[outcome.Outcome[Any]] = []
        changes: list[Change] = []
        for call in batch:
            self._current = call
            if self._faults.on_request is not None:
                self._faults.on_request(self.name, call.op)
            try:
                if type(call.op) is ReadPage:
                    # Checkpoints inside: the batch's other calls wait, the
                    # rest of the daemon does not.
                    results.append(outcome.Value(await self._read_page(draft, call.op.page)))
                    continue
                result, change = apply(draft, call.op)
            except TodoError as exc:
                results.append(outcome.Error(_in_list(exc, self.name)))
                continue
            results.append(outcome.Value(result))
            changes.extend(change)
        self._current = None
        shared = self._store.shared
        if not changes and not self._pipeline and not shared:
            for call, result in zip(batch, results, strict=True):
                call.reply(result)
            self._batch = ()
            return state
        # A batch of reads only still goes through the writer when batches of
        # this list are in flight: they saw those writes, so they are answered
        # once those are durable (and fail if they fail).  On a shared store
        # every batch does: the writer checks that the list is still at the
        # seq the batch was built on, so that no daemon serves a state older
        # than the database.
        new_state = draft.freeze() if changes else state
        item = _Pipelined(self, batch, results, tuple(changes), new_state, epoch, base_seq if shared else None)
        self._pipeline.append(item)
        try:
            await self._store.submit(item)
        except StoreError as exc:
            self._pipeline.remove(item)
            for call in batch:
                call.reply(outcome.Error(exc))
            self._batch = ()
            return state
        except BaseException:
            # Cancelled before the store took it: not applied; _stop answers it.
            self._pipeline.remove(item)
            raise
        self._batch = ()
        return new_state

    async def _hold(self, state: TodoList, call: Call) -> TodoList:
        """Lend the list's durable state to a transaction over several lists and wait for it back.

        The pipeline is drained first, so the state lent is the durable one.
        The wait has no deadline of its own: the holder releases in a
        ``finally`` (todod/_transfer.py), and its transaction is bounded by
        the store's writer.  Returns the state to go on with.
        """
        while self._pipeline:
            await self._room.wait()
        if self._built != self._epoch:
            state, self._built = self._durable, self._epoch
        grant = call.op.grant  # type: ignore[union-attr]
        if not call.is_wanted():
            return state  # the holder gave up before we got here
        grant.state = state
        call.reply(outcome.Value(grant))
        await grant.wait_released()
        if grant.reload:
            self._stale = True
            self._snapshots = None
            if self._mailbox_empty() and not self._carry:
                return state  # the run loop stops the server: the next request loads the list
            state = await self._store.load(self.name)
            self._stale = False
        elif grant.new_state is not None:
            state = grant.new_state
        self._durable = state
        return state

    async def _read_page(self, draft: Draft, request: PageRequest) -> Any:
        """One page (or a whole read) for ``request``, from the draft's current version or the cursor's snapshot.

        A first page of a read that goes on keeps its version as a snapshot
        and names it in the cursor; the last page drops it.
        """
        config = self._config
        if request.snapshot is None:
            snapshot = Snapshot(draft.current(), draft.next_id - 1)
        else:
            snapshot = self._kept_snapshots().get(request.snapshot)
        parts, after = await read_page(snapshot, request, config.max_page_entries, config.max_page_bytes)
        if request.limit is None and request.snapshot is None:
            return whole_result(parts)
        cursor = None
        if after is not None:
            name = request.snapshot or self._kept_snapshots().keep(snapshot)
            cursor = f"{name}.{after}"
        # A snapshot is not dropped at a read's last page: readers of one
        # version share it, so it goes by its time or its count.
        return page_result(parts, cursor, snapshot.last_id)

    def _kept_snapshots(self) -> Snapshots:
        if self._snapshots is None:
            self._snapshots = Snapshots(self._config.snapshot_ttl, self._config.max_snapshots)
        return self._snapshots

    def _committed(self, item: _Pipelined, error: StoreError | None) -> None:
        """The writer's answer to one of our batches, in the writer's task: answer its callers."""
        if self._pipeline and self._pipeline[0] is item:
            del self._pipeline[0]
        elif item in self._pipeline:  # pragma: no cover - the writer answers in order
            self._pipeline.remove(item)
        else:
            return  # answered in doubt when the server stopped
        if error is None:
            if item.epoch == self._epoch:
                self._durable = item.state
            for call, result in zip(item.calls, item.results, strict=True):
                call.reply(result)
            if item.changes:
                self._events.batch(len(item.calls))
        elif isinstance(error, StaleList) or (self._stale_epochs is not None and item.epoch in self._stale_epochs):
            # Another daemon got there first: nothing of this batch (nor of
            # any later one, built on it) was written.  Its calls are applied
            # again, in order, to the list as the database has it now.
            if item.epoch == self._epoch:
                self._epoch += 1
                self._snapshots = None
            if self._stale_epochs is None:
                self._stale_epochs = set()
            self._stale_epochs.add(item.epoch)
            self._reload = True
            self._carry = [*self._carry, *(call for call in item.calls if call.is_wanted())]
            if self._waiting_since is not None:
                # Waiting for mail: wake the server to serve the carried calls.
                try:
                    self._send.send_nowait(None)
                except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                else:
                    self._posted()
        else:
            if item.epoch == self._epoch:
                self._epoch += 1  # every later batch was built on this one
                # A snapshot taken since may hold writes that are now void.
                self._snapshots = None
            for call in item.calls:
                call.reply(outcome.Error(error))
        self._room.set()

    async def _resync(self) -> TodoList:
        """Reload the list once every batch with the store is answered (the stale ones are in ``_carry``)."""
        while self._pipeline:
            await self._room.wait()
        # From the last state this daemon knows committed: the store patches
        # it with what the others wrote since, or loads the list whole.
        state = await self._store.catch_up(self.name, self._durable)
        self._durable, self._built = state, self._epoch
        self._reload = False
        self._stale_epochs = None
        self._events.reloaded()
        return state

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
        self._carry = [c for c in self._batch if c.is_wanted()] + list(self._carry)
        self._batch = ()
        if self._intensity is None:
            self._intensity = RestartIntensity(self._config.max_crashes, self._config.crash_window)
        if self._intensity.crashed():
            self._events.quarantined()
            return (
                f"list {self.name!r} crashed {self._intensity.recent()} times in "
                f"{self._config.crash_window:g} s and is quarantined for {self._config.quarantine:g} s"
            )
        self._events.restarted()
        return None

    def _stop(self, reason: str | None, error: TodoError | None = None, *, in_doubt: bool = False) -> None:
        """Leave the registry and answer everything queued; no checkpoint.

        ``in_doubt``: the server was cancelled (shutdown), so the batches it
        has with the store are answered now, as possibly applied.  Else the
        writer answers them (a quarantined list's last batches, say), and
        the call timer bounds the wait.
        """
        # No checkpoint from here to the close: no sender can slip a call in
        # between the last receive_nowait and the close, so none is lost.
        self._on_stop(self, reason)
        error = error or Unavailable(reason or f"list {self.name!r} is shutting down; try again")
        if in_doubt and self._pipeline:
            # Stopped (cancelled) while the store held batches of ours: the
            # writer may still make them durable, so "not applied" would be
            # a lie that invites a duplicate retry.  Their callers are told
            # now, so that none waits on a writer that may never answer; the
            # writer's later answer is dropped.
            maybe = Timeout(f"list {self.name!r} stopped during a commit; the change may have been applied")
            for item in self._pipeline:
                for call in item.calls:
                    call.reply(outcome.Error(maybe))
            self._pipeline.clear()
        pending = [*self._carry, *self._batch]
        self._carry, self._batch = (), ()
        while True:
            try:
                queued = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            if queued is not None:
                pending.append(queued)
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
    #: Lists reloaded because another daemon changed them (a shared store).
    reloads: int = 0

    def loaded(self) -> None:
        self.loads += 1

    def reloaded(self) -> None:
        self.reloads += 1

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
    "Flush",
    "GetEntries",
    "Gone",
    "Grant",
    "Hold",
    "ListServer",
    "Op",
    "ReadPage",
    "RevertChanges",
    "ServerConfig",
    "ServerEvents",
    "ServerFaults",
    "Timeout",
    "UpdateEntry",
]
