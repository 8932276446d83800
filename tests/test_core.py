"""The core as a whole: no lost updates, durability, failing commits, the writer's supervision."""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Callable

import pytest
import trio
import trio.testing

from tests.conftest import SQLITE_ONLY, CommitGate
from todod._core import Core, CoreConfig, open_core
from todod._model import Change, Entry, Event
from todod._supervisor import SupervisorEscalation
from todod.protocol import Invalid, NotFound
from todod.store._sqlite import MAX_GROUP, StoreError, StoreFaults, open_store

DAY = datetime.date(2026, 2, 3)

# Every test here runs on both backends unless marked SQLITE_ONLY (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("on_backend")


def titles(entries: tuple[Entry, ...]) -> list[str]:
    return [e.title for e in entries]


async def test_concurrent_adds_to_one_list_lose_nothing(data_dir: str) -> None:
    """1,000 tasks adding to one list at once get ids 1..1000, each exactly once, also after reopening."""
    got: dict[str, int] = {}

    async def add(core: Core, i: int) -> None:
        entry = await core.add("shared", f"task {i}", DAY)
        got[entry.title] = entry.id

    async with open_core(data_dir) as core:
        async with trio.open_nursery() as nursery:
            for i in range(1000):
                nursery.start_soon(add, core, i)
        entries = await core.entries("shared")
    assert sorted(got.values()) == list(range(1, 1001)), "an id was lost or handed out twice"
    assert [e.id for e in entries] == list(range(1, 1001))
    assert {e.title: e.id for e in entries} == got

    async with open_store(data_dir) as store:
        reloaded = await store.load("shared")
    assert reloaded.list_entries() == entries
    assert reloaded.next_id == 1001


async def test_reopen_keeps_lists_entries_flags_dates_deletes_and_ids(data_dir: str) -> None:
    """Reopening the core keeps every list, entry, done flag, date and delete, and reuses no id."""
    later = datetime.date(2027, 1, 1)
    async with open_core(data_dir) as core:
        for title in ("one", "two", "three"):
            await core.add("work", title, DAY)
        await core.update("work", 1, done=True)
        await core.update("work", 2, title="two, renamed", date=later)
        await core.delete("work", 3)  # the highest id
        await core.add("home", "milk", DAY)
        work = await core.entries("work")

    assert work == (Entry(1, DAY, "one", done=True, version=2), Entry(2, later, "two, renamed", version=2))
    async with open_core(data_dir) as core:
        assert await core.lists() == [("home", 1), ("work", 2)]
        assert await core.entries("work") == work
        assert await core.entries("work", later) == (Entry(2, later, "two, renamed", version=2),)
        assert titles(await core.entries("home")) == ["milk"]
        four = await core.add("work", "four", DAY)
        assert four.id == 4, "the id of a deleted entry was handed out again"


async def test_requests_are_validated_before_they_reach_a_list(data_dir: str) -> None:
    """Bad titles and list names are Invalid and unknown ids NotFound; none of it changes the list."""
    async with open_core(data_dir) as core:
        with pytest.raises(Invalid):
            await core.add("l", "line\nbreak", DAY)
        with pytest.raises(Invalid):
            await core.add("a/b", "title", DAY)
        assert core.statistics().lists_loaded == 0, "an invalid request started a server"
        await core.add("l", "  padded  ", DAY)
        with pytest.raises(Invalid):
            await core.update("l", 1, title="   ")
        with pytest.raises(NotFound, match="no entry 7 in list 'l'"):
            await core.update("l", 7, done=True)
        with pytest.raises(NotFound):
            await core.delete("l", 7)
        assert await core.entries("l") == (Entry(1, DAY, "padded"),)
        assert await core.entries("empty") == ()


def injected_error(core_box: list[Core]) -> Callable[[int], None]:
    def before_commit(group_size: int) -> None:
        raise OSError("injected I/O error")

    return before_commit


def full_disk(core_box: list[Core]) -> Callable[[int], None]:
    def before_commit(group_size: int) -> None:
        # A real SQLITE_FULL, from the writer's own connection, in its thread:
        # it works as root, unlike a read-only file.
        conn = core_box[0].store._writer_conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")

    return before_commit


async def test_failed_commit_fails_its_callers_and_keeps_the_durable_state(data_dir: str) -> None:
    """A failed commit gives its callers StoreError, keeps the durable state, and later commits work."""
    await failed_commit(data_dir, injected_error)


@SQLITE_ONLY
async def test_a_full_disk_fails_its_callers_and_keeps_the_durable_state(data_dir: str) -> None:
    """A commit failing on a full disk (a real SQLITE_FULL) does as any failed commit does."""
    await failed_commit(data_dir, full_disk)


async def failed_commit(data_dir: str, failure: Callable[[list[Core]], Callable[[int], None]]) -> None:
    faults = StoreFaults()
    core_box: list[Core] = []
    async with open_core(data_dir, store_faults=faults) as core:
        core_box.append(core)
        await core.add("l", "durable", DAY)
        faults.before_commit = failure(core_box)
        errors: list[StoreError] = []

        async def add(i: int) -> None:
            try:
                await core.add("l", f"lost {i} " + "x" * 900, DAY)
            except StoreError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(add, i)
        assert len(errors) == 50
        assert {exc.code for exc in errors} == {"unavailable"}
        assert titles(await core.entries("l")) == ["durable"]
        assert core.statistics().failed_commits >= 1

        faults.before_commit = None
        if failure is full_disk:
            core.store._writer_conn.execute("PRAGMA max_page_count = 1073741823")
        assert (await core.add("l", "after", DAY)).id == 2
        assert titles(await core.entries("l")) == ["durable", "after"]
    async with open_store(data_dir) as store:
        assert titles((await store.load("l")).list_entries()) == ["durable", "after"]
        assert await store.integrity_check() == "ok"


async def test_a_crashed_writer_is_restarted_and_commits_keep_working(data_dir: str) -> None:
    """A crash of the writer task fails only its group; the supervisor restarts it and commits resume."""
    crashes_left = 1

    def writer_task() -> None:
        nonlocal crashes_left
        if crashes_left:
            crashes_left -= 1
            raise RuntimeError("injected writer crash")

    async with open_core(data_dir, store_faults=StoreFaults(writer_task=writer_task)) as core:
        with pytest.raises(StoreError, match="writer crashed") as info:
            await core.add("l", "lost", DAY)
        assert info.value.code == "unavailable"
        assert (await core.add("l", "kept", DAY)).id == 1
        assert core.supervisor.statistics().restarts == 1
        assert core.statistics().child_restarts == 1
        assert titles(await core.entries("l")) == ["kept"]


async def test_a_writer_crashing_too_often_escalates_out_of_open_core(
    data_dir: str, mock_clock: trio.testing.MockClock
) -> None:
    """More than 3 writer crashes in 5 s end open_core with a group holding SupervisorEscalation."""
    # The clock stands still: on a loaded machine four adds' round trips to
    # PostgreSQL took longer than the 5 s window in real time.

    def writer_task() -> None:
        raise RuntimeError("injected writer crash")

    failed = 0
    with pytest.RaisesGroup(
        pytest.RaisesExc(SupervisorEscalation, check=lambda exc: exc.child == "writer"),
        flatten_subgroups=True,
    ):
        # The indexer held, so that it never starts its process: stopping
        # that would be a wait for another process, which the check below
        # would take for the escalation's end.
        faults = StoreFaults(writer_task=writer_task, hold_indexer=trio.Event())
        async with open_core(data_dir, store_faults=faults) as core:
            for i in range(4):
                with pytest.raises(StoreError):
                    await core.add("l", f"t{i}", DAY)
                failed += 1
            # The escalation cancels this body.  Its clean-up may still be in
            # a worker thread (PostgreSQL's rollback is a round trip), which
            # wait_all_tasks_blocked counts as blocked: wait for the cancel
            # itself; once every task has waited 1 s of real time the clock
            # jumps, from deadline to deadline, up to this bound.
            mock_clock.autojump_threshold = 1.0
            with trio.move_on_after(60):
                await trio.sleep_forever()
            pytest.fail("the supervisor never escalated")
    assert failed >= 3


async def test_statistics_show_batching(data_dir: str) -> None:
    """After many concurrent adds the statistics show one load and fewer commits than requests."""
    async with open_core(data_dir) as core:
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(core.add, "l", f"t{i}", DAY)
        stats = core.statistics()
        assert stats.lists_loaded == 1
        assert stats.servers_running == 1
        assert 1 <= stats.commits < 200, "no batching: one commit per request"
        # One list has at most one batch in flight, so each commit holds one batch.
        assert stats.batches == stats.commits
        assert stats.max_group == 1
        assert stats.max_batch > 1
        assert stats.mean_batch == round(200 / stats.batches, 2)
        assert stats.failed_commits == stats.restarts == stats.quarantined == stats.child_restarts == 0
        assert stats.writer_queue == stats.mailbox_queued == 0
        assert 1 <= stats.mailbox_peak <= 200
        wire = json.loads(json.dumps(stats.to_wire()))
        assert wire["commits"] == stats.commits and wire["mean_batch"] == stats.mean_batch


# A mock clock jumps to the next deadline while a PostgreSQL read runs in its
# thread (the follower's is one every second): SQLite's threads keep it still.
@SQLITE_ONLY
async def test_escalation_does_not_wait_for_a_dead_writer_to_drain(
    data_dir: str, commit_gate: CommitGate, lazy_autojump_clock: trio.testing.MockClock
) -> None:
    """When the writer escalates with commits queued, open_core ends without waiting out drain_timeout."""
    # The indexer held: no thread but the writer's may run while the clock autojumps.
    faults = StoreFaults(before_commit=commit_gate, hold_indexer=trio.Event())
    # The first writer crash escalates.  The drain bound is far beyond every
    # other deadline (the idle reaper's 600 s, the hourly compaction): the
    # lazy autojump clock may jump to those while a worker thread runs (the
    # final checkpoint), but only waiting out the drain reaches 10**9 s.
    config = CoreConfig(max_restarts=0, drain_timeout=1e9)
    start = trio.current_time()
    with pytest.RaisesGroup(SupervisorEscalation, flatten_subgroups=True):
        async with open_core(data_dir, config, store_faults=faults) as core, trio.open_nursery() as nursery:
            first_done = trio.Event()

            async def first() -> None:
                await core.store.commit("first", 2, [an_add(Entry(1, DAY, "first"))])
                first_done.set()

            commit_gate.hold()
            nursery.start_soon(first)
            await commit_gate.entered.wait()
            # More than one group's worth, so some are still queued when the writer dies.
            for i in range(MAX_GROUP + 10):
                nursery.start_soon(commit_or_fail, core, f"l{i}")
            await trio.testing.wait_all_tasks_blocked()
            faults.writer_task = crash_writer
            commit_gate.release()
            await first_done.wait()
            # From here the writer takes its next group and crashes without a
            # thread or a timer: once every task waits, it has escalated.
            await trio.testing.wait_all_tasks_blocked()
            pytest.fail("the supervisor never escalated")
    assert trio.current_time() - start < 1e8, "shutdown waited for a writer that no longer runs"


async def commit_or_fail(core: Core, name: str) -> None:
    with contextlib.suppress(StoreError):
        await core.store.commit(name, 2, [an_add(Entry(1, DAY, name))])


def an_add(entry: Entry) -> Change:
    return Change("add", 1, (Event(1, entry.id, None, entry),))


def crash_writer() -> None:
    raise RuntimeError("injected writer crash")
