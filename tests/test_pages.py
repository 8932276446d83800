"""Reads in pages (issue 11): snapshots across pages, the bounds of a page, and reads that checkpoint."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import OpenRegistry
from todod import _pages
from todod._pages import PageRequest
from todod._registry import Registry
from todod._server import AddEntry, DeleteEntry, ReadPage, ServerConfig, UpdateEntry
from todod.protocol import DEFAULT_PAGE_ENTRIES, Expired, Invalid, Request, TooLarge

DAY = datetime.date(2026, 3, 4)


async def fill(registry: Registry, name: str, count: int, title: str = "entry {}") -> None:
    """Add ``count`` entries at once (they share batches and commits)."""

    async def one(i: int) -> None:
        await registry.call(name, AddEntry(DAY, title.format(i)))

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)


async def page(registry: Registry, name: str, limit: int | None = 100, cursor: str | None = None) -> Any:
    snapshot, after = (None, 0) if cursor is None else _pages.parse_cursor(cursor)
    result = await registry.call(name, ReadPage(PageRequest(None, limit, snapshot, after)))
    return json.loads(result.json)


async def read_all(registry: Registry, name: str, limit: int = 100) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        result = await page(registry, name, limit, cursor)
        seen.extend(result["entries"])
        cursor = result["next"]
        if cursor is None:
            return seen


async def test_paging_while_the_list_is_written_sees_each_entry_of_one_version_once(
    open_registry: OpenRegistry,
) -> None:
    """Pages read while writers add, update and delete show every entry of the first page's version once, as it
    was then, and nothing added after it."""
    async with open_registry() as (_store, registry):
        await fill(registry, "l", 1000)
        before = {e["id"]: e for e in (await page(registry, "l", None))}
        first = await page(registry, "l", 50)
        seen = list(first["entries"])
        cursor = first["next"]
        assert cursor is not None and first["last_id"] == 1000
        writes = 0
        while cursor is not None:
            # Between pages: new entries, changed titles, deleted entries,
            # on both sides of the cursor.
            writes += 1
            await registry.call("l", AddEntry(DAY, f"new {writes}"))
            await registry.call("l", UpdateEntry(writes * 7, title="changed"))
            await registry.call("l", DeleteEntry(1001 - writes))
            result = await page(registry, "l", 50, cursor)
            seen.extend(result["entries"])
            cursor = result["next"]
        assert writes == 19
        assert [e["id"] for e in seen] == sorted(before), "an entry was missed, repeated or made up"
        assert seen == [before[e["id"]] for e in seen], "an entry was seen as it is now, not as it was"
        now = await read_all(registry, "l")
        assert len(now) == 1000 and now[-1]["title"] == "new 19"


async def test_a_page_ends_at_its_limit_or_its_bytes_whichever_comes_first(open_registry: OpenRegistry) -> None:
    """A page holds ``limit`` entries, or fewer when their JSON would pass the page's byte bound."""
    config = ServerConfig(max_page_bytes=4000)
    async with open_registry(config) as (_store, registry):
        await fill(registry, "short", 60, "s{}")
        await fill(registry, "long", 60, "{:03d}" + "é" * 97)  # 100 characters, 6 bytes each but 3 as JSON
        short = await page(registry, "short", 20)
        assert len(short["entries"]) == 20
        long = await page(registry, "long", 20)
        size = len(",".join(json.dumps(e, separators=(",", ":")) for e in long["entries"]))
        assert 0 < len(long["entries"]) < 20 and size <= 4000
        assert size + 700 > 4000, "the page stopped well before its byte bound"
        assert [e["id"] for e in await read_all(registry, "long", 20)] == list(range(1, 61))


async def test_a_whole_read_over_a_page_is_refused_before_it_is_built(open_registry: OpenRegistry) -> None:
    """An entries request without a limit or cursor is answered whole only if it fits in one page's bytes."""
    async with open_registry(ServerConfig(max_page_bytes=2000)) as (_store, registry):
        await fill(registry, "l", 10)
        assert len(await page(registry, "l", None)) == 10
        await fill(registry, "l", 100)
        with pytest.raises(TooLarge, match="read them in pages"):
            await page(registry, "l", None)


# A mock clock jumps to the next deadline while a PostgreSQL read runs in its
# thread (the follower's is one every second): SQLite's threads keep it still.
@pytest.mark.parametrize("store_uri", [None], ids=["sqlite"])
async def test_a_snapshot_expires_after_its_time_and_beyond_its_count(
    open_registry: OpenRegistry, lazy_autojump_clock: trio.testing.MockClock
) -> None:
    """A cursor whose snapshot was not used for snapshot_ttl, or was pushed out by newer ones, is ``expired``."""
    # The call timeout out of the way: the mock clock may jump while SQLite works.
    config = ServerConfig(snapshot_ttl=5.0, max_snapshots=2, call_timeout=1e6, idle_timeout=1e6)
    async with open_registry(config) as (_store, registry):
        await fill(registry, "l", 30)
        first = await page(registry, "l", 10)
        await trio.sleep(4)
        second = await page(registry, "l", 10, first["next"])  # renews it
        await trio.sleep(4)
        assert len((await page(registry, "l", 10, second["next"]))["entries"]) == 10
        late = await page(registry, "l", 10)
        await trio.sleep(6)
        with pytest.raises(Expired, match="read again from the start"):
            await page(registry, "l", 10, late["next"])
        versions = []
        for n in range(3):
            await registry.call("l", AddEntry(DAY, f"version {n}"))
            versions.append(await page(registry, "l", 10))
        with pytest.raises(Expired):
            await page(registry, "l", 10, versions[0]["next"])
        assert len((await page(registry, "l", 10, versions[1]["next"]))["entries"]) == 10


async def test_readers_of_one_version_share_its_snapshot(open_registry: OpenRegistry) -> None:
    """Many more readers of one version than the snapshots a list keeps all page through it: they share one."""
    async with open_registry(ServerConfig(max_snapshots=2)) as (_store, registry):
        await fill(registry, "l", 50)
        firsts = [await page(registry, "l", 10) for _ in range(20)]
        assert len({f["next"] for f in firsts}) == 1
        await registry.call("l", AddEntry(DAY, "later"))
        for first in firsts:
            cursor = first["next"]
            seen = list(first["entries"])
            while cursor is not None:
                result = await page(registry, "l", 10, cursor)
                seen.extend(result["entries"])
                cursor = result["next"]
            assert [e["id"] for e in seen] == list(range(1, 51))


async def test_a_bare_id_cursor_reads_the_current_version_after_it(open_registry: OpenRegistry) -> None:
    """``after`` may be a plain entry id: the page then starts after it, in the list as it is now."""
    async with open_registry() as (_store, registry):
        await fill(registry, "l", 20)
        result = await page(registry, "l", 5, "12")
        assert [e["id"] for e in result["entries"]] == [13, 14, 15, 16, 17]
        assert result["next"].endswith(".17")
        assert (await page(registry, "l", 5, "20")) == {"next": None, "last_id": 20, "entries": []}


@pytest.mark.parametrize("cursor", ["x", "1.2.3", "abc.", ".5", "a-b.5", "١٢"])
def test_a_malformed_cursor_is_invalid(cursor: str) -> None:
    """A cursor that is neither '<snapshot>.<id>' nor an id is refused as invalid."""
    with pytest.raises(Invalid, match="cursor"):
        _pages.parse_cursor(cursor)


def test_the_dispatcher_checks_limit_and_defaults_a_cursors_page() -> None:
    """``limit`` is 1 to MAX_PAGE_ENTRIES; a cursor without a limit reads a default page."""
    from todod._dispatch import _page

    with pytest.raises(Invalid, match="'limit' is 1 to"):
        _page({"list": "l", "limit": 0})
    assert _page({"list": "l"}).limit is None
    assert _page({"list": "l", "after": "5"}) == PageRequest(None, DEFAULT_PAGE_ENTRIES, None, 5)
    assert Request("entries", None, {}).op == "entries"


class StepWork(trio.abc.Instrument):
    """Records, for every task step, how many chunks of a page were read in it."""

    def __init__(self) -> None:
        self.per_step: list[int] = []
        self._start = _pages.chunks_read()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._start = _pages.chunks_read()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.per_step.append(_pages.chunks_read() - self._start)


async def test_a_big_read_checkpoints_after_every_chunk(open_registry: OpenRegistry) -> None:
    """A page of 6,000 entries is read over many task steps, none of which reads more than one chunk of ids."""
    async with open_registry() as (_store, registry):
        await fill(registry, "big", 6000)
        instrument = StepWork()
        trio.lowlevel.add_instrument(instrument)
        try:
            result = await page(registry, "big", 6000)
        finally:
            trio.lowlevel.remove_instrument(instrument)
        assert len(result["entries"]) == 6000
        assert sum(instrument.per_step) >= 6000 // _pages.CHUNK
        assert max(instrument.per_step) == 1, "a step read more than one chunk without a checkpoint"


def test_a_pages_entry_text_is_the_json_of_its_wire_form() -> None:
    """An entry encoded for a page is exactly the compact JSON of Entry.to_wire(), tags and escapes included."""
    from todod._model import Entry

    for entry in (
        Entry(7, DAY, "plain"),
        Entry(8, DAY, 'quote " back \\ slash é 日本 \U0001f600', done=True, version=3, tags=("b", "a\u00e9")),
    ):
        assert _pages._encode(entry) == json.dumps(entry.to_wire(), separators=(",", ":"))


async def test_a_page_of_rows_holds_the_same_entries_as_arrays(open_registry: OpenRegistry) -> None:
    """``"form": "rows"`` gives each entry as an array of ROW_COLUMNS, the same values as its object."""
    async with open_registry() as (_store, registry):
        await fill(registry, "l", 30, "tïtle {}")
        await registry.call("l", UpdateEntry(3, tag=frozenset({"b", "a"})))
        objects = await page(registry, "l", 10)
        result = await registry.call("l", ReadPage(PageRequest(None, 10, None, 0, rows=True)))
        rows = json.loads(result.json)
        assert result.json.isascii()
        assert rows["entries"] == [[e[key] for key in _pages.ROW_COLUMNS] for e in objects["entries"]]
        assert rows["entries"][2][5] == ["a", "b"]
        assert rows["next"] is not None and rows["last_id"] == objects["last_id"]
    from todod._dispatch import _page

    assert _page({"list": "l", "limit": 5, "form": "rows"}).rows
    with pytest.raises(Invalid, match="'form' is"):
        _page({"list": "l", "form": "csv"})
