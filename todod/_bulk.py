"""The SQL of the ops that span rows in bulk or more than one list: imports, moves and the move saga.

Every function here runs in a worker thread on a connection the store hands
it (the writer's, inside a :class:`todod.store.Transaction`'s hook, or a
connection of its own for staging); the store and todod/_transfer.py
translate their errors.  Schema version 6 (:data:`MIGRATION`) adds:

- ``import_rows``: an import's staged entries, written in bounded batches
  outside the entries table, so no reader sees any of them until one
  transaction publishes them all (:func:`publish_import`); the PostgreSQL
  backend stages there, the SQLite backend in a file of its own per import
  (:func:`open_staging`), and its schema version 7 drops the table;
- ``moves``: which change of one list is the other half of a move, so an
  undo of either half reverts both;
- ``sagas``: the source daemon's journal of moves to another daemon;
- ``received``: the destination daemon's idempotency keys of those moves.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from todod._model import Entry, Event, Step

MIGRATION: tuple[str, ...] = (
    # n: the entry's place in the import (1, 2, 3, ... with no gap), which
    # gives its id (the list's next id + n - 1) and its event's seq.  event:
    # the entry as the change log writes it (todod/_log.py), made once in
    # Python at staging so the publish is plain INSERT ... SELECTs.
    """CREATE TABLE import_rows (
        import TEXT NOT NULL,
        n INTEGER NOT NULL,
        date TEXT NOT NULL,
        title TEXT NOT NULL,
        done INTEGER NOT NULL,
        tags TEXT NOT NULL,
        event TEXT NOT NULL,
        PRIMARY KEY (import, n)
    ) WITHOUT ROWID""",
    # Both halves of a move, each naming the other; peer_list_id 0 is a
    # move to or from another daemon (a saga), which an undo cannot take back.
    """CREATE TABLE moves (
        list_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        peer_list_id INTEGER NOT NULL,
        peer_seq INTEGER NOT NULL,
        PRIMARY KEY (list_id, seq)
    ) WITHOUT ROWID""",
    # state: started, compensating (being taken back), done or cancelled.
    """CREATE TABLE sagas (
        id TEXT PRIMARY KEY,
        list TEXT NOT NULL,
        entry INTEGER NOT NULL,
        version INTEGER NOT NULL,
        value TEXT NOT NULL,
        to_socket TEXT NOT NULL,
        to_list TEXT NOT NULL,
        state TEXT NOT NULL,
        to_entry INTEGER,
        message TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL
    )""",
    "CREATE INDEX sagas_open ON sagas (state) WHERE state IN ('started', 'compensating')",
    # state: added, or cancelled (the source took the move back).
    """CREATE TABLE received (
        key TEXT PRIMARY KEY,
        list TEXT NOT NULL,
        entry INTEGER NOT NULL,
        state TEXT NOT NULL,
        time REAL NOT NULL
    )""",
)

#: The states of a saga that are not over yet: the saga runner resumes them.
OPEN_STATES = ("started", "compensating")


# --- imports ----------------------------------------------------------------------

StagedRow = tuple[str, int, str, str, int, str, str]


def event_text(date: str, title: str, done: bool, tags: Sequence[str]) -> str:
    """An added entry (version 1) as the change log writes it: ``todod._log._encode``'s form."""
    mark = "1" if done else "0"
    if tags:
        mark += ":" + ",".join(tags)
    return f"{date} {mark} 1 {title}"


# The SQLite backend stages each import in a file of its own, one table whose
# rowid is the row's place n: an append in n order, not an insert into a
# shared (import, n) key.  The file has no journal and is never fsynced
# (journal_mode=OFF, synchronous=OFF): a staged row answers nobody, a daemon
# that restarts removes every staging file, and an import whose staging
# fails in any way (a statement that a journal would have rolled back) is
# failed and its file removed.  So each staged row costs one write to the
# page cache of a file of its own, not a write to the store's WAL (and its
# checkpoint into the store's file, and its delete at the publish); the
# publish reads the file attached to the writer's connection, and the end of
# the import is one unlink.
STAGING_TABLE = (
    "CREATE TABLE rows (n INTEGER PRIMARY KEY, date TEXT NOT NULL, title TEXT NOT NULL, "
    "done INTEGER NOT NULL, tags TEXT NOT NULL, event TEXT NOT NULL)"
)
#: Most rows per statement of :func:`stage_file_rows` (six parameters each),
#: within the connection's limit on a statement's parameters (32,766 by
#: default since SQLite 3.32, 999 before; a build may set it lower).
STAGE_CHUNK = 2000


@functools.lru_cache(maxsize=4)
def _stage_values(count: int) -> str:
    return "INSERT INTO rows (n, date, title, done, tags, event) VALUES " + ",".join(("(?,?,?,?,?,?)",) * count)


def stage_file_rows(conn: sqlite3.Connection, rows: Sequence[StagedRow]) -> None:
    """Stage a batch into a staging file (its import id is the file's, not a column), in a transaction of its own.

    One multi-row INSERT per :data:`STAGE_CHUNK` rows, not ``executemany``,
    which steps each row apart, and lets go of the GIL and
    takes it back around every step, and with the event loop and another
    batch's validation wanting the GIL meanwhile, each row then waited for a
    thread switch (bench/import_parts.py; docs/ARCHITECTURE.md, "Imports").
    One statement binds every row's values and runs in SQLite with the GIL
    let go once.
    """
    chunk_rows = max(1, min(STAGE_CHUNK, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 6))
    conn.execute("BEGIN IMMEDIATE")
    try:
        for start in range(0, len(rows), chunk_rows):
            chunk = rows[start : start + chunk_rows]
            conn.execute(_stage_values(len(chunk)), [value for row in chunk for value in row[1:]])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def open_staging(path: str) -> sqlite3.Connection:
    """Create an import's staging file at ``path`` (mode 0600, it must not exist) and its table; its connection."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute(STAGING_TABLE)
    except BaseException:
        conn.close()
        raise
    return conn


def staged_file_count(conn: sqlite3.Connection) -> tuple[int, int]:
    """How many rows a staging file holds, and its highest ``n``."""
    row = conn.execute("SELECT count(*), coalesce(max(n), 0) FROM rows").fetchone()
    return int(row[0]), int(row[1])


#: Where a publish reads an import's staged rows: a table expression with
#: its parameters (it has columns n, date, title, done, tags and event), and
#: the statement, with the same parameters, that deletes them in the
#: publish's transaction (None: the backend drops them after it).
Staged = tuple[str, tuple[Any, ...], str | None]


def publish_import(
    conn: sqlite3.Connection,
    staged: Staged,
    list_id: int,
    count: int,
    position: int,
    head: int,
    now: float,
    uid: int | None,
    pid: int | None,
) -> tuple[int, int, int]:
    """Publish an import's staged rows into its list: one change of ``count`` events, in the caller's transaction.

    The entries get the list's next ids in staging order, the log one
    change of op ``import`` whose events take positions ``position + 1`` on,
    chained from ``head``.  Returns the first id, the change's seq and the
    new head (the last position).
    """
    source, params, delete = staged
    next_id, seq = conn.execute("SELECT next_id, seq FROM lists WHERE id = ?", (list_id,)).fetchone()
    conn.execute(
        "INSERT INTO entries (list_id, id, date, title, done, version, tags) "
        f"SELECT ?, ? + n - 1, date, title, done, 1, tags FROM {source} ORDER BY n",
        (list_id, next_id, *params),
    )
    conn.execute(
        "INSERT INTO events (position, list_id, seq, change, op, entry, before, after, time, uid, pid, target, prev) "
        "SELECT ? + n, ?, ? + n, ? + 1, 'import', ? + n - 1, NULL, event, ?, ?, ?, NULL, "
        f"CASE WHEN n = 1 THEN ? ELSE ? + n - 1 END FROM {source} ORDER BY n",
        (position, list_id, seq, seq, next_id, now, uid, pid, head, position, *params),
    )
    last = position + count
    conn.execute(
        "UPDATE lists SET next_id = next_id + ?, seq = seq + ?, head = ? WHERE id = ?", (count, count, last, list_id)
    )
    if delete is not None:
        conn.execute(delete, params)
    return int(next_id), int(seq) + 1, last


# --- moves --------------------------------------------------------------------------


def record_move(conn: sqlite3.Connection, halves: Iterable[tuple[int, int, int, int]]) -> None:
    """Record moves: each (list id, seq, peer list id, peer seq); a local move gives both directions."""
    conn.executemany(
        "INSERT INTO moves (list_id, seq, peer_list_id, peer_seq) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (list_id, seq) DO UPDATE SET peer_list_id = excluded.peer_list_id, peer_seq = excluded.peer_seq",
        halves,
    )


def move_peer(conn: sqlite3.Connection, name: str, seq: int) -> tuple[str | None, int] | None:
    """The other half of change ``seq`` of list ``name`` if it is a move: (peer list or None if remote, its seq)."""
    row = conn.execute(
        "SELECT m.peer_list_id, m.peer_seq, p.name FROM moves m JOIN lists l ON l.id = m.list_id "
        "LEFT JOIN lists p ON p.id = m.peer_list_id WHERE l.name = ? AND m.seq = ?",
        (name, seq),
    ).fetchone()
    if row is None:
        return None
    return (row[2] if row[0] else None), int(row[1])


def read_change(conn: sqlite3.Connection, name: str, seq: int) -> tuple[Step | None, bool]:
    """Change ``seq`` of list ``name`` as an undo step (its events), and whether it is undone now.

    Walks back from the list's head: as many lookups as the list has events since.
    """
    from todod._log import _decode  # the log's own text form

    row = conn.execute("SELECT id, head FROM lists WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None, False
    list_id, position = row
    events: list[Event] = []
    while position:
        found = conn.execute(
            "SELECT seq, change, entry, before, after, prev FROM events WHERE position = ?", (position,)
        ).fetchone()
        if found is None:
            break
        event_seq, change, entry, before, after, prev = found
        if change == seq:
            events.append(Event(event_seq, entry, _decode(entry, before), _decode(entry, after)))
        elif event_seq < seq:
            break
        position = prev
    if not events:
        return None, False
    undone = conn.execute("SELECT 1 FROM undos WHERE list_id = ? AND target = ?", (list_id, seq)).fetchone()
    return Step(seq, tuple(reversed(events))), undone is not None


# --- the saga journal (the source daemon) -------------------------------------------------


def saga_value(entry: Entry) -> str:
    """An entry's values as a saga journals them (JSON: date, title, done, tags)."""
    return json.dumps(
        {"date": entry.date.isoformat(), "title": entry.title, "done": entry.done, "tags": list(entry.tags)},
        separators=(",", ":"),
    )


def start_saga(conn: sqlite3.Connection, saga: dict[str, Any], now: float) -> None:
    conn.execute(
        "INSERT INTO sagas (id, list, entry, version, value, to_socket, to_list, state, created, updated) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'started', ?, ?)",
        (
            saga["id"],
            saga["list"],
            saga["entry"],
            saga["version"],
            saga["value"],
            saga["to_socket"],
            saga["to_list"],
            now,
            now,
        ),
    )


def set_saga(
    conn: sqlite3.Connection,
    saga_id: str,
    state: str,
    now: float,
    to_entry: int | None = None,
    message: str | None = None,
    expect: str | None = None,
) -> None:
    """Move saga ``saga_id`` to ``state``; with ``expect``, only if it is in that state (else nothing changes)."""
    sql = (
        "UPDATE sagas SET state = ?, updated = ?, to_entry = coalesce(?, to_entry), message = coalesce(?, message) "
        "WHERE id = ?"
    )
    params: tuple[Any, ...] = (state, now, to_entry, message, saga_id)
    if expect is not None:
        sql, params = sql + " AND state = ?", (*params, expect)
    conn.execute(sql, params)


_SAGA_COLUMNS = "id, list, entry, version, value, to_socket, to_list, state, to_entry, message, created, updated"


def _saga(row: Sequence[Any]) -> dict[str, Any]:
    keys = [k.strip() for k in _SAGA_COLUMNS.split(",")]
    return dict(zip(keys, row, strict=True))


def open_sagas(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every saga not over yet, oldest first."""
    rows = conn.execute(
        f"SELECT {_SAGA_COLUMNS} FROM sagas WHERE state IN ('started', 'compensating') ORDER BY created"
    ).fetchall()
    return [_saga(r) for r in rows]


def read_saga(conn: sqlite3.Connection, saga_id: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {_SAGA_COLUMNS} FROM sagas WHERE id = ?", (saga_id,)).fetchone()
    return None if row is None else _saga(row)


# --- idempotency keys (the destination daemon) ------------------------------------------


def read_received(conn: sqlite3.Connection, key: str) -> tuple[str, int, str] | None:
    """What a move's key did here: (list, entry id, state), or None if it never came."""
    row = conn.execute("SELECT list, entry, state FROM received WHERE key = ?", (key,)).fetchone()
    return None if row is None else (row[0], int(row[1]), row[2])


def write_received(conn: sqlite3.Connection, key: str, name: str, entry_id: int, state: str, now: float) -> None:
    conn.execute(
        "INSERT INTO received (key, list, entry, state, time) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET state = excluded.state, time = excluded.time",
        (key, name, entry_id, state, now),
    )
