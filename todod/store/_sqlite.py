"""The SQLite store backend: SQLite in WAL mode with ``synchronous=FULL``.

One writer task group-commits the batches of all lists in one transaction, in
a worker thread, while the event loop gathers the next group.  Reads (loading
a list, listing lists) go through a small pool of connections whose threads
are bounded by a :class:`trio.CapacityLimiter`, like the book's pool of three
database workers: the pool bounds concurrent I/O however many lists load at
once.  WAL checkpoints run in their own task, off the acknowledgement path.

Every error that leaves this module is a :class:`StoreError`.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from todod import _bulk, _log, _query, _search
from todod._model import MAX_LIST_NAME, Change, Entry, TodoList, validate_list_name
from todod.paths import UnsafeDirectory, ensure_private_dir
from todod.protocol import Invalid, Timeout
from todod.store._base import (
    Batch,
    Commit,
    CommitListener,
    EventFeed,
    Hook,
    Part,
    StoreError,
    StoreFaults,
    StoreStatistics,
    Transaction,
)

log = logging.getLogger("todod.store")

DB_NAME = "todod.sqlite3"
LOCK_NAME = "todod.lock"
#: The directory, beside the store's file, of imports' staging files (see todod/_bulk.py).
STAGING_DIR = "imports"

#: 'todo' in ASCII: marks a database file as ours, so a foreign SQLite file
#: handed to us by mistake is refused rather than written into.
APPLICATION_ID = 0x746F646F


def _normalize_list_names(conn: sqlite3.Connection) -> None:
    """Give every list the name that :func:`validate_list_name` now makes of what a user types.

    Names were stored as given until list names were stripped like titles
    (issue 9): a list stored as ``" home"`` could then no longer be reached,
    since every request for it now asks for ``"home"``.  Each such list is
    renamed to its stripped name; if another list already has that name, the
    two are not merged (their entry ids would clash) but the old one becomes
    ``"home (2)"`` (the first free number), which ``todo list`` shows.  A name
    of only white space or invisible characters becomes ``"unnamed"`` the
    same way.  Each rename is logged as a warning.
    """
    rows: list[tuple[int, str]] = conn.execute("SELECT id, name FROM lists ORDER BY id").fetchall()
    taken = {name for _, name in rows}
    for list_id, name in rows:
        try:
            wanted = validate_list_name(name)
        except Invalid:
            wanted = "unnamed"
        if wanted == name:
            continue
        new = wanted
        number = 1
        while new in taken:
            number += 1
            suffix = f" ({number})"
            new = wanted[: MAX_LIST_NAME - len(suffix)].rstrip() + suffix
        conn.execute("UPDATE lists SET name = ? WHERE id = ?", (new, list_id))
        taken.discard(name)
        taken.add(new)
        log.warning("list %r renamed to %r: list names are now stripped and must be visible", name, new)


#: A migration step: an SQL statement, or a function run in the migration's transaction.
MigrationStep = str | Callable[[sqlite3.Connection], None]

#: Schema migrations: version N is reached by running MIGRATIONS[N-1].
#: Version 1 holds the entries; version 2 adds versions and the change log
#: (todod/_log.py), filled from the same events in the same transaction;
#: version 3 normalizes list names (see :func:`_normalize_list_names`); version 4
#: adds tags and the query indexes (todod/_query.py) and the tags of the
#: log's base state (todod/_log.py); version 5 moves the tag and text indexes
#: to the search index's own file (todod/_search.py); version 6 adds imports,
#: moves and sagas (todod/_bulk.py); version 7 puts each entry in one date
#: index (todod/_query.py).
MIGRATIONS: tuple[tuple[MigrationStep, ...], ...] = (
    (
        """CREATE TABLE lists (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            next_id INTEGER NOT NULL CHECK (next_id >= 1)
        )""",
        """CREATE TABLE entries (
            list_id INTEGER NOT NULL REFERENCES lists(id),
            id INTEGER NOT NULL CHECK (id >= 1),
            date TEXT NOT NULL,
            title TEXT NOT NULL,
            done INTEGER NOT NULL CHECK (done IN (0, 1)),
            PRIMARY KEY (list_id, id)
        ) WITHOUT ROWID""",
    ),
    _log.MIGRATION,
    (_normalize_list_names,),
    # Version 4: tags, and the indexes of queries across lists (todod/_query.py);
    # the log's base state gets its tags column too (todod/_log.py).
    (*_query.MIGRATION_TAGS_AND_INDEXES, *_log.MIGRATION_TAGS),
    _query.MIGRATION_SEARCH_APART,
    # Version 6: import staging, moves, the saga journal and idempotency keys (todod/_bulk.py).
    _bulk.MIGRATION,
    # Version 7: one date index entry per entry (todod/_query.py); and this
    # backend stages imports in files of their own (todod/_bulk.py), so the
    # table version 6 staged in goes (its rows were never acknowledged).
    (*_query.MIGRATION_DATE_INDEXES, "DROP TABLE IF EXISTS import_rows"),
)
SCHEMA_VERSION = len(MIGRATIONS)

#: Queued commits beyond this make list servers wait (backpressure), so the
#: writer's queue is bounded however many lists are busy.
COMMIT_QUEUE = 1024
#: At most this many list batches in one transaction: a large group amortises
#: the fsync, but an unbounded one would delay the first caller of the group.
MAX_GROUP = 512
#: Ask for a passive checkpoint after this many commits.  With synchronous=FULL
#: each commit appends to the WAL; 256 small commits keep it to a few MiB.
CHECKPOINT_EVERY = 256
#: Once caught up, the indexer lets the next commits gather this long before
#: its next step: FTS5 writes a segment per transaction, so a step of 2,000
#: events (0.5 s of adds at 4,000 a second) cost it about half the CPU per add
#: of a step per group of 64 (bench/write_cost.py --index-every); queries do
#: not wait for it (they check the log's tail, a few thousand events at most).
INDEX_DELAY = 0.5
#: Whether the indexer's steps run in a process of their own (todod/_search.py,
#: ``serve``), on the other core and without the daemon's GIL, rather than in
#: a worker thread of the daemon: False is a bench-only switch (bench/find_queries.py --indexer-in-thread).
INDEXER_PROCESS = True
#: A step of the indexer's process that takes longer than this is taken for a
#: hang: the process is killed and started again (a rebuild's chunk of 20,000
#: entries takes about a second here).
INDEX_STEP_TIMEOUT = 60.0
#: How long a stopping daemon waits for its indexer's process to commit the
#: step under way and exit, before it kills it (the index loses only that step).
INDEX_STOP_TIMEOUT = 10.0
#: Where the indexer's process imports todod from: where this daemon did.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(_search.__file__)))
#: The bytes of the store's file each reader maps (``PRAGMA mmap_size``): a
#: query across lists reads an entry's page for each entry it finds, at
#: random, and a page read from the map costs no system call and no copy
#: (``todo today`` over a million entries: its SQL about a quarter faster).
#: Only address space: the pages are the OS's page cache, shared by all readers.
READ_MMAP = 1 << 30
#: Threads that may read at once (the book's three database workers).
READ_WORKERS = 3
#: INSERT ... RETURNING needs SQLite 3.35.
MIN_SQLITE = (3, 35, 0)


# An upsert, not INSERT OR REPLACE: a replace deletes the old row without
# firing delete triggers, which would leave the tag and text indexes stale.
_PUT = (
    "INSERT INTO entries (list_id, id, date, title, done, version, tags) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (list_id, id) DO UPDATE SET date = excluded.date, title = excluded.title, "
    "done = excluded.done, version = excluded.version, tags = excluded.tags"
)
_DELETE = "DELETE FROM entries WHERE list_id = ? AND id = ?"


@attrs.define(eq=False)
class WriteContext:
    """What a :class:`Transaction`'s hook sees in the writer's thread: the connection and the log's cursor.

    ``position`` is the last position taken so far in this transaction; a hook
    that appends events takes the next ones and moves it, and sets the heads
    of the lists it appends to with :meth:`set_head`.
    """

    conn: sqlite3.Connection
    now: float
    position: int
    _store: SQLiteStore
    _moved: dict[int, int]

    def list_id(self, name: str) -> int:
        """The list's id, creating the list if it has none."""
        return self._store._list_id(self.conn, name)

    def head(self, list_id: int) -> int:
        return self._moved.get(list_id, self._store._heads[list_id])

    def set_head(self, list_id: int, head: int) -> None:
        self._moved[list_id] = head

    def staged(self, import_id: str) -> _bulk.Staged:
        """Where an import's staged rows are: its staging file, attached to this connection until the transaction ends.

        Read-only (``mode=ro``): a file that is missing fails the
        transaction, rather than publishing an empty file made anew (an import
        that ends while its publish may be queued keeps its file for it:
        :meth:`SQLiteStore.release_import`).
        """
        schema = f"import_{_checked_id(import_id)}"
        uri = "file:" + urllib.parse.quote(self._store.staging_path(import_id)) + "?mode=ro"
        self.conn.execute(f"ATTACH DATABASE ? AS {schema}", (uri,))
        self._store._attached.append(schema)
        return f"{schema}.rows", (), None


def _checked_id(import_id: str) -> str:
    """An import id as the daemon makes them (16 hex digits), safe in a file name and a schema name."""
    if len(import_id) != 16 or not all(c in "0123456789abcdef" for c in import_id):
        raise StoreError(f"not an import id: {import_id[:40]!r}")
    return import_id


def _translate(exc: BaseException, what: str) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG):
        return StoreError(f"{what}: the disk is full ({exc.strerror})")
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.Error) and "full" in text:
        return StoreError(f"{what}: the disk is full ({text})")
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith("SQLITE_IOERR"):
        # SQLite reports only ENOSPC as SQLITE_FULL: a file-size limit or quota
        # (EFBIG, EDQUOT) or a file turned read-only is a bare "disk I/O error".
        return StoreError(
            f"{what}: disk I/O failed ({name}); the disk may be full, over a quota or size limit, read-only or failing"
        )
    return StoreError(f"{what}: {text}")


def _connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    uri = f"file:{path}?mode={'ro' if readonly else 'rw'}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _check_and_migrate(conn: sqlite3.Connection, path: str) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
    if app_id != APPLICATION_ID and (app_id != 0 or version != 0 or tables != 0):
        raise StoreError(f"{path} is not a todod database (application_id {app_id}); refusing to touch it")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this todod knows ({SCHEMA_VERSION}); "
            "upgrade todod, it will not touch data it does not understand"
        )
    if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
        raise StoreError(f"{path}: could not switch to WAL mode")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for step in MIGRATIONS[target - 1]:
                if isinstance(step, str):
                    conn.execute(step)
                else:
                    step(conn)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("migrated %s to schema version %d", path, target)


def _lock_data_dir(data_dir: str) -> int:
    fd = os.open(os.path.join(data_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"another todod is already using {data_dir}") from None
    return fd


@attrs.define(eq=False)
class SQLiteStore:
    """An open store.  Use :func:`open_store`; run :meth:`run_writer` and
    :meth:`run_checkpointer` as permanent children of the daemon's supervisor.
    """

    path: str
    _writer_conn: sqlite3.Connection
    _readers: list[sqlite3.Connection]
    faults: StoreFaults = attrs.field(factory=StoreFaults)
    #: False only in benchmarks: write the entries without the change log
    #: (history, undo and watch then see nothing).
    change_log: bool = True
    #: The last position committed; only the writer (its thread, or the loop
    #: with ``inline_commits``) moves it, and only once a group is durable.
    _position: int = 0
    on_commit: CommitListener | None = None
    #: Called after a committed group that appended events no batch carries (an import's).
    on_bulk: Callable[[], None] | None = None
    #: Commit in the event loop rather than in a worker thread (see run_writer).
    inline_commits: bool = False
    #: Whether searches may use the FTS5 title index (see todod/_search.py).
    text_index: bool = attrs.field(default=False, kw_only=True)
    #: One daemon owns the data directory (its lock): no other writer.
    shared: bool = attrs.field(default=False, init=False)
    #: Unused: the writer hands its commits to ``on_commit`` itself.
    feed: EventFeed | None = attrs.field(default=None, kw_only=True)
    #: The indexer's connection (the store's file, the search index attached);
    #: None when the store keeps no search index (see open_store).
    _indexer_conn: sqlite3.Connection | None = attrs.field(default=None, kw_only=True)
    #: Set by the writer after each commit: the indexer has events to apply.
    _index_wanted: trio.Event = attrs.field(factory=trio.Event, init=False)
    #: The search index's watermark as the indexer last left it (None: being built).
    _indexed: int | None = attrs.field(default=None, init=False)
    _index_moved: trio.Event = attrs.field(factory=trio.Event, init=False)
    #: The indexer's process, while run_indexer runs with one.
    _child: IndexerProcess | None = attrs.field(default=None, init=False)
    #: Set by wait_indexed: someone waits, so the indexer skips its delay.
    _index_hurry: trio.Event = attrs.field(factory=trio.Event, init=False)
    _committed: tuple[int, float] = attrs.field(default=(0, 0.0), init=False)
    _read_limiter: trio.CapacityLimiter = attrs.field(init=False)
    _send: trio.MemorySendChannel[Batch | Transaction] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[Batch | Transaction] = attrs.field(init=False)
    #: Batches queued or being written, per list: a load waits for them.
    _pending: dict[str, int] = attrs.field(factory=dict, init=False)
    _group_done: trio.Event | None = attrs.field(default=None, init=False)
    _checkpoint_wanted: trio.Event = attrs.field(factory=trio.Event, init=False)
    _went_idle: trio.Event = attrs.field(factory=trio.Event, init=False)
    _list_ids: dict[str, int] = attrs.field(factory=dict, init=False)
    #: Each list's head (the position of its last event), by list id: the
    #: ``prev`` of its next event.  Like the ids, only the writer touches it.
    _heads: dict[int, int] = attrs.field(factory=dict, init=False)
    _busy_since: float | None = attrs.field(default=None, init=False)
    _commits: int = attrs.field(default=0, init=False)
    _failed: int = attrs.field(default=0, init=False)
    _batches: int = attrs.field(default=0, init=False)
    _changes: int = attrs.field(default=0, init=False)
    _max_group: int = attrs.field(default=0, init=False)
    _loads: int = attrs.field(default=0, init=False)
    _checkpoints: int = attrs.field(default=0, init=False)
    _since_checkpoint: int = attrs.field(default=0, init=False)
    #: The open imports' staging files, by import id (see todod/_bulk.py).
    _staging: dict[str, _StagingFile] = attrs.field(factory=dict, init=False)
    #: Imports ended while their publish may still be queued (release_import):
    #: added in trio's thread, taken by the writer's (set operations are atomic).
    _orphans: set[str] = attrs.field(factory=set, init=False)
    #: The staging files the writer's transaction attached, detached after it.
    _attached: list[str] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        self._read_limiter = trio.CapacityLimiter(len(self._readers))
        self._send, self._receive = trio.open_memory_channel[Batch | Transaction](COMMIT_QUEUE)

    # --- writes -------------------------------------------------------------

    async def commit(self, name: str, next_id: int, changes: Sequence[Change]) -> None:
        """Make one list's batch durable; return once it is on disk.

        The writer may group it with other lists' batches in one transaction.

        Raises:
            StoreError: the transaction failed; nothing of it is kept.

        On cancellation the batch may or may not be committed.
        """
        item = Commit(name, next_id, tuple(changes))
        # The wait for the writer's answer below is this call's checkpoint.
        await trio.lowlevel.checkpoint_if_cancelled()
        await self.submit(item)
        await item.wait()

    async def submit(self, batch: Batch | Transaction) -> None:
        """Queue ``batch`` for the writer and return at once; its ``committed`` is called later.

        Batches are written in the order they are submitted, so a list's
        batches are durable in its order, and a list server can go on with
        its next batch while this one commits (a pipeline).  Waits only
        while the writer's queue is full (backpressure).

        Raises:
            StoreError: the store is closed (``committed`` is never called).

        On cancellation the batch is not queued, and ``committed`` is never called.
        """
        names = batch.lists if isinstance(batch, Transaction) else (batch.name,)
        for name in names:
            self._pending[name] = self._pending.get(name, 0) + 1
        try:
            try:
                self._send.send_nowait(batch)
            except trio.WouldBlock:
                await self._send.send(batch)  # full queue: backpressure
        except BaseException as exc:
            self._done(batch)
            if isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError)):
                raise StoreError("the store is closed") from None
            raise

    def _done(self, batch: Batch | Transaction) -> None:
        if isinstance(batch, Transaction):
            for name in batch.lists:
                self._release(name)
        else:  # one list's batch, the usual item (once per list per group): no tuple, no loop
            self._release(batch.name)

    def _release(self, name: str) -> None:
        left = self._pending[name] - 1
        if left:
            self._pending[name] = left
        else:
            del self._pending[name]

    def _answer(self, batch: Batch | Transaction, error: StoreError | None) -> None:
        self._done(batch)
        try:
            batch.committed(error)
        except Exception:  # a bug in the answer must not take the writer down with it
            log.exception("answering a commit failed")

    async def run_writer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit queued batches in groups, one transaction per group, and answer each batch.

        The batches that queue while a transaction runs form the next group.
        The transaction runs in a worker thread, so the event loop goes on
        (gathering the next group) during the fsync; or, with
        ``inline_commits``, in the event loop itself, which blocks while it
        runs (as Redis does with ``appendfsync always``): no thread round
        trip, and the next group grows by itself meanwhile.

        Never returns; on cancellation a transaction already in its thread is
        finished first (the thread cannot be abandoned).
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
                written = [item for item in unanswered if item.changes or isinstance(item, Transaction)]
                if not written:
                    error = None  # only reads behind batches already answered: nothing to write
                elif self.inline_commits:
                    error = self._write_group(written)
                else:
                    error = await trio.to_thread.run_sync(self._write_group, written)
                # Before the callers are answered: a client that has its
                # reply finds its change in every watch already.
                if error is None and written and self.on_commit is not None:
                    self.on_commit(*self._committed, _published(written))
                    if self.on_bulk is not None and any(isinstance(i, Transaction) and i.bulk for i in written):
                        self.on_bulk()
                if error is None and written:
                    self._index_wanted.set()
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
            if error is None:
                self._since_checkpoint += 1
                if self._since_checkpoint >= CHECKPOINT_EVERY:
                    self._checkpoint_wanted.set()

    async def wait_committed(self, name: str) -> None:
        """Wait until every batch of list ``name`` queued so far has been answered."""
        while self._pending.get(name):
            if self._group_done is None:
                self._group_done = trio.Event()
            await self._group_done.wait()

    def _write_group(self, group: list[Batch | Transaction]) -> StoreError | None:
        """Runs in a worker thread: one transaction for the whole group."""
        conn = self._writer_conn
        try:
            if self.faults.before_commit is not None:
                self.faults.before_commit(len(group))
            conn.execute("BEGIN IMMEDIATE")
            # One executemany per run of puts or removes across the whole
            # group, not per list batch: with many lists each batch is often a
            # single add, and per-statement overhead dominated the thread.
            # Runs are flushed as the kind changes, so every event is applied
            # in the order it was made (a put then a remove of one id).  The
            # log gets the same events, in the same transaction.
            puts: list[tuple[int, int, str, str, int, int, str]] = []
            removes: list[tuple[int, int]] = []
            heads: list[tuple[int, int, int, int]] = []
            rows: list[_log.EventRow] = []
            undone: list[tuple[int, int, int, int]] = []
            redone: list[tuple[int, int]] = []
            now = time.time()
            position = start = self._position
            with_log = self.change_log
            # The heads as this group moves them: with pipelined list servers a
            # list can have several batches in one group, and each one's first
            # event must chain to the one before it, not to the head before the group.
            moved: dict[int, int] = {}
            parts: list[Batch | Part] = []
            hooks: list[Hook] = []
            for queued in group:
                if isinstance(queued, Transaction):
                    parts.extend(queued.parts)
                    if queued.hook is not None:
                        hooks.append(queued.hook)
                else:
                    parts.append(queued)
            for item in parts:
                if not item.changes:
                    continue
                list_id = self._list_id(conn, item.name)
                head = moved.get(list_id, self._heads[list_id])
                seq = item.changes[-1].events[-1].seq if item.changes and item.changes[-1].events else 0
                for change in item.changes:
                    for event in change.events:
                        e = event.after
                        if e is not None:
                            if removes:
                                conn.executemany(_DELETE, removes)
                                removes = []
                            date, tags = e.date.isoformat(), _query.tags_column(e)
                            puts.append((list_id, e.id, date, e.title, int(e.done), e.version, tags))
                        else:
                            if puts:
                                conn.executemany(_PUT, puts)
                                puts = []
                            removes.append((list_id, event.entry_id))
                    if not with_log:
                        continue
                    if change.op == "undo":
                        undone.append((list_id, change.target or 0, change.seq, position + 1))
                    elif change.op == "redo":
                        redone.append((list_id, change.target or 0))
                    position = head = _log.append_rows(rows, list_id, change, position, head, now)
                heads.append((item.next_id, seq, head, list_id))
                moved[list_id] = head
            if puts:
                conn.executemany(_PUT, puts)
            if removes:
                conn.executemany(_DELETE, removes)
            conn.executemany("UPDATE lists SET next_id = ?, seq = max(seq, ?), head = ? WHERE id = ?", heads)
            if with_log:
                conn.executemany(_log.INSERT_EVENT, rows)
                conn.executemany(_log.INSERT_UNDO, undone)
                conn.executemany(_log.DELETE_UNDO, redone)
            if hooks:  # a Transaction's own SQL, after the rows of its parts
                context = WriteContext(conn, now, position, self, moved)
                for hook in hooks:
                    hook(context)
                position = context.position
            conn.execute("COMMIT")
            self._position = position
            self._committed = (start, now)
            self._heads.update(moved)
        except Exception as exc:
            self._list_ids.clear()  # ids of lists created in the failed transaction are void
            self._heads.clear()
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("rollback failed")
            self._failed += 1
            error = _translate(exc, "could not commit")
            log.error("%s (%d batch(es) failed)", error, len(group))
            return error
        finally:
            self._detach(conn)
        self._commits += 1
        self._batches += sum(1 for item in group if item.changes)
        self._changes += sum(len(item.changes) for item in group)
        self._max_group = max(self._max_group, len(group))
        return None

    def _detach(self, conn: sqlite3.Connection) -> None:
        """Detach the staging files a transaction's hooks attached (outside any transaction: SQLite allows no other)."""
        while self._attached:
            schema = self._attached.pop()
            try:
                conn.execute(f"DETACH DATABASE {schema}")
            except sqlite3.Error as exc:
                log.warning("could not detach %s: %s", schema, exc)
            import_id = schema.removeprefix("import_")
            if import_id in self._orphans:  # its import ended meanwhile (release_import): done with it now
                self._orphans.discard(import_id)
                self._remove_orphan(import_id)

    def _remove_orphan(self, import_id: str) -> None:
        try:
            os.remove(self.staging_path(import_id))
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove the staging file of import %s: %s", import_id, exc)

    def _list_id(self, conn: sqlite3.Connection, name: str) -> int:
        list_id = self._list_ids.get(name)
        if list_id is None:
            row = conn.execute("SELECT id, head FROM lists WHERE name = ?", (name,)).fetchone()
            if row is None:
                row = conn.execute(
                    "INSERT INTO lists (name, next_id) VALUES (?, 1) RETURNING id, head", (name,)
                ).fetchone()
            list_id = int(row[0])
            self._list_ids[name] = list_id
            self._heads[list_id] = int(row[1])
        return list_id

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

    # --- checkpoints ----------------------------------------------------------

    async def run_checkpointer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run passive WAL checkpoints when the writer asks; never returns.

        Passive checkpoints never block the writer, so they stay off the path
        of acknowledgements.
        """
        conn = await trio.to_thread.run_sync(_connect, self.path)
        try:
            task_status.started()
            while True:
                await self._checkpoint_wanted.wait()
                self._checkpoint_wanted = trio.Event()
                self._since_checkpoint = 0
                try:
                    await trio.to_thread.run_sync(conn.execute, "PRAGMA wal_checkpoint(PASSIVE)")
                    self._checkpoints += 1
                except sqlite3.Error as exc:
                    log.warning("checkpoint failed: %s", exc)
        finally:
            conn.close()

    # --- the search index -----------------------------------------------------

    async def run_indexer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the search index (todod/_search.py) up with the change log; never returns.

        Each step is one transaction of the index's file, in the indexer's
        process (:class:`IndexerProcess`; with ``INDEXER_PROCESS`` off, in a
        worker thread): a chunk of a rebuild, or the events committed since
        the watermark.  It waits for the writer's next commit when there is
        nothing to apply.  A failed step, or a process that died, is logged
        and tried again a second later (in a new process): queries stay right
        meanwhile (they check the entries the index is behind on), only
        slower.  On cancellation the step under way is finished first.
        """
        task_status.started()
        conn = self._indexer_conn
        if conn is None:
            await trio.sleep_forever()
            return
        child = self._child = IndexerProcess(self.path) if INDEXER_PROCESS else None
        try:
            await self._index(conn, child)
        finally:
            if child is not None:
                await child.stop()

    async def _index(self, conn: sqlite3.Connection, child: IndexerProcess | None) -> None:
        while True:
            before = self._indexed
            if self.faults.hold_indexer is not None:
                await self.faults.hold_indexer.wait()
            try:
                if child is not None:
                    self._indexed = await child.step(self._position)
                else:
                    self._indexed = await trio.to_thread.run_sync(_search.step, conn, self._position)
                self._index_moved.set()
                self._index_moved = trio.Event()
            except IndexerUnavailable as exc:
                # No interpreter to run it with (an embedded Python, say):
                # the steps run in a worker thread, as they would with the switch off.
                log.warning("%s; the search index is kept in a thread of the daemon instead", exc)
                child = self._child = None
                continue
            except sqlite3.IntegrityError as exc:
                # The index disagrees with the log (a bug, or a file tampered
                # with): it is derived data, so it is built again.
                log.error("the search index is inconsistent (%s); building it again", exc)
                if child is not None:
                    await child.stop()  # so that no step of it runs beside the rebuild's
                await trio.to_thread.run_sync(_search.rebuild_now, conn)
                continue
            except (sqlite3.Error, OSError) as exc:
                log.warning("the search index could not be brought up to date: %s", exc)
                await trio.sleep(1.0)  # a full disk, say: not a busy loop, and no crash of the daemon
                continue
            # Caught up, or (defensively) no event to move on with: wait for the next commit.
            if self._indexed is not None and (self._indexed >= self._position or self._indexed == before):
                await self._index_wanted.wait()
                self._index_wanted = trio.Event()
                with trio.move_on_after(INDEX_DELAY):
                    await self._index_hurry.wait()
                if self._index_hurry.is_set():
                    self._index_hurry = trio.Event()

    def indexed(self) -> int | None:
        """The search index's watermark as the indexer last left it (None: being built, or not kept)."""
        return self._indexed

    async def wait_indexed(self) -> None:
        """Wait until the search index holds every event committed so far (tests and benchmarks).

        Queries never need this (they check what the index is behind on);
        it returns at once when the store keeps no search index, and it is
        bounded only by the indexer's progress: callers bound it themselves.
        """
        target = self._position
        while self._indexer_conn is not None and (self._indexed is None or self._indexed < target):
            self._index_hurry.set()
            await self._index_moved.wait()

    # --- reads ----------------------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], Any], what: str) -> Any:
        async with self._read_limiter:
            conn = self._readers.pop()
            try:
                return await trio.to_thread.run_sync(fn, conn)
            except sqlite3.Error as exc:
                raise _translate(exc, what) from exc
            finally:
                self._readers.append(conn)

    async def load(self, name: str) -> TodoList:
        """Load one list's durable state (an empty list if it was never written).

        Waits first for the list's batches still with the writer, so that a
        list loaded again (after a crash, an idle stop, an eviction) sees
        every batch submitted before, whether it was committed or failed.
        """
        await self.wait_committed(name)

        def read(conn: sqlite3.Connection) -> TodoList:
            conn.execute("BEGIN")  # one snapshot for both queries
            try:
                row = conn.execute("SELECT id, next_id, seq FROM lists WHERE name = ?", (name,)).fetchone()
                if row is None:
                    return TodoList()
                rows = conn.execute(
                    "SELECT id, date, title, done, version, tags FROM entries WHERE list_id = ? ORDER BY id", (row[0],)
                ).fetchall()
            finally:
                conn.execute("COMMIT")
            entries = [
                Entry(i, datetime.date.fromisoformat(d), t, bool(done), v, () if tags == "[]" else json.loads(tags))
                for i, d, t, done, v, tags in rows
            ]
            return TodoList.from_entries(entries, row[1], row[2])

        self._loads += 1
        result: TodoList = await self._read(read, f"could not load list {name!r}")
        return result

    async def catch_up(self, name: str, state: TodoList) -> TodoList:
        """The list as stored now: with one writer, that is :meth:`load` (never called: the store is not shared)."""
        return await self.load(name)

    async def lists(self) -> list[tuple[str, int]]:
        """Every list that has ever been written, by name, with its entry count."""

        def read(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            return conn.execute(
                "SELECT l.name, (SELECT count(*) FROM entries e WHERE e.list_id = l.id) FROM lists l ORDER BY l.name"
            ).fetchall()

        result: list[tuple[str, int]] = await self._read(read, "could not read the lists")
        return result

    async def find(self, query: _query.FindQuery, time_limit: float) -> tuple[list[dict[str, Any]], bool]:
        """Entries of any list matching ``query``, from the committed state, through the read pool.

        Returns:
            The entries' wire forms with their ``list``, in date, list name, id
            order (at most ``query.limit``), and whether more matched.

        Raises:
            StoreError: the read failed.
            Timeout: the query ran (or waited for a reader) longer than ``time_limit`` seconds.
        """
        deadline = time.monotonic() + time_limit
        result: tuple[list[dict[str, Any]], bool] = await self._timed_read(
            lambda conn: _query.run_find(conn, query, self.text_index, deadline, self._indexer_conn is not None),
            deadline,
            time_limit,
        )
        return result

    async def find_page(self, query: _query.FindQuery, time_limit: float, rows: bool = False) -> _query.FoundPage:
        """One page of a query (docs/PROTOCOL.md, ``find``), its entries encoded in the reader's thread.

        ``rows``: the entries as arrays (``"form": "rows"``) rather than objects.

        Raises:
            StoreError: the read failed.
            Compacted: the log was compacted past the start of the paged read.
            Timeout: as :meth:`find`.
        """
        deadline = time.monotonic() + time_limit
        result: _query.FoundPage = await self._timed_read(
            lambda conn: _query.run_find_page(
                conn, query, self.text_index, deadline, search_index=self._indexer_conn is not None, rows=rows
            ),
            deadline,
            time_limit,
        )
        return result

    async def _timed_read(self, fn: Callable[[sqlite3.Connection], Any], deadline: float, time_limit: float) -> Any:
        # The scope bounds the wait for a reader; the deadline, checked by
        # SQLite's progress handler, bounds the query in its thread.
        with trio.move_on_after(time_limit):
            try:
                return await self._read(fn, "could not run the query")
            except StoreError:
                if time.monotonic() <= deadline:
                    raise
        raise Timeout(f"the query did not finish within {time_limit:g} s")

    # --- imports, moves and sagas (the SQL is in todod/_bulk.py) -----------------

    def staging_path(self, import_id: str) -> str:
        """The staging file of an import (see todod/_bulk.py)."""
        return os.path.join(os.path.dirname(self.path), STAGING_DIR, _checked_id(import_id) + ".sqlite3")

    async def stage_import(self, rows: Sequence[_bulk.StagedRow]) -> None:
        """Stage a batch of an import's rows (all of one import) in its staging file, made at its first batch.

        Not fsynced, not journaled: see todod/_bulk.py.  The batches of one
        import are staged one at a time; those of several imports at once,
        each in its own file and thread.
        """
        if not rows:
            await trio.lowlevel.checkpoint()
            return
        import_id = rows[0][0]
        staging = self._staging.get(import_id)
        if staging is None:
            staging = self._staging[import_id] = _StagingFile(self.staging_path(import_id))
        async with staging.lock:
            try:
                await trio.to_thread.run_sync(staging.stage, rows)
            except (sqlite3.Error, OSError, UnsafeDirectory) as exc:
                raise _translate(exc, "could not stage the import") from exc

    async def staged_count(self, import_id: str) -> tuple[int, int]:
        """How many rows an import has staged, and its highest ``n`` ((0, 0) for none)."""
        staging = self._staging.get(import_id)
        if staging is None:
            await trio.lowlevel.checkpoint()
            return 0, 0
        async with staging.lock:
            try:
                result: tuple[int, int] = await trio.to_thread.run_sync(staging.count)
            except (sqlite3.Error, OSError) as exc:
                raise _translate(exc, "could not read the import") from exc
        return result

    async def drop_import(self, import_id: str | None = None) -> None:
        """Drop an import's staged rows: close and remove its staging file.

        With None (a daemon starting: no import can go on), every staging file.
        """
        if import_id is not None:
            await self._end_staging(import_id, keep_file=False)
            return
        dropped = list(self._staging.values())
        self._staging.clear()
        self._orphans.clear()
        try:
            await trio.to_thread.run_sync(self._drop_every_import, dropped)
        except (sqlite3.Error, OSError, UnsafeDirectory) as exc:
            raise _translate(exc, "could not drop the imports") from exc

    async def release_import(self, import_id: str) -> None:
        """An import ended while its publish may still be queued for the writer: keep its file for that publish.

        Its connection is closed now; the writer removes the file once the
        transaction that attached it has ended (:meth:`_detach`), and the
        store's close removes it if no publish ever came.
        """
        await self._end_staging(import_id, keep_file=True)

    async def _end_staging(self, import_id: str, *, keep_file: bool) -> None:
        """Forget an import's staging file and close it; remove it too, unless kept for a publish (an orphan)."""
        staging = self._staging.get(import_id)
        if staging is None:
            await trio.lowlevel.checkpoint()
            return
        # Forgotten only once its lock is held: an end given up while a batch
        # stages leaves it registered, closed at the store's close.
        async with staging.lock:
            if self._staging.get(import_id) is staging:
                del self._staging[import_id]
            if keep_file:
                self._orphans.add(import_id)
            try:
                await trio.to_thread.run_sync(staging.close if keep_file else staging.remove)
            except OSError as exc:
                raise _translate(exc, "could not drop the import") from exc

    def _drop_every_import(self, dropped: list[_StagingFile]) -> None:
        for staging in dropped:
            staging.remove()
        directory = os.path.join(os.path.dirname(self.path), STAGING_DIR)
        ensure_private_dir(directory)
        for name in os.listdir(directory):
            if name.endswith(".sqlite3"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(directory, name))

    async def bulk_read(self, fn: Callable[[sqlite3.Connection], Any], what: str) -> Any:
        """One of todod/_bulk.py's reads, in one read transaction of the read pool."""
        return await self._read(lambda c: _snapshot(c, fn), what)

    # --- the change log -------------------------------------------------------

    def last_position(self) -> int:
        """The position of the last event committed (0: none yet)."""
        return self._position

    async def history(self, name: str, limit: int | None = None) -> dict[str, Any]:
        """A list's events, oldest first (the last ``limit``), with its horizon, in wire form."""
        await self.wait_committed(name)  # the batches of the list still with the writer, as load does
        result: dict[str, Any] = await self._read(
            lambda c: _snapshot(c, _log.read_history, name, limit), f"could not read the history of {name!r}"
        )
        return result

    async def history_page(self, name: str, after: int | None, limit: int | None, page: int) -> _log.HistoryPage:
        """One page of a list's events, encoded in the reader's thread (see :func:`todod._log.read_history_page`)."""
        await self.wait_committed(name)  # the batches of the list still with the writer, as load does
        result: _log.HistoryPage = await self._read(
            lambda c: _snapshot(c, _log.read_history_page, name, after, limit, page),
            f"could not read the history of {name!r}",
        )
        return result

    async def undo_plan(self, name: str, steps: int) -> _log.Plan:
        """What undoing the last ``steps`` changes of a list reverts (see :mod:`todod._log`)."""
        await self.wait_committed(name)  # the batches of the list still with the writer, as load does
        plan: _log.Plan = await self._read(
            lambda c: _snapshot(c, _log.read_undo_plan, name, steps), f"could not read the log of {name!r}"
        )
        return plan

    async def redo_plan(self, name: str, steps: int) -> _log.Plan:
        """What redoing the last ``steps`` undone changes of a list re-applies."""
        await self.wait_committed(name)  # the batches of the list still with the writer, as load does
        plan: _log.Plan = await self._read(
            lambda c: _snapshot(c, _log.read_redo_plan, name, steps), f"could not read the log of {name!r}"
        )
        return plan

    async def read_events(self, after: int, name: str | None, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` committed events after position ``after`` (of one list, or all), in wire form."""
        result: list[dict[str, Any]] = await self._read(
            lambda c: _log.read_events(c, after, name, limit), "could not read the change log"
        )
        return result

    async def log_horizon(self) -> int:
        """The last position compaction dropped (0: none)."""
        result: int = await self._read(_log.horizon, "could not read the change log")
        return result

    async def log_end(self) -> int:
        """The position of the last event committed: this store's one writer knows it."""
        return self._position

    async def compact(self, before: float) -> _log.Compaction:
        """Fold the changes older than ``before`` (Unix time) into the lists' base state and drop them.

        Runs on a connection of its own, in short transactions; the writer
        waits for the database lock meanwhile, never for the whole run.
        """

        def run() -> _log.Compaction:
            conn = _connect(self.path)
            try:
                return _log.compact(conn, before)
            finally:
                conn.close()

        try:
            return await trio.to_thread.run_sync(run)
        except (sqlite3.Error, OSError) as exc:
            raise _translate(exc, "could not compact the change log") from exc

    async def rebuild_and_view(self) -> tuple[dict[str, dict[int, Entry]], dict[str, dict[int, Entry]]]:
        """Every list rebuilt from its log, and as the entries table serves it (one snapshot)."""

        def read(conn: sqlite3.Connection) -> tuple[dict[str, dict[int, Entry]], dict[str, dict[int, Entry]]]:
            conn.execute("BEGIN")
            try:
                return _log.rebuild(conn), _log.read_view(conn)
            finally:
                conn.execute("COMMIT")

        result: tuple[dict[str, dict[int, Entry]], dict[str, dict[int, Entry]]] = await self._read(
            read, "could not read the change log"
        )
        return result

    async def integrity_check(self) -> str:
        """``PRAGMA integrity_check``'s verdict: ``"ok"`` when the file is sound."""
        rows = await self._read(lambda c: c.execute("PRAGMA integrity_check").fetchall(), "integrity check")
        return "\n".join(str(r[0]) for r in rows)

    def statistics(self) -> StoreStatistics:
        busy = 0.0 if self._busy_since is None else trio.current_time() - self._busy_since
        return StoreStatistics(
            commits=self._commits,
            failed_commits=self._failed,
            batches=self._batches,
            changes=self._changes,
            max_group=self._max_group,
            loads=self._loads,
            checkpoints=self._checkpoints,
            queued=self._send.statistics().current_buffer_used,
            writer_busy_seconds=busy,
        )


class IndexerDied(OSError):
    """The indexer's process exited or hung; the next step starts another."""


class IndexerUnavailable(IndexerDied):
    """The indexer's process could not be started at all (the daemon then indexes in a thread)."""


@attrs.define(eq=False)
class IndexerProcess:
    """The indexer's process: the search index's steps, run on another core than the daemon's.

    Indexing a title (FTS5's trigrams) costs more CPU than the rest of its
    add; in the daemon's process it also took the GIL, in turns with the
    event loop, at every row.  In a process of its own (``python -c``
    :data:`todod._search.CHILD`, todod/_search.py's ``serve``) it runs beside
    the loop.  This object starts the process at the first step, starts it
    again after it died, and ends it: its pipes are its only link to the
    daemon (a step's request and its one reply line), it writes only the
    index's file, and it ends when its input is closed, by :meth:`stop` or by
    the daemon's death.
    """

    db_path: str
    _proc: trio.Process | None = attrs.field(default=None, init=False)
    _buffer: bytearray = attrs.field(factory=bytearray, init=False)

    @property
    def pid(self) -> int | None:
        """The process's id while it runs (benchmarks count its CPU)."""
        return None if self._proc is None else self._proc.pid

    async def step(self, last: int) -> int | None:
        """One :func:`todod._search.step` in the process; the watermark after it.

        Raises:
            sqlite3.IntegrityError: the index disagrees with the log.
            sqlite3.OperationalError: the step failed in the process.
            IndexerDied: the process exited or hung.
            IndexerUnavailable: the process could not be started.
        """
        kind, _, rest = (await self._call(f"step {last}")).partition(" ")
        if kind == "ok":
            return None if rest == "-" else int(rest)
        if kind == "integrity":
            raise sqlite3.IntegrityError(rest)
        raise sqlite3.OperationalError(f"in the indexer's process: {rest}")

    async def _call(self, request: str) -> str:
        if self._proc is None:
            try:
                self._proc = await trio.lowlevel.open_process(
                    [sys.executable, "-c", _search.CHILD, _PACKAGE_ROOT, self.db_path],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            except OSError as exc:
                raise IndexerUnavailable(f"the indexer's process could not start ({exc})") from exc
            self._buffer.clear()
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            with trio.fail_after(INDEX_STEP_TIMEOUT):
                await proc.stdin.send_all(request.encode() + b"\n")
                while b"\n" not in self._buffer:
                    chunk = await proc.stdout.receive_some(4096)
                    if not chunk:
                        raise trio.BrokenResourceError
                    self._buffer += chunk
        except (trio.BrokenResourceError, trio.TooSlowError) as exc:
            hung = isinstance(exc, trio.TooSlowError)
            await self.stop(kill=hung)
            what = f"gave no answer within {INDEX_STEP_TIMEOUT:g} s" if hung else f"exited ({proc.returncode})"
            raise IndexerDied(f"the indexer's process {what}") from exc
        except BaseException:
            await self.stop()  # cancelled mid-step (shutdown): its reply would be read by no one
            raise
        line, _, rest = self._buffer.partition(b"\n")
        self._buffer = bytearray(rest)
        return line.decode()

    async def stop(self, kill: bool = False) -> None:
        """End the process, if it runs: once its step under way is committed, or at once with ``kill``."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with trio.CancelScope(shield=True):
            assert proc.stdin is not None and proc.stdout is not None
            if kill:
                proc.kill()
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await proc.stdin.aclose()
            with trio.move_on_after(INDEX_STOP_TIMEOUT):
                await proc.wait()
            if proc.returncode is None:
                log.warning("the indexer's process did not stop within %g s; killing it", INDEX_STOP_TIMEOUT)
                proc.kill()
                await proc.wait()
            await proc.stdout.aclose()


def _published(written: Sequence[Batch | Transaction]) -> list[tuple[str, Sequence[Change]]]:
    """Each list's changes of a committed group, for the watch hub (a Transaction's parts one by one)."""
    result: list[tuple[str, Sequence[Change]]] = []
    for item in written:
        if isinstance(item, Transaction):
            result.extend((part.name, part.changes) for part in item.parts)
        else:
            result.append((item.name, item.changes))
    return result


def _snapshot(conn: sqlite3.Connection, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(conn, *args)`` in one read transaction, so its queries see one state."""
    conn.execute("BEGIN")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("COMMIT")


def _open_sync(
    data_dir: str, read_workers: int, full_text: bool, search_index: bool = True
) -> tuple[int, sqlite3.Connection, list[sqlite3.Connection], bool, sqlite3.Connection | None]:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StoreError(
            f"todod needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; this Python uses {sqlite3.sqlite_version}"
        )
    ensure_private_dir(data_dir)
    lock_fd = _lock_data_dir(data_dir)
    path = os.path.join(data_dir, DB_NAME)
    conns: list[sqlite3.Connection] = []
    try:
        # Create the file ourselves so it is 0600 from the first byte; SQLite
        # gives the -wal and -shm files the same mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        writer = _connect(path)
        conns.append(writer)
        _check_and_migrate(writer, path)
        _query.drop_old_text_table(writer)
        text_index = full_text and _query.fts_available(writer)
        # The search index's file (todod/_search.py), on a connection of its
        # own: the writer's must not have it attached, or its BEGIN IMMEDIATE
        # would lock both files.  Without an indexer it is marked as not
        # built, so that readers do not trust it after writes it missed.
        index = _search.index_path(path)
        os.close(os.open(index, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        indexer = _connect(path)
        conns.append(indexer)
        _search.open_index(indexer, path, text_index, trusted=search_index)
        if not search_index:
            text_index = False
        writer.execute("PRAGMA synchronous = FULL")
        writer.execute("PRAGMA foreign_keys = ON")
        # Checkpoints belong to run_checkpointer, not to the commit that
        # happens to cross the threshold (and to its waiting callers).
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        for _ in range(read_workers):
            reader = _connect(path)
            conns.append(reader)
            if search_index:
                _search.attach(reader, path)
            reader.execute("PRAGMA query_only = ON")
            reader.execute(f"PRAGMA mmap_size = {READ_MMAP}")
            _query.prepare_reader(reader)
        if not search_index:
            indexer.close()
        return lock_fd, writer, conns[2:], text_index, indexer if search_index else None
    except BaseException:
        for conn in conns:
            conn.close()
        os.close(lock_fd)
        raise


@asynccontextmanager
async def open_store(
    data_dir: str,
    *,
    read_workers: int = READ_WORKERS,
    faults: StoreFaults | None = None,
    full_text: bool = True,
    change_log: bool = True,
    search_index: bool = True,
) -> AsyncIterator[SQLiteStore]:
    """Open (creating and migrating if needed) the store in ``data_dir``.

    Takes an exclusive lock on the data directory for as long as it is open.
    ``change_log=False`` (benchmarks only) writes the entries without the log.
    On exit the WAL is checkpointed into the main file and everything closed;
    the caller must have stopped the writer first.
    ``full_text=False`` leaves the FTS5 title index out, as on an SQLite
    without FTS5: searches then scan the titles (tests force the fallback so).
    ``search_index=False`` (benchmarks only) keeps no search index at all:
    searches and tag filters then scan; so does ``change_log=False``, since
    the indexer follows the log.

    Raises:
        StoreError: the directory is locked by another todod, the file is not a
            todod database, its schema is newer than ours, or it cannot be opened.
    """
    try:
        lock_fd, writer, readers, text_index, indexer = await trio.to_thread.run_sync(
            _open_sync, data_dir, read_workers, full_text, search_index and change_log
        )
    except Exception as exc:
        raise _translate(exc, f"cannot open the store in {data_dir}") from exc
    try:
        position = await trio.to_thread.run_sync(_log.last_position, writer)
    except sqlite3.Error as exc:
        await trio.to_thread.run_sync(_close_sync, writer, readers, lock_fd, indexer)
        raise _translate(exc, f"cannot open the store in {data_dir}") from exc
    store = SQLiteStore(
        os.path.join(data_dir, DB_NAME),
        writer,
        readers,
        faults or StoreFaults(),
        change_log,
        position,
        text_index=text_index,
        indexer_conn=indexer,
    )
    try:
        yield store
    finally:
        with trio.CancelScope(shield=True):
            for staging in store._staging.values():
                staging.close()
            for import_id in list(store._orphans):  # a publish that never came
                store._remove_orphan(import_id)
            await trio.to_thread.run_sync(_close_sync, writer, readers, lock_fd, indexer)


@attrs.define(eq=False)
class _StagingFile:
    """One import's staging file and its connection (made at the first batch); one thread at a time, under ``lock``."""

    path: str
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    _conn: sqlite3.Connection | None = attrs.field(default=None, init=False)

    def stage(self, rows: Sequence[_bulk.StagedRow]) -> None:
        if self._conn is None:
            ensure_private_dir(os.path.dirname(self.path))
            self._conn = _bulk.open_staging(self.path)
        _bulk.stage_file_rows(self._conn, rows)

    def count(self) -> tuple[int, int]:
        return (0, 0) if self._conn is None else _bulk.staged_file_count(self._conn)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


def _close_sync(
    writer: sqlite3.Connection,
    readers: list[sqlite3.Connection],
    lock_fd: int,
    indexer: sqlite3.Connection | None = None,
) -> None:
    try:
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if indexer is not None:
            indexer.execute(f"PRAGMA {_search.SCHEMA}.wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        log.warning("final checkpoint failed: %s", exc)
    finally:
        for conn in (writer, *readers, *([indexer] if indexer is not None else [])):
            conn.close()
        os.close(lock_fd)


__all__ = ["SQLiteStore", "WriteContext", "open_store"]
