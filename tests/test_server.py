"""List servers and the registry: one server per list, crashes, quarantine, idle expiry, late replies."""

from __future__ import annotations

import datetime
import math
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from tests.conftest import CommitGate, OpenRegistry
from todod._model import Entry
from todod._registry import Registry
from todod._server import AddEntry, DeleteEntry, GetEntries, Op, ServerConfig, ServerFaults, UpdateEntry
from todod._store import StoreFaults, open_store
from todod.protocol import Internal, Invalid, NotFound, Timeout, Unavailable

DAY = datetime.date(2026, 2, 3)

#: No timer at all unless a test sets one: an autojump clock jumps to the next
#: deadline whenever every task waits, including while SQLite runs in a worker
#: thread, so a stray deadline (a call timeout, an idle timeout) would fire early.
NO_TIMERS = ServerConfig(call_timeout=math.inf, idle_timeout=math.inf)


class Poison:
    """A ServerFaults.on_request hook that crashes the server on titles starting with 'poison'."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, name: str, op: Op) -> None:
        if isinstance(op, AddEntry) and op.title.startswith("poison"):
            self.seen.append(op.title)
            raise RuntimeError(f"injected crash on {op.title!r}")


def titles(entries: tuple[Entry, ...]) -> list[str]:
    return [e.title for e in entries]


async def test_two_first_touches_of_a_new_list_start_one_server(open_registry: OpenRegistry) -> None:
    """Concurrent first requests to a new list start exactly one server and load the list once."""
    async with open_registry() as (store, registry):
        assert registry.lookup("new") is None
        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(registry.call, "new", AddEntry(DAY, f"t{i}"))
                nursery.start_soon(registry.call, "new", GetEntries())
            await trio.testing.wait_all_tasks_blocked()
            server = registry.lookup("new")
            assert server is not None
        assert registry.lookup("new") is server
        assert registry.events.loads == 1
        assert store.statistics().loads == 1
        assert registry.running() == 1
        entries = await registry.call("new", GetEntries())
        assert [e.id for e in entries] == list(range(1, 11))


async def test_invalid_list_name_starts_no_server(open_registry: OpenRegistry) -> None:
    """A call to a list with a forbidden name is Invalid and starts nothing."""
    async with open_registry() as (store, registry):
        for name in ("", "a/b", "x" * 201, "bad\x1bname"):
            with pytest.raises(Invalid):
                await registry.call(name, GetEntries())
        assert registry.running() == 0
        assert store.statistics().loads == 0


async def test_errors_of_one_request_do_not_affect_its_batch(
    open_registry: OpenRegistry, commit_gate: CommitGate
) -> None:
    """In one batch an unknown id is NotFound naming the list while the other requests are applied."""
    async with open_registry(store_faults=StoreFaults(before_commit=commit_gate)) as (_store, registry):
        await registry.call("l", AddEntry(DAY, "one"))
        commit_gate.hold()
        results: dict[str, Any] = {}

        async def call(key: str, op: Op) -> None:
            try:
                results[key] = await registry.call("l", op)
            except NotFound as exc:
                results[key] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "blocker", AddEntry(DAY, "two"))
            await commit_gate.entered.wait()
            nursery.start_soon(call, "missing", UpdateEntry(99, done=True))
            nursery.start_soon(call, "done", UpdateEntry(1, done=True))
            nursery.start_soon(call, "gone", DeleteEntry(2))
            await trio.testing.wait_all_tasks_blocked()
            commit_gate.release()
        assert isinstance(results["missing"], NotFound)
        assert "99" in results["missing"].message and "'l'" in results["missing"].message
        assert results["done"] == Entry(1, DAY, "one", done=True)
        assert results["gone"] == Entry(2, DAY, "two")
        assert await registry.call("l", GetEntries()) == (Entry(1, DAY, "one", done=True),)
        assert commit_gate.groups[-1] == 1, "the three requests were not one batch"


async def test_crash_answers_the_poison_request_and_serves_the_queued_ones(
    open_registry: OpenRegistry, commit_gate: CommitGate
) -> None:
    """A crash on one request answers it Internal and serves the queued requests from durable state."""
    poison = Poison()
    async with open_registry(
        server_faults=ServerFaults(on_request=poison), store_faults=StoreFaults(before_commit=commit_gate)
    ) as (store, registry):
        await registry.call("l", AddEntry(DAY, "first"))
        commit_gate.hold()
        results: dict[str, Any] = {}

        async def add(title: str) -> None:
            try:
                results[title] = await registry.call("l", AddEntry(DAY, title))
            except Internal as exc:
                results[title] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(add, "blocker")
            await commit_gate.entered.wait()  # the server now waits for its commit
            for title in ("a", "b", "poison", "c", "d"):
                nursery.start_soon(add, title)
            await trio.testing.wait_all_tasks_blocked()
            server = registry.lookup("l")
            assert server is not None and server.mailbox_depth() == 5
            commit_gate.release()

        assert isinstance(results["poison"], Internal)
        assert results["poison"].code == "internal"
        assert poison.seen == ["poison"], "the poison request was retried"
        assert results["blocker"].id == 2
        assert sorted(results[t].id for t in "abcd") == [3, 4, 5, 6]
        assert registry.events.restarts == 1
        assert registry.events.loads == 2
        assert registry.lookup("l") is server, "the crash replaced the server instead of restarting it"
        served = await registry.call("l", GetEntries())
        assert served == (await store.load("l")).list_entries()
        assert sorted(titles(served)) == ["a", "b", "blocker", "c", "d", "first"]
        after = await registry.call("l", AddEntry(DAY, "after"))
        assert after.id == 7


async def test_repeated_crashes_quarantine_the_list_until_the_cool_down_ends(
    open_registry: OpenRegistry, lazy_autojump_clock: trio.testing.MockClock
) -> None:
    """More than 3 crashes in 5 s make the list Unavailable at once for 30 s; other lists keep working."""
    poison = Poison()
    async with open_registry(NO_TIMERS, server_faults=ServerFaults(on_request=poison)) as (store, registry):
        await registry.call("bad", AddEntry(DAY, "kept"))
        for i in range(4):
            with pytest.raises(Internal):
                await registry.call("bad", AddEntry(DAY, f"poison {i}"))
        assert registry.events.quarantines == 1
        assert registry.lookup("bad") is None
        assert registry.quarantined() == 1

        start, loads = trio.current_time(), store.statistics().loads
        with pytest.raises(Unavailable) as info:
            await registry.call("bad", GetEntries())
        assert trio.current_time() == start, "a quarantined list made its caller wait"
        assert store.statistics().loads == loads, "a quarantined list was loaded"
        assert info.value.code == "unavailable"
        assert "'bad'" in info.value.message and "quarantined" in info.value.message
        assert "4 times" in info.value.message

        other = await registry.call("good", AddEntry(DAY, "fine"))
        assert other.id == 1

        await trio.sleep(29)
        with pytest.raises(Unavailable):
            await registry.call("bad", GetEntries())
        await trio.sleep(2)
        assert titles(await registry.call("bad", GetEntries())) == ["kept"]
        assert (await registry.call("bad", AddEntry(DAY, "again"))).id == 2
        assert registry.quarantined() == 0


async def test_queued_requests_of_a_quarantined_list_are_answered(
    open_registry: OpenRegistry, commit_gate: CommitGate
) -> None:
    """When a crash quarantines a list, the requests waiting for it get Unavailable instead of hanging."""
    poison = Poison()
    config = attrs.evolve(ServerConfig(), max_crashes=0)  # the first crash quarantines
    async with open_registry(
        config,
        server_faults=ServerFaults(on_request=poison),
        store_faults=StoreFaults(before_commit=commit_gate),
    ) as (_store, registry):
        commit_gate.hold()
        results: dict[str, Any] = {}

        async def add(title: str) -> None:
            try:
                results[title] = await registry.call("l", AddEntry(DAY, title))
            except (Internal, Unavailable) as exc:
                results[title] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(add, "blocker")
            await commit_gate.entered.wait()
            for title in ("x", "poison", "y", "z"):
                nursery.start_soon(add, title)
            await trio.testing.wait_all_tasks_blocked()
            commit_gate.release()
        assert results["blocker"].id == 1
        assert isinstance(results["poison"], Internal)
        for title in "xyz":
            assert isinstance(results[title], Unavailable), title
            assert "quarantined" in results[title].message
        assert registry.lookup("l") is None
        assert registry.quarantined() == 1


async def test_crashes_spread_over_more_than_the_window_do_not_quarantine(
    open_registry: OpenRegistry, lazy_autojump_clock: trio.testing.MockClock
) -> None:
    """Crashes 2 s apart never reach 4 within 5 s, so the list restarts each time and stays available."""
    poison = Poison()
    async with open_registry(NO_TIMERS, server_faults=ServerFaults(on_request=poison)) as (_store, registry):
        for i in range(8):
            with pytest.raises(Internal):
                await registry.call("l", AddEntry(DAY, f"poison {i}"))
            await trio.sleep(2)
        assert registry.events.restarts == 8
        assert registry.events.quarantines == 0
        assert (await registry.call("l", AddEntry(DAY, "fine"))).id == 1


async def test_idle_server_stops_and_restarts_with_its_state(
    open_registry: OpenRegistry, lazy_autojump_clock: trio.testing.MockClock
) -> None:
    """A server idle past idle_timeout leaves the registry; the next request restarts it with its state."""
    config = attrs.evolve(NO_TIMERS, idle_timeout=10.0)
    async with open_registry(config) as (_store, registry):
        await registry.call("l", AddEntry(DAY, "kept"))
        server = registry.lookup("l")
        assert server is not None
        await trio.sleep(9)
        assert registry.lookup("l") is server, "the server stopped before its idle timeout"
        await trio.sleep(2)
        assert registry.lookup("l") is None
        assert registry.running() == 0
        assert titles(await registry.call("l", GetEntries())) == ["kept"]
        assert registry.lookup("l") not in (None, server)
        assert registry.events.loads == 2
        assert registry.events.restarts == 0, "an idle stop is not a crash"


async def test_late_reply_to_a_caller_that_gave_up_does_not_harm_the_server(
    open_registry: OpenRegistry, commit_gate: CommitGate, mock_clock: trio.testing.MockClock
) -> None:
    """A caller that times out gets Timeout; the later reply is dropped and the server serves on."""
    # A manual clock: the caller's deadline must pass only once the server is
    # stuck in its commit, whatever the writer thread's speed.
    async with open_registry(NO_TIMERS, store_faults=StoreFaults(before_commit=commit_gate)) as (
        _store,
        registry,
    ):
        await registry.call("l", AddEntry(DAY, "first"))
        server = registry.lookup("l")
        commit_gate.hold()
        outcome: list[BaseException] = []

        async def impatient() -> None:
            try:
                await registry.call("l", AddEntry(DAY, "late"), 1.0)
            except Timeout as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(impatient)
            await commit_gate.entered.wait()
            mock_clock.jump(1.0)
        assert len(outcome) == 1 and outcome[0].code == "timeout"
        commit_gate.release()
        # The write itself was not undone: a timeout means "maybe applied".
        assert titles(await registry.call("l", GetEntries())) == ["first", "late"]
        assert (await registry.call("l", AddEntry(DAY, "after"))).id == 3
        assert registry.lookup("l") is server
        assert registry.events.restarts == 0


async def test_shutdown_answers_every_waiting_caller(data_dir: str, commit_gate: CommitGate) -> None:
    """Stopping the registry fails the request in flight and the queued ones with Unavailable; none hangs."""
    results: list[BaseException] = []

    async def add(registry: Registry, title: str) -> None:
        try:
            await registry.call("l", AddEntry(DAY, title))
        except Unavailable as exc:
            results.append(exc)

    async with open_store(data_dir, faults=StoreFaults(before_commit=commit_gate)) as store:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run_writer)
            registry = Registry(store)
            registry_scope = trio.CancelScope()

            async def run_registry(*, task_status: trio.TaskStatus[None]) -> None:
                with registry_scope:
                    await registry.run(task_status=task_status)

            await nursery.start(run_registry)
            commit_gate.hold()
            async with trio.open_nursery() as callers:
                callers.start_soon(add, registry, "in flight")
                await commit_gate.entered.wait()
                for i in range(3):
                    callers.start_soon(add, registry, f"queued {i}")
                await trio.testing.wait_all_tasks_blocked()
                registry_scope.cancel()  # the first step of open_core's shutdown
                await trio.testing.wait_all_tasks_blocked()
                assert len(results) == 4, "a caller was left waiting by a stopped server"
                commit_gate.release()
            assert all("shutting down" in exc.message for exc in results)
            with pytest.raises(Unavailable, match="shutting down"):
                await registry.call("l", GetEntries())
            nursery.cancel_scope.cancel()
