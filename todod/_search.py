"""The search index: the entries' titles (FTS5, trigram) and tags, in a database of their own, kept from the change log.

The index is derived data, off the path of acknowledgements: the writer's
transaction writes the entries and the change log only, and the indexer
(:meth:`todod.store._sqlite.SQLiteStore.run_indexer`, a task of its own with a connection
of its own) applies the log's events to this database afterwards, in
transactions of many events, up to a *watermark*: the position of the last
event it applied, kept in the same database and so committed atomically with
the index rows it covers.

Measured with bench/write_cost.py, the text index was the largest part of the
writer's transaction per add (about 36 us of its CPU and 1.5 KB of WAL) and
the tag index the largest part of its WAL (3.6 KB an add: a tag's rows are
keyed by list, so the adds of one group land on as many pages as they have
tags).  Here they cost the indexer instead, whose commits need no fsync of
their own (``synchronous=NORMAL``): nothing in this file is acknowledged
data, every row of it can be derived again from the entries and the log, and
after a crash the watermark says where to go on from.

A query sees every acknowledged change without waiting for the indexer.  It
reads, in one read transaction, first the watermark W (the index's snapshot)
and then the entries (the main file's snapshot, at a position P >= W, since
the indexer applies only committed events).  An entry no event touched in
(W, P] has the same title and tags in both snapshots, so the index answers for
it; the entries that events did touch (the *tail*, read from the log in the
same snapshot as the entries) are checked against their current row instead.
The answer is then exactly the answer at P, one snapshot, however far behind
the indexer is; a far-behind indexer only makes the tail longer.

An index row's key is ``list_id << 32 | entry_id`` (the FTS rowid), so that
no table maps entries to rows and a rebuild can insert in key order.  An
entry id would need four billion adds to one list to exceed 32 bits.

No trio here, and nothing but the standard library: the steps run in the
indexer's process (:func:`serve`), which imports this module alone; the
daemon runs the rest (opening, preparing, a rebuild's mark) in worker threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence

log = logging.getLogger("todod.store")

#: The index's file, beside todod.sqlite3 in the data directory.
INDEX_NAME = "todod-search.sqlite3"
#: The schema name it is attached under, on the indexer's and the readers' connections.
SCHEMA = "search"
#: This file's own layout; another one is dropped and built again.
LAYOUT = 1
#: Events applied per indexer transaction: the more, the less each costs
#: (FTS5 writes one segment per transaction), but each transaction holds the
#: indexer's thread; 5,000 take some 100 ms here.
CATCH_UP = 5000
#: Entries copied per transaction of a rebuild, so that a shutdown waits for one chunk at most.
REBUILD_CHUNK = 20_000

_TABLES = (
    f"""CREATE TABLE {SCHEMA}.entry_tags (
        tag TEXT NOT NULL,
        list_id INTEGER NOT NULL,
        entry_id INTEGER NOT NULL,
        PRIMARY KEY (tag, list_id, entry_id)
    ) WITHOUT ROWID""",
    # position: the watermark (NULL while the index is being built); build_from:
    # the position a rebuild started at, build_key: the last key it copied,
    # replay_until: the last position that was committed while it copied
    # (events up to it may already be in the copy); text: whether entry_text is kept.
    f"""CREATE TABLE {SCHEMA}.meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        layout INTEGER NOT NULL,
        text INTEGER NOT NULL,
        position INTEGER,
        build_from INTEGER NOT NULL,
        build_key INTEGER NOT NULL,
        replay_until INTEGER NOT NULL
    )""",
)
# columnsize=0: no per-row token counts, which only ranking (bm25) reads; the
# positions (detail=full) stay, since a trigram search is a phrase query.
_TEXT_TABLE = f"CREATE VIRTUAL TABLE {SCHEMA}.entry_text USING fts5(title, tokenize='trigram', columnsize=0)"


def title_and_tags(text: str | None) -> tuple[str, frozenset[str]] | None:
    """The title and tags of an event's entry text (either encoding); None for an absent entry.

    The indexer reads only these (todod/_log.py writes the text), for every event it applies:
    no date, version or Entry to build.
    """
    if text is None:
        return None
    _date, done, _version, title = text.split(" ", 3)
    tags = done.partition(":")[2]
    return title, frozenset(tags.split(",")) if tags else frozenset()


def index_path(db_path: str) -> str:
    """The search index's file for the store's file at ``db_path``."""
    return os.path.join(os.path.dirname(db_path), INDEX_NAME)


def attach(conn: sqlite3.Connection, db_path: str) -> None:
    """Attach the search index to a connection on the store's file, as ``search``."""
    conn.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (f"file:{index_path(db_path)}?mode=rw",))


def open_index(conn: sqlite3.Connection, db_path: str, text: bool, trusted: bool) -> None:
    """Attach the search index to the indexer's connection and :func:`prepare` it.

    A file of another layout, or one SQLite cannot read (corrupt, or not a
    database), is removed and made again, to be built from the entries:
    nothing in it is kept data.  (Dropping its tables instead would need
    FTS5 for the text table, which is gone when FTS5 is.)
    """
    path = index_path(db_path)
    try:
        attach(conn, db_path)
        fits = prepare(conn, text, trusted)
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError):
            raise  # locked, full, or out of memory: not the file's fault
        log.warning("the search index %s cannot be read (%s); making it again", path, exc)
        fits = False
    if fits:
        return
    if conn.execute(f"SELECT 1 FROM pragma_database_list WHERE name = '{SCHEMA}'").fetchone():
        conn.execute(f"DETACH DATABASE {SCHEMA}")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    attach(conn, db_path)
    if not prepare(conn, text, trusted):
        raise sqlite3.DatabaseError(f"could not make the search index {path}")


def rebuild_now(conn: sqlite3.Connection) -> None:
    """Mark the index as not built, in a transaction of its own: the next steps copy the entries again."""
    conn.execute("BEGIN")
    try:
        start_rebuild(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def prepare(conn: sqlite3.Connection, text: bool, trusted: bool) -> bool:
    """Check the attached index's layout against ``text``, making the tables in an empty file.

    Runs at open on the indexer's connection, before the readers attach the
    file.  ``trusted=False`` (the store runs without the change log, or
    without an indexer) marks the index as not built, so that no reader
    trusts a watermark that writes made meanwhile would not move.

    Returns:
        False if the file holds another layout (then nothing is changed).
    """
    conn.execute(f"PRAGMA {SCHEMA}.journal_mode = WAL")
    # Derived data: a crash may lose the last transactions, never corrupt the
    # file, and the watermark committed with them says where to go on from.
    conn.execute(f"PRAGMA {SCHEMA}.synchronous = NORMAL")
    names = {r[0] for r in conn.execute(f"SELECT name FROM {SCHEMA}.sqlite_schema WHERE type = 'table'")}
    row = conn.execute(f"SELECT layout, text FROM {SCHEMA}.meta").fetchone() if "meta" in names else None
    if names and (row is None or tuple(row) != (LAYOUT, int(text)) or (text and "entry_text" not in names)):
        return False
    conn.execute("BEGIN")
    try:
        if not names:
            for statement in _TABLES:
                conn.execute(statement)
            if text:
                conn.execute(_TEXT_TABLE)
            conn.execute(f"INSERT INTO {SCHEMA}.meta VALUES (1, {LAYOUT}, {int(text)}, NULL, 0, -1, 0)")
        elif not trusted:
            start_rebuild(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return True


def start_rebuild(conn: sqlite3.Connection) -> None:
    """Empty the index and mark it as not built, to be copied again from the entries (in a transaction)."""
    conn.execute(f"DELETE FROM {SCHEMA}.entry_tags")
    if _has_text(conn):
        conn.execute(f"DELETE FROM {SCHEMA}.entry_text")
    conn.execute(f"UPDATE {SCHEMA}.meta SET position = NULL, build_from = 0, build_key = -1, replay_until = 0")


def _has_text(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute(f"SELECT text FROM {SCHEMA}.meta").fetchone()[0])


def watermark(conn: sqlite3.Connection) -> int | None:
    """The position the index is complete up to; None while it is being built."""
    row = conn.execute(f"SELECT position FROM {SCHEMA}.meta").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def step(conn: sqlite3.Connection, last: int) -> int | None:
    """One transaction of the indexer: a chunk of a rebuild, or up to :data:`CATCH_UP` events.

    ``last`` is the store's last committed position.  Returns the watermark
    after the step (None: a rebuild goes on).  Reads the entries and the log
    from the connection's main database (the store's file), writes only the
    attached index.
    """
    conn.execute("BEGIN")  # deferred: the first write locks the index file, never the store's
    try:
        position, build_from, build_key, replay_until = conn.execute(
            f"SELECT position, build_from, build_key, replay_until FROM {SCHEMA}.meta"
        ).fetchone()
        horizon = int(conn.execute("SELECT horizon FROM log_meta").fetchone()[0])
        if position is not None and position < horizon:
            # Events the index still needed were compacted away (an index
            # restored from a backup, or lost with its last transactions).
            start_rebuild(conn)
        elif position is None:
            _copy_chunk(conn, build_key, build_from, last)
        else:
            _apply(conn, position, replay_until)
        result = watermark(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return result


def _copy_chunk(conn: sqlite3.Connection, build_key: int, build_from: int, last: int) -> None:
    if build_key < 0:
        # The copy starts: the events after this position may be missing from
        # it, so the index goes on from here once the copy is done.
        build_from = _last_position(conn)
    # Row values, not the key's arithmetic, so that SQLite walks the primary key.
    after = (build_key >> 32, build_key & 0xFFFFFFFF) if build_key >= 0 else (-1, -1)
    rows = conn.execute(
        "SELECT list_id << 32 | id, title FROM entries WHERE (list_id, id) > (?, ?) ORDER BY list_id, id LIMIT ?",
        (*after, REBUILD_CHUNK),
    ).fetchall()
    if rows and _has_text(conn):
        conn.executemany(f"INSERT INTO {SCHEMA}.entry_text (rowid, title) VALUES (?, ?)", rows)
    if rows:
        conn.execute(
            f"INSERT OR IGNORE INTO {SCHEMA}.entry_tags (tag, list_id, entry_id) "
            "SELECT j.value, e.list_id, e.id FROM entries e, json_each(e.tags) j "
            "WHERE (e.list_id, e.id) > (?, ?) AND (e.list_id, e.id) <= (?, ?) AND e.tags <> '[]'",
            (*after, rows[-1][0] >> 32, rows[-1][0] & 0xFFFFFFFF),
        )
    if len(rows) == REBUILD_CHUNK:
        conn.execute(
            f"UPDATE {SCHEMA}.meta SET build_from = ?, build_key = ?, replay_until = ?",
            (build_from, rows[-1][0], max(last, _last_position(conn))),
        )
    else:
        # Copied: every entry is in at some state between build_from and
        # replay_until; replaying the events from build_from puts each right.
        conn.execute(
            f"UPDATE {SCHEMA}.meta SET position = ?, build_key = -1, replay_until = ?",
            (build_from, max(last, _last_position(conn))),
        )


def _last_position(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(coalesce((SELECT max(position) FROM events), 0), last_position) FROM log_meta")
    return int(row.fetchone()[0])


def _apply(conn: sqlite3.Connection, position: int, replay_until: int) -> None:
    rows: Sequence[tuple[int, int, int, str | None, str | None]] = conn.execute(
        "SELECT position, list_id, entry, before, after FROM events WHERE position > ? ORDER BY position LIMIT ?",
        (position, CATCH_UP),
    ).fetchall()
    if not rows:
        return
    # Per entry: its state before the chunk, the tags it had at any point in
    # the chunk, and its state after it.  Each text is parsed once: this loop
    # is most of the indexer's Python time.
    first: dict[int, tuple[str, frozenset[str]] | None] = {}
    last: dict[int, tuple[str, frozenset[str]] | None] = {}
    seen_tags: dict[int, frozenset[str]] = {}
    for _pos, list_id, entry_id, before_text, after_text in rows:
        key = list_id << 32 | entry_id
        after = title_and_tags(after_text)
        if key in first:
            seen = seen_tags[key]
        else:
            before = first[key] = title_and_tags(before_text)
            seen = before[1] if before is not None else frozenset()
        seen_tags[key] = seen | after[1] if after is not None else seen
        last[key] = after
    # Events up to replay_until may be in the index already (a rebuild copied
    # the entries while they were committed): their entries' rows are
    # replaced whatever the states before them say.
    replaying = position < replay_until
    text_deletes: list[tuple[int]] = []
    text_inserts: list[tuple[int, str]] = []
    tag_deletes: list[tuple[str, int, int]] = []
    tag_inserts: list[tuple[str, int, int]] = []
    empty: frozenset[str] = frozenset()
    for key, new in last.items():
        old = first[key]
        if replaying or old is None or new is None or old[0] != new[0]:
            if replaying or old is not None:
                text_deletes.append((key,))
            if new is not None:
                text_inserts.append((key, new[0]))
        keep = new[1] if new is not None else empty
        seen = seen_tags[key]
        if not replaying and old is not None and seen == keep == old[1]:
            continue  # the tags never changed in the chunk: their rows are right
        list_id, entry_id = key >> 32, key & 0xFFFFFFFF
        tag_deletes.extend((tag, list_id, entry_id) for tag in seen - keep)
        tag_inserts.extend((tag, list_id, entry_id) for tag in keep)
    if _has_text(conn):
        # In key order: FTS5 writes out its buffer whenever a rowid is not above the last one.
        conn.executemany(f"DELETE FROM {SCHEMA}.entry_text WHERE rowid = ?", sorted(text_deletes))
        conn.executemany(f"INSERT INTO {SCHEMA}.entry_text (rowid, title) VALUES (?, ?)", sorted(text_inserts))
    conn.executemany(f"DELETE FROM {SCHEMA}.entry_tags WHERE tag = ? AND list_id = ? AND entry_id = ?", tag_deletes)
    conn.executemany(
        f"INSERT OR IGNORE INTO {SCHEMA}.entry_tags (tag, list_id, entry_id) VALUES (?, ?, ?)", sorted(tag_inserts)
    )
    conn.execute(f"UPDATE {SCHEMA}.meta SET position = ?", (rows[-1][0],))


# --- the indexer's process ------------------------------------------------------

#: What the daemon runs as its indexer's process: ``sys.executable -c CHILD ROOT DB_PATH``,
#: ROOT being the directory the daemon imported this package from.
CHILD = "import sys; sys.path.insert(0, sys.argv[1]); from todod._search import serve; sys.exit(serve(sys.argv[2]))"


def connect_indexer(db_path: str) -> sqlite3.Connection:
    """The indexer's connection: the store's file (read in WAL mode) with the index attached, to write."""
    conn = sqlite3.connect(f"file:{db_path}?mode=rw", uri=True, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    attach(conn, db_path)
    # Per connection: see prepare.
    conn.execute(f"PRAGMA {SCHEMA}.synchronous = NORMAL")
    return conn


def serve(db_path: str) -> int:
    """The indexer's process: run the steps the daemon asks for on stdin, one reply line each on stdout.

    A request is ``step LAST`` (one :func:`step`, ``LAST`` the store's last
    committed position) or ``rebuild`` (:func:`rebuild_now`); a reply is
    ``ok WATERMARK`` (``-`` while a rebuild goes on), ``integrity MESSAGE``
    (the index disagrees with the log: to be built again) or ``error
    MESSAGE`` (SQLite or the OS failed this step; the next may not).
    The index is prepared by the daemon before it starts this process, and
    this process writes only the index.  It ends at the end of its input,
    once the step under way is committed: the daemon closes the pipe to stop
    it, and a daemon that dies closes it too.  SIGINT and SIGTERM, which a
    terminal or a service manager may send to the daemon's whole group, are
    ignored for that reason: the daemon decides when its indexer stops.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = connect_indexer(db_path)
    try:
        for line in sys.stdin:
            request = line.split()
            try:
                if request[:1] == ["step"] and len(request) == 2:
                    mark = step(conn, int(request[1]))
                    reply = f"ok {'-' if mark is None else mark}"
                elif request == ["rebuild"]:
                    rebuild_now(conn)
                    reply = "ok -"
                else:
                    reply = f"error not a request: {line.strip()[:60]!r}"
            except sqlite3.IntegrityError as exc:
                reply = "integrity " + " ".join(str(exc).split())
            except (sqlite3.Error, OSError) as exc:
                reply = "error " + " ".join(str(exc).split())
            sys.stdout.write(reply + "\n")
            sys.stdout.flush()
    finally:
        conn.close()
    return 0
