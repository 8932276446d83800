"""What every store backend shares: its errors, fault hooks, statistics, batches, and the :class:`Store` interface.

The daemon above the store (list servers, registry, socket, change log,
queries) talks to a :class:`Store` only; :func:`todod.store.open_store` picks
the backend (SQLite in the data directory, or PostgreSQL) from a URI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import outcome
import trio

from todod._model import Change, Entry, TodoList
from todod._reply import ReplySlot
from todod.protocol import Unavailable

if TYPE_CHECKING:
    from todod import _bulk, _log, _query


class StoreError(Unavailable):
    """The store could not do what was asked; nothing of the failed write is kept."""


@attrs.define(eq=False)
class StoreFaults:
    """Hooks to inject faults in tests.  Each runs in the writer's thread or task."""

    #: Called in the writer thread before each transaction, with the group size.
    before_commit: Callable[[int], None] | None = None
    #: Called in the writer task before each group; raising crashes the writer.
    writer_task: Callable[[], None] | None = None
    #: While set, the indexer waits for this event before each step (the
    #: search index then stays behind, and queries check the log's tail).
    hold_indexer: trio.Event | None = None


#: Called in the writer task after each committed group, with the position
#: before its first event, the time it recorded and each list's changes
#: (the watch hub, fed after commit; it must not block).
CommitListener = Callable[[int, float, Sequence[tuple[str, Sequence[Change]]]], None]


@attrs.frozen
class StoreStatistics:
    commits: int
    failed_commits: int
    batches: int
    changes: int
    max_group: int
    loads: int
    checkpoints: int
    queued: int
    writer_busy_seconds: float
    #: Batches answered StaleList: another daemon had changed their list (a shared store).
    stale_batches: int = 0


class Batch(Protocol):
    """One list's batch of row-level changes, as the writer takes it (see :meth:`Store.submit`)."""

    #: The list, its next id after the batch, and the changes, in order.
    #: A batch without changes writes nothing: it is answered once every
    #: batch queued before it is (a read that saw those batches' writes).
    name: str
    next_id: int
    changes: tuple[Change, ...]
    #: The list's seq the batch was built on, or None for an unchecked write.
    #: A shared store (several daemons) answers a batch whose list is no
    #: longer at this seq with ``StaleList`` and writes nothing of it.
    base_seq: int | None

    def valid(self) -> bool:
        """False if the batch was built on a batch whose commit failed: it is then failed, not written."""

    def committed(self, error: StoreError | None) -> None:
        """The writer's answer, once: None when the batch is durable, else why it is not.

        Runs in the writer's task: synchronous, quick, and it must not raise.
        """


class Commit(ReplySlot):
    """One list's batch for :meth:`Store.commit`, and the slot the writer answers it in."""

    __slots__ = ("base_seq", "changes", "name", "next_id")

    def __init__(self, name: str, next_id: int, changes: tuple[Change, ...]) -> None:
        super().__init__()
        self.name = name
        self.next_id = next_id
        self.changes = changes
        self.base_seq: int | None = None

    def valid(self) -> bool:
        return True

    def committed(self, error: StoreError | None) -> None:
        self.reply(outcome.Value(None) if error is None else outcome.Error(error))


@attrs.frozen
class Part:
    """One list's share of a :class:`Transaction`: its next id after it and its changes."""

    name: str
    next_id: int
    changes: tuple[Change, ...]


#: A transaction's own SQL, run by the writer inside the group's transaction,
#: after the parts' rows, given the backend's write context (the SQLite
#: backend's ``WriteContext``: its connection and the log's cursor).
Hook = Callable[[Any], None]


class Transaction(ReplySlot):
    """Changes to several lists, and SQL of its own, that the writer commits in one transaction, never split.

    What a move, an import's publish or a saga's step hands the writer
    (todod/_transfer.py): the lists' servers are held meanwhile, so the parts
    are built on durable states and are always valid.  ``lists`` are the
    lists it writes (loads of them wait for it); ``bulk`` says its hook
    appends log events that no part carries, so watchers read them from the log.
    ``base_seqs`` are the lists' seqs its parts and hook were built on: a
    shared store (several daemons) answers it ``StaleList`` and writes
    nothing of it when any of them moved on (the mover holds this daemon's
    list servers, not the lists).
    """

    __slots__ = ("base_seqs", "bulk", "hook", "lists", "parts")

    def __init__(
        self, parts: Sequence[Part], hook: Hook | None = None, lists: Sequence[str] = (), *, bulk: bool = False
    ) -> None:
        super().__init__()
        self.parts = tuple(parts)
        self.hook = hook
        self.lists = tuple(dict.fromkeys([*(p.name for p in self.parts), *lists]))
        self.bulk = bulk
        self.base_seqs: dict[str, int] = {}

    @property
    def name(self) -> str:
        return self.lists[0] if self.lists else ""

    @property
    def changes(self) -> tuple[Change, ...]:
        return tuple(c for p in self.parts for c in p.changes)

    def valid(self) -> bool:
        return True

    def committed(self, error: StoreError | None) -> None:
        self.reply(outcome.Value(None) if error is None else outcome.Error(error))


class EventFeed(Protocol):
    """Where a shared store's follower hands the committed events it reads from the log, in position order."""

    def publish_events(self, events: Sequence[dict[str, Any]]) -> None:
        """Take events in wire form; never waits."""

    def watched(self) -> bool:
        """Whether anybody watches (else a commit need not wait for its events to be handed on)."""


class StaleList(StoreError):
    """Another daemon changed the list since the batch was built on it: reload the list and apply the batch again."""


class Store(Protocol):
    """An open store, whichever the backend.

    Run :meth:`run_writer` and :meth:`run_checkpointer` as permanent children
    of the daemon's supervisor.  Every error that leaves a store is a
    :class:`StoreError`.
    """

    #: Where the data is, for ``status`` (a file, or a URI without its password).
    path: str
    faults: StoreFaults
    change_log: bool
    on_commit: CommitListener | None
    inline_commits: bool
    text_index: bool
    #: True when other daemons may write the same data (PostgreSQL): a list
    #: server then validates its cached list in every transaction (see
    #: docs/ARCHITECTURE.md, "Several daemons").
    shared: bool
    #: What a shared store's log follower hands the events of every daemon
    #: to (the watch hub); a store with one writer uses ``on_commit`` instead.
    feed: EventFeed | None
    #: Called after a committed group that appended events no batch carries (an import's).
    on_bulk: Callable[[], None] | None

    async def commit(self, name: str, next_id: int, changes: Sequence[Change]) -> None: ...
    async def submit(self, batch: Batch | Transaction) -> None: ...
    async def run_writer(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...
    async def run_checkpointer(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...
    async def run_indexer(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...
    async def wait_indexed(self) -> None: ...
    async def wait_committed(self, name: str) -> None: ...
    def idle(self) -> bool: ...
    async def wait_idle(self) -> None: ...
    def writer_stalled(self, limit: float) -> bool: ...
    async def load(self, name: str) -> TodoList: ...
    async def catch_up(self, name: str, state: TodoList) -> TodoList: ...
    async def lists(self) -> list[tuple[str, int]]: ...
    async def find(self, query: _query.FindQuery, time_limit: float) -> tuple[list[dict[str, Any]], bool]: ...
    async def find_page(self, query: _query.FindQuery, time_limit: float, rows: bool = False) -> _query.FoundPage: ...
    async def stage_import(self, rows: Sequence[_bulk.StagedRow]) -> None: ...
    async def staged_count(self, import_id: str) -> tuple[int, int]: ...
    async def drop_import(self, import_id: str | None = None) -> None: ...
    async def release_import(self, import_id: str) -> None: ...
    async def bulk_read(self, fn: Callable[[Any], Any], what: str) -> Any: ...
    def last_position(self) -> int: ...
    async def history(self, name: str, limit: int | None = None) -> dict[str, Any]: ...
    async def history_page(self, name: str, after: int | None, limit: int | None, page: int) -> _log.HistoryPage: ...
    async def undo_plan(self, name: str, steps: int) -> _log.Plan: ...
    async def redo_plan(self, name: str, steps: int) -> _log.Plan: ...
    async def read_events(self, after: int, name: str | None, limit: int) -> list[dict[str, Any]]: ...
    async def log_horizon(self) -> int: ...

    async def log_end(self) -> int:
        """The position of the last event committed by any daemon (a shared store reads it; 0: none)."""
        ...

    async def compact(self, before: float) -> _log.Compaction: ...
    async def rebuild_and_view(self) -> tuple[dict[str, dict[int, Entry]], dict[str, dict[int, Entry]]]: ...
    async def integrity_check(self) -> str: ...
    def statistics(self) -> StoreStatistics: ...


__all__ = [
    "Batch",
    "Commit",
    "CommitListener",
    "EventFeed",
    "Hook",
    "Part",
    "StaleList",
    "Store",
    "StoreError",
    "StoreFaults",
    "StoreStatistics",
    "Transaction",
]
