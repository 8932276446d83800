"""Queries across lists (``find``), answered from the store's committed state.

A query reads SQLite through the store's read pool and never asks a list
server: a change is acknowledged only once its transaction is committed, so a
query sent after an acknowledgement sees that change, and a list's state in
SQLite is exactly what its server has acknowledged (docs/ARCHITECTURE.md).

The indexes behind a query:

- ``entries_pending`` and ``entries_done`` (partial: ``done = 0``, ``done =
  1``; each entry is in one of them) for the date range and the done
  filter, which are also the result's order (a query of both merges them);
- the search index (todod/_search.py, a database of its own, kept from the
  change log by the indexer): ``entry_tags``, one row per tag of an entry,
  and ``entry_text``, an FTS5 table with the trigram tokenizer over the
  titles.  A query uses them up to their watermark and checks the entries
  changed since (the log's tail) against their rows, so it answers from one
  snapshot however far behind the indexer is.  Where this SQLite has no
  FTS5 or no trigram tokenizer, or while the index is being built, a search
  scans the titles with ``LIKE`` and a tag filter reads the entries' ``tags``
  column instead (same answers, slower).

No trio here: these functions run in the store's worker threads.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import re
import sqlite3
import time
from collections.abc import Callable, Generator, Iterator
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

#: Schema step "the search index apart" (bench/write_cost.py measured why):
#: the tag and text indexes leave the store's file for the search index
#: (todod/_search.py), which the indexer keeps from the change log, off the
#: writer's transaction.  Their triggers, tables and the entries' ``text_id``
#: go; the FTS5 table ``entry_text`` goes here only where this SQLite has
#: FTS5 (it cannot be dropped without it), else at a later open that has it
#: (:func:`drop_old_text_table`).  Self-contained, so that a renumbering can
#: move it to another ``user_version``.
MIGRATION_SEARCH_APART: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    "DROP TRIGGER IF EXISTS entry_tags_insert",
    "DROP TRIGGER IF EXISTS entry_tags_delete",
    "DROP TRIGGER IF EXISTS entry_tags_update",
    "DROP TABLE IF EXISTS entry_tags",
    "DROP TRIGGER IF EXISTS entry_text_insert",
    "DROP TRIGGER IF EXISTS entry_text_delete",
    "DROP TRIGGER IF EXISTS entry_text_update",
    "DROP TABLE IF EXISTS entry_text_pending",
    "ALTER TABLE entries DROP COLUMN text_id",
    lambda conn: drop_old_text_table(conn),
)


def drop_old_text_table(conn: sqlite3.Connection) -> None:
    """Drop the text index that schema version 4 kept in the store's file, if it is there and FTS5 is."""
    if conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'entry_text'").fetchone() and fts_available(conn):
        conn.execute("DROP TABLE entry_text")


#: Schema step "one date index entry per entry" (version 7): version 4's
#: ``entries_by_date`` held every entry and ``entries_pending`` the pending
#: ones again, so each add or imported row paid two index inserts, the largest
#: part of an import's publish and of the indexes' cost on writes
#: (bench/write_cost.py, bench/import_parts.py).  Now the pending entries are
#: in ``entries_pending`` and the done ones in ``entries_done`` (``done`` is
#: 0 or 1, so each entry is in exactly one); a query of both merges the two in
#: date order (:func:`build_sql`).  Self-contained, so that a renumbering can
#: move it to another ``user_version``.
MIGRATION_DATE_INDEXES: tuple[str, ...] = (
    "DROP INDEX IF EXISTS entries_by_date",
    "CREATE INDEX entries_done ON entries (date) WHERE done = 1",
)

#: The query indexes left in the store's file, for the bench's "without indexes" run.
INDEX_OBJECTS: tuple[tuple[str, str], ...] = (
    ("INDEX", "entries_pending"),
    ("INDEX", "entries_done"),
)


def fts_available(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite has FTS5 with the trigram tokenizer."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.todod_fts_probe USING fts5(x, tokenize='trigram')")
    except sqlite3.OperationalError:
        return False
    conn.execute("DROP TABLE temp.todod_fts_probe")
    return True


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


#: A query whose index is more events than this behind scans instead: the
#: tail is checked entry by entry, and a scan is bounded by the table.
MAX_TAIL = 50_000

_TAIL = "SELECT t.list_id, t.entry_id FROM tail t JOIN entries x ON x.list_id = t.list_id AND x.id = t.entry_id WHERE "


def _like(column: str, word: str) -> tuple[str, str]:
    return f"todod_lower({column}) LIKE ? ESCAPE '\\'", "%" + re.sub(r"([\\%_])", r"\\\1", word) + "%"


@attrs.frozen
class Window:
    """A range of dates a windowed find reads at a time: ``date > low`` (``low_open``) or ``>= low``; ``date < high``
    or (``high_closed``) ``<= high``; None: no bound on that side."""

    low: str | None
    low_open: bool
    high: str | None
    high_closed: bool

    def terms(self, params: list[object], mark: str = "?", column: str = "e.date") -> list[str]:
        """The window's conditions on ``column``, its values appended to ``params``."""
        terms = []
        if self.low is not None:
            terms.append(f"{column} {'>' if self.low_open else '>='} {mark}")
            params.append(self.low)
        if self.high is not None:
            terms.append(f"{column} {'<=' if self.high_closed else '<'} {mark}")
            params.append(self.high)
        return terms


#: Probe(done, low, low_open, offset): the date of the entry ``offset`` places
#: on in that date index from ``low``, up to the query's last date; None if it
#: has fewer entries there.
Probe = Callable[[int, "str | None", bool, int], "str | None"]


def probe_sql(done: int, low: str | None, low_open: bool, end: str | None, mark: str = "?") -> tuple[str, list[object]]:
    """The SQL of a :data:`Probe` (both backends): an index-only read of one date index, ``offset`` last."""
    params: list[object] = []
    # done: a literal, the partial index's own condition.
    terms = [f"done = {done}", *Window(low, low_open, end, True).terms(params, mark, column="date")]
    return f"SELECT date FROM entries WHERE {' AND '.join(terms)} ORDER BY date LIMIT 1 OFFSET {mark}", params


def merged(query: FindQuery, text_driven: bool) -> bool:
    """Whether a find reads both date indexes and merges them (no done filter, and no text index driving it)."""
    return query.done is None and not text_driven


def windowed(query: FindQuery, text_driven: bool) -> bool:
    """Whether a merged find has a filter on rows, and so reads its date indexes a window at a time.

    The merge of the two halves needs each half's first match before it can
    give a row: a half with no match for a tag, a search or a list would be
    read to its end, where one index of every date stopped at the page's
    limit.  Windows of dates bound that read (:func:`date_windows`).
    """
    return merged(query, text_driven) and bool(query.tags or query.words or query.lists is not None)


def date_windows(probe: Probe, start: str | None, end: str | None, size: int) -> Iterator[Window]:
    """Successive, disjoint, ordered windows of dates from ``start`` (inclusive) on, up to ``end``.

    Each window ends at the date of the ``size``-th entry of the nearer half
    (so it holds at most ``size`` entries of one half, and of the other, on
    dates before that one), ``size`` doubling at each window; a window of one
    date holds a date whose entries are more than ``size``, and the last
    window has no upper bound.  So a window's read costs what the index of
    every date would have read over the same dates, at most twice over, and a
    half with no match is read only as far as the other half's ``size``-th entry.
    """
    low, low_open = start, False
    while True:
        highs = [h for h in (probe(0, low, low_open, size), probe(1, low, low_open, size)) if h is not None]
        if not highs:
            yield Window(low, low_open, None, False)
            return
        high = min(highs)
        if high == low:  # more than ``size`` entries on the window's first date: that date alone
            yield Window(low, low_open, high, True)
            low_open = True
        else:
            yield Window(low, low_open, high, False)
            low, low_open = high, False
        size *= 2


def build_sql(
    query: FindQuery, text_index: bool, watermark: int | None, window: Window | None = None
) -> tuple[str, list[object]]:
    """The SQL of a query and its parameters.

    Args:
        query: the checked query.
        text_index: whether the search index has its FTS5 table.
        watermark: the search index's watermark in the reader's snapshot
            (None: not to be used; searches and tags then read the entries).
        window: the dates a windowed find reads now (:func:`windowed`).
    """
    where: list[str] = []
    params: list[object] = []
    tail_params: list[object] = []
    long_words = [w for w in query.words if len(w) >= MIN_SUBSTRING]
    short_words = [w for w in query.words if len(w) < MIN_SUBSTRING]
    indexed = watermark is not None
    source = "entries e JOIN lists l ON l.id = e.list_id"
    driven = text_driven(query, text_index, watermark)
    if driven:
        # The text index drives the query (its matches are few next to the
        # entries, each then looked up by its key): its matches, but for the
        # entries changed since its watermark, whose current titles are checked instead.
        checks = [_like("x.title", w) for w in long_words]
        source = (
            "(SELECT rowid >> 32 AS list_id, rowid & 4294967295 AS entry_id FROM search.entry_text "
            "WHERE entry_text MATCH ? EXCEPT SELECT list_id, entry_id FROM tail UNION ALL "
            + _TAIL
            + " AND ".join(c for c, _ in checks)
            + ") AS m CROSS JOIN entries e ON e.list_id = m.list_id AND e.id = m.entry_id "
            "JOIN lists l ON l.id = e.list_id"
        )
        tail_params.append(" ".join('"' + w.replace('"', '""') + '"' for w in long_words))
        tail_params.extend(p for _, p in checks)
    else:
        for word in long_words:
            check, param = _like("e.title", word)
            where.append(check)
            params.append(param)
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
        # A literal, not a parameter: SQLite uses a partial index
        # (entries_pending, entries_done) only when the query's text implies its WHERE.
        where.append(f"e.done = {int(query.done)}")
    for tag in sorted(query.tags):
        if indexed:
            where.append(
                "(e.list_id, e.id) IN (SELECT list_id, entry_id FROM search.entry_tags WHERE tag = ? "
                "EXCEPT SELECT list_id, entry_id FROM tail UNION ALL "
                + _TAIL
                + "EXISTS (SELECT 1 FROM json_each(x.tags) WHERE value = ?))"
            )
            params.extend((tag, tag))
        else:
            where.append("EXISTS (SELECT 1 FROM json_each(e.tags) WHERE value = ?)")
            params.append(tag)
    if query.after is not None:
        where.extend(_after_terms(query.after, params))
    if window is not None:
        where.extend(window.terms(params))
    sql = ""
    if driven or (indexed and query.tags):
        sql = (
            "WITH tail (list_id, entry_id) AS MATERIALIZED "
            "(SELECT DISTINCT list_id, entry FROM events WHERE position > ?) "
        )
        tail_params.insert(0, watermark)
    select = f"SELECT l.name, e.id, e.date, e.title, e.done, e.version, e.tags FROM {source}"
    if merged(query, driven):
        # Each entry is in one date index, entries_pending or entries_done
        # (MIGRATION_DATE_INDEXES): a query of both reads each in date order,
        # and SQLite merges the two ordered halves (a compound ORDER BY), so
        # a page still stops at its limit without sorting the whole range.
        halves = [" WHERE " + " AND ".join([*where, f"e.done = {done}"]) for done in (0, 1)]
        sql += f"{select}{halves[0]} UNION ALL {select}{halves[1]} ORDER BY 3, 1, 2 LIMIT ?"
        params += params
    else:
        sql += select
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY e.date, l.name, e.id LIMIT ?"
    # One more than asked, to tell the caller whether there is more.
    params.append(query.limit + 1)
    return sql, tail_params + params


def text_driven(query: FindQuery, text_index: bool, watermark: int | None) -> bool:
    """Whether the text index drives a query (a search word of three characters or more, the index usable)."""
    return text_index and watermark is not None and any(len(w) >= MIN_SUBSTRING for w in query.words)


def start_date(query: FindQuery) -> str | None:
    """The first date a find (or its page) can give."""
    if query.after is not None:
        return query.after.date
    return None if query.date_from is None else query.date_from.isoformat()


def rows_by_window(
    execute: Callable[[str, list[object]], Any],
    query: FindQuery,
    build: Callable[[Window], tuple[str, list[object]]],
    mark: str = "?",
) -> Iterator[Any]:
    """A windowed find's rows, in order, one statement per window (both backends).

    ``execute(sql, params)`` runs a statement on the read's connection and
    returns its cursor; ``build(window)`` is the backend's find statement for
    a window; ``mark`` its parameter mark.
    """
    end = None if query.date_to is None else query.date_to.isoformat()

    def probe(done: int, low: str | None, low_open: bool, offset: int) -> str | None:
        sql, params = probe_sql(done, low, low_open, end, mark)
        row = execute(sql, [*params, offset]).fetchone()
        return None if row is None else str(row[0])

    for window in date_windows(probe, start_date(query), end, query.limit + 1):
        yield from execute(*build(window)).fetchall()


def run_rows(
    conn: sqlite3.Connection, query: FindQuery, text_index: bool, watermark: int | None
) -> Generator[Any, None, None]:
    """A query's rows on a read connection, in order: one statement, or a windowed find's one per window."""
    if windowed(query, text_driven(query, text_index, watermark)):
        yield from rows_by_window(conn.execute, query, lambda window: build_sql(query, text_index, watermark, window))
        return
    sql, params = build_sql(query, text_index, watermark)
    cursor = conn.execute(sql, params)
    try:
        yield from cursor
    finally:  # a page that stops early ends the statement before its read transaction
        cursor.close()


def read_watermark(conn: sqlite3.Connection) -> int | None:
    """The search index's watermark as a query may use it, in the read transaction begun on ``conn``.

    The index's snapshot is taken first (this reads only the index), then the
    store's file's, at a position at least as far; None if the index is
    being built, or its tail is compacted away or longer than :data:`MAX_TAIL`.
    """
    row = conn.execute("SELECT position FROM search.meta").fetchone()  # todod/_search.py's watermark
    if row is None or row[0] is None:
        return None
    mark = int(row[0])
    horizon, last = conn.execute(
        "SELECT horizon, max(last_position, coalesce((SELECT max(position) FROM events), 0)) FROM log_meta"
    ).fetchone()
    if mark < horizon or last - mark > MAX_TAIL:
        return None
    return mark


def query_watermark(conn: sqlite3.Connection, query: FindQuery, search_index: bool) -> int | None:
    """The search index's watermark for ``query`` (:func:`read_watermark`), if it has tags or words it could use."""
    wanted = query.tags or any(len(w) >= MIN_SUBSTRING for w in query.words)
    return read_watermark(conn) if search_index and wanted else None


@contextlib.contextmanager
def read_snapshot(conn: sqlite3.Connection, deadline: float) -> Iterator[None]:
    """One read transaction on ``conn``, one snapshot of each attached file, stopped at ``deadline``.

    SQLite calls the progress handler every 10,000 VM steps (well under a
    millisecond); once ``deadline`` (``time.monotonic``) has passed it stops
    the statement, which raises ``sqlite3.OperationalError`` ("interrupted").
    """

    def over_time() -> int:
        return int(time.monotonic() > deadline)

    conn.set_progress_handler(over_time, 10_000)
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")
        conn.set_progress_handler(None, 0)


def run_find(
    conn: sqlite3.Connection, query: FindQuery, text_index: bool, deadline: float, search_index: bool = False
) -> tuple[list[dict[str, Any]], bool]:
    """Run a query on a read connection; stop it at ``deadline`` (``time.monotonic``).

    ``search_index`` says whether the connection has the search index
    attached and kept (``text_index``: with its FTS5 table).

    Returns:
        The matching entries in their wire form with their ``list``, in
        date, list, id order, at most ``query.limit`` of them; and whether
        more matched.  The rows go straight to their wire form here, in the
        reader's thread: an :class:`Entry` per row, then its wire form on the
        event loop, cost more than the SQL for a few thousand rows.

    Raises:
        sqlite3.OperationalError: the deadline passed ("interrupted").
    """

    with read_snapshot(conn, deadline):
        mark = query_watermark(conn, query, search_index)
        rows = list(itertools.islice(run_rows(conn, query, text_index, mark), query.limit + 1))
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


#: The order of an entry's fields in a ``find`` page of rows: its list's
#: name, then an ``entries`` row's (todod/_pages.py, ROW_COLUMNS).
FIND_ROW_COLUMNS = ("list", "id", "date", "title", "done", "version", "tags")


@attrs.frozen
class FoundPage:
    """One page of a ``find``: its entries' JSON texts (with their ``list``) and the next page's cursor."""

    entries: tuple[str, ...]
    next: FindCursor | None


def run_find_page(
    conn: sqlite3.Connection,
    query: FindQuery,
    text_index: bool,
    deadline: float,
    max_bytes: int = MAX_PAGE_BYTES,
    search_index: bool = False,
    rows: bool = False,
) -> FoundPage:
    """One page of a query, on a read connection, in one read transaction; stop it at ``deadline``.

    ``search_index`` is as for :func:`run_find`; ``rows``: each entry as an
    array of :data:`FIND_ROW_COLUMNS` (``"form": "rows"``) rather than an object.

    A page ends at ``query.limit`` entries, or before the entry that would
    take its entries' JSON past ``max_bytes`` (it holds at least one).  The
    entries are encoded here, in the reader's thread, not on the event loop.

    Raises:
        sqlite3.OperationalError: the deadline passed ("interrupted").
        Compacted: the log was compacted past the read's start since its
            first page (the entries changed since could no longer be told).
    """

    with read_snapshot(conn, deadline):
        watermark = query_watermark(conn, query, search_index)
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
        cursor = run_rows(conn, query, text_index, watermark)
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
            if rows:
                text = (
                    f'[{encode_basestring_ascii(name)},{entry_id},"{date}",{encode_basestring_ascii(title)},'
                    f"{'true' if done else 'false'},{version},{tags}]"
                )
            else:
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
    if not more or last is None:
        return FoundPage(tuple(texts), None)
    return FoundPage(tuple(texts), FindCursor(start, last[0], last[1], last[2]))


def tags_column(entry: Entry) -> str:
    """The ``tags`` column of an entry: a JSON array, sorted (``'[]'`` for none)."""
    return json.dumps(entry.tags, separators=(",", ":")) if entry.tags else "[]"
