"""The change log in SQLite: its schema, the rows a commit appends, its reads and its compaction.

Every function here runs in a worker thread on a connection the store hands
it; the store translates their errors.  The log is append-only: a commit
appends one row per event (``append_rows``) in the transaction that applies the
same events to the entries table, so the entries are a materialized view of
the log.  Compaction folds the oldest events into ``base_entries`` (the state
of each list at its horizon) and drops them, so a list is always its base
state plus its events, replayed in seq order.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import attrs

from todod._model import DO_OPS, Change, Entry, Event, Step, replay
from todod._query import tags_column
from todod.protocol import MAX_INT, Compacted

#: Schema version 2: versions, the change log, its horizon and the undo state.
#: Entries that exist when it runs become each list's base state, so a
#: migrated list replays from its log like any other, and nothing is lost.
MIGRATION: tuple[str, ...] = (
    "ALTER TABLE entries ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
    # seq: the list's last event; head: that event's position (0: none);
    # base_seq: its horizon (events up to it were folded into base_entries
    # and dropped).
    "ALTER TABLE lists ADD COLUMN seq INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE lists ADD COLUMN head INTEGER NOT NULL DEFAULT 0",
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
    # prev: the position of the list's previous event (0: none).  A list's
    # events are found by walking back from lists.head, one primary-key
    # lookup each, not through an index on (list_id, seq): with many lists,
    # such an index put one more random page in every commit's WAL (a
    # quarter more bytes to fsync, and a fifth fewer adds a second).
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
        prev INTEGER NOT NULL
    )""",
    # One row per change that is undone now (a redo deletes it again):
    # undone_by is the seq of the undo, undone_at the position of its first event.
    """CREATE TABLE undos (
        list_id INTEGER NOT NULL REFERENCES lists(id),
        target INTEGER NOT NULL,
        undone_by INTEGER NOT NULL,
        undone_at INTEGER NOT NULL,
        PRIMARY KEY (list_id, target)
    ) WITHOUT ROWID""",
    """CREATE TABLE log_meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_position INTEGER NOT NULL,
        horizon INTEGER NOT NULL
    )""",
    "INSERT INTO log_meta VALUES (1, 0, 0)",
)

#: The log's part of schema version 4 (tags, see todod/_query.py): the base
#: state keeps each entry's tags, as the entries table does (a JSON array,
#: '[]' for none, which every entry older than tags gets).  The events need
#: no new column: their texts carry the tags (see :func:`_encode`).
MIGRATION_TAGS: tuple[str, ...] = ("ALTER TABLE base_entries ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",)

INSERT_EVENT = (
    "INSERT INTO events (position, list_id, seq, change, op, entry, before, after, time, uid, pid, target, prev) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_UNDO = "INSERT OR REPLACE INTO undos (list_id, target, undone_by, undone_at) VALUES (?, ?, ?, ?)"
DELETE_UNDO = "DELETE FROM undos WHERE list_id = ? AND target = ?"

#: Events folded per compaction transaction: small enough that the writer,
#: which waits for the database lock meanwhile, is held for milliseconds.
COMPACT_CHUNK = 5000

EventRow = tuple[int, int, int, int, str, int, str | None, str | None, float, int | None, int | None, int | None, int]


def _encode(entry: Entry | None) -> str | None:
    # Dates and numbers hold no space, so the title is whatever follows the
    # third field, spaces and all.  An entry with tags has them after its
    # done mark, as "1:home,urgent": a tag is letters, digits, '-' and '_'
    # (validate_tag), so neither ':' nor ',' nor a space can be in one.  An
    # entry without tags is written as before tags existed ("DATE DONE
    # VERSION TITLE"), so the events written before schema version 4 read
    # as entries without tags, and an untagged entry costs nothing more.
    if entry is None:
        return None
    done = "1" if entry.done else "0"
    if entry.tags:
        done += ":" + ",".join(entry.tags)
    return f"{entry.date.isoformat()} {done} {entry.version} {entry.title}"


def _fields(text: str) -> tuple[str, bool, int, str, tuple[str, ...]]:
    """Date, done, version, title and tags of an event's entry text (either encoding)."""
    date, done, version, title = text.split(" ", 3)
    mark, _, tags = done.partition(":")
    return date, mark == "1", int(version), title, tuple(tags.split(",")) if tags else ()


def _decode(entry_id: int, text: str | None) -> Entry | None:
    if text is None:
        return None
    date, done, version, title, tags = _fields(text)
    return Entry(entry_id, datetime.date.fromisoformat(date), title, done, version, tags)


def _decode_wire(entry_id: int, text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    date, done, version, title, tags = _fields(text)
    return {"id": entry_id, "date": date, "title": title, "done": done, "version": version, "tags": list(tags)}


def wire_time(seconds: float) -> str:
    """A log time as ISO 8601 in UTC, to the millisecond."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def append_rows(rows: list[EventRow], list_id: int, change: Change, position: int, head: int, now: float) -> int:
    """Append the log rows of one change, numbered from ``position + 1`` (as :func:`wire_events` numbers them).

    ``head`` is the position of the list's last event before them.  Returns
    the position of the change's last event: the list's new head.
    """
    tail = (now, change.origin.uid, change.origin.pid, change.target)
    for event in change.events:
        position += 1
        rows.append(
            (
                position,
                list_id,
                event.seq,
                change.seq,
                change.op,
                event.entry_id,
                _encode(event.before),
                _encode(event.after),
                *tail,
                head,
            )
        )
        head = position
    return position


def wire_events(position: int, now: float, batches: Iterable[tuple[str, Sequence[Change]]]) -> Iterator[dict[str, Any]]:
    """The wire form of a committed group's events, numbered as :func:`append_rows` numbered them."""
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
    position, name, seq, change, op, entry, before, after, when, uid, pid, target = row[:12]
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
    # Two plain queries rather than SQLite's two-argument max(): the
    # PostgreSQL store reads the log with these functions too.
    latest = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
    kept = conn.execute("SELECT last_position FROM log_meta").fetchone()[0]
    return max(int(latest), int(kept))


def horizon(conn: sqlite3.Connection) -> int:
    """The last position compaction dropped (0: none)."""
    return int(conn.execute("SELECT horizon FROM log_meta").fetchone()[0])


def read_events(conn: sqlite3.Connection, after: int, name: str | None, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` events after position ``after``, of one list or all, in position order."""
    query = f"SELECT {_COLUMNS} FROM events e JOIN lists l ON l.id = e.list_id WHERE e.position > ? "
    if name is None:
        rows = conn.execute(query + "ORDER BY e.position LIMIT ?", (after, limit)).fetchall()
    else:
        rows = conn.execute(
            query + "AND e.list_id = (SELECT id FROM lists WHERE name = ?) ORDER BY e.position LIMIT ?",
            (after, name, limit),
        ).fetchall()
    return [_wire(row) for row in rows]


def _walk(conn: sqlite3.Connection, head: int) -> Iterator[tuple[Any, ...]]:
    """A list's events from its head back, newest first (``_COLUMNS`` and then ``prev``).

    Stops at the list's first event, or at the compacted horizon (the first
    ``prev`` that names a dropped event).
    """
    position = head
    while position:
        row = conn.execute(
            f"SELECT {_COLUMNS}, e.prev FROM events e JOIN lists l ON l.id = e.list_id WHERE e.position = ?",
            (position,),
        ).fetchone()
        if row is None:
            return
        yield row
        position = row[12]


def _list_row(conn: sqlite3.Connection, name: str) -> tuple[int, int, int, int] | None:
    """A list's id, seq, head and horizon (base_seq)."""
    row = conn.execute("SELECT id, seq, head, base_seq FROM lists WHERE name = ?", (name,)).fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3])


def read_history(conn: sqlite3.Connection, name: str, limit: int | None) -> dict[str, Any]:
    """A list's events, oldest first (the last ``limit`` of them), and its horizon."""
    found = _list_row(conn, name)
    if found is None:
        return {"list": name, "horizon": 0, "base_entries": 0, "events": []}
    list_id, _seq, head, base_seq = found
    rows: list[tuple[Any, ...]] = []
    for row in _walk(conn, head):
        if limit is not None and len(rows) >= limit:
            break
        rows.append(row)
    base = conn.execute("SELECT count(*) FROM base_entries WHERE list_id = ?", (list_id,)).fetchone()[0]
    return {"list": name, "horizon": base_seq, "base_entries": base, "events": [_wire(r) for r in reversed(rows)]}


#: Positions of the log (every list's events) one history page scans at
#: most after its cursor: a list whose events are sparse among other lists'
#: gets short pages, even empty ones, with a cursor, but no page scans the
#: whole log.  100,000 rows are a few tens of ms of SQLite's time, without the GIL.
HISTORY_WINDOW = 100_000

#: A list's events walked back from its head (``?``: the head, then how many
#: at most), in SQLite: one primary-key lookup per event, with no Python in
#: between.  It stops at the list's first event or at the compacted horizon
#: (a ``prev`` that names a dropped event).
_CHAIN = """WITH RECURSIVE chain(position, prev, n) AS (
    SELECT position, prev, 1 FROM events WHERE position = ?
    UNION ALL
    SELECT e.position, e.prev, c.n + 1 FROM chain c JOIN events e ON e.position = c.prev WHERE c.n < ?
) """


@attrs.frozen
class HistoryPage:
    """One page of a list's history: its events' JSON texts, oldest first, and the position to go on after."""

    list: str
    horizon: int
    base_entries: int
    events: tuple[str, ...]
    next: int | None

    def to_json(self) -> str:
        """The page's result as JSON text (ASCII): ``next`` first, so a client can ask for more before decoding."""
        head = "null" if self.next is None else str(self.next)
        return (
            f'{{"next":{head},"list":{json.dumps(self.list)},"horizon":{self.horizon},'
            f'"base_entries":{self.base_entries},"events":[{",".join(self.events)}]}}'
        )


def read_history_page(
    conn: sqlite3.Connection, name: str, after: int | None, limit: int | None, page: int, max_bytes: int = 1 << 20
) -> HistoryPage:
    """One page of a list's events in position order, in the caller's read transaction.

    With ``after`` None, the read starts at the last ``limit`` events of the
    list (all of them when ``limit`` is None); else it goes on with the
    list's events after position ``after``.  A page ends at ``page`` events,
    before the event that would take its JSON past ``max_bytes`` (it holds
    at least one), or after :data:`HISTORY_WINDOW` positions of the log.

    Raises:
        Compacted: ``after`` is below the log's compacted horizon: events
            after it may be gone.
    """
    found = _list_row(conn, name)
    if found is None:
        return HistoryPage(name, 0, 0, (), None)
    list_id, _seq, head, base_seq = found
    base = conn.execute("SELECT count(*) FROM base_entries WHERE list_id = ?", (list_id,)).fetchone()[0]
    end = last_position(conn)
    select = f"SELECT {_COLUMNS} FROM "
    if after is None:
        start, count = conn.execute(
            _CHAIN + "SELECT min(position), count(*) FROM chain", (head, MAX_INT if limit is None else limit)
        ).fetchone()
        if not count:
            return HistoryPage(name, base_seq, base, (), None)
        if count <= page:
            # The whole tail in this page: its events straight from the chain.
            rows = conn.execute(
                _CHAIN + select + "chain c JOIN events e ON e.position = c.position "
                "JOIN lists l ON l.id = e.list_id ORDER BY e.position",
                (head, count),
            ).fetchall()
            texts, cut = _page_texts(rows, page, max_bytes)
            return HistoryPage(name, base_seq, base, texts, cut)
        after = start - 1
    elif horizon(conn) > after:
        raise Compacted(
            f"events after position {after} were compacted (the log starts after {horizon(conn)}); "
            "read the history again from the start"
        )
    stop = min(end, after + HISTORY_WINDOW)
    rows = conn.execute(
        select + "events e JOIN lists l ON l.id = e.list_id "
        "WHERE e.position > ? AND e.position <= ? AND e.list_id = ? ORDER BY e.position LIMIT ?",
        (after, stop, list_id, page + 1),
    ).fetchall()
    texts, cut = _page_texts(rows, page, max_bytes)
    if cut is None and stop < end:
        cut = stop  # the window ended before the log did
    return HistoryPage(name, base_seq, base, texts, cut)


def _entry_json(entry_id: int, text: str | None) -> str:
    """An event's entry text as the JSON of its wire form (``_decode_wire``'s), ASCII only."""
    if text is None:
        return "null"
    date, done, version, title, tags = _fields(text)
    return (
        f'{{"id":{entry_id},"date":"{date}","title":{encode_basestring_ascii(title)},'
        f'"done":{"true" if done else "false"},"version":{version},'
        f'"tags":[{",".join(map(encode_basestring_ascii, tags))}]}}'
    )


def _int_json(value: int | None) -> str:
    return "null" if value is None else str(value)


def _page_texts(rows: list[Any], page: int, max_bytes: int) -> tuple[tuple[str, ...], int | None]:
    """The JSON texts of up to ``page`` events and ``max_bytes``; and the last one's position if more are left.

    Each is the JSON of :func:`_wire`'s form (a test compares them), built
    directly: json.dumps of the dicts took half of a page's time, in a
    reader thread that holds the GIL meanwhile.
    """
    texts: list[str] = []
    size = 0
    times: dict[float, str] = {}  # the events of one transaction share their time
    for row in rows:
        if len(texts) >= page:
            return tuple(texts), rows[len(texts) - 1][0]
        position, name, seq, change, op, entry, before, after, when, uid, pid, target = row[:12]
        stamp = times.get(when)
        if stamp is None:
            stamp = times[when] = wire_time(when)
        text = (
            f'{{"position":{position},"list":{encode_basestring_ascii(name)},"seq":{seq},"change":{change},'
            f'"op":{encode_basestring_ascii(op)},"entry":{entry},"before":{_entry_json(entry, before)},'
            f'"after":{_entry_json(entry, after)},"time":"{stamp}","uid":{_int_json(uid)},'
            f'"pid":{_int_json(pid)},"target":{_int_json(target)}}}'
        )
        size += len(text) + 1
        if size > max_bytes and texts:
            return tuple(texts), rows[len(texts) - 1][0]
        texts.append(text)
    return tuple(texts), None


@attrs.frozen
class Plan:
    """What an undo or a redo of a list will revert, read at the list's ``head``.

    ``steps`` may be fewer than asked: ``at_horizon`` tells whether the log
    was cut short by compaction (or by a migration: entries older than the log).
    """

    head: int
    steps: tuple[Step, ...]
    at_horizon: bool


def _event(row: Sequence[Any]) -> Event:
    entry = row[5]
    return Event(row[2], entry, _decode(entry, row[6]), _decode(entry, row[7]))


def read_undo_plan(conn: sqlite3.Connection, name: str, steps: int) -> Plan:
    """The last ``steps`` changes of a list that are not undone, newest first."""
    found = _list_row(conn, name)
    if found is None:
        return Plan(0, (), False)
    list_id, seq, head, base_seq = found
    undone = {t for (t,) in conn.execute("SELECT target FROM undos WHERE list_id = ?", (list_id,))}
    plan: list[Step] = []
    events: list[Event] = []  # of the change being walked through, newest first
    for row in _walk(conn, head):
        events.append(_event(row))
        if row[2] != row[3]:
            continue  # not yet the change's first event
        change, op = row[3], row[4]
        if op in DO_OPS and change not in undone:
            plan.append(Step(change, tuple(reversed(events))))
            if len(plan) == steps:
                break
        events = []
    has_base = conn.execute("SELECT 1 FROM base_entries WHERE list_id = ? LIMIT 1", (list_id,)).fetchone()
    return Plan(seq, tuple(plan), base_seq > 0 or has_base is not None)


def read_redo_plan(conn: sqlite3.Connection, name: str, steps: int) -> Plan:
    """The last ``steps`` changes undone since the list's last new change, most recently undone first."""
    found = _list_row(conn, name)
    if found is None:
        return Plan(0, (), False)
    list_id, seq, head, _base_seq = found
    last_do = next((row[3] for row in _walk(conn, head) if row[2] == row[3] and row[4] in DO_OPS), 0)
    rows = conn.execute(
        "SELECT target, undone_by, undone_at FROM undos WHERE list_id = ? AND undone_by > ? "
        "ORDER BY undone_by DESC LIMIT ?",
        (list_id, last_do, steps),
    ).fetchall()
    # A redo reverts the undo's own events: it knows the versions the undo left.
    plan = tuple(Step(target, _events_at(conn, undone_by, undone_at)) for target, undone_by, undone_at in rows)
    return Plan(seq, plan, False)


def _events_at(conn: sqlite3.Connection, change: int, position: int) -> tuple[Event, ...]:
    """The events of a change from the position of its first: they are consecutive."""
    events: list[Event] = []
    for row in conn.execute(
        f"SELECT {_COLUMNS} FROM events e JOIN lists l ON l.id = e.list_id WHERE e.position >= ? ORDER BY e.position",
        (position,),
    ):
        if row[3] != change or (events and row[2] != events[-1].seq + 1):
            break
        events.append(_event(row))
    return tuple(events)


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
            date, done, version = entry.date.isoformat(), int(entry.done), entry.version
            puts.append((list_id, entry.id, date, entry.title, done, version, tags_column(entry)))
    conn.executemany("DELETE FROM base_entries WHERE list_id = ? AND id = ?", removes)
    conn.executemany(
        "INSERT OR REPLACE INTO base_entries (list_id, id, date, title, done, version, tags) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        puts,
    )
    conn.executemany(
        "UPDATE lists SET base_seq = ? WHERE id = ?",
        conn.execute("SELECT max(seq), list_id FROM events WHERE position <= ? GROUP BY list_id", (cut,)).fetchall(),
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
    names = dict(conn.execute("SELECT id, name FROM lists").fetchall())
    base: dict[int, list[Entry]] = {list_id: [] for list_id in names}
    for list_id, i, d, t, done, v, tags in conn.execute(
        "SELECT list_id, id, date, title, done, version, tags FROM base_entries"
    ):
        base[list_id].append(Entry(i, datetime.date.fromisoformat(d), t, bool(done), v, json.loads(tags)))
    events: dict[int, list[Event]] = {list_id: [] for list_id in names}
    for list_id, seq, entry, before, after in conn.execute(
        "SELECT list_id, seq, entry, before, after FROM events ORDER BY position"
    ):
        events[list_id].append(Event(seq, entry, _decode(entry, before), _decode(entry, after)))
    return {names[list_id]: replay(base[list_id], events[list_id]) for list_id in names}


def read_view(conn: sqlite3.Connection) -> dict[str, dict[int, Entry]]:
    """Every list as the entries table serves it."""
    result: dict[str, dict[int, Entry]] = {}
    for (name,) in conn.execute("SELECT name FROM lists").fetchall():
        result[name] = {}
    for name, i, d, t, done, v, tags in conn.execute(
        "SELECT l.name, e.id, e.date, e.title, e.done, e.version, e.tags FROM entries e "
        "JOIN lists l ON l.id = e.list_id"
    ):
        result[name][i] = Entry(i, datetime.date.fromisoformat(d), t, bool(done), v, json.loads(tags))
    return result
