"""The PostgreSQL store backend: several daemons, one database.

Selected by a ``postgresql://`` URI (``todod --store URI``).  psycopg 3's
synchronous API runs in worker threads: psycopg's async API supports asyncio
only (psycopg issue #29), and so does asyncpg.  One writer connection
group-commits the batches of all lists in one transaction, as the SQLite
writer does; reads go through a :mod:`psycopg_pool` pool whose threads are
bounded by a :class:`trio.CapacityLimiter`.  Every connection runs with
``synchronous_commit = on``: a reply is sent after the commit is flushed, and
after the synchronous standby confirmed it when one is configured.

Several daemons may write the same list, so a daemon's list servers are a
cache, validated in every transaction (docs/ARCHITECTURE.md, "Several
daemons"): each batch carries the list's ``seq`` it was built on
(``Batch.base_seq``); the writer locks the lists it writes (``SELECT ... FOR
UPDATE``, in id order) and compares; a batch whose list moved on is answered
with :class:`StaleList`, and its list server reloads the list and applies the
batch again.  A batch of reads is compared too (without a lock), so a read on
any daemon sees every change acknowledged before it was sent.

The change log's positions are taken from one counter row (``log_meta``),
updated at the end of each transaction: its row lock orders the commits, so
positions become visible in position order, without gaps, on every daemon.
A commit ends with ``pg_notify('todod_log', position)``; each daemon's
follower (:meth:`PostgresStore.run_checkpointer`) listens and reads the new
events from the log (a notification is a wake-up hint, never the data) to
feed its watch subscriptions.

Every error that leaves this module is a :class:`StoreError`.
"""

from __future__ import annotations

import datetime
import itertools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import psycopg
import psycopg_pool
import trio

from todod import _log, _query
from todod._model import Change, Entry, TodoList
from todod.protocol import MAX_PAGE_BYTES, Compacted, Timeout
from todod.store._base import (
    Batch,
    Commit,
    CommitListener,
    EventFeed,
    Hook,
    Part,
    StaleList,
    StoreError,
    StoreFaults,
    StoreStatistics,
    Transaction,
)
from todod.store._pg_sql import (
    CHAIN,
    CHANNEL,
    DELETE,
    DELETE_UNDO,
    INSERT_EVENT,
    INSERT_UNDO,
    LIST_COLUMNS,
    MIGRATIONS,
    PUT,
    SCHEMA_VERSION,
    STAGE,
    Compat,
    check_and_migrate,
    ensure_text_index,
    find_rows,
)
from todod.store._pg_sql import (
    compact as compact_log,
)
from todod.store._pg_sql import (
    last_position as read_last_position,
)

log = logging.getLogger("todod.store")

#: As in the SQLite backend (see there why): the writer's queue and group bounds.
COMMIT_QUEUE = 1024
MAX_GROUP = 512
#: Read connections (and threads) at once.
READ_WORKERS = 3
#: How long the follower sleeps without a notification before it reads the
#: log anyway: a lost connection's notifications are not replayed, and one
#: read a second is nothing to the database.
FOLLOW_POLL = 1.0
#: Events per read of the log by the follower.
FOLLOW_PAGE = 512
#: How long a commit waits for the follower to hand its events to this
#: daemon's watchers before the callers are answered anyway (the change is
#: durable; only the watchers' "already seen" promise is late).
PUBLISH_WAIT = 2.0
#: Times a group is tried again after a deadlock or a serialization failure
#: (two daemons creating lists at once can deadlock; PostgreSQL aborts one).
RETRIES = 5

#: Beyond this many events another daemon wrote, a stale list is loaded
#: whole rather than patched from the log.
CATCH_UP_MAX = 10_000


def _translate(exc: BaseException, what: str) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    text = str(exc).strip() or type(exc).__name__
    return StoreError(f"{what}: {text}")


def redact(uri: str) -> str:
    """``uri`` without its password, for logs and ``status``."""
    uri = re.sub(r"^(postgres(?:ql)?://[^:/@?]*):[^@/?]*@", r"\1:***@", uri)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", uri)


def _connect(uri: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    conn = psycopg.connect(uri, autocommit=autocommit, connect_timeout=10)
    conn.execute("SET synchronous_commit = on")
    if not autocommit:
        conn.commit()
    return conn


#: What the writer takes: one list's batch, or a Transaction over several.
Item = Batch | Transaction


@attrs.frozen
class _Writes:
    """What one item of a group writes: its parts, its hook, the lists it names and the seqs it was built on."""

    parts: tuple[Batch | Part, ...]
    hook: Hook | None
    lists: tuple[str, ...]
    base: dict[str, int]
    writes: bool


def _writes(item: Item) -> _Writes:
    if isinstance(item, Transaction):
        return _Writes(item.parts, item.hook, item.lists, dict(item.base_seqs), True)
    base = {} if item.base_seq is None else {item.name: item.base_seq}
    return _Writes((item,), None, (item.name,), base, bool(item.changes))


class WriteContext:
    """What a :class:`Transaction`'s hook sees in the writer's thread, as the SQLite backend's ``WriteContext``.

    ``conn`` takes todod/_bulk.py's SQL (``?`` placeholders).  ``position``
    is the last position taken so far in this transaction: read before any
    was taken, it locks the log's counter row (the hook then runs after
    every other lock of the transaction); a hook that appends events moves
    it, and the counter is set to it before the commit.
    """

    def __init__(
        self,
        conn: Compat,
        now: float,
        position: int | None,
        lists: dict[str, tuple[int, int, int]],
        heads: dict[str, int],
    ) -> None:
        self.conn = conn
        self.now = now
        self._position = position
        self._lists = lists
        self._heads = heads
        self._names = {list_id: name for name, (list_id, _seq, _head) in lists.items()}
        self.taken = False

    @property
    def position(self) -> int:
        if self._position is None:
            row = self.conn.execute("SELECT last_position FROM log_meta FOR UPDATE").fetchone()
            assert row is not None
            self._position = int(row[0])
        return self._position

    @position.setter
    def position(self, value: int) -> None:
        self._position = value
        self.taken = True

    def finish(self) -> int:
        """Set the log's counter to the last position taken, and return it."""
        self.conn.execute("UPDATE log_meta SET last_position = ?", (self.position,))
        return self.position

    def list_id(self, name: str) -> int:
        """The list's id, creating the list if it has none."""
        found = self._lists.get(name)
        if found is None:
            self.conn.execute("INSERT INTO lists (name, next_id) VALUES (?, 1) ON CONFLICT (name) DO NOTHING", (name,))
            row = self.conn.execute(f"SELECT {LIST_COLUMNS} FROM lists WHERE name = ? FOR UPDATE", (name,)).fetchone()
            assert row is not None
            found = self._lists[name] = (int(row[0]), int(row[2]), int(row[3]))
            self._names[found[0]] = name
            self._heads[name] = found[2]
        return found[0]

    def head(self, list_id: int) -> int:
        return self._heads[self._names[list_id]]

    def set_head(self, list_id: int, head: int) -> None:
        self._heads[self._names[list_id]] = head

    def staged(self, import_id: str) -> tuple[str, tuple[Any, ...], str | None]:
        """Where an import's staged rows are (``import_rows``), and their delete in the publish's transaction."""
        return "import_rows WHERE import = ?", (import_id,), "DELETE FROM import_rows WHERE import = ?"


@attrs.define(eq=False)
class _Follower:
    """What the follower has handed to the watchers: every event up to ``published``."""

    published: int = 0
    changed: trio.Event = attrs.field(factory=trio.Event)
    hint: trio.Event = attrs.field(factory=trio.Event)

    def advance(self, position: int) -> None:
        if position > self.published:
            self.published = position
            self.changed.set()
            self.changed = trio.Event()


@attrs.define(eq=False)
class PostgresStore:
    """An open PostgreSQL store.  Use :func:`open_store`; run :meth:`run_writer` and
    :meth:`run_checkpointer` (here: the log follower) as permanent children.
    """

    uri: str
    path: str
    _writer_conn: psycopg.Connection[Any]
    _pool: psycopg_pool.ConnectionPool[Any]
    faults: StoreFaults = attrs.field(factory=StoreFaults)
    change_log: bool = True
    _position: int = 0
    on_commit: CommitListener | None = None
    #: What the follower hands every daemon's events to (the watch hub).
    feed: EventFeed | None = None
    #: Called after a committed group that appended events no batch carries (an import's).
    on_bulk: Callable[[], None] | None = None
    #: Accepted for the interface; commits always run in a worker thread here.
    inline_commits: bool = False
    text_index: bool = attrs.field(default=False, kw_only=True)
    #: Other daemons may write the same lists.
    shared: bool = attrs.field(default=True, init=False)
    _read_limiter: trio.CapacityLimiter = attrs.field(init=False)
    _send: trio.MemorySendChannel[Item] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[Item] = attrs.field(init=False)
    _pending: dict[str, int] = attrs.field(factory=dict, init=False)
    _group_done: trio.Event | None = attrs.field(default=None, init=False)
    _went_idle: trio.Event = attrs.field(factory=trio.Event, init=False)
    _follower: _Follower = attrs.field(factory=_Follower, init=False)
    _busy_since: float | None = attrs.field(default=None, init=False)
    _commits: int = attrs.field(default=0, init=False)
    _failed: int = attrs.field(default=0, init=False)
    _batches: int = attrs.field(default=0, init=False)
    _changes: int = attrs.field(default=0, init=False)
    _max_group: int = attrs.field(default=0, init=False)
    _loads: int = attrs.field(default=0, init=False)
    _stale: int = attrs.field(default=0, init=False)
    _caught_up: int = attrs.field(default=0, init=False)
    _staging_conn: psycopg.Connection[Any] | None = attrs.field(default=None, init=False)
    _staging_lock: trio.Lock = attrs.field(factory=trio.Lock, init=False)
    #: Set in the writer's thread while its COMMIT is on its way.
    _committing: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._read_limiter = trio.CapacityLimiter(READ_WORKERS)
        self._send, self._receive = trio.open_memory_channel[Item](COMMIT_QUEUE)
        self._follower.published = self._position

    # --- writes -------------------------------------------------------------

    async def commit(self, name: str, next_id: int, changes: Sequence[Change]) -> None:
        """Make one list's batch durable, unchecked (no ``base_seq``); return once it is committed.

        Raises:
            StoreError: the transaction failed; nothing of it is kept.
        """
        item = Commit(name, next_id, tuple(changes))
        await trio.lowlevel.checkpoint_if_cancelled()
        await self.submit(item)
        await item.wait()

    async def submit(self, batch: Batch | Transaction) -> None:
        """Queue ``batch`` for the writer (see the SQLite backend's :meth:`submit`, the same contract).

        A :class:`Transaction` (a move, an import's publish, a saga's step)
        is checked against its ``base_seqs`` and answered :class:`StaleList`
        as a whole when another daemon wrote one of its lists since.

        Raises:
            StoreError: the store is closed.
        """
        names = batch.lists if isinstance(batch, Transaction) else (batch.name,)
        for name in names:
            self._pending[name] = self._pending.get(name, 0) + 1
        try:
            try:
                self._send.send_nowait(batch)
            except trio.WouldBlock:
                await self._send.send(batch)
        except BaseException as exc:
            self._done(batch)
            if isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError)):
                raise StoreError("the store is closed") from None
            raise

    def _done(self, batch: Item) -> None:
        for name in batch.lists if isinstance(batch, Transaction) else (batch.name,):
            left = self._pending[name] - 1
            if left:
                self._pending[name] = left
            else:
                del self._pending[name]

    def _answer(self, batch: Item, error: StoreError | None) -> None:
        self._done(batch)
        try:
            batch.committed(error)
        except Exception:
            log.exception("answering a commit failed")

    async def run_writer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit queued batches in groups, one transaction per group, and answer each batch.

        A batch of a list that another daemon changed since the batch was
        built is answered with :class:`StaleList` and nothing of it is
        written; the others of the group are.  Never returns; on
        cancellation a transaction already in its thread is finished first.
        """
        task_status.started()
        while True:
            group = [await self._receive.receive()]
            while len(group) < MAX_GROUP:
                try:
                    group.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            error: StoreError | None = StoreError("the store's writer crashed; the change was not kept")
            stale: set[int] = set()
            unanswered = group
            try:
                if self.faults.writer_task is not None:
                    self.faults.writer_task()
                unanswered = []
                for item in group:
                    if item.valid():
                        unanswered.append(item)
                    else:
                        self._answer(item, StoreError(f"an earlier commit of list {item.name!r} failed; not applied"))
                self._busy_since = trio.current_time()
                checked = [
                    item
                    for item in unanswered
                    if isinstance(item, Transaction) or item.changes or item.base_seq is not None
                ]
                if not checked:
                    error = None
                else:
                    error, stale, last = await trio.to_thread.run_sync(self._write_group, checked)
                    stale_items = {id(checked[i]) for i in stale}
                    if error is None and last and self.feed is not None and self.feed.watched():
                        # Before the callers are answered: a client that has
                        # its reply finds its change in this daemon's watches.
                        await self._wait_published(last)
                    for item in unanswered:
                        if id(item) in stale_items:
                            self._stale += 1
                            self._answer(
                                item, StaleList(f"list {item.name!r} was changed by another daemon; reloading")
                            )
                    unanswered = [item for item in unanswered if id(item) not in stale_items]
            finally:
                self._busy_since = None
                for item in unanswered:
                    self._answer(item, error)
                if self._group_done is not None:
                    self._group_done.set()
                    self._group_done = None
                if self.idle():
                    self._went_idle.set()
                    self._went_idle = trio.Event()

    async def _wait_published(self, position: int) -> None:
        follower = self._follower
        with trio.move_on_after(PUBLISH_WAIT):
            while follower.published < position:
                follower.hint.set()
                await follower.changed.wait()

    async def wait_committed(self, name: str) -> None:
        """Wait until every batch of list ``name`` queued so far has been answered."""
        while self._pending.get(name):
            if self._group_done is None:
                self._group_done = trio.Event()
            await self._group_done.wait()

    def _write_group(self, group: list[Item]) -> tuple[StoreError | None, set[int], int]:
        """Runs in a worker thread: one transaction for the group, tried again after a deadlock.

        Returns the group's error (None: committed), the indexes of its
        stale batches (not written), and the position of its last event.
        """
        for attempt in range(RETRIES + 1):
            conn = self._writer_conn
            try:
                if conn.broken or conn.closed:
                    self._writer_conn = conn = _connect(self.uri)
                if self.faults.before_commit is not None and any(
                    isinstance(item, Transaction) or item.changes for item in group
                ):
                    # As on SQLite, where reads never reach the writer: only groups that write.
                    self.faults.before_commit(len(group))
                stale, last = self._transaction(conn, group)
                written = [item for i, item in enumerate(group) if i not in stale and item.changes]
                self._batches += len(written)
                self._changes += sum(len(item.changes) for item in written)
                self._max_group = max(self._max_group, len(group))
                return None, stale, last
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                _rollback(conn)
                if attempt == RETRIES:
                    return self._failure(exc, len(group))
                log.info("group commit retried after %s", type(exc).__name__)
            except psycopg.OperationalError as exc:
                # A connection lost before the COMMIT was sent (the server
                # restarted, a failover, an idle connection cut): nothing of
                # the group was written, so it is tried again on a new one.
                # Lost during the COMMIT, the outcome is unknown: that is
                # the callers' error to see (see docs/ARCHITECTURE.md).
                if not conn.broken or self._committing or attempt == RETRIES:
                    _rollback(conn)
                    return self._failure(exc, len(group))
                log.warning("the writer's connection was lost (%s); trying the group again", str(exc).strip())
            except Exception as exc:
                _rollback(conn)
                return self._failure(exc, len(group))
        raise AssertionError("unreachable")  # pragma: no cover

    def _failure(self, exc: BaseException, size: int) -> tuple[StoreError, set[int], int]:
        self._failed += 1
        error = _translate(exc, "could not commit")
        log.error("%s (%d batch(es) failed)", error, size)
        return error, set(), 0

    def _transaction(self, conn: psycopg.Connection[Any], group: list[Item]) -> tuple[set[int], int]:
        # What each item writes (a batch, or a Transaction's parts and hook)
        # and the seqs it was built on.
        writes = [_writes(item) for item in group]
        written_names = sorted({name for w in writes if w.writes for name in w.lists})
        read_names = sorted({name for w in writes for name in w.lists} - set(written_names))
        cur = conn.cursor()
        lists: dict[str, tuple[int, int, int]] = {}  # name: id, seq, head
        if written_names:
            # Locked in id order, so two daemons' groups never wait on each other in a circle.
            lock = f"SELECT {LIST_COLUMNS} FROM lists WHERE name = ANY(%s) ORDER BY id FOR UPDATE"
            rows = cur.execute(lock, (written_names,)).fetchall()
            missing = sorted(set(written_names) - {row[1] for row in rows})
            if missing:
                cur.executemany(
                    "INSERT INTO lists (name, next_id) VALUES (%s, 1) ON CONFLICT (name) DO NOTHING",
                    [(name,) for name in missing],
                )
                rows = cur.execute(lock, (written_names,)).fetchall()
            lists.update({row[1]: (int(row[0]), int(row[2]), int(row[3])) for row in rows})
        if read_names:
            found = cur.execute(f"SELECT {LIST_COLUMNS} FROM lists WHERE name = ANY(%s)", (read_names,)).fetchall()
            lists.update({row[1]: (int(row[0]), int(row[2]), int(row[3])) for row in found})
        seqs = {name: seq for name, (_id, seq, _head) in lists.items()}
        stale: set[int] = set()
        stale_names: set[str] = set()
        accepted: list[_Writes] = []
        for index, w in enumerate(writes):
            # A batch after a stale one of its list was built on that one's
            # unwritten seqs: stale too, even when another daemon's writes
            # brought the row to the same seq (its base would match by chance).
            if any(name in stale_names or base != seqs.get(name, 0) for name, base in w.base.items()):
                stale.add(index)  # a Transaction is never split: all of it, or none
                stale_names.update(w.base)
                continue
            if w.writes:
                for part in w.parts:
                    if part.changes:
                        current = seqs.get(part.name, 0)
                        last = part.changes[-1].events[-1].seq if part.changes[-1].events else current
                        seqs[part.name] = max(current, last)
                accepted.append(w)
        if not accepted:
            conn.rollback()
            return stale, 0
        parts = [part for w in accepted for part in w.parts if part.changes]
        puts: list[tuple[int, int, str, str, int, int, str]] = []
        removes: list[tuple[int, int]] = []
        count = 0
        for item in parts:
            list_id = lists[item.name][0]
            for change in item.changes:
                for event in change.events:
                    count += 1
                    e = event.after
                    if e is not None:
                        if removes:
                            cur.executemany(DELETE, removes)
                            removes = []
                        puts.append(
                            (list_id, e.id, e.date.isoformat(), e.title, int(e.done), e.version, _query.tags_column(e))
                        )
                    else:
                        if puts:
                            cur.executemany(PUT, puts)
                            puts = []
                        removes.append((list_id, event.entry_id))
        if puts:
            cur.executemany(PUT, puts)
        if removes:
            cur.executemany(DELETE, removes)
        now = time.time()
        last_position = 0
        heads = {name: head for name, (_id, _seq, head) in lists.items()}
        if self.change_log and count:
            # Last, so that the counter's row lock (which orders every
            # daemon's commits) is held only for the log rows and the commit.
            row = cur.execute(
                "UPDATE log_meta SET last_position = last_position + %s RETURNING last_position", (count,)
            ).fetchone()
            assert row is not None
            last_position = int(row[0])
            position = last_position - count
            log_rows: list[_log.EventRow] = []
            undone: list[tuple[int, int, int, int]] = []
            redone: list[tuple[int, int]] = []
            for item in parts:
                list_id = lists[item.name][0]
                head = heads[item.name]
                for change in item.changes:
                    if change.op == "undo":
                        undone.append((list_id, change.target or 0, change.seq, position + 1))
                    elif change.op == "redo":
                        redone.append((list_id, change.target or 0))
                    position = head = _log.append_rows(log_rows, list_id, change, position, head, now)
                heads[item.name] = head
            cur.executemany(INSERT_EVENT, log_rows)
            if undone:
                cur.executemany(INSERT_UNDO, undone)
            if redone:
                cur.executemany(DELETE_UNDO, redone)
        updates: dict[str, tuple[int, int, int, int]] = {}
        for item in parts:
            updates[item.name] = (item.next_id, seqs[item.name], heads[item.name], lists[item.name][0])
        cur.executemany(
            "UPDATE lists SET next_id = GREATEST(next_id, %s), seq = GREATEST(seq, %s), head = %s WHERE id = %s",
            list(updates.values()),
        )
        hooks = [w.hook for w in accepted if w.hook is not None]
        if hooks:
            # A Transaction's own SQL, after its parts' rows (todod/_bulk.py,
            # through the placeholder adapter); its lists are locked above.
            context = WriteContext(Compat(conn), now, last_position or None, lists, heads)
            for hook in hooks:
                hook(context)
            if context.taken:
                last_position = context.finish()
        if last_position:
            cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(last_position)))
        self._committing = True
        try:
            conn.commit()
        finally:
            self._committing = False
        self._commits += 1  # a transaction that only checked reads is not counted
        self._position = max(self._position, last_position)
        return stale, last_position

    def idle(self) -> bool:
        """Whether the writer has nothing queued and no transaction running."""
        return self._busy_since is None and self._send.statistics().current_buffer_used == 0

    async def wait_idle(self) -> None:
        """Wait until the writer has committed (or failed) everything queued."""
        while not self.idle():
            await self._went_idle.wait()

    def writer_stalled(self, limit: float) -> bool:
        """Whether a transaction has been running for more than ``limit`` seconds."""
        return self._busy_since is not None and trio.current_time() - self._busy_since > limit

    # --- the log follower -------------------------------------------------------

    async def run_indexer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Nothing to do, never returns: PostgreSQL keeps its indexes (tags, pg_trgm) in the writer's transaction."""
        task_status.started()
        await trio.sleep_forever()

    async def wait_indexed(self) -> None:
        """Returns at once: the indexes are always up to date here."""
        await trio.lowlevel.checkpoint()

    async def run_checkpointer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the shared change log and hand its new events to :attr:`feed`; never returns.

        PostgreSQL checkpoints itself; this backend's background task is the
        follower instead.  It LISTENs on :data:`CHANNEL` and, at each
        notification, at each local commit with watchers, and every
        :data:`FOLLOW_POLL` seconds, reads the events after the last one it
        handed on, in position order.

        When the database cannot be reached it says so once, tries again
        every :data:`FOLLOW_POLL` seconds and goes on from where it was (the
        log is the data, so nothing is missed); it does not crash, so an
        outage of the database does not escalate through the supervisor.
        """
        follower = self._follower
        warned = False
        while True:
            try:
                conn = await trio.to_thread.run_sync(lambda: _connect(self.uri, autocommit=True))
            except psycopg.Error as exc:
                conn = None
                if not warned:
                    log.warning("cannot follow the change log: %s; trying again", str(exc).strip())
                    warned = True
            if conn is not None:
                try:
                    await trio.to_thread.run_sync(conn.execute, f"LISTEN {CHANNEL}")
                    warned = False
                    task_status.started()
                    task_status = trio.TASK_STATUS_IGNORED
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._listen, conn)
                        while True:
                            await self._follow()
                            with trio.move_on_after(FOLLOW_POLL):
                                await follower.hint.wait()
                            follower.hint = trio.Event()
                except* (psycopg.Error, StoreError) as group:
                    # The listener's error comes out of its nursery in a group.
                    log.warning("following the change log failed: %s; trying again", _first_line(group))
                    warned = True
                finally:
                    conn.close()
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            await trio.sleep(FOLLOW_POLL)

    async def _listen(self, conn: psycopg.Connection[Any]) -> None:
        pgconn = conn.pgconn
        while True:
            await trio.lowlevel.wait_readable(pgconn.socket)
            pgconn.consume_input()  # raises psycopg.OperationalError when the connection is gone
            woken = False
            while pgconn.notifies() is not None:
                woken = True
            if woken:
                self._follower.hint.set()
            if pgconn.status != psycopg.pq.ConnStatus.OK:
                raise StoreError("the change log's notification connection was lost")

    async def _follow(self) -> None:
        follower = self._follower
        while True:
            page = await self.read_events(follower.published, None, FOLLOW_PAGE)
            if page:
                if self.feed is not None:
                    self.feed.publish_events(page)
                follower.advance(page[-1]["position"])
            if len(page) < FOLLOW_PAGE:
                return

    # --- reads ----------------------------------------------------------------

    async def _read(self, fn: Callable[[psycopg.Connection[Any]], Any], what: str) -> Any:
        def run() -> Any:
            # A read is tried once more on another connection when the pool
            # handed out one the server had cut (reads change nothing).
            for attempt in (1, 2):
                try:
                    with self._pool.connection() as conn:
                        return fn(conn)
                except psycopg.OperationalError:
                    if attempt == 2 or not conn.broken:
                        raise
                    # The others were likely cut too (a server restart): check them all first.
                    self._pool.check()
            raise AssertionError("unreachable")  # pragma: no cover

        async with self._read_limiter:
            try:
                return await trio.to_thread.run_sync(run)
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                raise _translate(exc, what) from exc

    async def load(self, name: str) -> TodoList:
        """Load one list's committed state (an empty list if it was never written)."""
        await self.wait_committed(name)

        def read(conn: psycopg.Connection[Any]) -> TodoList:
            row = conn.execute("SELECT id, next_id, seq FROM lists WHERE name = %s", (name,)).fetchone()
            if row is None:
                return TodoList()
            rows = conn.execute(
                "SELECT id, date, title, done, version, tags FROM entries WHERE list_id = %s ORDER BY id", (row[0],)
            ).fetchall()
            entries = [
                Entry(i, datetime.date.fromisoformat(d), t, bool(done), v, () if tags == "[]" else json.loads(tags))
                for i, d, t, done, v, tags in rows
            ]
            return TodoList.from_entries(entries, row[1], row[2])

        self._loads += 1
        result: TodoList = await self._read(read, f"could not load list {name!r}")
        return result

    async def catch_up(self, name: str, state: TodoList) -> TodoList:
        """The list as the database has it now, from ``state`` (a committed state of it) and the log since.

        What a list server calls after a stale batch: the events after
        ``state.seq`` are read in one query, walking the list's chain back
        from its head, and replayed onto ``state``, so a conflict costs the
        events another daemon wrote, not a reload of the whole list.  Falls
        back to :meth:`load` when the log cannot give them (compacted, the
        change log off, too many).
        """
        await self.wait_committed(name)

        def read(conn: psycopg.Connection[Any]) -> TodoList | None:
            row = conn.execute("SELECT next_id, seq, head, base_seq FROM lists WHERE name = %s", (name,)).fetchone()
            if row is None:
                return state if state.seq == 0 else None
            next_id, seq, head, base_seq = (int(v) for v in row)
            if seq == state.seq:
                return state
            if seq < state.seq or state.seq < base_seq or seq - state.seq > CATCH_UP_MAX or not head:
                return None
            rows = conn.execute(CHAIN, {"head": head, "after": state.seq, "limit": seq - state.seq}).fetchall()
            if [r[0] for r in rows] != list(range(state.seq + 1, seq + 1)):
                return None  # the chain does not reach back to state.seq: not ours to patch
            entries = state.entries.mutate()
            for _seq, entry_id, after in rows:
                entry = _log._decode(entry_id, after)
                if entry is None:
                    entries.pop(entry_id, None)
                else:
                    entries[entry_id] = entry
            return TodoList(entries.finish(), max(next_id, state.next_id), seq)

        result: TodoList | None = await self._read(read, f"could not read the log of {name!r}")
        if result is None:
            return await self.load(name)
        self._caught_up += 1
        return result

    async def lists(self) -> list[tuple[str, int]]:
        """Every list that has ever been written, by name, with its entry count."""

        def read(conn: psycopg.Connection[Any]) -> list[tuple[str, int]]:
            return [
                (name, int(count))
                for name, count in conn.execute(
                    "SELECT l.name, (SELECT count(*) FROM entries e WHERE e.list_id = l.id) "
                    'FROM lists l ORDER BY l.name COLLATE "C"'
                ).fetchall()
            ]

        result: list[tuple[str, int]] = await self._read(read, "could not read the lists")
        return result

    async def find(self, query: _query.FindQuery, time_limit: float) -> tuple[list[dict[str, Any]], bool]:
        """Entries of any list matching ``query``, from the committed state (see the SQLite backend).

        Raises:
            StoreError: the read failed.
            Timeout: the query ran (or waited for a reader) longer than ``time_limit`` seconds.
        """
        millis = max(1, int(time_limit * 1000))

        def read(conn: psycopg.Connection[Any]) -> tuple[list[dict[str, Any]], bool]:
            conn.execute(f"SET LOCAL statement_timeout = {millis}")
            rows = list(itertools.islice(find_rows(conn, query), query.limit + 1))
            more = len(rows) > query.limit
            del rows[query.limit :]
            found = [
                {
                    "list": name,
                    "id": entry_id,
                    "date": date,
                    "title": title,
                    "done": bool(done),
                    "version": version,
                    "tags": [] if tags == "[]" else json.loads(tags),
                }
                for name, entry_id, date, title, done, version, tags in rows
            ]
            return found, more

        with trio.move_on_after(time_limit):
            try:
                result: tuple[list[dict[str, Any]], bool] = await self._read(read, "could not run the query")
            except StoreError as exc:
                if "statement timeout" not in exc.message:
                    raise
            else:
                return result
        raise Timeout(f"the query did not finish within {time_limit:g} s")

    async def find_page(self, query: _query.FindQuery, time_limit: float, rows: bool = False) -> _query.FoundPage:
        """One page of a query (docs/PROTOCOL.md, ``find``), as the SQLite backend's :meth:`find_page`.

        ``rows``: the entries as arrays (``"form": "rows"``) rather than objects.

        Raises:
            StoreError: the read failed.
            Compacted: the log was compacted past the start of the paged read.
            Timeout: the query ran (or waited for a reader) longer than ``time_limit`` seconds.
        """
        millis = max(1, int(time_limit * 1000))

        def read(conn: psycopg.Connection[Any]) -> _query.FoundPage:
            conn.execute(f"SET LOCAL statement_timeout = {millis}")
            start, mark = conn.execute("SELECT last_position, horizon FROM log_meta").fetchone()  # type: ignore[misc]
            if query.after is not None:
                if mark > query.after.position:
                    raise Compacted(
                        f"the change log was compacted past position {query.after.position} during this read; "
                        "read again from the start"
                    )
                start = query.after.position
            texts: list[str] = []
            size = 0
            last: tuple[str, str, int] | None = None
            more = False
            for name, entry_id, date, title, done, version, tags in find_rows(conn, query):
                if len(texts) >= query.limit:
                    more = True
                    break
                found = (name, entry_id, date, title, bool(done), version, json.loads(tags))
                text = json.dumps(
                    list(found) if rows else dict(zip(_query.FIND_ROW_COLUMNS, found, strict=True)),
                    separators=(",", ":"),
                )
                size += len(text) + 1
                if size > MAX_PAGE_BYTES and texts:
                    more = True
                    break
                texts.append(text)
                last = (date, name, entry_id)
            if not more or last is None:
                return _query.FoundPage(tuple(texts), None)
            return _query.FoundPage(tuple(texts), _query.FindCursor(int(start), last[0], last[1], last[2]))

        with trio.move_on_after(time_limit):
            try:
                result: _query.FoundPage = await self._read(read, "could not run the query")
            except StoreError as exc:
                if "statement timeout" not in exc.message:
                    raise
            else:
                return result
        raise Timeout(f"the query did not finish within {time_limit:g} s")

    # --- imports, moves and sagas ----------------------------------------------

    async def _on_staging(self, fn: Callable[[psycopg.Connection[Any]], Any], what: str) -> Any:
        """Run ``fn`` in a transaction of the staging connection (its own, beside the writer's), one at a time.

        The connection commits with ``synchronous_commit = off``: staged
        rows need not be flushed, since the publish's commit is flushed
        after them in the one write-ahead log, and an import whose staging
        is lost with a crash is failed as a whole anyway.
        """

        def run() -> Any:
            conn = self._staging_conn
            if conn is None or conn.broken or conn.closed:
                conn = self._staging_conn = _connect(self.uri)
                conn.execute("SET synchronous_commit = off")
                conn.commit()
            try:
                with conn.transaction():
                    return fn(conn)
            except psycopg.Error:
                _rollback(conn)
                raise

        async with self._staging_lock:
            try:
                return await trio.to_thread.run_sync(run)
            except psycopg.Error as exc:
                raise _translate(exc, what) from exc

    async def stage_import(self, rows: Sequence[Any]) -> None:
        """Stage a batch of an import's rows, outside the entries table (see :mod:`todod._bulk`)."""

        def stage(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor().copy(STAGE) as copy:
                for row in rows:
                    copy.write_row(row)

        await self._on_staging(stage, "could not stage the import")

    async def staged_count(self, import_id: str) -> tuple[int, int]:
        """How many rows an import has staged, and its highest ``n``."""

        def read(conn: psycopg.Connection[Any]) -> tuple[int, int]:
            row = conn.execute(
                "SELECT count(*), coalesce(max(n), 0) FROM import_rows WHERE import = %s", (import_id,)
            ).fetchone()
            assert row is not None
            return int(row[0]), int(row[1])

        result: tuple[int, int] = await self._on_staging(read, "could not read the import")
        return result

    async def release_import(self, import_id: str) -> None:
        """An import ended while its publish may still be queued: its rows stay for that publish, which deletes them.

        If it never runs, they stay staged, never published, as those of a
        daemon that died (docs/ARCHITECTURE.md, "Several daemons").
        """
        await trio.lowlevel.checkpoint()

    async def drop_import(self, import_id: str | None = None) -> None:
        """Delete an import's staged rows.

        Without an id (a daemon starting) nothing is dropped here: other
        daemons may be staging imports in the same table, and an import's
        rows are told apart by its random id only.  The rows of an import
        whose daemon died stay staged, never published (see
        docs/ARCHITECTURE.md, "Several daemons").
        """
        if import_id is None:
            await trio.lowlevel.checkpoint()
            return
        await self._on_staging(
            lambda c: c.execute("DELETE FROM import_rows WHERE import = %s", (import_id,)), "could not drop the import"
        )

    async def bulk_read(self, fn: Callable[[Any], Any], what: str) -> Any:
        """One of todod/_bulk.py's reads (an undo's look for the other half of a move), in one read transaction."""
        return await self._read(lambda c: fn(Compat(c)), what)

    # --- the change log -------------------------------------------------------

    def last_position(self) -> int:
        """The last position this daemon knows committed (its own commits and the log it followed)."""
        return max(self._position, self._follower.published)

    async def history(self, name: str, limit: int | None = None) -> dict[str, Any]:
        """A list's events, oldest first (the last ``limit``), with its horizon, in wire form."""
        await self.wait_committed(name)
        result: dict[str, Any] = await self._read(
            lambda c: _log.read_history(Compat(c), name, limit),  # type: ignore[arg-type]
            f"could not read the history of {name!r}",
        )
        return result

    async def history_page(self, name: str, after: int | None, limit: int | None, page: int) -> _log.HistoryPage:
        """One page of a list's events (see :func:`todod._log.read_history_page`)."""
        await self.wait_committed(name)
        result: _log.HistoryPage = await self._read(
            lambda c: _log.read_history_page(Compat(c), name, after, limit, page),  # type: ignore[arg-type]
            f"could not read the history of {name!r}",
        )
        return result

    async def undo_plan(self, name: str, steps: int) -> _log.Plan:
        """What undoing the last ``steps`` changes of a list reverts (see :mod:`todod._log`)."""
        await self.wait_committed(name)
        plan: _log.Plan = await self._read(
            lambda c: _log.read_undo_plan(Compat(c), name, steps),  # type: ignore[arg-type]
            f"could not read the log of {name!r}",
        )
        return plan

    async def redo_plan(self, name: str, steps: int) -> _log.Plan:
        """What redoing the last ``steps`` undone changes of a list re-applies."""
        await self.wait_committed(name)
        plan: _log.Plan = await self._read(
            lambda c: _log.read_redo_plan(Compat(c), name, steps),  # type: ignore[arg-type]
            f"could not read the log of {name!r}",
        )
        return plan

    async def read_events(self, after: int, name: str | None, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` committed events after position ``after`` (of one list, or all), in wire form."""
        result: list[dict[str, Any]] = await self._read(
            lambda c: _log.read_events(Compat(c), after, name, limit),  # type: ignore[arg-type]
            "could not read the change log",
        )
        return result

    async def log_horizon(self) -> int:
        """The last position compaction dropped (0: none)."""
        result: int = await self._read(
            lambda c: int(c.execute("SELECT horizon FROM log_meta").fetchone()[0]),  # type: ignore[index]
            "could not read the change log",
        )
        return result

    async def log_end(self) -> int:
        """The position of the last event any daemon committed (this daemon's follower may not have it yet)."""
        result: int = await self._read(
            lambda c: int(c.execute("SELECT last_position FROM log_meta").fetchone()[0]),  # type: ignore[index]
            "could not read the change log",
        )
        return max(result, self.last_position())

    async def compact(self, before: float) -> _log.Compaction:
        """Fold the changes older than ``before`` into the lists' base state and drop them, in short transactions.

        Compactions of several daemons take turns on an advisory lock; the
        writers go on meanwhile, and the log's counter row is taken last (as
        the writers take it), so no lock order can deadlock.
        """

        def run() -> _log.Compaction:
            with _connect(self.uri) as conn:
                return compact_log(conn, before)

        try:
            return await trio.to_thread.run_sync(run)
        except psycopg.Error as exc:
            raise _translate(exc, "could not compact the change log") from exc

    async def rebuild_and_view(self) -> tuple[dict[str, dict[int, Entry]], dict[str, dict[int, Entry]]]:
        """Every list rebuilt from its log, and as the entries table serves it (one snapshot)."""

        def read(conn: psycopg.Connection[Any]) -> tuple[dict[str, dict[int, Entry]], dict[str, dict[int, Entry]]]:
            compat = Compat(conn)
            return _log.rebuild(compat), _log.read_view(compat)  # type: ignore[arg-type]

        result: tuple[dict[str, dict[int, Entry]], dict[str, dict[int, Entry]]] = await self._read(
            read, "could not read the change log"
        )
        return result

    async def integrity_check(self) -> str:
        """``"ok"`` when every list's entries agree with its counters (PostgreSQL checks its own pages)."""

        def read(conn: psycopg.Connection[Any]) -> str:
            rows = conn.execute(
                "SELECT l.name FROM lists l JOIN entries e ON e.list_id = l.id GROUP BY l.id, l.name "
                "HAVING max(e.id) >= min(l.next_id)"
            ).fetchall()
            return "ok" if not rows else "\n".join(f"list {r[0]!r}: an entry id at or above next_id" for r in rows)

        result: str = await self._read(read, "integrity check")
        return result

    def statistics(self) -> StoreStatistics:
        busy = 0.0 if self._busy_since is None else trio.current_time() - self._busy_since
        return StoreStatistics(
            commits=self._commits,
            failed_commits=self._failed,
            batches=self._batches,
            changes=self._changes,
            max_group=self._max_group,
            loads=self._loads,
            checkpoints=0,
            queued=self._send.statistics().current_buffer_used,
            writer_busy_seconds=busy,
            stale_batches=self._stale,
        )


def _first_line(group: BaseExceptionGroup[Any]) -> str:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


def _rollback(conn: psycopg.Connection[Any]) -> None:
    try:
        if not conn.closed:
            conn.rollback()
    except psycopg.Error:
        log.exception("rollback failed")


def _open_sync(
    uri: str, full_text: bool
) -> tuple[psycopg.Connection[Any], psycopg_pool.ConnectionPool[Any], bool, int]:
    where = redact(uri)
    writer = _connect(uri)
    try:
        check_and_migrate(writer, where)
        text_index = ensure_text_index(writer, full_text)
        position = read_last_position(writer)
        writer.commit()

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.execute("SET synchronous_commit = on")
            conn.commit()
            # One snapshot per read (a load's two queries, a history's walk).
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True

        pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            uri,
            min_size=READ_WORKERS,
            max_size=READ_WORKERS,
            kwargs={"connect_timeout": 10},
            configure=configure,
            open=False,
            name="todod-read",
        )
        pool.open(wait=True, timeout=30.0)
    except BaseException:
        writer.close()
        raise
    return writer, pool, text_index, position


@asynccontextmanager
async def open_store(
    uri: str,
    *,
    faults: StoreFaults | None = None,
    full_text: bool = True,
    change_log: bool = True,
) -> AsyncIterator[PostgresStore]:
    """Connect to the PostgreSQL database ``uri`` names, creating or migrating todod's schema.

    Several daemons may open the same database at once.  On exit every
    connection is closed; the caller must have stopped the writer first.

    Raises:
        StoreError: the database cannot be reached, holds tables that are not
            todod's, or has a schema newer than ours.
    """
    try:
        writer, pool, text_index, position = await trio.to_thread.run_sync(_open_sync, uri, full_text)
    except (psycopg.Error, psycopg_pool.PoolTimeout, StoreError) as exc:
        raise _translate(exc, f"cannot open the store {redact(uri)}") from exc
    store = PostgresStore(
        uri, redact(uri), writer, pool, faults or StoreFaults(), change_log, position, text_index=text_index
    )
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_close_sync, store)


def _close_sync(store: PostgresStore) -> None:
    try:
        store._pool.close()
    finally:
        store._writer_conn.close()
        if store._staging_conn is not None:
            store._staging_conn.close()


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStore", "StaleList", "open_store", "redact"]
