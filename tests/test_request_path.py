"""The request path of issue 10: pipelined list servers, their epochs, and the connection's writer and bounds."""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
from typing import Any

import outcome
import pytest
import trio
import trio.testing

from tests.conftest import CommitGate, OpenRegistry
from todod import _socket
from todod._model import NOBODY, Entry, Origin
from todod._server import AddEntry, GetEntries, Op, ServerFaults
from todod._socket import SocketConfig, SocketServer, _Connection
from todod.protocol import Internal, Request, TodoError, Unavailable, encode_request
from todod.store._sqlite import StoreFaults

DAY = datetime.date(2026, 2, 3)


class FailingGate(CommitGate):
    """A commit gate that can also fail the transaction it held, as a full disk would."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    def __call__(self, group_size: int) -> None:
        super().__call__(group_size)
        if self.fail_next:
            self.fail_next = False
            raise sqlite3.OperationalError("database or disk is full")


def titles(entries: tuple[Entry, ...]) -> list[str]:
    return [e.title for e in entries]


async def _add(registry: Any, results: dict[str, Any], title: str) -> None:
    try:
        results[title] = await registry.call("l", AddEntry(DAY, title))
    except TodoError as exc:
        results[title] = exc


async def test_a_failed_commit_fails_the_later_batches_built_on_it_and_the_server_recovers(
    open_registry: OpenRegistry,
) -> None:
    """Batches pipelined behind a commit that fails are failed unwritten, and the list goes on from what is
    durable: the next add takes the id after the last durable entry."""
    gate = FailingGate()
    async with open_registry(store_faults=StoreFaults(before_commit=gate)) as (store, registry):
        await registry.call("l", AddEntry(DAY, "kept"))
        gate.hold()
        gate.fail_next = True
        results: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_add, registry, results, "a")
            await gate.entered.wait()  # a's transaction is held in the writer's thread
            nursery.start_soon(_add, registry, results, "b")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(_add, registry, results, "c")
            await trio.testing.wait_all_tasks_blocked()
            # The server did not wait for a's commit: b and c are with the store.
            assert not results and store.statistics().queued == 2
            gate.release()
        assert isinstance(results["a"], Unavailable) and "full" in results["a"].message
        for title in "bc":
            assert isinstance(results[title], Unavailable), title
            assert "an earlier commit of list 'l' failed" in results[title].message
        assert gate.groups == [1, 1], "a batch built on the failed one was written"
        assert (await registry.call("l", AddEntry(DAY, "after"))).id == 2
        assert titles(await registry.call("l", GetEntries())) == ["kept", "after"]
        assert titles((await store.load("l")).list_entries()) == ["kept", "after"]


async def test_a_read_pipelined_behind_a_write_is_answered_once_the_write_is_durable(
    open_registry: OpenRegistry, commit_gate: CommitGate
) -> None:
    """A read that saw a write still in flight waits for its commit, so nobody reads what may yet be lost."""
    async with open_registry(store_faults=StoreFaults(before_commit=commit_gate)) as (_store, registry):
        await registry.call("l", AddEntry(DAY, "first"))
        commit_gate.hold()
        results: dict[str, Any] = {}

        async def read() -> None:
            results["read"] = await registry.call("l", GetEntries())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_add, registry, results, "second")
            await commit_gate.entered.wait()
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            assert results == {}, "answered before the write it saw was durable"
            commit_gate.release()
        assert titles(results["read"]) == ["first", "second"]


async def test_no_caller_hangs_when_a_server_crashes_mid_pipeline_and_the_commit_fails(
    open_registry: OpenRegistry,
) -> None:
    """A crash while a batch is with the store and a failing commit: every caller is answered, and the restarted
    server serves the queued calls from the durable state."""
    gate = FailingGate()

    def poison(_name: str, op: Op) -> None:
        if isinstance(op, AddEntry) and op.title == "poison":
            raise RuntimeError("injected crash")

    async with open_registry(
        server_faults=ServerFaults(on_request=poison), store_faults=StoreFaults(before_commit=gate)
    ) as (_store, registry):
        await registry.call("l", AddEntry(DAY, "kept"))
        gate.hold()
        gate.fail_next = True
        results: dict[str, Any] = {}
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_add, registry, results, "lost")
                await gate.entered.wait()
                for title in ("poison", "x", "y"):
                    nursery.start_soon(_add, registry, results, title)
                await trio.testing.wait_all_tasks_blocked()
                assert isinstance(results["poison"], Internal)
                gate.release()
        assert isinstance(results["lost"], Unavailable)
        assert sorted(results[t].id for t in "xy") == [2, 3]
        assert sorted(titles(await registry.call("l", GetEntries()))) == ["kept", "x", "y"]
        assert registry.events.restarts == 1


# --- the connection -------------------------------------------------------------


async def test_responses_queued_behind_a_partial_write_go_out_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the socket is full, responses queue in the outbox, and the writer sends all of them in one write
    as soon as it can, in order and intact."""
    writes: list[bytes] = []
    real_write = os.write

    def recording_write(fd: int, data: Any) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(_socket.os, "write", recording_write)
    a, b = trio.socket.socketpair()
    ours, theirs = trio.SocketStream(a), trio.SocketStream(b)
    conn = _Connection(ours, 10.0, 8 << 20, _socket.ResponseBudget(256 << 20), 16 << 10)
    big = b"x" * (4 << 20) + b"\n"  # more than a socket's buffer: the first write is partial
    small = [json.dumps({"id": i}).encode() + b"\n" for i in range(20)]
    conn.in_flight = 21
    received = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run_writer)
        conn.push(big)
        for line in small:
            conn.push(line)
        assert conn.in_flight == 21, "counted as written before it was"
        while len(received) < len(big) + sum(map(len, small)):
            received += await theirs.receive_some(1 << 20)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert bytes(received) == big + b"".join(small)
    assert conn.in_flight == 0
    queued = b"".join(small)
    # Every write that carried the first queued response carried all of them
    # (a partial write hands the rest of the same buffer to the next one).
    assert all(queued in w for w in writes if small[0] in w), "the queued responses were written one by one"


class _HeldHandler:
    """A handler whose list ops are queued and never answered until the test says so."""

    def __init__(self) -> None:
        self.replies: list[tuple[Request, Any]] = []

    async def __call__(self, request: Request) -> Any:
        return {"op": request.op}

    async def submit(self, request: Request, reply: Any, origin: Origin) -> bool:
        if request.op == "hello":
            return False
        self.replies.append((request, reply))
        return True


async def _serve(server: SocketServer, stream: trio.SocketStream) -> None:
    """One connection as the listener serves it, without the peer check: closed at the end."""
    try:
        await server._converse(stream, NOBODY)
    except* trio.BrokenResourceError:
        pass
    finally:
        await stream.aclose()


async def test_a_connection_keeps_at_most_max_in_flight_requests() -> None:
    """A client pipelining many requests gets no more than max_in_flight of them read until answers are
    written; each answer lets one more in, and every request is answered by its id."""
    handler = _HeldHandler()
    server = SocketServer(handler, SocketConfig(max_in_flight=3))
    a, b = trio.socket.socketpair()
    ours, client = trio.SocketStream(a), trio.SocketStream(b)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, server, ours)
        await client.send_all(b"".join(encode_request("add", request_id=i, list="l", title=f"t{i}") for i in range(10)))
        await trio.testing.wait_all_tasks_blocked()
        assert len(handler.replies) == 3
        request, reply = handler.replies[0]
        reply(outcome.Value({"answered": request.id}))
        await trio.testing.wait_all_tasks_blocked()
        assert len(handler.replies) == 4
        for request, reply in handler.replies[1:]:
            reply(outcome.Value({"answered": request.id}))
        await trio.testing.wait_all_tasks_blocked()
        assert len(handler.replies) == 7
        for request, reply in handler.replies[4:]:
            reply(outcome.Value({"answered": request.id}))
        await trio.testing.wait_all_tasks_blocked()
        for request, reply in handler.replies[7:]:
            reply(outcome.Value({"answered": request.id}))
        await client.send_eof()
        data = bytearray()
        while chunk := await client.receive_some(65536):
            data += chunk
    ids = [json.loads(line)["id"] for line in data.splitlines()]
    assert sorted(ids) == list(range(10))
    assert len(handler.replies) == 10


async def test_a_reply_after_the_connection_closed_is_dropped() -> None:
    """An answer that arrives after its client left goes nowhere and harms nobody."""
    handler = _HeldHandler()
    server = SocketServer(handler, SocketConfig())
    a, b = trio.socket.socketpair()
    ours, client = trio.SocketStream(a), trio.SocketStream(b)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, server, ours)
        await client.send_all(encode_request("add", request_id=1, list="l", title="t"))
        await trio.testing.wait_all_tasks_blocked()
        await client.aclose()
        await trio.testing.wait_all_tasks_blocked()
        ((_request, reply),) = handler.replies
        with trio.fail_after(5):
            reply(outcome.Value({"late": True}))  # the connection's writer ends on the broken socket
            await trio.testing.wait_all_tasks_blocked()
    reply(outcome.Error(Unavailable("still harmless")))


async def test_the_error_that_ends_reading_comes_after_the_answers_still_owed() -> None:
    """A line over the cap behind a request not yet answered: the request's answer is written first, then the
    too_large error, then the connection closes."""
    handler = _HeldHandler()
    server = SocketServer(handler, SocketConfig(max_line=100))
    a, b = trio.socket.socketpair()
    ours, client = trio.SocketStream(a), trio.SocketStream(b)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, server, ours)
        await client.send_all(encode_request("add", request_id=1, list="l", title="t") + b"x" * 200 + b"\n")
        await trio.testing.wait_all_tasks_blocked()
        ((_request, reply),) = handler.replies
        reply(outcome.Value({"answered": 1}))
        data = bytearray()
        with trio.fail_after(5):
            while chunk := await client.receive_some(65536):
                data += chunk
    lines = [json.loads(line) for line in data.splitlines()]
    assert [line.get("id") for line in lines] == [1, None]
    assert lines[0]["ok"] is True and lines[1]["error"]["code"] == "too_large"
