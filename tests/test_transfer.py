"""Moves within a daemon and imports, in process: atomic, never deadlocked, one change each in the log."""

from __future__ import annotations

import datetime
import os
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import SQLITE_ONLY, CommitGate
from todod import _imports
from todod._core import Core, open_core
from todod._imports import IDLE_TIMEOUT, check_row, check_rows
from todod._model import NOBODY, Entry
from todod.protocol import Conflict, Invalid, NotFound, TodoError
from todod.store import StoreFaults

DAY = datetime.date(2026, 2, 3)

# Every test here runs on both backends (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("on_backend")


async def consistent(core: Core) -> dict[str, dict[int, Entry]]:
    """The lists as the entries table holds them, after checking that the log rebuilds exactly them."""
    rebuilt, view = await core.store.rebuild_and_view()
    assert rebuilt == view, "the change log and the entries are out of step"
    return view


async def test_move_gives_the_next_id_of_the_destination_and_keeps_the_values(data_dir: str) -> None:
    """A move removes the entry from the source and adds it, done mark and tags kept, as the destination's next id."""
    async with open_core(data_dir) as core:
        await core.add("home", "Dentist", DAY, tags=["health"])
        await core.update("home", 1, done=True)
        await core.add("work", "Report", DAY)
        result = await core.move("home", 1, "work")
        assert result["from"] == {"list": "home", "id": 1}
        assert result["to"] == {"list": "work", "id": 2}
        assert await core.entries("home") == ()
        moved = (await core.entries("work"))[1]
        assert (moved.id, moved.title, moved.done, moved.tags, moved.version) == (2, "Dentist", True, ("health",), 1)
        history = await core.history("work")
        assert history["events"][-1]["op"] == "move"
        assert (await core.history("home"))["events"][-1]["op"] == "move"
        await consistent(core)


async def test_move_refuses_a_missing_entry_a_stale_version_and_one_list(data_dir: str) -> None:
    """A move of a missing entry, with a stale if_version, or to its own list changes nothing."""
    async with open_core(data_dir) as core:
        await core.add("home", "Dentist", DAY)
        with pytest.raises(NotFound, match="no entry 9 in list 'home'"):
            await core.move("home", 9, "work")
        with pytest.raises(Conflict):
            await core.move("home", 1, "work", if_version=7)
        with pytest.raises(Invalid):
            await core.move("home", 1, " home ")
        assert [e.title for e in await core.entries("home")] == ["Dentist"]
        assert await core.entries("work") == ()


async def test_concurrent_moves_in_both_directions_finish_and_lose_nothing(data_dir: str) -> None:
    """1,000 concurrent moves between two lists, half each way, all finish; every entry is in exactly one list."""
    rng = random.Random(14)
    async with open_core(data_dir) as core:
        for i in range(500):
            await core.add("a", f"a{i}", DAY)
            await core.add("b", f"b{i}", DAY)
        outcomes: list[str] = []

        async def mover(src: str, dst: str, entry_id: int) -> None:
            try:
                await core.move(src, entry_id, dst)
                outcomes.append("moved")
            except NotFound:
                outcomes.append("gone")  # moved away by an earlier move: not an error of the design

        async with trio.open_nursery() as nursery:
            for i in range(1, 501):
                nursery.start_soon(mover, "a", "b", i)
                nursery.start_soon(mover, "b", "a", rng.randint(1, 500))
        assert len(outcomes) == 1000
        view = await consistent(core)
        titles = sorted(e.title for entries in view.values() for e in entries.values())
        assert titles == sorted([f"a{i}" for i in range(500)] + [f"b{i}" for i in range(500)])
    assert outcomes.count("moved") >= 500


async def test_undo_of_a_move_on_either_list_puts_it_back(data_dir: str) -> None:
    """An undo on the destination, or on the source, takes the whole move back; a redo of it is refused."""
    async with open_core(data_dir) as core:
        await core.add("home", "Dentist", DAY)
        await core.move("home", 1, "work")
        await core.undo("work")
        assert [(e.id, e.title) for e in await core.entries("home")] == [(1, "Dentist")]
        assert await core.entries("work") == ()
        with pytest.raises(Conflict, match="not redone"):
            await core.redo("home")
        await core.move("home", 1, "work")
        await core.undo("home")
        assert [e.title for e in await core.entries("home")] == ["Dentist"]
        assert await core.entries("work") == ()
        await consistent(core)


async def test_undo_of_a_move_whose_other_half_changed_is_refused(data_dir: str) -> None:
    """An undo of a move after the moved entry changed in the destination is refused and changes nothing."""
    async with open_core(data_dir) as core:
        await core.add("home", "Dentist", DAY)
        await core.move("home", 1, "work")
        await core.update("work", 1, title="Dentist at 9")
        with pytest.raises(Conflict):
            await core.undo("home")
        assert await core.entries("home") == ()
        assert [e.title for e in await core.entries("work")] == ["Dentist at 9"]


def rows(count: int, start: int = 1) -> list[list[object]]:
    return [
        [start + i, "2026-12-19", f"entry {start + i}", i % 2 == 0, ["bulk"] if i % 3 == 0 else []]
        for i in range(count)
    ]


async def test_import_publishes_all_rows_as_one_change_that_one_undo_takes_back(data_dir: str) -> None:
    """An import's rows appear at once, as one change of the log, and one undo removes them all."""
    async with open_core(data_dir) as core:
        await core.add("big", "before", DAY)
        import_id = await core.imports.begin("big")
        await core.imports.rows(import_id, 1001, rows(1000, 1001))  # out of order, as pipelined batches may come
        await core.imports.rows(import_id, 1, rows(1000))
        assert len(await core.entries("big")) == 1, "a reader saw part of an import"
        result = await core.imports.commit(import_id, 2000)
        assert (result["first"], result["last"], result["count"]) == (2, 2001, 2000)
        entries = await core.entries("big")
        assert [e.title for e in entries[1:4]] == ["entry 1", "entry 2", "entry 3"]
        assert entries[1].done and not entries[2].done and entries[1].tags == ("bulk",)
        history = await core.history("big")
        assert {e["change"] for e in history["events"] if e["op"] == "import"} == {2}
        found, _more = await core.find(tags=["bulk"], limit=10_000)
        assert len(found) == 2 * 334  # i % 3 == 0 in each batch of 1,000
        await consistent(core)
        await core.undo("big")
        assert [e.title for e in await core.entries("big")] == ["before"]
        await consistent(core)


async def test_import_keeps_titles_with_the_characters_of_the_staging_formats(data_dir: str) -> None:
    """Titles with what COPY's text format or SQL escapes (backslashes, ``\\N``, quotes, commas) arrive unchanged."""
    titles = [
        "back\\slash",
        "\\N",
        "ends with \\",
        "a \\t that is two characters",
        'it\'s "quoted", with commas',
        "déjà vu, 日本語, ☃",
        "; DROP TABLE entries; --",
    ]
    wire = [[i, "2026-12-19", title, i % 2 == 0, ["x", "y"] if i % 2 else []] for i, title in enumerate(titles, 1)]
    async with open_core(data_dir) as core:
        import_id = await core.imports.begin("odd")
        await core.imports.rows(import_id, 1, wire)
        await core.imports.commit(import_id, len(titles))
        entries = await core.entries("odd")
        assert [e.title for e in entries] == titles
        assert [e.tags for e in entries] == [("x", "y") if i % 2 else () for i in range(1, len(titles) + 1)]
        assert [e.done for e in entries] == [i % 2 == 0 for i in range(1, len(titles) + 1)]
        await consistent(core)


async def test_import_with_a_bad_row_changes_nothing(data_dir: str) -> None:
    """A bad row in the middle fails the import with its line, and nothing of it is ever published."""
    async with open_core(data_dir) as core:
        import_id = await core.imports.begin("big")
        await core.imports.rows(import_id, 1, rows(10))
        bad = rows(10, 11)
        bad[4][1] = "2026-02-30"
        with pytest.raises(Invalid, match="line 15: '2026-02-30' is not a real date"):
            await core.imports.rows(import_id, 11, bad)
        with pytest.raises(Invalid, match="line 15"):  # the same error for what comes after it
            await core.imports.commit(import_id, 20)
        await core.imports.abort(import_id)
        with pytest.raises(NotFound):
            await core.imports.commit(import_id, 20)
        assert await core.entries("big") == ()
        assert await core.store.staged_count(import_id) == (0, 0)


async def test_a_batch_that_arrives_as_its_import_is_aborted_stages_nothing(
    data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch still being validated when its import is aborted is refused and leaves nothing staged behind it."""
    gate = threading.Event()
    real = _imports.check_rows

    def held(*args: Any) -> Any:
        gate.wait(30)
        return real(*args)

    monkeypatch.setattr(_imports, "check_rows", held)
    async with open_core(data_dir) as core:
        import_id = await core.imports.begin("big")
        outcome: list[BaseException] = []

        async def late() -> None:
            try:
                await core.imports.rows(import_id, 1, rows(10))
            except TodoError as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(late)
            await trio.testing.wait_all_tasks_blocked()  # the batch is in its validation thread
            await core.imports.abort(import_id)
            gate.set()
        assert len(outcome) == 1 and isinstance(outcome[0], NotFound), outcome
        assert await core.store.staged_count(import_id) == (0, 0)
        staging = os.path.join(data_dir, "imports")
        assert await trio.to_thread.run_sync(lambda: os.listdir(staging) if os.path.isdir(staging) else []) == []
        assert await core.entries("big") == ()


@SQLITE_ONLY
async def test_a_commit_cancelled_while_its_publish_is_queued_fails_no_other_write(
    data_dir: str, commit_gate: CommitGate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit given up while its publish waits for the writer leaves the file for it: the other lists' batches
    committed with the publish succeed, and the file is gone once the publish is done."""
    faults = StoreFaults(before_commit=commit_gate, hold_indexer=trio.Event())
    submitted = trio.Event()
    async with open_core(data_dir, store_faults=faults) as core:
        store_type = type(core.store)
        submit = store_type.submit

        async def watched(self: Any, transaction: Any) -> None:
            await submit(self, transaction)
            if getattr(transaction, "bulk", False):
                submitted.set()

        monkeypatch.setattr(store_type, "submit", watched)
        import_id = await core.imports.begin("big")
        await core.imports.rows(import_id, 1, rows(10))
        staging = core.store.staging_path(import_id)
        assert await trio.Path(staging).exists()
        commit_gate.hold()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(core.add, "first", "held in the writer", DAY)
            await commit_gate.entered.wait()
            scope = trio.CancelScope()  # a client gone while its publish is queued
            nursery.start_soon(_cancelled_commit, core, import_id, scope)
            await submitted.wait()  # the publish is the writer's now
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            other: list[Entry] = []
            nursery.start_soon(_add_into, core, "other", other)  # in the publish's group
            await trio.testing.wait_all_tasks_blocked()
            commit_gate.release()
        assert [e.title for e in other] == ["other's"]
        assert [e.id for e in await core.entries("big")] == list(range(1, 11))
        assert not await trio.Path(staging).exists()


async def _cancelled_commit(core: Core, import_id: str, scope: trio.CancelScope) -> None:
    with scope:
        await core.imports.commit(import_id, 10)


async def _add_into(core: Core, name: str, out: list[Entry]) -> None:
    out.append(await core.add(name, "other's", DAY))


async def _begin_with_a_gap(core: Core, name: str) -> str:
    """An import into ``name`` with rows 1 to 10 and 21 to 30 staged (11 to 20 missing); its id."""
    import_id = await core.imports.begin(name)
    await core.imports.rows(import_id, 1, rows(10))
    await core.imports.rows(import_id, 21, rows(10, 21))
    return import_id


async def test_import_commit_refuses_missing_rows(data_dir: str) -> None:
    """A commit whose count does not match the rows staged (a batch lost on the way) publishes nothing."""
    async with open_core(data_dir) as core:
        import_id = await _begin_with_a_gap(core, "big")
        with pytest.raises(Invalid, match="not rows 1 to 30"):
            await core.imports.commit(import_id, 30)
        assert await core.entries("big") == ()


async def test_import_into_a_running_list_then_writes_go_on(data_dir: str) -> None:
    """After an import into a list whose server runs, its next writes get the ids after the import's."""
    async with open_core(data_dir) as core:
        await core.add("big", "first", DAY)
        import_id = await core.imports.begin("big")
        await core.imports.rows(import_id, 1, rows(5))
        await core.imports.commit(import_id, 5)
        entry = await core.add("big", "after", DAY)
        assert entry.id == 7
        await core.move("big", 3, "other")
        assert len(await core.entries("big")) == 6
        await consistent(core)


async def test_an_import_left_idle_is_dropped_with_its_rows(data_dir: str, mock_clock: trio.testing.MockClock) -> None:
    """An import whose client went away is dropped with what it staged once it has been idle for a minute."""
    async with open_core(data_dir) as core:
        # The clock stands still while the import is staged in worker threads
        # (an autojump clock may jump past the idle timeout during them).
        import_id = await core.imports.begin("big")
        await core.imports.rows(import_id, 1, rows(10))
        assert await core.store.staged_count(import_id) != (0, 0)
        mock_clock.autojump_threshold = 0
        await trio.sleep(IDLE_TIMEOUT * 1.6)
        for _ in range(100):  # the sweep drops the rows in a worker thread: poll on the mock clock
            if core.imports.open_count() == 0 and await core.store.staged_count(import_id) == (0, 0):
                break
            await trio.sleep(1)
        else:
            pytest.fail("the idle import was not dropped with its rows")
        with pytest.raises(NotFound):
            await core.imports.commit(import_id, 10)


_ODD_DATES = ("2026-02-03", "2026-02-30", "2026-2-03", "\uff12026-01-01", " 2026-01-01", "2026-13-01", "+026-01-01", 3)
_ODD_TITLES = ("Dentist", " padded ", "", "\t", "a\nb", "caf\u00e9", "\u2800", "x" * 1000, " " + "x" * 1001, "\ud800")


def _checked(fn: Callable[[], object]) -> tuple[str, object]:
    try:
        return "ok", fn()
    except TodoError as exc:
        return type(exc).__name__, exc.message


def test_a_batch_is_checked_exactly_as_row_by_row() -> None:
    """check_rows's fast path stages the same rows and refuses with the same errors as check_row, row by row."""
    rng = random.Random(14)
    for k in range(3000):
        row: object = [
            rng.choice([k, "1", True]),
            rng.choice(_ODD_DATES),
            rng.choice(_ODD_TITLES),
            rng.choice([True, False, 0, None]),
            rng.choice(
                [
                    [],
                    ["b", "a"],
                    ["a", "a"],
                    ["B", "caf\u00e9"],
                    ["x" * 33],
                    ["a b"],
                    [str(i) for i in range(17)],
                    [1],
                    "x",
                ]
            ),
        ]
        if k % 50 == 0:
            row = rng.choice([[1, "2026-02-03", "t", False], (1, "2026-02-03", "t", False, []), "x"])
        one = _checked(lambda row=row: [check_row(row, "i", 7)])
        batch = _checked(lambda row=row: check_rows([row], "i", 7))
        assert one == batch, row
    rows = [
        [n, f"2026-0{1 + n % 9}-1{n % 10}", f" entry {n} ", n % 2 == 0, ["t", f"g{n % 3}"][: n % 3]]
        for n in range(1, 500)
    ]
    assert check_rows(rows, "i", 3) == [check_row(row, "i", 3 + i) for i, row in enumerate(rows)]


async def test_a_batch_staged_twice_fails_its_import_and_no_other_write(data_dir: str) -> None:
    """Rows sent twice (a client's bug) fail their import, whose rows all go; other lists' writes go on."""
    async with open_core(data_dir) as core:
        import_id = await _begin_with_a_gap(core, "twice")
        with pytest.raises(Invalid, match="rows 5 to 14 of the import overlap rows it staged already"):
            await core.imports.rows(import_id, 5, rows(10, 5))
        entry = await core.add("other", "unharmed", DAY)
        assert entry.id == 1
        with pytest.raises(Invalid, match="overlap"):  # the import failed: its later requests say why
            await core.imports.commit(import_id, 30)
        await core.imports.abort(import_id)
        assert await core.entries("twice") == ()
        assert [name for name, _ in await core.lists()] == ["other"]
        await consistent(core)


def test_an_import_keeps_its_staged_rows_as_merged_spans_and_refuses_overlaps_at_either_edge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spans that touch merge; a batch one row into a span at either end is refused; past the gap cap, a new gap is."""
    session = _imports._Session("i", "l", NOBODY, 0.0)
    session.claim(11, 20)
    session.claim(1, 10)
    session.claim(31, 40)
    assert session.spans == [(1, 20), (31, 40)]
    for first, last in ((20, 25), (26, 31), (5, 5), (15, 35), (40, 41), (1, 1)):
        with pytest.raises(Invalid, match=f"rows {first} to {last} of the import overlap"):
            session.check_free(first, last)
    session.claim(21, 30)
    assert session.spans == [(1, 40)]
    monkeypatch.setattr(_imports, "MAX_SPANS", 3)
    session.claim(50, 50)
    session.claim(60, 60)
    with pytest.raises(Invalid, match="at most 3 gaps"):
        session.claim(70, 70)
    session.claim(41, 49)  # fills a gap: allowed at the cap
    session.claim(61, 69)
    assert session.spans == [(1, 50), (60, 69)]


async def test_a_batch_cancelled_before_its_rows_are_staged_can_be_sent_again(
    data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose request was cancelled while it waited to be staged is not taken as staged: sent again, it is."""
    async with open_core(data_dir) as core:
        import_id = await core.imports.begin("again")
        await core.imports.rows(import_id, 1, rows(10))
        store_type = type(core.store)
        real = store_type.stage_import
        entered, held = trio.Event(), trio.Event()

        async def stage_when_let(self: Any, staged: Any) -> None:
            entered.set()
            await held.wait()
            await real(self, staged)

        monkeypatch.setattr(store_type, "stage_import", stage_when_let)
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def cancelled() -> None:
                with scope:
                    await core.imports.rows(import_id, 11, rows(10, 11))

            nursery.start_soon(cancelled)
            await entered.wait()  # validated, checked free, and waiting to be staged
            scope.cancel()
        held.set()
        assert await core.imports.rows(import_id, 11, rows(10, 11)) == 20
        result = await core.imports.commit(import_id, 20)
        assert (result["first"], result["last"]) == (1, 20)
        assert [e.title for e in await core.entries("again")] == [f"entry {n}" for n in range(1, 21)]
