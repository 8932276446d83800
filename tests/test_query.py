"""Queries across lists: every filter of ``find``, their combinations, search with and without FTS5, migration."""

from __future__ import annotations

import datetime
import functools
import itertools
import os
import random
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from typing import Any

import pytest
import trio

from tests.conftest import SQLITE_ONLY
from tests.old_schemas import make_database
from todod import _query, _search
from todod._core import Core, open_core
from todod.protocol import BadRequest, Invalid, parse_request
from todod.store._sqlite import DB_NAME, SCHEMA_VERSION, open_store

D = datetime.date

# Every test here runs on both backends unless marked SQLITE_ONLY (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("on_backend")


@asynccontextmanager
async def core_with(data_dir: str, full_text: bool = True) -> AsyncIterator[Core]:
    async with open_core(data_dir, full_text=full_text) as core:
        yield core


async def seed(core: Core) -> None:
    """Six entries in three lists, over four dates, some done, some tagged."""
    await core.add("home", "Crème brûlée for the party", D(2026, 12, 3), tags=["party", "food"])
    await core.add("home", "Buy milk", D(2026, 11, 29), tags=["food"])
    await core.add("work", "Write the TV report", D(2026, 11, 30), tags=["work"])
    await core.add("work", "Fix the build", D(2026, 11, 29))
    await core.add("club", "Book the hall for the party", D(2026, 12, 1), tags=["party"])
    await core.add("club", "Straße fegen", D(2026, 12, 1))
    await core.update("home", 2, done=True)
    await core.update("work", 2, done=True)


async def keys(core: Core, **filters: Any) -> list[tuple[str, int]]:
    """The (list, id) found, once the search index holds every change (the tail's own tests are below)."""
    await core.store.wait_indexed()
    found, _more = await core.find(**filters)
    return [(entry["list"], entry["id"]) for entry in found]


@pytest.fixture(params=[True, False], ids=["fts5", "like-fallback"])
def full_text(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def test_find_without_filters_orders_by_date_then_list_then_id(data_dir: str, full_text: bool) -> None:
    """With no filter every entry comes back, ordered by date, then list name, then id."""
    async with core_with(data_dir, full_text) as core:
        await seed(core)
        assert await keys(core) == [
            ("home", 2),
            ("work", 2),
            ("work", 1),
            ("club", 1),
            ("club", 2),
            ("home", 1),
        ]


async def test_find_each_filter(data_dir: str, full_text: bool) -> None:
    """Each filter alone: lists (any of), from, to, pending, done, tags (all of), search, limit."""
    async with core_with(data_dir, full_text) as core:
        await seed(core)
        assert await keys(core, lists=["work"]) == [("work", 2), ("work", 1)]
        assert await keys(core, lists=["work", "club"]) == [("work", 2), ("work", 1), ("club", 1), ("club", 2)]
        assert await keys(core, lists=["nowhere"]) == []
        assert await keys(core, date_from=D(2026, 12, 1)) == [("club", 1), ("club", 2), ("home", 1)]
        assert await keys(core, date_to=D(2026, 11, 30)) == [("home", 2), ("work", 2), ("work", 1)]
        assert await keys(core, done=False) == [("work", 1), ("club", 1), ("club", 2), ("home", 1)]
        assert await keys(core, done=True) == [("home", 2), ("work", 2)]
        assert await keys(core, tags=["party"]) == [("club", 1), ("home", 1)]
        assert await keys(core, tags=["party", "food"]) == [("home", 1)]
        assert await keys(core, tags=["PARTY"]) == [("club", 1), ("home", 1)]
        assert await keys(core, tags=["nothing"]) == []
        assert await keys(core, search="party") == [("club", 1), ("home", 1)]
        found, more = await core.find(limit=2)
        assert [(e["list"], e["id"]) for e in found] == [("home", 2), ("work", 2)] and more
        found, more = await core.find(limit=6)
        assert len(found) == 6 and not more


async def test_find_combined_filters(data_dir: str, full_text: bool) -> None:
    """Filters combine with AND: range and pending, tag and list, search and tag and range."""
    async with core_with(data_dir, full_text) as core:
        await seed(core)
        assert await keys(core, done=False, date_to=D(2026, 12, 1)) == [("work", 1), ("club", 1), ("club", 2)]
        assert await keys(core, tags=["party"], lists=["home"]) == [("home", 1)]
        assert await keys(core, search="the", tags=["party"], date_to=D(2026, 12, 2)) == [("club", 1)]
        assert await keys(core, search="the", done=True) == [("work", 2)]
        assert await keys(core, search="the", done=False, lists=["work", "home"]) == [("work", 1), ("home", 1)]
        assert await keys(core, date_from=D(2026, 11, 30), date_to=D(2026, 11, 30)) == [("work", 1)]
        assert await keys(core, tags=["food"], done=False, search="brûlée", limit=1) == [("home", 1)]


async def test_search_is_case_insensitive_over_words_and_substrings(data_dir: str, full_text: bool) -> None:
    """A search matches every word in any case, Unicode too: 3+ characters as substrings, shorter as whole words."""
    async with core_with(data_dir, full_text) as core:
        await seed(core)
        assert await keys(core, search="BRÛLÉE") == [("home", 1)]
        assert await keys(core, search="rème") == [("home", 1)]
        assert await keys(core, search="STRASSE") == []  # folding is by case, not by spelling
        assert await keys(core, search="STRAßE") == [("club", 2)]
        assert await keys(core, search="tv report") == [("work", 1)]
        assert await keys(core, search="report tv") == [("work", 1)]
        assert await keys(core, search="tv milk") == []
        assert await keys(core, search="tv") == [("work", 1)]  # a short word matches as a whole word
        assert await keys(core, search="ix") == []  # ... but not inside "Fix"
        assert await keys(core, search="uil") == [("work", 2)]  # three characters match inside a word
        assert await keys(core, search='"the" 100%') == []  # quotes and LIKE's wildcards are plain text
        await core.add("odd", 'a "quoted" 100%_done title', D(2026, 12, 9))
        assert await keys(core, search='"quoted" 100%_') == [("odd", 1)]


async def test_find_sees_updates_deletes_and_tag_changes(data_dir: str, full_text: bool) -> None:
    """A retitle, a retag and a delete show in the next query: the indexes follow every committed change."""
    async with core_with(data_dir, full_text) as core:
        await seed(core)
        await core.update("work", 1, title="Present the slides", tag=["urgent"], untag=["work"])
        assert await keys(core, search="report") == []
        assert await keys(core, search="slides") == [("work", 1)]
        assert await keys(core, tags=["work"]) == []
        assert await keys(core, tags=["urgent"]) == [("work", 1)]
        await core.delete("home", 1)
        assert await keys(core, tags=["food"]) == [("home", 2)]
        assert await keys(core, search="brûlée") == []


async def test_find_reads_the_store_without_waking_list_servers(data_dir: str) -> None:
    """A query after an acknowledged add sees it, and starts no list server (it reads committed state)."""
    async with core_with(data_dir) as core:
        await core.add("a", "first", D(2026, 12, 1))
        loads = core.statistics().lists_loaded
        found, _ = await core.find(search="first")
        assert [e["title"] for e in found] == ["first"]
        await core.find(lists=["b", "c"])
        assert core.statistics().lists_loaded == loads


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"lists": ["a/b"]}, "'/'"),
        ({"lists": []}, "at least one list"),
        ({"tags": ["no spaces"]}, "one word"),
        ({"tags": [f"t{i}" for i in range(17)]}, "at most 16 tags"),
        ({"search": "   "}, "hold a word"),
        ({"search": "x" * 1001}, "at most 1000"),
        ({"limit": 0}, "a limit is 1 to 10000"),
        ({"limit": 10_001}, "a limit is 1 to 10000"),
        ({"date_from": D(2026, 12, 2), "date_to": D(2026, 12, 1)}, "range is empty"),
    ],
)
async def test_find_refuses_bad_filters(data_dir: str, filters: dict[str, Any], message: str) -> None:
    """A bad filter is invalid data with a message saying what is wrong."""
    async with core_with(data_dir) as core:
        with pytest.raises(Invalid, match=message):
            await core.find(**filters)


@SQLITE_ONLY
async def test_search_falls_back_to_like_where_fts5_is_missing(data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where SQLite has no FTS5 trigram tokenizer, the store keeps no text index and a search scans the titles."""
    monkeypatch.setattr(_query, "fts_available", lambda conn: False)
    async with core_with(data_dir) as core:
        assert not core.store.text_index
        await seed(core)
        assert await keys(core, search="BRÛLÉE") == [("home", 1)]
    conn = sqlite3.connect(os.path.join(data_dir, DB_NAME))
    triggers = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'trigger'")}
    conn.close()
    assert not {t for t in triggers if t.startswith("entry_text")}


@SQLITE_ONLY
async def test_text_index_is_rebuilt_after_writes_made_without_it(data_dir: str) -> None:
    """Entries written while the text index was off are found once it is back (it is rebuilt at open)."""
    async with core_with(data_dir) as core:
        await core.add("a", "kept in the index", D(2026, 12, 1))
    async with core_with(data_dir, full_text=False) as core:
        await core.add("a", "written without the index", D(2026, 12, 2))
        await core.update("a", 1, title="renamed without the index")
    async with core_with(data_dir) as core:
        assert core.store.text_index
        assert await keys(core, search="without") == [("a", 1), ("a", 2)]
        assert await keys(core, search="kept") == []
        await core.store.wait_indexed()
        assert index_rows(data_dir) == entry_rows(data_dir)


@SQLITE_ONLY
async def test_queries_use_the_indexes(data_dir: str) -> None:
    """The query plans use the pending, done, tag and text indexes rather than scanning the entries."""
    async with open_store(data_dir):
        pass
    conn = sqlite3.connect(os.path.join(data_dir, DB_NAME))
    _search.attach(conn, os.path.join(data_dir, DB_NAME))
    _query.prepare_reader(conn)

    def plan(query: _query.FindQuery) -> str:
        sql, params = _query.build_sql(query, text_index=True, watermark=0)
        return " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))

    assert "entries_pending" in plan(_query.FindQuery(done=False, date_to=D(2026, 12, 1)))
    assert "entries_done" in plan(_query.FindQuery(done=True, date_to=D(2026, 12, 1)))
    both = plan(_query.FindQuery(date_from=D(2026, 12, 1)))  # each half in its index, merged in order
    assert "entries_pending" in both and "entries_done" in both and "MERGE (UNION ALL)" in both, both
    assert "SCAN e" not in both, both
    assert "SCAN search.entry_text VIRTUAL TABLE INDEX 0:M" in plan(_query.FindQuery(words=("milk",)))
    assert "entry_tags" in plan(_query.FindQuery(tags=frozenset({"work"})))
    conn.close()


@SQLITE_ONLY
async def test_a_long_query_stops_at_its_deadline(data_dir: str) -> None:
    """A query or a page past its deadline is interrupted by SQLite's progress handler rather than holding a reader."""
    async with open_store(data_dir):
        pass
    conn = sqlite3.connect(os.path.join(data_dir, DB_NAME))
    conn.execute("INSERT INTO lists (id, name, next_id) VALUES (1, 'big', 50001)")
    conn.executemany(
        "INSERT INTO entries (list_id, id, date, title, done) VALUES (1, ?, '2026-12-01', ?, 0)",
        ((i, f"title {i}") for i in range(1, 50_001)),
    )
    conn.commit()
    _query.prepare_reader(conn)
    with pytest.raises(sqlite3.OperationalError, match="interrupted"):
        _query.run_find(conn, _query.FindQuery(words=("ti",)), False, time.monotonic() - 1)
    assert not conn.in_transaction  # the read's snapshot ended with it
    with pytest.raises(sqlite3.OperationalError, match="interrupted"):
        _query.run_find_page(conn, _query.FindQuery(words=("ti",)), False, time.monotonic() - 1)
    assert not conn.in_transaction
    found, more = _query.run_find(conn, _query.FindQuery(words=("title",), limit=3), False, time.monotonic() + 60)
    assert [e["id"] for e in found] == [1, 2, 3] and more
    conn.close()


# --- migration ----------------------------------------------------------------


V1_SCHEMA = (
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
)


def make_v1_database(data_dir: str) -> None:
    """A database of schema version 1, as the previous todod left it: two lists, a deleted id."""
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    conn = sqlite3.connect(os.path.join(data_dir, DB_NAME), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in V1_SCHEMA:
        conn.execute(statement)
    conn.execute("PRAGMA application_id = 1953457263")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO lists VALUES (1, 'home', 4), (2, 'work', 2)")
    conn.execute(
        "INSERT INTO entries VALUES (1, 1, '2026-11-20', 'Dentist', 0), (1, 3, '2026-12-24', 'Gifts', 1),"
        " (2, 1, '2026-11-25', 'Report', 0)"
    )
    conn.close()


@SQLITE_ONLY
async def test_migration_from_version_1_keeps_every_entry(data_dir: str) -> None:
    """A version 1 database opens at the current version, every entry and next id intact, untagged, searchable."""
    make_v1_database(data_dir)
    async with core_with(data_dir) as core:
        home = await core.entries("home")
        assert [(e.id, e.date, e.title, e.done, e.tags) for e in home] == [
            (1, D(2026, 11, 20), "Dentist", False, ()),
            (3, D(2026, 12, 24), "Gifts", True, ()),
        ]
        assert await keys(core, search="report") == [("work", 1)]
        assert await keys(core, done=False) == [("home", 1), ("work", 1)]
        added = await core.add("home", "New", D(2026, 12, 1), tags=["x"])
        assert added.id == 4  # next_id survived: a deleted id is not reused
        assert await keys(core, tags=["x"]) == [("home", 4)]
    conn = sqlite3.connect(os.path.join(data_dir, DB_NAME))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


# --- the wire -----------------------------------------------------------------


def test_find_request_fields_are_type_checked() -> None:
    """`find` takes arrays of strings for lists and tags; anything else there is a bad request."""
    request = parse_request(b'{"op":"find","lists":["a","b"],"tags":[],"done":false,"limit":3,"from":"2026-12-01"}')
    assert request.args == {"lists": ["a", "b"], "tags": [], "done": False, "limit": 3, "from": "2026-12-01"}
    bad_lines = (
        b'{"op":"find","tags":"work"}',
        b'{"op":"find","lists":[1]}',
        b'{"op":"add","list":"a","title":"t","tags":[null]}',
    )
    for bad in bad_lines:
        with pytest.raises(BadRequest, match="an array of strings"):
            parse_request(bad)
    with pytest.raises(BadRequest, match="has no field 'date'"):
        parse_request(b'{"op":"find","date":"2026-12-01"}')


async def test_find_entries_are_the_entries_wire_form_with_their_list(data_dir: str, full_text: bool) -> None:
    """Each entry found is exactly the entry's wire form (as `entries` gives it) with its list first."""
    async with core_with(data_dir, full_text) as core:
        await seed(core)
        found, _ = await core.find()
        for item in found:
            entries = await core.entries(item["list"])
            wire = next(e.to_wire() for e in entries if e.id == item["id"])
            assert item == {"list": item["list"], **wire}
            assert list(item) == ["list", *wire]


def entry_rows(data_dir: str) -> tuple[set[tuple[int, int, str]], set[tuple[str, int, int]]]:
    """The (list, id, title) of every entry and the (tag, list, id) of every tag of one, from the entries."""
    with closing(sqlite3.connect(os.path.join(data_dir, DB_NAME))) as conn:
        titles = set(conn.execute("SELECT list_id, id, title FROM entries"))
        tags = set(conn.execute("SELECT j.value, e.list_id, e.id FROM entries e, json_each(e.tags) j"))
    return titles, tags


def index_rows(data_dir: str) -> tuple[set[tuple[int, int, str]], set[tuple[str, int, int]]]:
    """The same, as the search index holds them."""
    with closing(sqlite3.connect(os.path.join(data_dir, _search.INDEX_NAME))) as conn:
        titles = set(conn.execute("SELECT rowid >> 32, rowid & 4294967295, title FROM entry_text"))
        tags = set(conn.execute("SELECT tag, list_id, entry_id FROM entry_tags"))
    return titles, tags


@SQLITE_ONLY
async def test_text_index_follows_a_batch_of_adds_retitles_and_deletes(data_dir: str) -> None:
    """Adds, retitles and deletes committed together leave the text index equal to the titles, nothing pending."""
    async with core_with(data_dir) as core:
        await seed(core)
        async with trio.open_nursery() as nursery:  # concurrent calls: batched and grouped by the store
            for n in range(30):
                nursery.start_soon(core.add, f"l{n % 4}", f"title {n}", D(2026, 12, 1))
        async with trio.open_nursery() as nursery:
            for n in range(1, 8):
                nursery.start_soon(functools.partial(core.update, "l1", n, title=f"renamed {n}"))
            for n in range(1, 8):
                nursery.start_soon(core.delete, "l2", n)
        await core.update("l3", 1, done=True)  # not a title change: nothing to index
        await core.update("l3", 2, tag=["new"], untag=["home"])
        await core.store.wait_indexed()
        assert index_rows(data_dir) == entry_rows(data_dir)
        assert await keys(core, search="renamed") == [("l1", n) for n in range(1, 8)]
        remaining = sorted(e.id for e in await core.entries("l2"))
        assert [i for _, i in await keys(core, lists=["l2"], search="title")] == remaining


async def test_find_follows_undo_redo_and_compaction(data_dir: str, full_text: bool) -> None:
    """The tag and text indexes follow the log's writes: an undone retitle, untag or delete is found again."""
    async with core_with(data_dir, full_text) as core:
        await core.add("l", "alpha report", D(2026, 12, 1), tags=["old"])
        await core.update("l", 1, title="beta memo", tag=["new"], untag=["old"])
        assert await keys(core, search="alpha") == [] and await keys(core, tags=["new"]) == [("l", 1)]
        await core.undo("l")
        assert await keys(core, search="alpha") == [("l", 1)] == await keys(core, tags=["old"])
        assert await keys(core, search="beta") == [] and await keys(core, tags=["new"]) == []
        await core.redo("l")
        assert await keys(core, search="beta memo", tags=["new"]) == [("l", 1)]
        await core.delete("l", 1)
        assert await keys(core, search="beta") == []
        await core.undo("l")
        assert await keys(core, search="beta", tags=["new"]) == [("l", 1)]
        await core.compact(keep_days=0)
        assert await keys(core, search="memo", tags=["new"]) == [("l", 1)]
    async with core_with(data_dir, full_text) as core:
        assert await keys(core, search="memo", tags=["new"]) == [("l", 1)]


#: A version 6 store's rows: (list id, id, date, title, done).
_V6_ENTRIES = ((1, 1, "2026-12-01", "Dentist", 0), (1, 2, "2026-12-01", "Milk", 1), (1, 3, "2026-11-30", "Tax", 1))


def _make_version_6(data_dir: str, store_uri: str | None) -> None:
    """A store at schema version 6 with one list, pending and done entries, and a staged import's row."""
    lists = "INSERT INTO lists (id, name, next_id) VALUES (1, 'home', 4)"
    entries = "INSERT INTO entries (list_id, id, date, title, done) VALUES (?, ?, ?, ?, ?)"
    staged = "INSERT INTO import_rows VALUES ('abc', 1, '2026-12-03', 'Half staged', 0, '[]', 'x')"
    if store_uri is None:
        conn = make_database(data_dir, 6)
        conn.execute(lists)
        conn.executemany(entries, _V6_ENTRIES)
        conn.execute(staged)
        conn.close()
        return
    import psycopg

    from todod.store import _pg_sql

    with psycopg.connect(store_uri, autocommit=True) as pg:
        pg.execute(
            "CREATE TABLE todod_schema (id INTEGER PRIMARY KEY, application TEXT NOT NULL, version INTEGER NOT NULL)"
        )
        pg.execute("INSERT INTO todod_schema VALUES (1, %s, 6)", (_pg_sql.APPLICATION,))
        for steps in _pg_sql.MIGRATIONS[:6]:
            for step in steps:
                pg.execute(step)
        pg.execute(lists)
        pg.cursor().executemany(entries.replace("?", "%s"), _V6_ENTRIES)


async def test_a_version_6_store_gets_one_date_index_entry_per_entry_and_keeps_every_entry(
    data_dir: str, store_uri: str | None
) -> None:
    """Migrating from version 6 replaces the all-dates index with the done one, and every query finds the same."""
    _make_version_6(data_dir, store_uri)
    async with open_core(data_dir) as core:
        assert await keys(core) == [("home", 3), ("home", 1), ("home", 2)]
        assert await keys(core, done=False) == [("home", 1)]
        assert await keys(core, done=True) == [("home", 3), ("home", 2)]
        assert await keys(core, date_from=D(2026, 12, 1)) == [("home", 1), ("home", 2)]
        await core.add("home", "Bread", D(2026, 11, 29))
        await core.update("home", 1, done=True)
        assert await keys(core, done=True) == [("home", 3), ("home", 1), ("home", 2)]
        assert await keys(core) == [("home", 4), ("home", 3), ("home", 1), ("home", 2)]
    if store_uri is None:
        with closing(sqlite3.connect(os.path.join(data_dir, DB_NAME))) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE tbl_name = 'entries'")}
            assert {"entries_pending", "entries_done"} <= names and "entries_by_date" not in names
            assert conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'import_rows'").fetchone() is None
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    else:
        import psycopg

        with psycopg.connect(store_uri) as pg:
            names = {row[0] for row in pg.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'entries'")}
            assert {"entries_pending", "entries_done"} <= names and "entries_by_date" not in names
            assert pg.execute("SELECT version FROM todod_schema").fetchone() == (7,)


@SQLITE_ONLY
@pytest.mark.parametrize("filters", [{"words": ("report",)}, {"words": ("ol",)}, {"lists": frozenset({"old"})}])
async def test_a_find_whose_matches_are_all_in_one_date_index_stops_near_its_limit(
    data_dir: str, filters: dict[str, Any]
) -> None:
    """A find of pending and done entries whose matches are all done reads about what the done ones alone cost."""
    async with open_store(data_dir):
        pass
    entries = 20_000
    conn = sqlite3.connect(os.path.join(data_dir, DB_NAME), isolation_level=None)
    _query.prepare_reader(conn)
    conn.execute("INSERT INTO lists (id, name, next_id) VALUES (1, 'old', ?), (2, 'new', 1)", (entries + 1,))
    half = entries // 2
    # The done half ("old ol report", list old) in the years 2000 to 2009, the pending half after it.
    conn.executemany(
        "INSERT INTO entries (list_id, id, date, title, done) VALUES (?, ?, ?, ?, ?)",
        (
            (
                1 if i <= half else 2,
                i,
                f"{2000 + i * 20 // entries}-01-{1 + i % 28:02d}",
                *(("old ol report", 1) if i <= half else ("task", 0)),
            )
            for i in range(1, entries + 1)
        ),
    )

    def steps(query: _query.FindQuery) -> tuple[int, list[Any]]:
        count = 0

        def tick() -> int:
            nonlocal count
            count += 1
            return 0

        conn.set_progress_handler(tick, 100)
        conn.execute("BEGIN")
        rows = list(itertools.islice(_query.run_rows(conn, query, text_index=False, watermark=None), query.limit + 1))
        conn.execute("COMMIT")
        conn.set_progress_handler(None, 0)
        return count, rows

    alone, done_rows = steps(_query.FindQuery(limit=20, done=True, **filters))
    both, rows = steps(_query.FindQuery(limit=20, **filters))
    assert rows == done_rows and len(rows) == 21
    assert both <= 3 * alone + 20, (both, alone)  # not a read of the 10,000 pending entries
    conn.close()


def test_date_windows_are_disjoint_ordered_and_cover_every_date_once() -> None:
    """The windows of a windowed find hold every entry's date exactly once, in order, whatever the dates' crowding."""
    rng = random.Random(3)
    for _ in range(200):
        halves = [sorted(f"2026-12-{rng.randrange(1, 9):02d}" for _ in range(rng.randrange(0, 40))) for _ in range(2)]
        start = rng.choice([None, "2026-12-03"])
        end = rng.choice([None, "2026-12-06"])

        def probe(
            done: int, low: str | None, low_open: bool, offset: int, halves: list[list[str]] = halves, end: Any = end
        ) -> str | None:
            dates = [
                d
                for d in halves[done]
                if (low is None or (d > low if low_open else d >= low)) and (end is None or d <= end)
            ]
            return dates[offset] if offset < len(dates) else None

        windows = list(_query.date_windows(probe, start, end, rng.randrange(1, 5)))
        assert windows[-1].high is None and all(w.high is not None for w in windows[:-1])

        def inside(window: _query.Window, d: str) -> bool:
            low_ok = window.low is None or (d > window.low if window.low_open else d >= window.low)
            high_ok = window.high is None or (d <= window.high if window.high_closed else d < window.high)
            return low_ok and high_ok

        wanted = [d for d in halves[0] + halves[1] if (start is None or d >= start) and (end is None or d <= end)]
        for d in wanted:
            assert [i for i, w in enumerate(windows) if inside(w, d)] != [], (d, windows)
            assert len([w for w in windows if inside(w, d)]) == 1, (d, windows)
        for earlier, later in itertools.pairwise(windows):
            assert earlier.high is not None and later.low == earlier.high
            assert later.low_open == earlier.high_closed
