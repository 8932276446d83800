"""The PostgreSQL store's SQL: its schema and migrations, the writer's statements, ``find`` and compaction.

No trio here: these run in the store's worker threads (todod/store/_postgres.py),
which translates their errors.  Columns keep the SQLite backend's types (dates
as ISO text, done as 0 or 1, tags as a JSON array), so the change log's reads
in todod/_log.py serve both backends through :class:`Compat`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg

from todod import _log, _query
from todod.store._base import StoreError

log = logging.getLogger("todod.store")

#: 'todo' in ASCII, as the SQLite backend's application_id: marks the schema as ours.
APPLICATION = "todod"
#: The advisory lock key that serializes migrations of daemons starting at once.
MIGRATION_LOCK = 0x746F646F
#: The advisory lock key that makes compactions of several daemons take turns.
COMPACTION_LOCK = MIGRATION_LOCK + 1
#: The channel commits notify (a hint: the log is the data).
CHANNEL = "todod_log"

#: Schema migrations, with the SQLite backend's version numbers: version N is
#: reached by running MIGRATIONS[N-1].  Columns keep SQLite's types (dates as
#: ISO text, done as 0/1, tags as a JSON array), so the change log's reads
#: (todod/_log.py) serve both backends.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE lists (
            id BIGSERIAL PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            next_id BIGINT NOT NULL CHECK (next_id >= 1)
        )""",
        """CREATE TABLE entries (
            list_id BIGINT NOT NULL REFERENCES lists(id),
            id BIGINT NOT NULL CHECK (id >= 1),
            date TEXT NOT NULL,
            title TEXT NOT NULL,
            done INTEGER NOT NULL CHECK (done IN (0, 1)),
            PRIMARY KEY (list_id, id)
        )""",
    ),
    # Version 2: versions and the change log (see todod/_log.py for the columns).
    (
        "ALTER TABLE entries ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE lists ADD COLUMN seq BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE lists ADD COLUMN head BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE lists ADD COLUMN base_seq BIGINT NOT NULL DEFAULT 0",
        """CREATE TABLE base_entries (
            list_id BIGINT NOT NULL REFERENCES lists(id),
            id BIGINT NOT NULL,
            date TEXT NOT NULL,
            title TEXT NOT NULL,
            done INTEGER NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (list_id, id)
        )""",
        """CREATE TABLE events (
            position BIGINT PRIMARY KEY,
            list_id BIGINT NOT NULL REFERENCES lists(id),
            seq BIGINT NOT NULL,
            change BIGINT NOT NULL,
            op TEXT NOT NULL,
            entry BIGINT NOT NULL,
            before TEXT,
            after TEXT,
            time DOUBLE PRECISION NOT NULL,
            uid BIGINT,
            pid BIGINT,
            target BIGINT,
            prev BIGINT NOT NULL
        )""",
        """CREATE TABLE undos (
            list_id BIGINT NOT NULL REFERENCES lists(id),
            target BIGINT NOT NULL,
            undone_by BIGINT NOT NULL,
            undone_at BIGINT NOT NULL,
            PRIMARY KEY (list_id, target)
        )""",
        """CREATE TABLE log_meta (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            last_position BIGINT NOT NULL,
            horizon BIGINT NOT NULL
        )""",
        "INSERT INTO log_meta VALUES (1, 0, 0)",
    ),
    # Version 3 normalized the list names SQLite had stored unstripped; a
    # PostgreSQL database was only ever written by a todod that strips them.
    (),
    # Version 4: tags and the query indexes.  Tags are a JSON array in text,
    # as in SQLite; the tag filter uses a GIN index over it as jsonb.
    (
        "ALTER TABLE entries ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE base_entries ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",
        "CREATE INDEX entries_by_date ON entries (date)",
        "CREATE INDEX entries_pending ON entries (date) WHERE done = 0",
        "CREATE INDEX entries_tags ON entries USING gin ((tags::jsonb))",
    ),
    # Version 5 took SQLite's tag and text indexes out of its main file
    # (todod/_search.py); PostgreSQL's indexes above are its own, so nothing.
    (),
    # Version 6 (todod/_bulk.py): import staging, moves, the saga journal and
    # idempotency keys, in PostgreSQL's types.
    (
        """CREATE TABLE import_rows (
            import TEXT NOT NULL,
            n BIGINT NOT NULL,
            date TEXT NOT NULL,
            title TEXT NOT NULL,
            done INTEGER NOT NULL,
            tags TEXT NOT NULL,
            event TEXT NOT NULL,
            PRIMARY KEY (import, n)
        )""",
        """CREATE TABLE moves (
            list_id BIGINT NOT NULL,
            seq BIGINT NOT NULL,
            peer_list_id BIGINT NOT NULL,
            peer_seq BIGINT NOT NULL,
            PRIMARY KEY (list_id, seq)
        )""",
        """CREATE TABLE sagas (
            id TEXT PRIMARY KEY,
            list TEXT NOT NULL,
            entry BIGINT NOT NULL,
            version INTEGER NOT NULL,
            value TEXT NOT NULL,
            to_socket TEXT NOT NULL,
            to_list TEXT NOT NULL,
            state TEXT NOT NULL,
            to_entry BIGINT,
            message TEXT,
            created DOUBLE PRECISION NOT NULL,
            updated DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX sagas_open ON sagas (state) WHERE state IN ('started', 'compensating')",
        """CREATE TABLE received (
            key TEXT PRIMARY KEY,
            list TEXT NOT NULL,
            entry BIGINT NOT NULL,
            state TEXT NOT NULL,
            time DOUBLE PRECISION NOT NULL
        )""",
    ),
    # Version 7: one date index entry per entry, pending or done, as in
    # SQLite (todod/_query.py); a find of both merges the two (build_find).
    # PostgreSQL keeps staging imports in import_rows.
    (
        "DROP INDEX IF EXISTS entries_by_date",
        "CREATE INDEX entries_done ON entries (date) WHERE done = 1",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

#: An import's staged rows (todod/_bulk.py's ``StagedRow``), a batch in one
#: COPY: 3.65x the rows a second of an ``executemany`` of an INSERT, which
#: sends and steps each row apart (bench/pg_stage.py, 100,000 rows).
STAGE = "COPY import_rows (import, n, date, title, done, tags, event) FROM STDIN"

PUT = (
    "INSERT INTO entries (list_id, id, date, title, done, version, tags) VALUES (%s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (list_id, id) DO UPDATE SET date = excluded.date, title = excluded.title, "
    "done = excluded.done, version = excluded.version, tags = excluded.tags"
)
DELETE = "DELETE FROM entries WHERE list_id = %s AND id = %s"
INSERT_EVENT = (
    "INSERT INTO events (position, list_id, seq, change, op, entry, before, after, time, uid, pid, target, prev) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
INSERT_UNDO = (
    "INSERT INTO undos (list_id, target, undone_by, undone_at) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (list_id, target) DO UPDATE SET undone_by = excluded.undone_by, undone_at = excluded.undone_at"
)
DELETE_UNDO = "DELETE FROM undos WHERE list_id = %s AND target = %s"
LIST_COLUMNS = "id, name, seq, head"
#: A list's events after seq ``after``, newest first from its head, one
#: query: the chain of ``prev`` positions (todod/_log.py), at most ``limit``.
CHAIN = """WITH RECURSIVE chain (position, prev, seq, entry, after, n) AS (
        SELECT position, prev, seq, entry, after, 1 FROM events WHERE position = %(head)s AND seq > %(after)s
        UNION ALL
        SELECT e.position, e.prev, e.seq, e.entry, e.after, c.n + 1 FROM events e JOIN chain c ON e.position = c.prev
        WHERE e.seq > %(after)s AND c.n < %(limit)s
    ) SELECT seq, entry, after FROM chain ORDER BY seq"""


class Compat:
    """A psycopg connection with the sqlite3 calls todod/_log.py makes (``?`` placeholders)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.conn.execute(sql.replace("%", "%%").replace("?", "%s"), params)

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        self.conn.cursor().executemany(sql.replace("%", "%%").replace("?", "%s"), params)


def check_and_migrate(conn: psycopg.Connection[Any], where: str) -> None:
    """Create or migrate the schema; daemons starting at once take turns on an advisory lock."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS todod_schema ("
            "id INTEGER PRIMARY KEY CHECK (id = 1), application TEXT NOT NULL, version INTEGER NOT NULL)"
        )
        row = conn.execute("SELECT application, version FROM todod_schema").fetchone()
        if row is None:
            tables = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'todod_schema'"
            ).fetchone()
            if tables is not None and tables[0]:
                raise StoreError(f"{where} holds tables that are not todod's; refusing to touch it")
            conn.execute("INSERT INTO todod_schema VALUES (1, %s, 0)", (APPLICATION,))
            version = 0
        else:
            if row[0] != APPLICATION:
                raise StoreError(f"{where} is not a todod database ({row[0]!r}); refusing to touch it")
            version = int(row[1])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{where} has schema version {version}, newer than this todod knows ({SCHEMA_VERSION}); "
                "upgrade todod, it will not touch data it does not understand"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for step in MIGRATIONS[target - 1]:
                conn.execute(step)
            conn.execute("UPDATE todod_schema SET version = %s", (target,))
            log.info("migrated %s to schema version %d", where, target)


def ensure_text_index(conn: psycopg.Connection[Any], enabled: bool) -> bool:
    """A trigram index over the titles if pg_trgm can be had (else searches scan with LIKE)."""
    if not enabled:
        return False
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            conn.execute(
                "CREATE INDEX IF NOT EXISTS entries_title_trgm ON entries USING gin (lower(title) gin_trgm_ops)"
            )
    except psycopg.Error as exc:
        log.warning("no trigram index for searches (pg_trgm: %s); searches scan the titles", str(exc).strip())
        return False
    return True


def last_position(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT last_position FROM log_meta").fetchone()
    return int(row[0]) if row else 0


WORD_ONLY = re.compile(r"^\w+$")


def build_find(query: _query.FindQuery, window: _query.Window | None = None) -> tuple[str, list[object]]:
    """The PostgreSQL of a ``find`` and its parameters (the SQLite backend's :func:`todod._query.build_sql`).

    ``window``: the dates a windowed find reads now (:func:`todod._query.windowed`).
    """
    where: list[str] = []
    params: list[object] = []
    for word in query.words:
        if len(word) >= _query.MIN_SUBSTRING:
            # lower(title) LIKE is what the trigram index (entries_title_trgm) serves.
            where.append("lower(e.title) LIKE %s")
            params.append("%" + re.sub(r"([\\%_])", r"\\\1", word) + "%")
        elif WORD_ONLY.match(word):
            # A short word as a whole word, as the SQLite backend's todod_has_word.
            where.append("lower(e.title) ~ %s")
            params.append(r"(^|[^[:alnum:]_])" + re.escape(word) + r"([^[:alnum:]_]|$)")
        else:
            where.append("FALSE")
    if query.lists is not None:
        where.append("l.name = ANY(%s)")
        params.append(sorted(query.lists))
    if query.date_from is not None:
        where.append("e.date >= %s")
        params.append(query.date_from.isoformat())
    if query.date_to is not None:
        where.append("e.date <= %s")
        params.append(query.date_to.isoformat())
    if query.done is not None:
        where.append(f"e.done = {int(query.done)}")
    for tag in sorted(query.tags):
        where.append("e.tags::jsonb @> %s::jsonb")
        params.append(json.dumps([tag]))
    if query.after is not None:
        # A later page (todod/_query.py's _after_terms): after the cursor's
        # key, and none of the entries with an event since the read began.
        after = query.after
        where += [
            "e.date >= %s",
            '(e.date > %s OR l.name COLLATE "C" > %s OR (l.name = %s AND e.id > %s))',
            "(e.list_id, e.id) NOT IN (SELECT list_id, entry FROM events WHERE position > %s)",
        ]
        params += [after.date, after.date, after.list, after.list, after.id, after.position]
    if window is not None:
        where += window.terms(params, "%s")
    # The names in the order of "C" (bytes), as SQLite's; the output column
    # carries it, so that a UNION's ORDER BY (output columns only) has it too.
    select = (
        'SELECT l.name COLLATE "C" AS name, e.id, e.date, e.title, e.done, e.version, e.tags '
        "FROM entries e JOIN lists l ON l.id = e.list_id"
    )
    order = " ORDER BY date, name, id LIMIT %s"
    if _query.merged(query, text_driven=False):
        # Each entry is in one date index, entries_pending or entries_done:
        # each half reads its own in date order up to the limit, and the
        # union sorts at most twice the limit.
        halves = [f"({select} WHERE {' AND '.join([*where, f'e.done = {done}'])}{order})" for done in (0, 1)]
        sql = f"{halves[0]} UNION ALL {halves[1]}{order}"
        params = [*params, query.limit + 1, *params, query.limit + 1]
    else:
        sql = select + (" WHERE " + " AND ".join(where) if where else "") + order
    params.append(query.limit + 1)
    return sql, params


def find_rows(conn: psycopg.Connection[Any], query: _query.FindQuery) -> Iterator[Any]:
    """A find's rows, in order: one statement, or a windowed find's one per window (as SQLite's ``run_rows``)."""
    if _query.windowed(query, text_driven=False):
        yield from _query.rows_by_window(conn.execute, query, lambda window: build_find(query, window), "%s")
    else:
        yield from conn.execute(*build_find(query))


def compact(conn: psycopg.Connection[Any], before: float) -> _log.Compaction:
    """The log's compaction (todod/_log.py's, in PostgreSQL's SQL), in chunks of :data:`_log.COMPACT_CHUNK`."""
    dropped = 0
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (COMPACTION_LOCK,))
            mark = int(conn.execute("SELECT horizon FROM log_meta").fetchone()[0])  # type: ignore[index]
            row = conn.execute(
                "SELECT position, list_id, change FROM events WHERE position > %s AND time < %s "
                "ORDER BY position LIMIT 1 OFFSET %s",
                (mark, before, _log.COMPACT_CHUNK - 1),
            ).fetchone()
            if row is None:
                row = conn.execute(
                    "SELECT position, list_id, change FROM events WHERE time < %s ORDER BY position DESC LIMIT 1",
                    (before,),
                ).fetchone()
            if row is None:
                return _log.Compaction(dropped, mark)
            cut = conn.execute(
                "SELECT max(position) FROM events WHERE list_id = %s AND change = %s", (row[1], row[2])
            ).fetchone()[0]  # type: ignore[index]
            rows = conn.execute(
                "SELECT DISTINCT ON (list_id, entry) list_id, entry, after FROM events WHERE position <= %s "
                "ORDER BY list_id, entry, position DESC",
                (cut,),
            ).fetchall()
            puts, removes = [], []
            for list_id, entry_id, after in rows:
                entry = _log._decode(entry_id, after)
                if entry is None:
                    removes.append((list_id, entry_id))
                else:
                    date, done, version = entry.date.isoformat(), int(entry.done), entry.version
                    puts.append((list_id, entry.id, date, entry.title, done, version, _query.tags_column(entry)))
            cur = conn.cursor()
            if removes:
                cur.executemany("DELETE FROM base_entries WHERE list_id = %s AND id = %s", removes)
            if puts:
                cur.executemany(
                    "INSERT INTO base_entries (list_id, id, date, title, done, version, tags) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (list_id, id) DO UPDATE SET "
                    "date = excluded.date, title = excluded.title, done = excluded.done, "
                    "version = excluded.version, tags = excluded.tags",
                    puts,
                )
            conn.execute(
                "UPDATE lists l SET base_seq = m.seq FROM (SELECT list_id, max(seq) AS seq FROM events "
                "WHERE position <= %s GROUP BY list_id) m WHERE l.id = m.list_id",
                (cut,),
            )
            conn.execute(
                "DELETE FROM undos u USING lists l WHERE l.id = u.list_id "
                "AND (u.target <= l.base_seq OR u.undone_by <= l.base_seq)"
            )
            conn.execute("UPDATE log_meta SET horizon = %s", (cut,))
            dropped += conn.execute("DELETE FROM events WHERE position <= %s", (cut,)).rowcount
