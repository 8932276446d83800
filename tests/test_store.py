"""The SQLite store: durability across reopen, refusal of foreign files, locking, group commit, failures."""

from __future__ import annotations

import datetime
import os
import sqlite3
import stat
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.changes import PutEntry, RemoveEntry
from tests.conftest import CommitGate
from tests.old_schemas import make_database
from todod._model import Entry, TodoList
from todod.store._sqlite import (
    APPLICATION_ID,
    DB_NAME,
    SCHEMA_VERSION,
    SQLiteStore,
    StoreError,
    StoreFaults,
    open_store,
)

DAY = datetime.date(2026, 2, 3)


@asynccontextmanager
async def running_store(data_dir: str, faults: StoreFaults | None = None) -> AsyncIterator[SQLiteStore]:
    """An open store with its writer running for the body's duration."""
    async with open_store(data_dir, faults=faults) as store, trio.open_nursery() as nursery:
        await nursery.start(store.run_writer)
        yield store
        nursery.cancel_scope.cancel()


def private_dir(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o700)
    return path


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


async def assert_refused_and_untouched(data: Path, match: str | None) -> None:
    """Opening the store in ``data`` fails with StoreError (matching ``match``) and leaves its file as it was."""
    db = data / DB_NAME
    before = snapshot(db)
    with pytest.raises(StoreError, match=match):
        async with open_store(str(data)):
            pytest.fail("a file that must be refused was opened")
    assert snapshot(db) == before


def modes(*paths: str) -> dict[str, int]:
    """The permission bits of those of ``paths`` that exist."""
    return {p: stat.S_IMODE(os.stat(p).st_mode) for p in paths if os.path.exists(p)}


def permission_bits_are_bypassed() -> bool:
    """Whether this process can write a 0400 file (root with CAP_DAC_OVERRIDE can)."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        probe.write_bytes(b"")
        probe.chmod(0o400)
        try:
            with probe.open("wb"):
                return True
        except PermissionError:
            return False


def set_modes(modes: dict[Path, int]) -> None:
    for path, mode in modes.items():
        path.chmod(mode)


# --- durability ---------------------------------------------------------------


async def test_reopen_keeps_lists_entries_flags_dates_and_next_id(data_dir: str) -> None:
    """After close and reopen the store loads the same lists, entries, done flags, dates and next_id."""
    todo = TodoList()
    changes = []
    for title in ("one", "two", "three"):
        todo, _, change = todo.add(DAY, title)
        changes.append(change)
    todo, _, change = todo.update(1, done=True, date=datetime.date(2030, 12, 31))
    changes.append(change)
    todo, _, change = todo.delete(3)  # the highest id: only next_id remembers it
    changes.append(change)
    async with running_store(data_dir) as store:
        await store.commit("work", todo.next_id, changes[:2])
        await store.commit("work", todo.next_id, changes[2:])
        other, _, change = TodoList().add(DAY, "milk")
        await store.commit("home", other.next_id, [change])

    async with open_store(data_dir) as store:
        assert await store.lists() == [("home", 1), ("work", 2)]
        loaded = await store.load("work")
        assert await store.load("never written") == TodoList()
    assert loaded == todo
    assert loaded.list_entries() == (
        Entry(1, datetime.date(2030, 12, 31), "one", done=True, version=2),
        Entry(2, DAY, "two", done=False),
    )
    assert loaded.next_id == 4, "the id of the deleted entry would be handed out again"


async def test_put_and_remove_of_one_id_in_one_batch_apply_in_order(data_dir: str) -> None:
    """A batch that puts, removes and puts back entries is applied in its own order."""
    changes = [
        PutEntry(Entry(1, DAY, "gone")),
        PutEntry(Entry(2, DAY, "back")),
        PutEntry(Entry(1, DAY, "gone", done=True)),
        RemoveEntry(1),
        RemoveEntry(2),
        PutEntry(Entry(2, DAY, "back", done=True)),
    ]
    async with running_store(data_dir) as store:
        await store.commit("l", 3, changes)
        assert (await store.load("l")).list_entries() == (Entry(2, DAY, "back", done=True),)


async def test_large_groups_of_many_lists_are_written_in_order(data_dir: str) -> None:
    """Big batches of many lists in one group, with an entry put twice in one run of puts: every row lands,
    the later put of an id wins, and each list keeps its own next id."""
    sizes = [1, 3, 64, 100, 1000, 1537]
    async with running_store(data_dir) as store:
        async with trio.open_nursery() as nursery:
            for size in sizes:
                changes = [PutEntry(Entry(i, DAY, f"{size}-{i}")) for i in range(1, size + 1)]
                changes.append(PutEntry(Entry(1, DAY, f"{size}-1", done=True)))  # same id again, same run
                nursery.start_soon(store.commit, f"list-{size}", size + 7, changes)
        for size in sizes:
            loaded = await store.load(f"list-{size}")
            assert loaded.next_id == size + 7
            assert [e.title for e in loaded.list_entries()] == [f"{size}-{i}" for i in range(1, size + 1)]
            assert [e.id for e in loaded.list_entries() if e.done] == [1]
        assert await store.integrity_check() == "ok"


async def test_file_and_directory_are_private_and_sound(data_dir: str) -> None:
    """The data directory is created 0700, the database file 0600, and integrity_check says ok."""
    async with running_store(data_dir) as store:
        await store.commit("l", 2, [PutEntry(Entry(1, DAY, "x"))])
        assert await store.integrity_check() == "ok"
        assert os.path.basename(store.path) == DB_NAME
        assert modes(data_dir, store.path) == {data_dir: 0o700, store.path: 0o600}
        # SQLite gives the -wal and -shm files the mode of the database file.
        assert set(modes(store.path + "-wal", store.path + "-shm").values()) <= {0o600}


# --- refusing what is not ours ------------------------------------------------------


async def test_foreign_sqlite_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    """An SQLite file with someone else's table and application_id 0 is refused and not modified."""
    data = private_dir(tmp_path / "data")
    db = data / DB_NAME
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    conn.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    conn.commit()
    conn.close()
    await assert_refused_and_untouched(data, "not a todod database")
    assert not (data / (DB_NAME + "-wal")).exists()


async def test_non_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    """A file that is not SQLite at all is refused with a StoreError and not modified."""
    data = private_dir(tmp_path / "data")
    db = data / DB_NAME
    db.write_bytes(b"these are my notes, not a database\n" * 200)
    await assert_refused_and_untouched(data, None)


async def test_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    """A todod database whose user_version is above ours is refused and not modified."""
    data = private_dir(tmp_path / "data")
    db = data / DB_NAME
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("CREATE TABLE lists_v2 (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    await assert_refused_and_untouched(data, "newer")


async def test_second_open_of_a_data_dir_is_refused_while_the_first_is_open(data_dir: str) -> None:
    """A data directory is locked while a store has it open, and free again once it is closed."""
    async with open_store(data_dir):
        with pytest.raises(StoreError, match="already using"):
            async with open_store(data_dir):
                pytest.fail("two stores opened one data directory")
    async with open_store(data_dir) as store:
        assert await store.integrity_check() == "ok"


async def test_data_dir_open_to_others_is_refused(tmp_path: Path) -> None:
    """A data directory other users can enter is refused rather than chmodded behind the user's back."""
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    with pytest.raises(StoreError, match="open to other users"):
        async with open_store(str(data)):
            pytest.fail("a world-readable data directory was used")
    assert stat.S_IMODE(data.stat().st_mode) == 0o755


@pytest.mark.skipif(
    permission_bits_are_bypassed(),
    reason="running as root with CAP_DAC_OVERRIDE: permission bits do not make a file read-only "
    "(the full-disk test covers a failing write instead)",
)
async def test_read_only_database_file_is_refused(data_dir: str) -> None:
    """A database file the daemon cannot write is refused at open with a StoreError, not half-used."""
    async with running_store(data_dir) as store:
        await store.commit("l", 2, [PutEntry(Entry(1, DAY, "x"))])
    db = Path(data_dir) / DB_NAME
    set_modes({db: 0o400, Path(data_dir): 0o500})
    try:
        before = snapshot(db)
        with pytest.raises(StoreError):
            async with open_store(data_dir):
                pytest.fail("a read-only database was opened for writing")
        assert snapshot(db) == before
    finally:
        set_modes({Path(data_dir): 0o700, db: 0o600})


# --- group commit and failures -------------------------------------------------------


async def test_batches_of_many_lists_share_one_transaction(data_dir: str, commit_gate: CommitGate) -> None:
    """Batches queued while a transaction runs are committed together in the next one."""
    async with running_store(data_dir, StoreFaults(before_commit=commit_gate)) as store:
        commit_gate.hold()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.commit, "first", 2, [PutEntry(Entry(1, DAY, "first"))])
            await commit_gate.entered.wait()
            for i in range(5):
                nursery.start_soon(store.commit, f"l{i}", 2, [PutEntry(Entry(1, DAY, f"t{i}"))])
            await trio.testing.wait_all_tasks_blocked()
            assert store.statistics().queued == 5
            commit_gate.release()
        stats = store.statistics()
        assert commit_gate.groups == [1, 5]
        assert (stats.commits, stats.batches, stats.max_group, stats.changes) == (2, 6, 5, 6)
        assert [name for name, _ in await store.lists()] == ["first", "l0", "l1", "l2", "l3", "l4"]


async def test_injected_commit_failure_keeps_nothing_and_later_commits_work(data_dir: str) -> None:
    """A transaction failing in before_commit raises StoreError (code unavailable) and keeps nothing."""
    fail = True

    def before_commit(group_size: int) -> None:
        if fail:
            raise OSError("injected I/O error")

    async with running_store(data_dir, StoreFaults(before_commit=before_commit)) as store:
        with pytest.raises(StoreError) as info:
            await store.commit("l", 2, [PutEntry(Entry(1, DAY, "lost"))])
        assert info.value.code == "unavailable"
        assert "injected I/O error" in info.value.message
        assert await store.load("l") == TodoList()
        assert await store.lists() == []
        fail = False
        await store.commit("l", 2, [PutEntry(Entry(1, DAY, "kept"))])
        assert (await store.load("l")).list_entries() == (Entry(1, DAY, "kept"),)
        stats = store.statistics()
        assert (stats.commits, stats.failed_commits) == (1, 1)


async def test_one_bad_batch_fails_its_group_and_leaves_no_stale_list_ids(
    data_dir: str, commit_gate: CommitGate
) -> None:
    """A constraint failure rolls back the whole group, including lists it created, and the store recovers."""
    async with running_store(data_dir, StoreFaults(before_commit=commit_gate)) as store:
        commit_gate.hold()
        results: dict[str, BaseException | None] = {}

        async def commit(name: str, next_id: int, entry_id: int) -> None:
            try:
                await store.commit(name, next_id, [PutEntry(Entry(entry_id, DAY, name))])
                results[name] = None
            except StoreError as exc:
                results[name] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(commit, "first", 2, 1)
            await commit_gate.entered.wait()
            nursery.start_soon(commit, "fresh", 2, 1)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(commit, "bad", 2, 0)  # entry id 0 breaks CHECK (id >= 1)
            await trio.testing.wait_all_tasks_blocked()
            commit_gate.release()
        assert results["first"] is None
        assert isinstance(results["fresh"], StoreError)
        assert isinstance(results["bad"], StoreError)
        assert [name for name, _ in await store.lists()] == ["first"]
        # "fresh" got a list id inside the failed transaction; reusing it would
        # break the foreign key or write into the wrong list.
        await store.commit("fresh", 2, [PutEntry(Entry(1, DAY, "fresh"))])
        assert await store.lists() == [("first", 1), ("fresh", 1)]
        assert await store.integrity_check() == "ok"


async def test_full_disk_fails_the_commit_with_a_clear_error_and_keeps_nothing(data_dir: str) -> None:
    """A real SQLITE_FULL (a page limit on the writer) gives a disk-full StoreError and a consistent file."""
    limit: int | None = None

    def before_commit(group_size: int) -> None:
        # Runs in the writer's thread, on the writer's own connection: the
        # closest stand-in for a full disk that works as root too.
        conn = store._writer_conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages if limit is None else limit}")

    async with running_store(data_dir, StoreFaults(before_commit=before_commit)) as store:
        limit = 1_000_000
        await store.commit("l", 2, [PutEntry(Entry(1, DAY, "before"))])
        limit = None
        big = [PutEntry(Entry(i, DAY, "x" * 1000)) for i in range(2, 200)]
        with pytest.raises(StoreError, match="full"):
            await store.commit("l", 200, big)
        assert (await store.load("l")).list_entries() == (Entry(1, DAY, "before"),)
        limit = 1_000_000
        await store.commit("l", 200, big)
        assert (await store.load("l")).size() == 199
        assert await store.integrity_check() == "ok"


async def test_loads_are_counted(data_dir: str) -> None:
    """Every load is counted in the store's statistics."""
    async with running_store(data_dir) as store:
        await store.load("a")
        await store.load("a")
        assert store.statistics().loads == 2


async def test_an_sqlite_too_old_for_the_schema_is_refused_with_a_clear_error(
    data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store needs INSERT ... RETURNING: an older SQLite is refused at open, not at the first new list."""
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(StoreError, match=r"needs SQLite 3\.35\.0 or newer; this Python uses 3\.31\.1"):
        async with open_store(data_dir):
            pass


async def test_migration_renames_lists_whose_names_are_not_stripped_or_visible(data_dir: str) -> None:
    """A version-2 store's lists named ' home', 'work ', blank or invisible become reachable names, entries kept."""
    names = {" home": "milk", "home": "bread", "work ": "report", "\u3164": "hidden", "  ": "blank", " x\t": "x"}
    conn = make_database(data_dir, 2)
    for list_id, (name, title) in enumerate(names.items(), 1):  # any name, as todod before issue 9 stored it
        conn.execute("INSERT INTO lists (id, name, next_id) VALUES (?, ?, 2)", (list_id, name))
        row = (list_id, DAY.isoformat(), title)
        conn.execute("INSERT INTO entries (list_id, id, date, title, done) VALUES (?, 1, ?, ?, 0)", row)
        conn.execute("INSERT INTO base_entries VALUES (?, 1, ?, ?, 0, 1)", row)
    conn.close()

    async with open_store(data_dir) as store:
        lists = dict(await store.lists())
        titles = {name: [e.title for e in (await store.load(name)).list_entries()] for name in lists}
    assert titles == {
        "home": ["bread"],  # the list that had the name keeps it
        "home (2)": ["milk"],  # ' home' would collide: kept apart, not merged
        "work": ["report"],
        "unnamed": ["hidden"],
        "unnamed (2)": ["blank"],
        "x": ["x"],
    }
    conn = sqlite3.connect(os.path.join(data_dir, DB_NAME))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    conn.close()
