"""The search index apart (todod/_search.py): kept behind the log, queries right whatever its lag, rebuilt when lost."""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import signal
import sqlite3
import sys
from contextlib import closing
from typing import Any

import pytest
import trio

from tests.old_schemas import make_database
from tests.test_query import entry_rows, index_rows, seed
from todod import _search
from todod._core import Core, open_core
from todod.store._sqlite import DB_NAME, SCHEMA_VERSION, StoreFaults

D = datetime.date


async def found(core: Core, **filters: Any) -> list[tuple[str, int]]:
    """The (list, id) found, without waiting for the search index."""
    entries, _more = await core.find(**filters)
    return [(entry["list"], entry["id"]) for entry in entries]


#: Queries whose answers must not depend on how far the index is.
QUERIES: tuple[dict[str, Any], ...] = (
    {"search": "party"},
    {"search": "PARTY hall"},
    {"search": "report"},
    {"search": "renamed"},
    {"tags": ["party"]},
    {"tags": ["food"]},
    {"tags": ["fresh"]},
    {"tags": ["party"], "search": "brûlée"},
    {"tags": ["food"], "done": False},
)


async def answers(core: Core) -> list[list[tuple[str, int]]]:
    return [await found(core, **query) for query in QUERIES]


async def changes(core: Core) -> None:
    """A retitle, a delete, a tag moved, an add: each one the index must follow."""
    await core.update("work", 1, title="Write the renamed report")
    await core.update("club", 1, title="Renamed: book nothing", untag=["party"], tag=["fresh"])
    await core.delete("home", 1)
    await core.add("club", "A party, renamed", D(2026, 12, 2), tags=["party", "food"])


async def test_queries_see_every_acknowledged_change_while_the_indexer_is_held(data_dir: str) -> None:
    """With the indexer stopped behind the log, searches and tag filters still answer as of the last commit."""
    faults = StoreFaults()
    async with open_core(data_dir, store_faults=faults) as core:
        await seed(core)
        await core.store.wait_indexed()
        indexed = core.store.indexed()
        faults.hold_indexer = trio.Event()
        await core.add("home", "Hold the party", D(2026, 12, 5), tags=["party"])
        await trio.testing.wait_all_tasks_blocked()  # the indexer takes its step or waits on the hold
        await changes(core)
        assert core.store.indexed() == indexed, "the indexer moved while held"
        behind = await answers(core)
        faults.hold_indexer.set()
        faults.hold_indexer = None
        await core.store.wait_indexed()
        assert await answers(core) == behind
        assert index_rows(data_dir) == entry_rows(data_dir)
    # The same answers from scans of the entries, with no index at all.
    async with open_core(data_dir, full_text=False, search_index=False) as core:
        assert await answers(core) == behind
        assert behind[3] == [("work", 1), ("club", 1), ("club", 3)]
        assert behind[6] == [("club", 1)] and ("home", 1) not in behind[5]


async def test_a_rebuild_in_chunks_while_writes_go_on_ends_equal_to_the_entries(
    data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild copies the entries a few at a time while changes commit, and then replays them: nothing is missed."""
    async with open_core(data_dir, full_text=False) as core:
        await seed(core)
        for n in range(20):
            await core.add(f"l{n % 3}", f"title {n}", D(2026, 12, 1), tags=["bulk"])
    monkeypatch.setattr(_search, "REBUILD_CHUNK", 3)
    async with open_core(data_dir) as core:  # the text table is new: the index is built again
        async with trio.open_nursery() as nursery:
            await changes(core)
            for n in range(1, 8):  # l1 has 7 entries, l2 6
                nursery.start_soon(functools.partial(core.update, "l1", n, title=f"renamed {n}", untag=["bulk"]))
                if n < 7:
                    nursery.start_soon(core.delete, "l2", n)
        await core.store.wait_indexed()
        assert index_rows(data_dir) == entry_rows(data_dir)
        assert await found(core, search="renamed", lists=["l1"]) == [("l1", n) for n in range(1, 8)]


async def test_a_lost_search_index_is_built_again_from_the_entries(data_dir: str) -> None:
    """A deleted search index file is created and filled again at the next open, and searches find everything."""
    async with open_core(data_dir) as core:
        await seed(core)
        await core.store.wait_indexed()
        expected = await answers(core)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(data_dir, _search.INDEX_NAME + suffix))
    async with open_core(data_dir) as core:
        assert await answers(core) == expected  # scans while it is being built
        await core.store.wait_indexed()
        assert await answers(core) == expected
        assert index_rows(data_dir) == entry_rows(data_dir)
    assert oct(os.stat(os.path.join(data_dir, _search.INDEX_NAME)).st_mode & 0o777) == "0o600"


async def test_an_unreadable_search_index_is_made_again(data_dir: str) -> None:
    """A search index file that is not a database is replaced at open and built again; nothing is lost."""
    async with open_core(data_dir) as core:
        await seed(core)
        await core.store.wait_indexed()
        expected = await answers(core)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(data_dir, _search.INDEX_NAME + suffix))
    with open(os.path.join(data_dir, _search.INDEX_NAME), "wb") as garbage:  # noqa: ASYNC230
        garbage.write(b"not a database " * 1000)
    async with open_core(data_dir) as core:
        await core.store.wait_indexed()
        assert await answers(core) == expected
        assert index_rows(data_dir) == entry_rows(data_dir)


async def test_an_index_behind_the_compacted_horizon_is_built_again(data_dir: str) -> None:
    """When compaction drops events the index still needed, queries scan and the indexer builds the index again."""
    faults = StoreFaults()
    async with open_core(data_dir, store_faults=faults) as core:
        await seed(core)
        await core.store.wait_indexed()
        faults.hold_indexer = trio.Event()
        await trio.testing.wait_all_tasks_blocked()
        await changes(core)
        behind = await answers(core)
        await core.compact(keep_days=0)  # every event, up to the last one
        assert await answers(core) == behind
        faults.hold_indexer.set()
        faults.hold_indexer = None
        await core.store.wait_indexed()
        assert await answers(core) == behind
        assert index_rows(data_dir) == entry_rows(data_dir)


async def test_migration_from_version_4_moves_the_indexes_out_of_the_store(data_dir: str) -> None:
    """A version 4 database loses its tag and text tables, triggers and text_id column, and its entries are found."""
    conn = make_database(data_dir, 4)
    # What schema version 4's open added: the text table, its notes and triggers.
    conn.execute(
        "CREATE VIRTUAL TABLE entry_text USING fts5(title, list_id UNINDEXED, entry_id UNINDEXED, tokenize='trigram')"
    )
    conn.execute("CREATE TABLE entry_text_pending (list_id INTEGER, entry_id INTEGER, old_text_id INTEGER)")
    conn.execute(
        "CREATE TRIGGER entry_text_insert AFTER INSERT ON entries BEGIN "
        "INSERT INTO entry_text_pending VALUES (new.list_id, new.id, NULL); END"
    )
    conn.execute("INSERT INTO lists (id, name, next_id) VALUES (1, 'home', 3)")
    conn.execute(
        "INSERT INTO entries (list_id, id, date, title, done, tags) VALUES "
        "(1, 1, '2026-12-01', 'Party hall', 0, '[\"party\"]'), (1, 2, '2026-12-02', 'Milk', 1, '[]')"
    )
    conn.close()
    async with open_core(data_dir) as core:
        await core.store.wait_indexed()
        assert await found(core, search="hall") == [("home", 1)] == await found(core, tags=["party"])
        assert [e.title for e in await core.entries("home")] == ["Party hall", "Milk"]
    with closing(sqlite3.connect(os.path.join(data_dir, DB_NAME))) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema")}
        assert not {n for n in names if n.startswith(("entry_text", "entry_tags"))}
        assert "text_id" not in {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_a_killed_indexer_process_is_started_again(data_dir: str) -> None:
    """A killed indexer process is replaced, and the index catches up with the changes made meanwhile."""
    async with open_core(data_dir) as core:
        await seed(core)
        await core.store.wait_indexed()
        child = core.store._child
        assert child is not None and child.pid is not None, "the indexer runs no process of its own"
        first = child.pid
        os.kill(first, signal.SIGKILL)
        await changes(core)
        with trio.fail_after(30):  # a new process, a second after the old one's death was seen
            await core.store.wait_indexed()
        assert child.pid not in (None, first)
        assert index_rows(data_dir) == entry_rows(data_dir)
        expected = await answers(core)
    async with open_core(data_dir, store_faults=StoreFaults(hold_indexer=trio.Event())) as core:
        assert await answers(core) == expected


async def test_the_indexer_process_ends_with_the_store(data_dir: str) -> None:
    """Once the store is closed its indexer's process is gone (reaped)."""
    async with open_core(data_dir) as core:
        await seed(core)
        await core.store.wait_indexed()
        child = core.store._child
        assert child is not None and child.pid is not None
        pid = child.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_an_indexer_process_that_cannot_start_gives_way_to_a_thread(
    data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no interpreter to start the indexer's process, the daemon keeps the search index in a thread instead."""
    monkeypatch.setattr(sys, "executable", os.path.join(data_dir, "no-such-python"))
    async with open_core(data_dir) as core:
        await seed(core)
        with trio.fail_after(30):
            await core.store.wait_indexed()
        assert core.store._child is None, "still waiting for a process that cannot start"
        assert index_rows(data_dir) == entry_rows(data_dir)
        await changes(core)
        with trio.fail_after(30):
            await core.store.wait_indexed()
        assert index_rows(data_dir) == entry_rows(data_dir)
