"""The change log on the request path of issue 10: pipelined batches, epochs, the connection's writer and its peer."""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import CommitGate
from tests.test_request_path import FailingGate
from todod._core import Core, CoreConfig, open_core
from todod._dispatch import Dispatcher
from todod._model import Origin
from todod._socket import SocketConfig, SocketServer
from todod.protocol import TodoError, Unavailable, encode_request
from todod.store._sqlite import DB_NAME, StoreFaults

DAY = datetime.date(2026, 2, 3)


def log_rows(data_dir: str) -> list[tuple[int, str, int, str, str | None]]:
    """Every event row of the database file: position, list, seq, op and the title after (None: removed)."""
    with closing(sqlite3.connect(os.path.join(data_dir, DB_NAME))) as conn:
        rows = conn.execute(
            "SELECT e.position, l.name, e.seq, e.op, e.after FROM events e JOIN lists l ON l.id = e.list_id "
            "ORDER BY e.position"
        ).fetchall()
    return [(p, name, seq, op, None if after is None else after.split(" ", 3)[3]) for p, name, seq, op, after in rows]


async def add(core: Core, results: dict[str, Any], name: str, title: str) -> None:
    try:
        results[title] = await core.add(name, title, DAY)
    except TodoError as exc:
        results[title] = exc


async def in_step(core: Core) -> None:
    rebuilt, view = await core.store.rebuild_and_view()
    assert rebuilt == view, "the entries are not the log replayed"


async def test_a_failed_group_leaves_no_log_rows_and_positions_go_on_without_gap_or_reuse(data_dir: str) -> None:
    """A failed commit and the pipelined batches built on it write no events, the log's position and the list's
    head roll back, and the next commit takes the next position, chained to the last durable event."""
    gate = FailingGate()
    async with open_core(data_dir, store_faults=StoreFaults(before_commit=gate)) as core:
        await core.add("l", "kept", DAY)
        assert core.store.last_position() == 1
        gate.hold()
        gate.fail_next = True
        results: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(add, core, results, "l", "lost")
            await gate.entered.wait()
            nursery.start_soon(add, core, results, "l", "stale")
            await trio.testing.wait_all_tasks_blocked()
            assert core.store.statistics().queued == 1, "the second batch was not pipelined"
            gate.release()
        assert isinstance(results["lost"], Unavailable) and isinstance(results["stale"], Unavailable)
        assert core.store.last_position() == 1, "a failed group moved the position"
        after = await core.add("l", "after", DAY)
        assert after.id == 2
        assert core.store.last_position() == 2
        history = await core.history("l")
        assert [(e["position"], e["seq"], e["after"]["title"]) for e in history["events"]] == [
            (1, 1, "kept"),
            (2, 2, "after"),
        ]
        assert [e.title for e in await core.undo("l")] == ["after"], "undo missed the change after the failure"
        await in_step(core)
    assert log_rows(data_dir) == [(1, "l", 1, "add", "kept"), (2, "l", 2, "add", "after"), (3, "l", 3, "undo", None)]


async def test_a_stale_epoch_batch_writes_no_events_in_a_group_that_commits(data_dir: str) -> None:
    """A batch built on a failed one is left out of the next group, which commits another list's batch: that
    list's event is logged, the stale one's is not, and positions stay dense."""
    gate = FailingGate()
    async with open_core(data_dir, store_faults=StoreFaults(before_commit=gate)) as core:
        await core.add("l", "kept", DAY)
        await core.add("m", "loaded", DAY)  # m's server is running: its next add is queued at once
        gate.hold()
        gate.fail_next = True
        results: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(add, core, results, "l", "lost")
            await gate.entered.wait()
            nursery.start_soon(add, core, results, "l", "stale")
            nursery.start_soon(add, core, results, "m", "other")
            await trio.testing.wait_all_tasks_blocked()
            assert core.store.statistics().queued == 2
            gate.release()
        assert "an earlier commit of list 'l' failed" in results["stale"].message
        assert results["other"].id == 2
        assert gate.groups == [1, 1, 1, 1], "the stale batch was handed to the transaction"
        assert [e["after"]["title"] for e in (await core.history("l"))["events"]] == ["kept"]
        await in_step(core)
    assert log_rows(data_dir) == [(1, "l", 1, "add", "kept"), (2, "m", 1, "add", "loaded"), (3, "m", 2, "add", "other")]


async def test_two_pipelined_batches_of_a_list_in_one_group_chain_their_events(
    data_dir: str, commit_gate: CommitGate
) -> None:
    """Two batches of one list committed in the same transaction are both in its history and both undoable:
    the second one's events chain to the first's, not to the head before the group."""
    async with open_core(data_dir, store_faults=StoreFaults(before_commit=commit_gate)) as core:
        await core.add("l", "zero", DAY)
        await core.add("m", "loaded", DAY)
        commit_gate.hold()
        results: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(add, core, results, "m", "holder")
            await commit_gate.entered.wait()
            nursery.start_soon(add, core, results, "l", "one")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(add, core, results, "l", "two")
            await trio.testing.wait_all_tasks_blocked()
            assert core.store.statistics().queued == 2, "the list's two batches are not both with the writer"
            commit_gate.release()
        assert commit_gate.groups[-1] == 2, "the two batches were not committed together"
        history = await core.history("l")
        assert [(e["seq"], e["after"]["title"]) for e in history["events"]] == [(1, "zero"), (2, "one"), (3, "two")]
        undone = await core.undo("l", steps=2)
        assert [e.title for e in undone] == ["two", "one"]
        assert [e.title for e in await core.entries("l")] == ["zero"]
        await in_step(core)


async def test_commit_in_loop_writes_the_log_and_feeds_watchers(data_dir: str) -> None:
    """With the commit in the event loop, changes are logged as with the worker thread: history, undo and the
    positions handed to the watch hub."""
    published: list[int] = []
    async with open_core(data_dir, CoreConfig(inline_commits=True)) as core:
        hub_publish = core.store.on_commit
        assert hub_publish is not None

        def record(position: int, now: float, batches: Any) -> None:
            published.append(position)
            hub_publish(position, now, batches)

        core.store.on_commit = record
        await core.add("l", "a", DAY)
        await core.update("l", 1, title="b")
        assert [e["op"] for e in (await core.history("l"))["events"]] == ["add", "update"]
        assert [e.title for e in await core.undo("l")] == ["a"]
        assert core.store.last_position() == 3
        await in_step(core)
    assert published == [0, 1, 2], "the hub did not see each group at the position before it"
    assert [row[3] for row in log_rows(data_dir)] == ["add", "update", "undo"]


# --- over the socket -------------------------------------------------------------


@asynccontextmanager
async def serve_one(
    data_dir: str, origin: Origin, **store_faults: Any
) -> AsyncIterator[tuple[Core, trio.SocketStream, trio.Nursery]]:
    """A core and one connection served by the real socket server and dispatcher, as the peer ``origin``."""
    async with open_core(data_dir, store_faults=StoreFaults(**store_faults)) as core, trio.open_nursery() as nursery:
        server = SocketServer(Dispatcher(core))
        a, b = trio.socket.socketpair()
        ours, client = trio.SocketStream(a), trio.SocketStream(b)

        async def serve() -> None:
            try:
                await server._converse(ours, origin)
            except* trio.BrokenResourceError:
                pass
            finally:
                await ours.aclose()

        nursery.start_soon(serve)
        yield core, client, nursery
        nursery.cancel_scope.cancel()


async def read_lines(stream: trio.SocketStream, buffer: bytearray, n: int) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    while len(lines) < n:
        newline = buffer.find(b"\n")
        if newline < 0:
            chunk = await stream.receive_some(65536)
            assert chunk, "the daemon closed the connection"
            buffer += chunk
            continue
        lines.append(json.loads(bytes(buffer[:newline])))
        del buffer[: newline + 1]
    return lines


async def test_undo_and_history_right_after_a_pipelined_write_see_it(data_dir: str, commit_gate: CommitGate) -> None:
    """An add, a history and an undo sent in one write, with the add's commit held: the history has the add and
    the undo reverts it, instead of missing it or being refused as stale."""
    async with serve_one(data_dir, Origin(1000, 42), before_commit=commit_gate) as (core, client, _nursery):
        await core.add("l", "before", DAY)
        commit_gate.hold()
        await client.send_all(
            encode_request("add", request_id=1, list="l", title="pipelined", date="2026-02-03")
            + encode_request("history", request_id=2, list="l")
            + encode_request("undo", request_id=3, list="l")
        )
        await commit_gate.entered.wait()
        await trio.testing.wait_all_tasks_blocked()
        commit_gate.release()
        buffer = bytearray()
        with trio.fail_after(10):
            responses = {r["id"]: r for r in await read_lines(client, buffer, 3)}
        assert all(r["ok"] for r in responses.values()), responses
        assert responses[1]["result"]["title"] == "pipelined"
        # The undo may have committed before the history was read: its first two events are what counts.
        assert [e["after"]["title"] for e in responses[2]["result"]["events"][:2]] == ["before", "pipelined"]
        assert [e["title"] for e in responses[3]["result"]] == ["pipelined"]
        assert [e.title for e in await core.entries("l")] == ["before"]


async def test_a_watch_sees_every_change_of_the_task_free_path_in_order_with_the_peer(data_dir: str) -> None:
    """Adds, updates and deletes pipelined on one connection (no task per request) reach a watch on another,
    each once and in position order, carrying the uid and pid of the connection that made them."""
    peer = Origin(1234, 5678)
    async with serve_one(data_dir, peer) as (core, writer, nursery):
        server = SocketServer(Dispatcher(core))
        a, b = trio.socket.socketpair()
        ours, watch = trio.SocketStream(a), trio.SocketStream(b)

        async def serve_watch() -> None:
            try:
                await server._converse(ours, Origin(1, 2))
            except* trio.BrokenResourceError:
                pass

        nursery.start_soon(serve_watch)
        await watch.send_all(encode_request("watch", request_id="w"))
        watched = bytearray()
        (started,) = await read_lines(watch, watched, 1)
        assert started["ok"] and started["result"]["position"] == 0
        requests = []
        for i in range(60):
            requests.append(encode_request("add", request_id=i, list=f"l{i % 3}", title=f"t{i}", date="2026-02-03"))
        for i in range(0, 60, 4):
            requests.append(encode_request("update", request_id=100 + i, list=f"l{i % 3}", entry=i // 3 + 1, done=True))
        requests.append(encode_request("delete", request_id=200, list="l0", entry=1))
        await writer.send_all(b"".join(requests))
        answered = bytearray()
        with trio.fail_after(20):
            responses = await read_lines(writer, answered, len(requests))
            assert all(r["ok"] for r in responses), [r for r in responses if not r["ok"]]
            events = [line["event"] for line in await read_lines(watch, watched, len(requests))]
        positions = [e["position"] for e in events]
        assert positions == list(range(1, len(requests) + 1)), "a change was missed, repeated or out of order"
        assert [e["op"] for e in events].count("add") == 60
        assert [e["op"] for e in events].count("update") == 15
        assert [e["op"] for e in events].count("delete") == 1
        assert {(e["uid"], e["pid"]) for e in events} == {(1234, 5678)}
        history = await core.history("l0")
        assert [(e["uid"], e["pid"]) for e in history["events"]] == [(1234, 5678)] * len(history["events"])
        await watch.aclose()


@pytest.mark.parametrize("inline", [False, True])
async def test_a_watch_line_waits_for_a_stalled_subscriber_without_a_timeout(inline: bool, data_dir: str) -> None:
    """A subscriber that stops reading is not disconnected by the write timeout (its buffer overflows into
    catch-up instead), and once it reads again it gets every event once, in order."""
    async with open_core(data_dir, CoreConfig(inline_commits=inline)) as core, trio.open_nursery() as nursery:
        # A write timeout that any wait for the socket would overrun: were it
        # applied to a watch's lines, the stalled subscriber would be cut off.
        server = SocketServer(Dispatcher(core), SocketConfig(write_timeout=0.001))
        core.hub.capacity = 8
        a, b = trio.socket.socketpair()
        a.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_SNDBUF, 4096)
        b.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
        ours, watch = trio.SocketStream(a), trio.SocketStream(b)
        nursery.start_soon(server._converse, ours, Origin(1, 2))
        await watch.send_all(encode_request("watch", request_id="w"))
        buffer = bytearray()
        await read_lines(watch, buffer, 1)
        for i in range(200):
            await core.add("l", f"a title long enough to fill a small socket buffer quickly, number {i}", DAY)
        with trio.fail_after(20):
            events = [line["event"] for line in await read_lines(watch, buffer, 200)]
        assert [e["position"] for e in events] == list(range(1, 201))
        assert core.hub.statistics().watch_catchups >= 1
        nursery.cancel_scope.cancel()
