"""The change log in SQLite: its schema, the rows a commit appends, its reads and its compaction.

Every function here runs in a worker thread on a connection the store hands
it; the store translates their errors.  The log is append-only: a commit
appends one row per event (``event_rows``) in the transaction that applies the
same events to the entries table, so the entries are a materialized view of
the log.  Compaction folds the oldest events into ``base_entries`` (the state
of each list at its horizon) and drops them, so a list is always its base
state plus its events, replayed in seq order.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs

from todod._model import DO_OPS, Change, Entry, Event, Step, replay

#: Schema version 2: versions, the change log, its horizon and the undo state.
#: Entries that exist when it runs become each list's base state, so a
#: migrated list replays from its log like any other, and nothing is lost.
MIGRATION: tuple[str, ...] = (
    "ALTER TABLE entries ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
    # seq: the list's last event; base_seq: its horizon (events up to it
    # were folded into base_entries and dropped).
    "ALTER TABLE lists ADD COLUMN seq INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE lists ADD COLUMN base_seq INTEGER NOT NULL DEFAULT 0",
    """CREATE TABLE base_entries (
        list_id INTEGER NOT NULL REFERENCES lists(id),
        id INTEGER NOT NULL,
        date TEXT NOT NULL,
        title TEXT NOT NULL,
        done INTEGER NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (list_id, id)
    ) WITHOUT ROWID""",
    "INSERT INTO base_entries SELECT list_id, id, date, title, done, 1 FROM entries",
    # position: global, assigned by the one writer in commit order, never
    # reused (compaction keeps the last one in log_meta).  change: the seq of
    # the change's first event.  target: what an undo or redo reverted.
    # before, after: the entry as "DATE DONE VERSION TITLE" (NULL: absent),
    # one text each: as JSON, or as four columns (four more parameters to
    # bind), the log took 5 us more per event in the writer's thread.
    """CREATE TABLE events (
        position INTEGER PRIMARY KEY,
        list_id INTEGER NOT NULL REFERENCES lists(id),
        seq INTEGER NOT NULL,
        change INTEGER NOT NULL,
        op TEXT NOT NULL,
        entry INTEGER NOT NULL,
        before TEXT,
        after TEXT,
        time REAL NOT NULL,
        uid INTEGER,
        pid INTEGER,
        target INTEGER,
        UNIQUE (list_id, seq)
    )""",
    # One row per change that is undone now (a redo deletes it again).
    """CREATE TABLE undos (
        list_id INTEGER NOT NULL REFERENCES lists(id),
        target INTEGER NOT NULL,
        undone_by INTEGER NOT NULL,
        PRIMARY KEY (list_id, target)
    ) WITHOUT ROWID""",
    """CREATE TABLE log_meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_position INTEGER NOT NULL,
        horizon INTEGER NOT NULL
    )""",
    "INSERT INTO log_meta VALUES (1, 0, 0)",
)

INSERT_EVENT = (
    "INSERT INTO events (position, list_id, seq, change, op, entry, before, after, time, uid, pid, target) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_UNDO = "INSERT OR REPLACE INTO undos (list_id, target, undone_by) VALUES (?, ?, ?)"
DELETE_UNDO = "DELETE FROM undos WHERE list_id = ? AND target = ?"

#: Events folded per compaction transaction: small enough that the writer,
#: which waits for the database lock meanwhile, is held for milliseconds.
COMPACT_CHUNK = 5000

EventRow = tuple[int, int, int, int, str, int, str | None, str | None, float, int | None, int | None, int | None]


def _encode(entry: Entry | None) -> str | None:
    # Dates and numbers hold no space, so the title is whatever follows the
    # third one, spaces and all.
    return None if entry is None else f"{entry.date.isoformat()} {int(entry.done)} {entry.version} {entry.title}"


def _decode(entry_id: int, text: str | None) -> Entry | None:
    if text is None:
        return None
    date, done, version, title = text.split(" ", 3)
    return Entry(entry_id, datetime.date.fromisoformat(date), title, done == "1", int(version))


def _decode_wire(entry_id: int, text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    date, done, version, title = text.split(" ", 3)
    return {"id": entry_id, "date": date, "title": title, "done": done == "1", "version": int(version)}


def wire_time(seconds: float) -> str:
    """A log time as ISO 8601 in UTC, to the millisecond."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_rows(list_id: int, changes: Iterable[Change], position: int, now: float) -> Iterator[EventRow]:
    """The log rows of one list's changes, numbered from ``position + 1`` (as :func:`wire_events` does)."""
    for change in changes:
        uid, pid = change.origin.uid, change.origin.pid
        for event in change.events:
            position += 1
            yield (
                position,
                list_id,
                event.seq,
                change.seq,
                change.op,
                event.entry_id,
                _encode(event.before),
                _encode(event.after),
                now,
                uid,
                pid,
                change.target,
            )


def wire_events(position: int, now: float, batches: Iterable[tuple[str, Sequence[Change]]]) -> Iterator[dict[str, Any]]:
    """The wire form of a committed group's events, numbered as :func:`event_rows` numbered them."""
    when = wire_time(now)
    for name, changes in batches:
        for change in changes:
            for event in change.events:
                position += 1
                yield {
                    "position": position,
                    "list": name,
                    "seq": event.seq,
                    "change": change.seq,
                    "op": change.op,
                    "entry": event.entry_id,
                    "before": None if event.before is None else event.before.to_wire(),
                    "after": None if event.after is None else event.after.to_wire(),
                    "time": when,
                    "uid": change.origin.uid,
                    "pid": change.origin.pid,
                    "target": change.target,
                }


_COLUMNS = "e.position, l.name, e.seq, e.change, e.op, e.entry, e.before, e.after, e.time, e.uid, e.pid, e.target"


def _wire(row: Sequence[Any]) -> dict[str, Any]:
    position, name, seq, change, op, entry, before, after, when, uid, pid, target = row
    return {
        "position": position,
        "list": name,
        "seq": seq,
        "change": change,
        "op": op,
        "entry": entry,
        "before": _decode_wire(entry, before),
        "after": _decode_wire(entry, after),
        "time": wire_time(when),
        "uid": uid,
        "pid": pid,
        "target": target,
    }


def last_position(conn: sqlite3.Connection) -> int:
    """The last position ever assigned (compaction may have dropped its event)."""
    row = conn.execute(
        "SELECT max(coalesce((SELECT max(position) FROM events), 0), last_position) FROM log_meta"
    ).fetchone()
    return int(row[0])


def horizon(conn: sqlite3.Connection) -> int:
    """The last position compaction dropped (0: none)."""
    return int(conn.execute("SELECT horizon FROM log_meta").fetchone()[0])


def read_events(conn: sqlite3.Connection, after: int, name: str | None, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` events after position ``after``, of one list or all, in position order."""
    if name is None:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM events e JOIN lists l ON l.id = e.list_id "
            "WHERE e.position > ? ORDER BY e.position LIMIT ?",
            (after, limit),
        ).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM events e JOIN lists l ON l.id = e.list_id "
            "WHERE e.position > ? AND l.name = ? ORDER BY e.position LIMIT ?",
            (after, name, limit),
        ).fetchall()
    return [_wire(row) for row in rows]


def read_history(conn: sqlite3.Connection, name: str, limit: int | None) -> dict[str, Any]:
    """A list's events, oldest first (the last ``limit`` of them), and its horizon."""
    row = conn.execute("SELECT id, base_seq FROM lists WHERE name = ?", (name,)).fetchone()
    if row is None:
        return {"list": name, "horizon": 0, "base_entries": 0, "events": []}
    list_id, base_seq = row
    query = f"SELECT {_COLUMNS} FROM events e JOIN lists l ON l.id = e.list_id WHERE e.list_id = ? "
    if limit is None:
        rows = conn.execute(query + "ORDER BY e.seq", (list_id,)).fetchall()
    else:
        rows = conn.execute(query + "ORDER BY e.seq DESC LIMIT ?", (list_id, limit)).fetchall()[::-1]
    base = conn.execute("SELECT count(*) FROM base_entries WHERE list_id = ?", (list_id,)).fetchone()[0]
    return {"list": name, "horizon": base_seq, "base_entries": base, "events": [_wire(r) for r in rows]}


@attrs.frozen
class Plan:
    """What an undo or a redo of a list will revert, read at the list's ``head``.

    ``steps`` may be fewer than asked: ``at_horizon`` tells whether the log
    was cut short by compaction (or by a migration: entries older than the log).
    """

    head: int
    steps: tuple[Step, ...]
    at_horizon: bool


def _events_of(conn: sqlite3.Connection, list_id: int, change: int) -> tuple[Event, ...]:
    rows = conn.execute(
        "SELECT seq, entry, before, after FROM events WHERE list_id = ? AND change = ? AND seq >= ? AND seq < "
        "coalesce((SELECT min(seq) FROM events WHERE list_id = ? AND seq > ? AND seq = change), 1 << 62) "
        "ORDER BY seq",
        (list_id, change, change, list_id, change),
    ).fetchall()
    return tuple(Event(seq, entry, _decode(entry, before), _decode(entry, after)) for seq, entry, before, after in rows)


def _list_row(conn: sqlite3.Connection, name: str) -> tuple[int, int, bool] | None:
    row = conn.execute("SELECT id, seq, base_seq FROM lists WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    list_id, seq, base_seq = row
    has_base = conn.execute("SELECT 1 FROM base_entries WHERE list_id = ? LIMIT 1", (list_id,)).fetchone()
    return list_id, seq, base_seq > 0 or has_base is not None


_DO = ", ".join(f"'{op}'" for op in DO_OPS)


def read_undo_plan(conn: sqlite3.Connection, name: str, steps: int) -> Plan:
    """The last ``steps`` changes of a list that are not undone, newest first."""
    found = _list_row(conn, name)
    if found is None:
        return Plan(0, (), False)
    list_id, head, has_horizon = found
    targets = conn.execute(
        f"SELECT seq FROM events e WHERE list_id = ? AND seq = change AND op IN ({_DO}) "
        "AND NOT EXISTS (SELECT 1 FROM undos u WHERE u.list_id = e.list_id AND u.target = e.seq) "
        "ORDER BY seq DESC LIMIT ?",
        (list_id, steps),
    ).fetchall()
    plan = tuple(Step(t, _events_of(conn, list_id, t)) for (t,) in targets)
    return Plan(head, plan, has_horizon)


def read_redo_plan(conn: sqlite3.Connection, name: str, steps: int) -> Plan:
    """The last ``steps`` changes undone since the list's last new change, most recently undone first."""
    found = _list_row(conn, name)
    if found is None:
        return Plan(0, (), False)
    list_id, head, _has_horizon = found
    row = conn.execute(
        f"SELECT seq FROM events WHERE list_id = ? AND seq = change AND op IN ({_DO}) ORDER BY seq DESC LIMIT 1",
        (list_id,),
    ).fetchone()
    last_do = 0 if row is None else row[0]
    rows = conn.execute(
        "SELECT target, undone_by FROM undos WHERE list_id = ? AND undone_by > ? ORDER BY undone_by DESC LIMIT ?",
        (list_id, last_do, steps),
    ).fetchall()
    # A redo reverts the undo's own events: it knows the versions the undo left.
    plan = tuple(Step(target, _events_of(conn, list_id, undone_by)) for target, undone_by in rows)
    return Plan(head, plan, False)


@attrs.frozen
class Compaction:
    """What one compaction did: the events it dropped and the horizon it reached."""

    dropped: int
    horizon: int


def compact(conn: sqlite3.Connection, before: float) -> Compaction:
    """Fold every change older than ``before`` (a Unix time) into its list's base state and drop it.

    Runs in transactions of about :data:`COMPACT_CHUNK` events, each ending at
    the end of a change, so the writer waits milliseconds at a time; the
    current state is untouched (it is the base plus what is left).
    """
    dropped = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            mark = horizon(conn)
            row = conn.execute(
                "SELECT position, list_id, change FROM events WHERE position > ? AND time < ? "
                "ORDER BY position LIMIT 1 OFFSET ?",
                (mark, before, COMPACT_CHUNK - 1),
            ).fetchone()
            if row is None:
                row = conn.execute(
                    "SELECT max(position), list_id, change FROM events WHERE time < ?", (before,)
                ).fetchone()
            if row is None or row[0] is None:
                conn.execute("COMMIT")
                return Compaction(dropped, mark)
            # A change is never cut in two: its events share one transaction, hence one time.
            cut = conn.execute(
                "SELECT max(position) FROM events WHERE list_id = ? AND change = ?", (row[1], row[2])
            ).fetchone()[0]
            dropped += _fold(conn, cut)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _fold(conn: sqlite3.Connection, cut: int) -> int:
    # The last event of each entry up to the cut decides its base state
    # (SQLite gives the bare columns of the row holding max()).
    rows = conn.execute(
        "SELECT list_id, entry, after, max(position) FROM events WHERE position <= ? GROUP BY list_id, entry",
        (cut,),
    ).fetchall()
    puts, removes = [], []
    for list_id, entry_id, after, _pos in rows:
        entry = _decode(entry_id, after)
        if entry is None:
            removes.append((list_id, entry_id))
        else:
            puts.append((list_id, entry.id, entry.date.isoformat(), entry.title, int(entry.done), entry.version))
    conn.executemany("DELETE FROM base_entries WHERE list_id = ? AND id = ?", removes)
    conn.executemany("INSERT OR REPLACE INTO base_entries VALUES (?, ?, ?, ?, ?, ?)", puts)
    conn.execute(
        "UPDATE lists SET base_seq = (SELECT max(seq) FROM events e WHERE e.list_id = lists.id AND position <= ?) "
        "WHERE id IN (SELECT DISTINCT list_id FROM events WHERE position <= ?)",
        (cut, cut),
    )
    # An undo whose target or whose own events are gone can no longer be redone.
    conn.execute(
        "DELETE FROM undos WHERE target <= (SELECT base_seq FROM lists WHERE id = undos.list_id) "
        "OR undone_by <= (SELECT base_seq FROM lists WHERE id = undos.list_id)"
    )
    conn.execute(
        "UPDATE log_meta SET last_position = max(last_position, (SELECT coalesce(max(position), 0) FROM events)), "
        "horizon = ?",
        (cut,),
    )
    dropped = conn.execute("DELETE FROM events WHERE position <= ?", (cut,)).rowcount
    return int(dropped)


def rebuild(conn: sqlite3.Connection) -> dict[str, dict[int, Entry]]:
    """Every list rebuilt from its base state and its log alone (the view is not read)."""
    result: dict[str, dict[int, Entry]] = {}
    for list_id, name in conn.execute("SELECT id, name FROM lists").fetchall():
        base = [
            Entry(i, datetime.date.fromisoformat(d), t, bool(done), v)
            for i, d, t, done, v in conn.execute(
                "SELECT id, date, title, done, version FROM base_entries WHERE list_id = ?", (list_id,)
            )
        ]
        events = [
            Event(seq, entry, _decode(entry, before), _decode(entry, after))
            for seq, entry, before, after in conn.execute(
                "SELECT seq, entry, before, after FROM events WHERE list_id = ? ORDER BY seq", (list_id,)
            )
        ]
        result[name] = replay(base, events)
    return result


def read_view(conn: sqlite3.Connection) -> dict[str, dict[int, Entry]]:
    """Every list as the entries table serves it."""
    result: dict[str, dict[int, Entry]] = {}
    for (name,) in conn.execute("SELECT name FROM lists").fetchall():
        result[name] = {}
    for name, i, d, t, done, v in conn.execute(
        "SELECT l.name, e.id, e.date, e.title, e.done, e.version FROM entries e JOIN lists l ON l.id = e.list_id"
    ):
        result[name][i] = Entry(i, datetime.date.fromisoformat(d), t, bool(done), v)
    return result
