"""Queries across lists (``find``), answered from the store's committed state.

A query reads SQLite through the store's read pool and never asks a list
server: a change is acknowledged only once its transaction is committed, so a
query sent after an acknowledgement sees that change, and a list's state in
SQLite is exactly what its server has acknowledged (docs/ARCHITECTURE.md).

The indexes behind a query:

- ``entries_by_date`` and ``entries_pending`` (partial, ``done = 0``) for the
  date range and the done filter, which are also the result's order;
- ``entry_tags``, one row per tag of an entry, kept by triggers from the
  entries' ``tags`` column (a JSON array);
- ``entry_text``, an FTS5 table with the trigram tokenizer over the titles,
  an entry's row there being its ``text_id``, brought up to date at the end
  of each write transaction (see ``_TEXT_TABLES``).  Where this SQLite
  has no FTS5 or no trigram tokenizer, the triggers are left out and a search
  scans the titles with ``LIKE`` instead (same answers, slower).

No trio here: these functions run in the store's worker threads.
"""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
import time
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import attrs

from todod._model import Entry
from todod.protocol import MAX_FIND, MAX_INT, MAX_PAGE_BYTES, Compacted, Invalid

#: Schema step "tags and query indexes", self-contained so that a renumbering
#: can move it to another ``user_version``: the tags column (no entry loses
#: anything: every existing entry gets no tags), the date indexes and the tag
#: index with its triggers.  The text index depends on this SQLite's modules
#: and is checked at every open by :func:`ensure_text_index`.
MIGRATION_TAGS_AND_INDEXES: tuple[str, ...] = (
    "ALTER TABLE entries ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",
    # The entry's row in the text index, when there is one (see _TEXT_TABLES).
    "ALTER TABLE entries ADD COLUMN text_id INTEGER",
    "CREATE INDEX entries_by_date ON entries (date)",
    "CREATE INDEX entries_pending ON entries (date) WHERE done = 0",
    """CREATE TABLE entry_tags (
        tag TEXT NOT NULL,
        list_id INTEGER NOT NULL,
        entry_id INTEGER NOT NULL,
        PRIMARY KEY (tag, list_id, entry_id)
    ) WITHOUT ROWID""",
    """CREATE TRIGGER entry_tags_insert AFTER INSERT ON entries WHEN new.tags <> '[]' BEGIN
        INSERT INTO entry_tags (tag, list_id, entry_id) SELECT value, new.list_id, new.id FROM json_each(new.tags);
    END""",
    """CREATE TRIGGER entry_tags_delete AFTER DELETE ON entries WHEN old.tags <> '[]' BEGIN
        DELETE FROM entry_tags WHERE list_id = old.list_id AND entry_id = old.id
            AND tag IN (SELECT value FROM json_each(old.tags));
    END""",
    """CREATE TRIGGER entry_tags_update AFTER UPDATE OF tags ON entries WHEN old.tags IS NOT new.tags BEGIN
        DELETE FROM entry_tags WHERE list_id = old.list_id AND entry_id = old.id
            AND tag IN (SELECT value FROM json_each(old.tags));
        INSERT INTO entry_tags (tag, list_id, entry_id) SELECT value, new.list_id, new.id FROM json_each(new.tags);
    END""",
)

#: The text index: the titles in an FTS5 table (trigram tokenizer), whose
#: row for an entry is ``entries.text_id``, and the entries whose title
#: changed in the transaction being written.  The triggers only note a change
#: in ``entry_text_pending``; :func:`flush_text_index` brings the FTS table up
#: to date once, at the end of the same transaction.  An FTS5 insert made by a
#: trigger runs in a statement savepoint, at which FTS5 writes out its buffer:
#: a segment per row, 55-60 us a row of the writer's CPU here, against 13 us
#: for one INSERT ... SELECT per transaction.  For the same reason the FTS
#: rowids are the table's own, in insertion order, and not derived from the
#: entry's key: FTS5 also writes out its buffer whenever a rowid is not above
#: the last one (67 us a row in key order against 21 us in order).  The notes
#: are appended to a rowid table and the FTS row's id kept in the entry's own
#: row (already written in this transaction), so that the index adds no
#: B-tree keyed by entry, whose random pages each commit would write.
_TEXT_TABLES: tuple[str, ...] = (
    "CREATE VIRTUAL TABLE entry_text USING fts5(title, list_id UNINDEXED, entry_id UNINDEXED, tokenize='trigram')",
    """CREATE TABLE entry_text_pending (
        list_id INTEGER NOT NULL,
        entry_id INTEGER NOT NULL,
        old_text_id INTEGER
    )""",
)
_NOTE = "INSERT INTO entry_text_pending (list_id, entry_id, old_text_id) VALUES"
_TEXT_TRIGGERS: tuple[str, ...] = (
    f"CREATE TRIGGER entry_text_insert AFTER INSERT ON entries BEGIN {_NOTE} (new.list_id, new.id, NULL); END",
    f"CREATE TRIGGER entry_text_delete AFTER DELETE ON entries BEGIN {_NOTE} (old.list_id, old.id, old.text_id); END",
    "CREATE TRIGGER entry_text_update AFTER UPDATE OF title ON entries WHEN old.title IS NOT new.title "
    f"BEGIN {_NOTE} (new.list_id, new.id, old.text_id); END",
)
_NOTED = "(SELECT DISTINCT list_id, entry_id FROM entry_text_pending)"
#: Run in order at the end of each write transaction: the old rows of the
#: noted entries go, and their current titles (if they still exist) come in
#: with new rowids above every existing one.
_FLUSH_TEXT: tuple[str, ...] = (
    "DELETE FROM entry_text WHERE rowid IN (SELECT old_text_id FROM entry_text_pending WHERE old_text_id IS NOT NULL)",
    f"""UPDATE entries SET text_id = n.text_id FROM (
        SELECT list_id, entry_id,
            (SELECT coalesce(max(id), 0) FROM entry_text_content) + row_number() OVER (ORDER BY list_id, entry_id)
            AS text_id
        FROM {_NOTED}
    ) AS n WHERE entries.list_id = n.list_id AND entries.id = n.entry_id""",
    f"""INSERT INTO entry_text (rowid, title, list_id, entry_id)
        SELECT e.text_id, e.title, e.list_id, e.id FROM {_NOTED} AS p
        JOIN entries e ON e.list_id = p.list_id AND e.id = p.entry_id
        ORDER BY e.text_id""",
    "DELETE FROM entry_text_pending",
)


def flush_text_index(conn: sqlite3.Connection) -> None:
    """Index the titles noted in this transaction; call it before the commit, on the writer's connection."""
    if conn.execute("SELECT 1 FROM entry_text_pending LIMIT 1").fetchone() is None:
        return
    for statement in _FLUSH_TEXT:
        conn.execute(statement)


_TEXT_TRIGGER_NAMES = ("entry_text_insert", "entry_text_delete", "entry_text_update")

#: Every index object of the query step, for the bench's "without indexes" run.
INDEX_OBJECTS: tuple[tuple[str, str], ...] = (
    ("INDEX", "entries_by_date"),
    ("INDEX", "entries_pending"),
    ("TRIGGER", "entry_tags_insert"),
    ("TRIGGER", "entry_tags_delete"),
    ("TRIGGER", "entry_tags_update"),
    *(("TRIGGER", name) for name in _TEXT_TRIGGER_NAMES),
)


def fts_available(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite has FTS5 with the trigram tokenizer."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.todod_fts_probe USING fts5(x, tokenize='trigram')")
    except sqlite3.OperationalError:
        return False
    conn.execute("DROP TABLE temp.todod_fts_probe")
    return True


def ensure_text_index(conn: sqlite3.Connection, enabled: bool) -> bool:
    """Make the title index match this SQLite: built and kept by triggers, or dropped.

    Runs at every open, in its own transaction, on the writer's connection.
    When FTS5 is missing (or ``enabled`` is false) the triggers are dropped,
    so writes never need the module; the table, if any, is then stale, and is
    rebuilt from the entries the next time the index can be kept.

    Returns:
        Whether searches can use the index.
    """
    triggers = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name LIKE 'entry_text_%'"
        )
    }
    usable = enabled and fts_available(conn)
    if usable and triggers == set(_TEXT_TRIGGER_NAMES):
        return True
    conn.execute("BEGIN IMMEDIATE")
    try:
        for name in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        if usable:
            # Built afresh from the entries (FTS5 is there to drop the old table).
            for table in ("entry_text", "entry_text_pending"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in _TEXT_TABLES:
                conn.execute(statement)
            # Every entry noted as new: the flush gives each a row and an id.
            conn.execute("INSERT INTO entry_text_pending (list_id, entry_id) SELECT list_id, id FROM entries")
            flush_text_index(conn)
            for statement in _TEXT_TRIGGERS:
                conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return usable


def prepare_reader(conn: sqlite3.Connection) -> None:
    """Register the functions a fallback search needs on a read connection."""
    # SQLite's own lower() and LIKE fold ASCII only; Python's str.lower folds
    # like the trigram tokenizer does (É to é, but ß stays ß).
    conn.create_function("todod_lower", 1, _lower, deterministic=True)
    conn.create_function("todod_has_word", 2, _has_word, deterministic=True)


def _lower(text: str) -> str:
    return text.lower()


_WORD = re.compile(r"\w+")


def _has_word(title: str, word: str) -> bool:
    return word in _WORD.findall(title.lower())


@attrs.frozen
class FindQuery:
    """A checked ``find``: every filter is optional; ``None`` means no filter.

    ``words`` are the search's words, lower-cased; an entry matches if its
    title holds every one of them (a word of three characters or more
    anywhere, a shorter one as a whole word).
    """

    lists: frozenset[str] | None = None
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    done: bool | None = None
    tags: frozenset[str] = frozenset()
    words: tuple[str, ...] = ()
    limit: int = MAX_FIND
    #: Where a paged read goes on (None: its first page).
    after: FindCursor | None = None


@attrs.frozen
class FindCursor:
    """Where the next ``find`` page starts: after this (date, list, id), in a read that began at ``position``.

    On the wire it is ``"<position>.<date>.<id>.<list>"`` (the list name
    last: it may hold dots).  ``position`` is the change log's last position
    when the read's first page was read: a later page leaves out every entry
    with an event after it (added, changed or deleted since), so no entry is
    seen twice, and none that did not match then.
    """

    position: int
    date: str
    list: str
    id: int

    def to_wire(self) -> str:
        return f"{self.position}.{self.date}.{self.id}.{self.list}"

    @classmethod
    def from_wire(cls, text: str) -> FindCursor:
        """Parse a cursor; raises Invalid when it is not one that a ``find`` page gave."""
        parts = text.split(".", 3)
        if len(parts) == 4 and all(p.isascii() and p.isdigit() for p in (parts[0], parts[2])) and parts[3]:
            try:
                day = datetime.date.fromisoformat(parts[1])
            except ValueError:
                pass
            else:
                position, entry_id = int(parts[0]), int(parts[2])
                if position <= MAX_INT and entry_id <= MAX_INT and day.isoformat() == parts[1]:
                    return cls(position, parts[1], parts[3], entry_id)
        raise Invalid(f"not a 'find' cursor: {text[:60]!r} (pass the 'next' of the page before)")


#: Shorter words cannot use the trigram index (a trigram is three characters).
MIN_SUBSTRING = 3


def search_words(text: str) -> tuple[str, ...]:
    """The distinct words of a search text, lower-cased, in order."""
    return tuple(dict.fromkeys(text.lower().split()))


def build_sql(query: FindQuery, text_index: bool) -> tuple[str, list[object]]:
    """The SQL of a query and its parameters; ``text_index`` says whether FTS5 may be used."""
    where: list[str] = []
    params: list[object] = []
    long_words = [w for w in query.words if len(w) >= MIN_SUBSTRING]
    short_words = [w for w in query.words if len(w) < MIN_SUBSTRING]
    if long_words and text_index:
        # The text index drives the query: its matches are few next to the
        # entries, and each is then looked up by its key.
        source = (
            "entry_text t CROSS JOIN entries e ON e.list_id = t.list_id AND e.id = t.entry_id "
            "JOIN lists l ON l.id = e.list_id"
        )
        where.append("entry_text MATCH ?")
        params.append(" ".join('"' + w.replace('"', '""') + '"' for w in long_words))
    else:
        source = "entries e JOIN lists l ON l.id = e.list_id"
        for word in long_words:
            where.append("todod_lower(e.title) LIKE ? ESCAPE '\\'")
            params.append("%" + re.sub(r"([\\%_])", r"\\\1", word) + "%")
    for word in short_words:
        where.append("todod_has_word(e.title, ?)")
        params.append(word)
    if query.lists is not None:
        where.append(f"l.name IN ({', '.join('?' * len(query.lists))})")
        params.extend(sorted(query.lists))
    if query.date_from is not None:
        where.append("e.date >= ?")
        params.append(query.date_from.isoformat())
    if query.date_to is not None:
        where.append("e.date <= ?")
        params.append(query.date_to.isoformat())
    if query.done is not None:
        # A literal, not a parameter: SQLite uses the partial index
        # entries_pending only when the query's text implies done = 0.
        where.append(f"e.done = {int(query.done)}")
    for tag in sorted(query.tags):
        where.append("(e.list_id, e.id) IN (SELECT list_id, entry_id FROM entry_tags WHERE tag = ?)")
        params.append(tag)
    if query.after is not None:
        where.extend(_after_terms(query.after, params))
    sql = f"SELECT l.name, e.id, e.date, e.title, e.done, e.version, e.tags FROM {source}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY e.date, l.name, e.id LIMIT ?"
    # One more than asked, to tell the caller whether there is more.
    params.append(query.limit + 1)
    return sql, params


def run_find(
    conn: sqlite3.Connection, query: FindQuery, text_index: bool, deadline: float
) -> tuple[list[dict[str, Any]], bool]:
    """Run a query on a read connection; stop it at ``deadline`` (``time.monotonic``).

    Returns:
        The matching entries in their wire form with their ``list``, in
        date, list, id order, at most ``query.limit`` of them; and whether
        more matched.  The rows go straight to their wire form here, in the
        reader's thread: an :class:`Entry` per row, then its wire form on the
        event loop, cost more than the SQL for a few thousand rows.

    Raises:
        sqlite3.OperationalError: the deadline passed ("interrupted").
    """

    def over_time() -> int:
        return int(time.monotonic() > deadline)

    sql, params = build_sql(query, text_index)
    # The handler runs every 10,000 SQLite VM steps (well under a millisecond).
    conn.set_progress_handler(over_time, 10_000)
    try:
        rows = conn.execute(sql, params).fetchall()
    finally:
        conn.set_progress_handler(None, 0)
    more = len(rows) > query.limit
    del rows[query.limit :]
    # The same keys, in the same order, as Entry.to_wire, after "list"; the
    # stored tags are already sorted (tags_column).
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


def _after_terms(cursor: FindCursor, params: list[object]) -> list[str]:
    """The terms of a later page: after the cursor's key, and nothing written since the read began."""
    # (date, name, id) > the cursor's, spelled out so that the date index
    # still bounds the scan (e.date >= ?).
    params.extend((cursor.date, cursor.date, cursor.list, cursor.list, cursor.id, cursor.position))
    return [
        "e.date >= ?",
        "(e.date > ? OR l.name > ? OR (l.name = ? AND e.id > ?))",
        # The entries with an event since the read began: they were
        # added or changed (their key may have moved, past the cursor or
        # back before it), so each is left out rather than seen twice.
        "(e.list_id, e.id) NOT IN (SELECT list_id, entry FROM events WHERE position > ?)",
    ]


@attrs.frozen
class FoundPage:
    """One page of a ``find``: its entries' JSON texts (with their ``list``) and the next page's cursor."""

    entries: tuple[str, ...]
    next: FindCursor | None


def run_find_page(
    conn: sqlite3.Connection, query: FindQuery, text_index: bool, deadline: float, max_bytes: int = MAX_PAGE_BYTES
) -> FoundPage:
    """One page of a query, on a read connection, in one read transaction; stop it at ``deadline``.

    A page ends at ``query.limit`` entries, or before the entry that would
    take its entries' JSON past ``max_bytes`` (it holds at least one).  The
    entries are encoded here, in the reader's thread, not on the event loop.

    Raises:
        sqlite3.OperationalError: the deadline passed ("interrupted").
        Compacted: the log was compacted past the read's start since its
            first page (the entries changed since could no longer be told).
    """

    def over_time() -> int:
        return int(time.monotonic() > deadline)

    sql, params = build_sql(query, text_index)
    conn.set_progress_handler(over_time, 10_000)
    conn.execute("BEGIN")
    try:
        start, mark = conn.execute(
            "SELECT max(coalesce((SELECT max(position) FROM events), 0), last_position), horizon FROM log_meta"
        ).fetchone()
        if query.after is not None:
            if mark > query.after.position:
                raise Compacted(
                    f"the change log was compacted past position {query.after.position} during this read; "
                    "read again from the start"
                )
            start = query.after.position
        cursor = conn.execute(sql, params)
        texts: list[str] = []
        size = 0
        last: tuple[str, str, int] | None = None
        more = False
        for name, entry_id, date, title, done, version, tags in cursor:
            if len(texts) >= query.limit:
                more = True
                break
            if not tags.isascii():  # never, as tags_column writes them; but the line must stay ASCII
                tags = json.dumps(json.loads(tags), separators=(",", ":"))
            text = (
                f'{{"list":{encode_basestring_ascii(name)},"id":{entry_id},"date":"{date}",'
                f'"title":{encode_basestring_ascii(title)},"done":{"true" if done else "false"},'
                f'"version":{version},"tags":{tags}}}'
            )
            size += len(text) + 1
            if size > max_bytes and texts:
                more = True
                break
            texts.append(text)
            last = (date, name, entry_id)
        cursor.close()
    finally:
        conn.execute("COMMIT")
        conn.set_progress_handler(None, 0)
    if not more or last is None:
        return FoundPage(tuple(texts), None)
    return FoundPage(tuple(texts), FindCursor(start, last[0], last[1], last[2]))


def tags_column(entry: Entry) -> str:
    """The ``tags`` column of an entry: a JSON array, sorted (``'[]'`` for none)."""
    return json.dumps(entry.tags, separators=(",", ":")) if entry.tags else "[]"
