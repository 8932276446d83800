"""The change log: events with the change, versions, conditional writes, history, undo and redo, migration."""

from __future__ import annotations

import datetime
import itertools
import os
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SQLITE_ONLY
from tests.old_schemas import make_database
from todod._core import Core, CoreConfig, open_core
from todod._model import Entry, Origin, Stale
from todod._server import RevertChanges
from todod.protocol import Compacted, Conflict, NotFound
from todod.store._sqlite import SCHEMA_VERSION

DAY = datetime.date(2026, 2, 3)
LATER = datetime.date(2026, 3, 4)

# Every test here runs on both backends unless marked SQLITE_ONLY (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("on_backend")


async def in_step(core: Core) -> dict[str, dict[int, Entry]]:
    """Assert that every list rebuilt from its log equals the entries served; return them."""
    rebuilt, view = await core.store.rebuild_and_view()
    assert rebuilt == view
    return view


def ops(history: dict[str, Any]) -> list[tuple[str, int, int | None, int | None]]:
    """(op, entry, version before, version after) of each event of a history."""
    return [
        (
            e["op"],
            e["entry"],
            None if e["before"] is None else e["before"]["version"],
            None if e["after"] is None else e["after"]["version"],
        )
        for e in history["events"]
    ]


async def test_history_after_mixed_changes(data_dir: str) -> None:
    """History lists every change oldest first, with its seq, position, entry before and after, and who made it."""
    me = Origin(uid=1000, pid=4242)
    async with open_core(data_dir) as core:
        await core.add("home", "Dentist", DAY, me)
        await core.add("work", "Report", DAY)
        await core.add("home", "Milk", DAY)
        await core.update("home", 1, title="Dentist at 9", done=True, origin=me)
        await core.delete("home", 2, origin=me)
        history = await core.history("home")
        assert ops(history) == [("add", 1, None, 1), ("add", 2, None, 1), ("update", 1, 1, 2), ("delete", 2, 1, None)]
        events = history["events"]
        assert [e["seq"] for e in events] == [1, 2, 3, 4]
        assert [e["change"] for e in events] == [1, 2, 3, 4]
        positions = [e["position"] for e in events]
        assert positions == sorted(positions) and len(set(positions)) == 4
        assert positions[1] - positions[0] == 2, "the add to 'work' between them has its own position"
        assert events[2]["before"]["title"] == "Dentist" and events[2]["after"]["title"] == "Dentist at 9"
        assert (events[0]["uid"], events[0]["pid"]) == (1000, 4242)
        assert events[1]["uid"] is None, "a change made in-process has no peer"
        assert events[0]["time"].endswith("Z")
        assert history["horizon"] == 0 and history["base_entries"] == 0
        last_two = await core.history("home", limit=2)
        assert last_two["events"] == events[2:]
        assert (await core.history("nowhere"))["events"] == []
        await in_step(core)


async def test_versions_grow_by_one_per_change_and_survive_a_reopen(data_dir: str) -> None:
    """An entry is version 1 when added and one more at each change, also after the daemon reopens the store."""
    async with open_core(data_dir) as core:
        assert (await core.add("l", "a", DAY)).version == 1
        assert (await core.update("l", 1, done=True)).version == 2
        assert (await core.update("l", 1, date=LATER)).version == 3
    async with open_core(data_dir) as core:
        assert (await core.entries("l"))[0].version == 3
        assert (await core.update("l", 1, title="b")).version == 4


async def test_conditional_update_and_delete(data_dir: str) -> None:
    """An update or delete with the current version is applied; with another it is a conflict that changes nothing."""
    async with open_core(data_dir) as core:
        await core.add("l", "a", DAY)
        assert (await core.update("l", 1, title="b", if_version=1)).version == 2
        with pytest.raises(Conflict, match="version 2, not 1"):
            await core.update("l", 1, title="lost update", if_version=1)
        with pytest.raises(Conflict):
            await core.delete("l", 1, if_version=1)
        assert await core.entries("l") == (Entry(1, DAY, "b", version=2),)
        assert len((await core.history("l"))["events"]) == 2, "a refused write is not in the log"
        assert (await core.delete("l", 1, if_version=2)).title == "b"
        assert await core.entries("l") == ()
        await in_step(core)


async def test_undo_and_redo_of_each_kind_of_change(data_dir: str) -> None:
    """Undo reverts an add, an update and a delete (restoring its id), newest first; redo re-applies them."""
    async with open_core(data_dir) as core:
        await core.add("l", "keep", DAY)
        await core.add("l", "gone", DAY)
        await core.update("l", 1, title="kept", done=True)
        await core.delete("l", 2)
        after_all = await core.entries("l")

        (restored,) = await core.undo("l")  # the delete
        assert (restored.id, restored.title, restored.version) == (2, "gone", 2)
        (reverted,) = await core.undo("l")  # the update
        assert (reverted.title, reverted.done, reverted.version) == ("keep", False, 3)
        await core.undo("l")  # the second add
        assert [e.id for e in await core.entries("l")] == [1]
        assert [e["op"] for e in (await core.history("l"))["events"]][-3:] == ["undo"] * 3

        await core.redo("l", steps=3)
        assert [(e.id, e.title, e.done) for e in await core.entries("l")] == [
            (e.id, e.title, e.done) for e in after_all
        ]
        with pytest.raises(NotFound, match="nothing to redo"):
            await core.redo("l")
        await in_step(core)


async def test_undo_steps_and_redo_ends_at_a_new_change(data_dir: str) -> None:
    """undo --steps N reverts N changes at once; a new change then ends what redo can re-apply."""
    async with open_core(data_dir) as core:
        for title in "abc":
            await core.add("l", title, DAY)
        undone = await core.undo("l", steps=2)
        assert [e.title for e in undone] == ["c", "b"]
        assert [e.title for e in await core.entries("l")] == ["a"]
        with pytest.raises(NotFound, match="only 1 change"):
            await core.undo("l", steps=2)
        await core.add("l", "d", DAY)
        with pytest.raises(NotFound, match="nothing to redo"):
            await core.redo("l")
        await core.undo("l")  # the add of d
        assert [e.title for e in await core.entries("l")] == ["a"]
        await core.redo("l")
        assert [e.title for e in await core.entries("l")] == ["a", "d"]
        await in_step(core)


async def test_conflicting_undo_is_refused(data_dir: str) -> None:
    """An undo for a list that changed since the client looked, or whose entry no longer has the values
    the change left, is refused with conflict and changes nothing."""
    async with open_core(data_dir) as core:
        await core.add("l", "a", DAY)
        seen = (await core.history("l"))["events"][-1]["seq"]
        await core.update("l", 1, title="someone else's edit")
        with pytest.raises(Conflict, match="at seq 2, not 1"):
            await core.undo("l", if_seq=seen)
        assert (await core.entries("l"))[0].title == "someone else's edit"
        assert (await core.undo("l", if_seq=2))[0].title == "a"

        # The list server checks the values itself, whatever plan it is handed.
        plan = await core.store.undo_plan("l", 1)
        (step,) = plan.steps
        forged = attrs.evolve(step.events[0], after=Entry(1, DAY, "never there"))
        with pytest.raises(Conflict, match="entry 1 changed since"):
            await core.registry.call("l", RevertChanges("undo", plan.head, (attrs.evolve(step, events=(forged,)),)))
        with pytest.raises(Stale):
            await core.registry.call("l", RevertChanges("undo", plan.head - 1, plan.steps))
        assert (await core.entries("l"))[0].title == "a"
        assert len((await core.history("l"))["events"]) == 3
        await in_step(core)


async def test_tags_round_trip_through_the_log_undo_redo_and_compaction(data_dir: str) -> None:
    """An entry's tags are in its events' before and after: undo restores them, redo re-applies them, and
    rebuild, compaction and a reopen keep them as the entries have them."""
    async with open_core(data_dir) as core:
        await core.add("l", "Pay rent", DAY, tags=["bills", "home"])
        await core.update("l", 1, tag=["urgent"], untag=["home"])
        await core.add("l", "a:b  c", DAY)  # a title with a colon and double spaces next to a tagged entry
        history = await core.history("l")
        assert [(e["before"] and e["before"]["tags"], e["after"]["tags"]) for e in history["events"]] == [
            (None, ["bills", "home"]),
            (["bills", "home"], ["bills", "urgent"]),
            (None, []),
        ]
        await in_step(core)
        await core.undo("l", steps=2)
        assert await core.entries("l") == (Entry(1, DAY, "Pay rent", version=3, tags=("bills", "home")),)
        await in_step(core)
        await core.redo("l", steps=2)
        assert (await core.entries("l"))[0].tags == ("bills", "urgent")
        assert (await core.entries("l"))[1].title == "a:b  c"
        await in_step(core)
        assert (await core.compact(keep_days=0)).dropped == 7
        view = await in_step(core)
        assert view["l"][1].tags == ("bills", "urgent") and view["l"][2].tags == ()
        await core.update("l", 2, tag=["later"])
        await core.undo("l")
        assert (await core.entries("l"))[1].tags == ()
    async with open_core(data_dir) as core:
        assert [e.tags for e in await core.entries("l")] == [("bills", "urgent"), ()]
        await in_step(core)


async def test_an_undo_is_refused_when_the_tags_changed_since(data_dir: str) -> None:
    """Tags are values like the title: a revert whose entry has other tags than the change left is a conflict."""
    async with open_core(data_dir) as core:
        await core.add("l", "t", DAY, tags=["a"])
        await core.update("l", 1, title="u")
        plan = await core.store.undo_plan("l", 1)
        (step,) = plan.steps
        assert step.events[0].after is not None and step.events[0].after.tags == ("a",)
        forged = attrs.evolve(step.events[0], after=attrs.evolve(step.events[0].after, tags=("b",)))
        with pytest.raises(Conflict, match="entry 1 changed since"):
            await core.registry.call("l", RevertChanges("undo", plan.head, (attrs.evolve(step, events=(forged,)),)))
        assert await core.entries("l") == (Entry(1, DAY, "u", version=2, tags=("a",)),)
        await in_step(core)


V1_SCHEMA = (
    "CREATE TABLE lists (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
    "next_id INTEGER NOT NULL CHECK (next_id >= 1))",
    "CREATE TABLE entries (list_id INTEGER NOT NULL REFERENCES lists(id), id INTEGER NOT NULL CHECK (id >= 1), "
    "date TEXT NOT NULL, title TEXT NOT NULL, done INTEGER NOT NULL CHECK (done IN (0, 1)), "
    "PRIMARY KEY (list_id, id)) WITHOUT ROWID",
)


def make_v1_database(data_dir: str) -> None:
    """A database as todod made it before the change log (schema version 1), with two lists."""
    os.makedirs(data_dir, mode=0o700)
    with closing(sqlite3.connect(os.path.join(data_dir, "todod.sqlite3"))) as conn:
        for statement in V1_SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO lists VALUES (1, 'home', 4), (2, 'empty', 2)")
        conn.execute("INSERT INTO entries VALUES (1, 1, '2026-02-03', 'Dentist', 0), (1, 3, '2026-03-04', 'Milk', 1)")
        conn.execute("PRAGMA application_id = 1953457263")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()


@SQLITE_ONLY
async def test_a_database_made_before_the_log_migrates_with_no_loss(data_dir: str) -> None:
    """A schema-1 database opens with every list, entry and next id kept, migrated through, and its log in step."""
    make_v1_database(data_dir)
    async with open_core(data_dir) as core:
        assert await core.lists() == [("empty", 0), ("home", 2)]
        assert await core.entries("home") == (Entry(1, DAY, "Dentist"), Entry(3, LATER, "Milk", done=True))
        assert (await in_step(core))["home"][3] == Entry(3, LATER, "Milk", done=True)
        history = await core.history("home")
        assert history["events"] == [] and history["base_entries"] == 2
        with pytest.raises(Compacted, match="predate the change log"):
            await core.undo("home")
        assert (await core.add("home", "new", DAY)).id == 4, "the migrated next id was kept"
        assert (await core.update("home", 1, done=True)).version == 2
        await core.undo("home")
        await core.undo("home")
        assert await core.entries("home") == (Entry(1, DAY, "Dentist", version=3), Entry(3, LATER, "Milk", done=True))
        await in_step(core)
    with closing(sqlite3.connect(os.path.join(data_dir, "todod.sqlite3"))) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7


async def test_compaction_keeps_the_state_and_history_and_undo_stop_at_the_horizon(data_dir: str) -> None:
    """Compacting drops old events but not the entries; undo then stops, clearly, at the horizon."""
    async with open_core(data_dir) as core:
        await core.add("l", "a", DAY)
        await core.add("l", "b", DAY)
        await core.update("l", 1, done=True)
        done = await core.store.compact(time.time())
        assert (done.dropped, done.horizon) == (3, 3)
        assert await core.entries("l") == (Entry(1, DAY, "a", done=True, version=2), Entry(2, DAY, "b"))
        await in_step(core)
        await core.update("l", 2, title="c")
        await core.add("l", "d", DAY)
        history = await core.history("l")
        assert (history["horizon"], history["base_entries"]) == (3, 2)
        assert [e["seq"] for e in history["events"]] == [4, 5]
        await core.undo("l", steps=2)
        with pytest.raises(Compacted, match="compacted horizon"):
            await core.undo("l")
        await core.redo("l")
        assert (await core.compact(keep_days=0)).dropped == 5
        assert await core.entries("l") == (Entry(1, DAY, "a", done=True, version=2), Entry(2, DAY, "c", version=4))
        with pytest.raises(NotFound, match="nothing to redo"):
            await core.redo("l")  # the undo it would need was compacted
        await in_step(core)


async def test_the_daemon_setting_compacts_at_start(data_dir: str) -> None:
    """With keep_days set, the core compacts the log before it serves, and keeps the recent days."""
    async with open_core(data_dir) as core:
        await core.add("l", "a", DAY)
    async with open_core(data_dir, CoreConfig(keep_days=1)) as core:
        assert len((await core.history("l"))["events"]) == 1, "a change of today is kept"
    async with open_core(data_dir, CoreConfig(keep_days=0)) as core:
        history = await core.history("l")
        assert history["events"] == [] and history["horizon"] == 1
        assert await core.entries("l") == (Entry(1, DAY, "a"),)


Values = dict[int, tuple[str, bool, tuple[str, ...]]]
TAGS = ("p", "q")
tag_sets = st.sampled_from([(), ("p",), ("q",), ("p", "q")])

operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from("abc"), tag_sets),
        # An update sets the title (or leaves it: None), the done mark and the tags.
        st.tuples(st.just("update"), st.integers(0, 5), st.sampled_from(["x", "y", None]), st.booleans(), tag_sets),
        st.tuples(st.just("delete"), st.integers(0, 5)),
        st.tuples(st.just("undo"), st.sampled_from([1, 1, 2])),
        st.tuples(st.just("undo"), st.sampled_from([1, 1, 2])),
        st.tuples(st.just("redo"), st.sampled_from([1, 1, 2])),
        st.tuples(st.just("redo"), st.sampled_from([1, 1, 2])),
    ),
    max_size=30,
)


_EXAMPLES = itertools.count()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
async def test_undo_and_redo_match_a_stack_of_snapshots(tmp_path: Path, sequence: list[tuple[Any, ...]]) -> None:
    """Random changes (tags too), undos and redos leave the list as a stack of snapshots says, log and view in step."""
    state: Values = {}
    undo_stack: list[Values] = []
    redo_stack: list[Values] = []
    # A list of its own per example: on PostgreSQL the examples share one database.
    name = f"l{next(_EXAMPLES)}"
    async with open_core(tempfile.mkdtemp(dir=tmp_path)) as core:
        for op, *args in sequence:
            ids = sorted(state)
            if op == "add":
                entry = await core.add(name, args[0], DAY, tags=args[1])
                undo_stack.append(dict(state))
                redo_stack.clear()
                state[entry.id] = (entry.title, entry.done, args[1])
            elif op in ("update", "delete") and ids:
                entry_id = ids[args[0] % len(ids)]
                undo_stack.append(dict(state))
                redo_stack.clear()
                if op == "update":
                    title, done, tags = args[1], args[2], args[3]
                    untag = [t for t in TAGS if t not in tags]
                    await core.update(name, entry_id, title=title, done=done, tag=tags, untag=untag)
                    state[entry_id] = (state[entry_id][0] if title is None else title, done, tags)
                else:
                    await core.delete(name, entry_id)
                    del state[entry_id]
            elif op in ("undo", "redo"):
                source, target = (undo_stack, redo_stack) if op == "undo" else (redo_stack, undo_stack)
                steps = args[0]
                if len(source) < steps:
                    with pytest.raises(NotFound):
                        await (core.undo if op == "undo" else core.redo)(name, steps)
                    continue
                await (core.undo if op == "undo" else core.redo)(name, steps)
                for _ in range(steps):
                    target.append(dict(state))
                    state = source.pop()
            served = {e.id: (e.title, e.done, e.tags) for e in await core.entries(name)}
            assert served == state, (op, args)
        await in_step(core)


@SQLITE_ONLY
async def test_a_database_of_schema_3_migrates_and_its_old_events_read_as_untagged(data_dir: str) -> None:
    """A schema-3 database (log events in the encoding before tags) opens at version 4 with nothing lost: its
    history reads, undo reverts its old events, and new tagged events sit beside them."""
    conn = make_database(data_dir, 3)
    conn.execute("INSERT INTO lists (id, name, next_id, seq, head, base_seq) VALUES (1, 'home', 3, 3, 3, 0)")
    conn.execute(
        "INSERT INTO entries (list_id, id, date, title, done, version) VALUES "
        "(1, 1, '2026-02-03', 'Dentist at 9', 1, 2), (1, 2, '2026-03-04', 'Milk: 2 l', 0, 1)"
    )
    events = [
        (1, 1, 1, "add", 1, None, "2026-02-03 0 1 Dentist", 0),
        (2, 2, 2, "add", 2, None, "2026-03-04 0 1 Milk: 2 l", 1),
        (3, 3, 3, "update", 1, "2026-02-03 0 1 Dentist", "2026-02-03 1 2 Dentist at 9", 2),
    ]
    for position, seq, change, op, entry, before, after, prev in events:
        conn.execute(
            "INSERT INTO events VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, 1000, 42, NULL, ?)",
            (position, seq, change, op, entry, before, after, time.time(), prev),
        )
    conn.close()
    async with open_core(data_dir) as core:
        assert await core.entries("home") == (
            Entry(1, DAY, "Dentist at 9", done=True, version=2),
            Entry(2, LATER, "Milk: 2 l"),
        )
        await in_step(core)
        history = await core.history("home")
        assert [e["after"]["title"] for e in history["events"]] == ["Dentist", "Milk: 2 l", "Dentist at 9"]
        assert history["events"][2]["before"] == {
            "id": 1,
            "date": "2026-02-03",
            "title": "Dentist",
            "done": False,
            "version": 1,
            "tags": [],
        }
        await core.update("home", 2, tag=["shop"])
        assert (await core.undo("home", steps=2))[1] == Entry(1, DAY, "Dentist", version=3)
        assert (await core.entries("home"))[1].tags == ()
        await core.redo("home", steps=2)
        entries = await core.entries("home")
        assert [(e.title, e.tags) for e in entries] == [("Dentist at 9", ()), ("Milk: 2 l", ("shop",))]
        found, more = await core.find(tags=["shop"], search="milk")
        assert [(e["list"], e["id"], e["version"]) for e in found] == [("home", 2, 4)] and not more
        await in_step(core)
    with closing(sqlite3.connect(os.path.join(data_dir, "todod.sqlite3"))) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
