"""Paged ``find`` and ``history`` (issue 11): cursors, bounds in entries and bytes, and reads while written."""

from __future__ import annotations

import datetime
import json
import random
from typing import Any

import pytest

from tests.conftest import SQLITE_ONLY
from todod import _log, _query
from todod._core import Core, open_core
from todod.protocol import Compacted, Invalid

# Every test here runs on both backends (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("on_backend")

D = datetime.date


async def find_all(core: Core, limit: int, between: Any = None, **filters: Any) -> list[dict[str, Any]]:
    """Every entry of a paged ``find``, page by page; ``between(page_number)`` runs before each later page."""
    seen: list[dict[str, Any]] = []
    after = None
    page_number = 0
    while True:
        page = await core.find_page(limit=limit, after=after, **filters)
        assert len(page.entries) <= limit
        seen.extend(json.loads(text) for text in page.entries)
        if page.next is None:
            return seen
        after = page.next.to_wire()
        page_number += 1
        if between is not None:
            await between(page_number)


async def history_all(core: Core, name: str, limit: int, between: Any = None) -> list[dict[str, Any]]:
    """Every event of a paged ``history`` of ``name`` from its start, page by page."""
    seen: list[dict[str, Any]] = []
    page = await core.history_page(name, None, None)
    page_number = 0
    while True:
        seen.extend(json.loads(text) for text in page.events)
        if page.next is None:
            return seen
        page_number += 1
        if between is not None:
            await between(page_number)
        page = await core.history_page(name, page.next, limit)
        assert len(page.events) <= limit


async def test_find_pages_walk_the_whole_answer_in_order(data_dir: str) -> None:
    """Pages of 7 give the same entries, in the same (date, list, id) order, as one answer."""
    async with open_core(data_dir) as core:
        for i in range(60):
            await core.add(f"l{i % 4}", f"entry {i}", D(2026, 12, 1 + i % 9), tags=["t"] if i % 3 else [])
        whole, more = await core.find()
        assert not more
        assert await find_all(core, 7) == whole
        assert await find_all(core, 7, tags=["t"]) == [e for e in whole if e["tags"]]
        assert await find_all(core, 1, lists=["l1"], date_from=D(2026, 12, 4)) == [
            e for e in whole if e["list"] == "l1" and e["date"] >= "2026-12-04"
        ]


async def test_find_of_pending_and_done_merges_both_in_date_list_id_order(data_dir: str) -> None:
    """A find of pending and done entries (two indexes merged) is in (date, list by bytes, id) order, paged or not."""
    rng = random.Random(7)
    names = ["b", "B", "a", "Ä", "a-1", "Z"]
    expected: list[tuple[str, str, int, bool]] = []
    tagged: set[tuple[str, int]] = set()
    async with open_core(data_dir) as core:
        for i in range(120):
            name = names[i % len(names)]
            day = D(2026, 12, 1 + rng.randrange(6))
            entry = await core.add(name, f"entry {i}", day, tags=["t"] if i % 3 == 0 else [])
            done = rng.random() < 0.5
            if done:
                await core.update(name, entry.id, done=True)
            expected.append((day.isoformat(), name, entry.id, done))
            if i % 3 == 0:
                tagged.add((name, entry.id))
        expected.sort(key=lambda e: (e[0], e[1].encode(), e[2]))

        def keys(found: list[dict[str, Any]]) -> list[tuple[str, str, int, bool]]:
            return [(e["date"], e["list"], e["id"], e["done"]) for e in found]

        whole, more = await core.find()
        assert not more
        assert keys(whole) == expected
        assert keys(await find_all(core, 5)) == expected
        later = [e for e in expected if e[0] >= "2026-12-03"]
        assert keys(await find_all(core, 4, date_from=D(2026, 12, 3))) == later
        assert keys(await find_all(core, 3, done=True)) == [e for e in expected if e[3]]
        # With a filter on rows, read a window of dates at a time (todod/_query.py, date_windows).
        assert keys(await find_all(core, 2, lists=["B", "Ä"])) == [e for e in expected if e[1] in ("B", "Ä")]
        assert keys(await find_all(core, 3, tags=["t"])) == [e for e in expected if (e[1], e[2]) in tagged]
        assert keys(await find_all(core, 50, search="entry")) == expected


async def test_a_windowed_find_over_sparse_dates_gives_each_match_once_in_order(data_dir: str) -> None:
    """A filtered find of pending and done entries, one a day, reads window after window and loses or repeats none."""
    expected: list[tuple[str, int]] = []
    async with open_core(data_dir) as core:
        for i in range(150):
            sparse = i % 7 == 3  # a match every week, pending and done in turn: a page spans windows
            day = D(2026, 1, 1) + datetime.timedelta(days=i)
            entry = await core.add("l", f"entry {i}", day, tags=["t"] if sparse else [])
            if i % 2:
                await core.update("l", entry.id, done=True)
            if sparse:
                expected.append((entry.date.isoformat(), entry.id))

        def keys(found: list[dict[str, Any]]) -> list[tuple[str, int]]:
            return [(e["date"], e["id"]) for e in found]

        for limit in (1, 4, 7):
            assert keys(await find_all(core, limit, tags=["t"])) == expected
            whole, more = await core.find(tags=["t"], limit=limit)
            assert keys(whole) == expected[:limit] and more
        assert keys(await find_all(core, 3, tags=["t"], date_from=D(2026, 2, 1))) == [
            e for e in expected if e[0] >= "2026-02-01"
        ]


async def test_find_pages_while_written_see_each_entry_at_most_once_and_nothing_new(data_dir: str) -> None:
    """Adds, date moves and deletes between pages: no entry twice, none absent or different at the start."""
    rng = random.Random(11)
    async with open_core(data_dir) as core:
        for i in range(200):
            await core.add(f"l{i % 5}", f"entry {i}", D(2026, 12, 1 + rng.randrange(20)))
        at_start = {(e["list"], e["id"]): e for e in (await core.find())[0]}
        touched: set[tuple[str, int]] = set()

        async def write(_page: int) -> None:
            for _ in range(10):
                name = f"l{rng.randrange(5)}"
                entry_id = rng.randrange(1, 41)
                key = (name, entry_id)
                kind = rng.randrange(3)
                try:
                    if kind == 0:
                        added = await core.add(name, "new", D(2026, 12, 1 + rng.randrange(20)))
                        touched.add((name, added.id))
                    elif kind == 1:
                        await core.update(name, entry_id, date=D(2026, 12, 1 + rng.randrange(20)), title="moved")
                        touched.add(key)
                    else:
                        await core.delete(name, entry_id)
                        touched.add(key)
                except Exception as exc:  # an id deleted before: nothing to update or delete
                    assert "no entry" in str(exc)

        seen = await find_all(core, 9, write)
        keys = [(e["list"], e["id"]) for e in seen]
        assert len(keys) == len(set(keys)), "an entry was seen twice"
        for entry in seen:
            assert at_start[(entry["list"], entry["id"])] == entry, "an entry that was not so at the start"
        untouched = set(at_start) - touched
        assert untouched <= set(keys), "an entry untouched during the read was missed"
        assert [(e["date"], e["list"], e["id"]) for e in seen] == sorted((e["date"], e["list"], e["id"]) for e in seen)
        assert touched - set(at_start), "the writes added entries (the test wrote something)"


@SQLITE_ONLY  # calls the SQLite store's readers directly
async def test_a_find_page_is_bounded_in_entries_and_in_bytes(data_dir: str) -> None:
    """A page ends at its limit, or before the entry that would pass its byte bound, whichever comes first."""
    async with open_core(data_dir) as core:
        for i in range(30):
            await core.add("big", "é" * 990 + str(i), D(2026, 12, 1))
        store = core.store
        query = _query.FindQuery(limit=25)

        def read(max_bytes: int) -> _query.FoundPage:
            conn = store._readers[0]
            return _query.run_find_page(conn, query, store.text_index, float("inf"), max_bytes)

        one = len(read(1 << 30).entries[0]) + 1  # 6,000 bytes of \u escapes and the rest
        assert len(read(1 << 30).entries) == 25, "the limit first"
        page = read(one * 10 + 5)
        assert len(page.entries) == 10, "the bytes first"
        assert sum(len(t) + 1 for t in page.entries) <= one * 10 + 5
        assert page.next is not None and page.next.id == 10
        assert len(read(10).entries) == 1, "at least one entry, whatever the bound"
        assert all(text.isascii() for text in page.entries)


async def test_find_refuses_a_cursor_that_is_not_one_and_one_older_than_a_compaction(data_dir: str) -> None:
    """A malformed cursor is invalid; a cursor from before a compaction of the events after it is compacted."""
    async with open_core(data_dir) as core:
        for i in range(5):
            await core.add("l", f"e{i}", D(2026, 12, 1))
        for bad in ("x", "1.2026-12-01.2", "1.2026-13-01.2.l", "a.2026-12-01.2.l"):
            with pytest.raises(Invalid):
                await core.find_page(after=bad)
        page = await core.find_page(limit=2)
        assert page.next is not None
        await core.add("l", "later", D(2026, 12, 2))
        await core.compact(0)
        with pytest.raises(Compacted):
            await core.find_page(limit=2, after=page.next.to_wire())


async def test_history_pages_while_written_have_strictly_increasing_positions_and_miss_nothing(data_dir: str) -> None:
    """Writes to the list and to others between pages: positions strictly increase, each event is seen once."""
    async with open_core(data_dir) as core:
        for i in range(50):
            await core.add("l" if i % 2 else "other", f"e{i}", D(2026, 12, 1))

        async def write(page: int) -> None:
            await core.add("l", f"during {page}", D(2026, 12, 2))
            await core.add("other", "elsewhere", D(2026, 12, 2))
            await core.update("l", 1, title=f"again {page}")

        seen = await history_all(core, "l", 4, write)
        positions = [e["position"] for e in seen]
        assert positions == sorted(set(positions)), "positions strictly increase"
        assert {e["list"] for e in seen} == {"l"}
        whole = (await core.history("l"))["events"]
        assert seen == whole, "every event of the list, none twice, the writes of the read included"
        assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))


async def test_history_tail_and_its_pages(data_dir: str) -> None:
    """Without a cursor the read starts at the last `limit` events; a tail longer than a page goes on with next."""
    async with open_core(data_dir) as core:
        for i in range(30):
            await core.add("l", f"e{i}", D(2026, 12, 1))
        tail = await core.history_page("l", None, 5)
        assert [json.loads(t)["seq"] for t in tail.events] == [26, 27, 28, 29, 30]
        assert tail.next is None
        whole = await core.history_page("l", None, None)
        assert len(whole.events) == 30 and whole.next is None
        with pytest.raises(Invalid):
            await core.history_page("l", 0, 10_001)
        assert (await core.history_page("nowhere", None, None)).events == ()


@SQLITE_ONLY  # calls the SQLite store's readers directly
async def test_a_history_page_is_bounded_in_entries_bytes_and_its_window(data_dir: str) -> None:
    """A page ends at its limit, before the bytes bound, or at the end of its window of the log, with a cursor."""
    async with open_core(data_dir) as core:
        for i in range(40):
            await core.add("l", "ü" * 990 + str(i), D(2026, 12, 1))
        await core.add("sparse", "first", D(2026, 12, 1))
        for i in range(30):
            await core.add("other", f"o{i}", D(2026, 12, 1))
        await core.add("sparse", "second", D(2026, 12, 1))
        conn = core.store._readers[0]

        def page(name: str, after: int | None, limit: int | None, size: int, max_bytes: int = 1 << 30) -> Any:
            conn.execute("BEGIN")
            try:
                return _log.read_history_page(conn, name, after, limit, size, max_bytes)
            finally:
                conn.execute("COMMIT")

        assert len(page("l", 0, None, 10).events) == 10, "the limit first"
        one = len(page("l", 0, None, 1).events[0]) + 1
        cut = page("l", 0, None, 40, one * 3 + 1)
        assert len(cut.events) == 3 and cut.next == json.loads(cut.events[-1])["position"], "the bytes first"
        tail = page("l", None, 20, 5)
        assert len(tail.events) == 5 and json.loads(tail.events[0])["seq"] == 21, "a tail longer than its page"
        window = _log.HISTORY_WINDOW
        _log.HISTORY_WINDOW = 10
        try:
            first = page("sparse", None, None, 1)
            assert [json.loads(t)["after"]["title"] for t in first.events] == ["first"]
            short = page("sparse", first.next, None, 5)
            assert short.events == () and short.next == first.next + 10, "the window ends the page, with a cursor"
        finally:
            _log.HISTORY_WINDOW = window
        await core.compact(0)
        with pytest.raises(Compacted):
            page("l", 3, None, 5)


async def test_history_page_texts_are_the_json_of_the_events_wire_form(data_dir: str) -> None:
    """Each event's text in a page is byte for byte the compact JSON of its wire form, ASCII only."""
    async with open_core(data_dir) as core:
        await core.add("l", 'Crème \u202e "quoted" \\ brûlée', D(2026, 12, 1), tags=["b", "a"])
        await core.add("l", "plain", D(2026, 12, 2))
        await core.update("l", 1, done=True, untag=["a"])
        await core.delete("l", 2)
        await core.undo("l", 1)
        page = await core.history_page("l", None, None)
        whole = (await core.history("l"))["events"]
        assert list(page.events) == [json.dumps(e, separators=(",", ":")) for e in whole]
        assert all(text.isascii() for text in page.events)
        assert json.loads(page.to_json())["events"] == whole


async def test_find_page_of_rows_holds_the_objects_values_as_arrays(data_dir: str) -> None:
    """``"form": "rows"`` gives each found entry as an array of FIND_ROW_COLUMNS, the same values as its object."""
    async with open_core(data_dir) as core:
        await core.add("home ☃", 'Crème \u202e "quoted" brûlée', D(2026, 12, 1), tags=["b", "a"])
        for n in range(5):
            await core.add("work", f"report {n}", D(2026, 11, 28 + n % 3))
        objects = await core.find_page(limit=4)
        rows = await core.find_page(limit=4, rows=True)
        assert rows.next == objects.next is not None
        assert all(text.isascii() for text in rows.entries)
        assert [json.loads(t) for t in rows.entries] == [
            [json.loads(t)[k] for k in _query.FIND_ROW_COLUMNS] for t in objects.entries
        ]
        later = await core.find_page(limit=4, rows=True, after=rows.next.to_wire())
        assert [json.loads(t)[1:3] for t in later.entries] == [[3, "2026-11-30"], [1, "2026-12-01"]]


def test_find_takes_a_form_of_objects_or_rows() -> None:
    """A ``find`` request may carry ``form``: ``objects`` (the default) or ``rows``; any other is invalid."""
    from todod._dispatch import _rows
    from todod.protocol import parse_request

    assert parse_request(b'{"id":1,"op":"find","form":"rows"}').args == {"form": "rows"}
    assert _rows({"form": "rows"}) and not _rows({}) and not _rows({"form": "objects"})
    with pytest.raises(Invalid, match="'form' is"):
        _rows({"form": "csv"})
