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
from todod._model import Entry, TodoList
from todod._registry import REAP_TICK, Registry
from todod._server import AddEntry, DeleteEntry, GetEntries, Op, ServerConfig, ServerFaults, UpdateEntry
from todod.protocol import Internal, Invalid, NotFound, Timeout, TodoError, Unavailable
from todod.store._sqlite import Batch, StoreError, StoreFaults, open_store

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
        assert results["done"] == Entry(1, DAY, "one", done=True, version=2)
        assert results["gone"] == Entry(2, DAY, "two")
        assert await registry.call("l", GetEntries()) == (Entry(1, DAY, "one", done=True, version=2),)
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
            await commit_gate.entered.wait()  # the blocker's commit is now held in the writer
            for title in ("a", "b", "poison", "c", "d"):
                nursery.start_soon(add, title)
            await trio.testing.wait_all_tasks_blocked()
            server = registry.lookup("l")
            # The pipelined server took the batch at once and crashed on it;
            # its new incarnation waits for the blocker's commit before it loads.
            assert server is not None and isinstance(results["poison"], Internal)
            assert registry.events.loads == 1
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
    """Stopping the registry answers every caller: the one whose commit is in flight is told it may have been
    applied (timeout), the queued ones that they were not (unavailable); none hangs."""
    results: dict[str, TodoError] = {}

    async def add(registry: Registry, title: str) -> None:
        try:
            await registry.call("l", AddEntry(DAY, title))
        except (Unavailable, Timeout) as exc:
            results[title] = exc

    async with open_store(data_dir, faults=StoreFaults(before_commit=commit_gate)) as store:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run_writer)
            # A pipeline of one batch: the queued calls stay in the mailbox.
            registry = Registry(store, attrs.evolve(ServerConfig(), pipeline_depth=1))
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
            assert isinstance(results.pop("in flight"), Timeout)
            assert all(isinstance(exc, Unavailable) and "shutting down" in exc.message for exc in results.values())
            with pytest.raises(Unavailable, match="shutting down"):
                await registry.call("l", GetEntries())
            nursery.cancel_scope.cancel()


# --- found by review: stopping races and load failures (a fake store, no threads) ---


class FakeStore:
    """A store in memory: ``load`` and ``commit`` can be made to fail or to block."""

    shared = False

    def __init__(self, next_id: int = 2) -> None:
        self.next_id = next_id
        self.load_failures = 0
        self.loads = 0
        self.commit_gate: trio.Event | None = None
        self._queue: trio.MemorySendChannel[Batch] | None = None

    async def load(self, name: str) -> TodoList:
        await trio.lowlevel.checkpoint()
        self.loads += 1
        if self.load_failures:
            self.load_failures -= 1
            raise StoreError("could not load list: disk I/O error")
        return TodoList({}, self.next_id)

    async def commit(self, name: str, next_id: int, changes: Any) -> None:
        if self.commit_gate is not None:
            await self.commit_gate.wait()
        await trio.lowlevel.checkpoint()

    async def submit(self, batch: Batch) -> None:
        """Like the real store's: queue the batch for one writer task, which answers batches in order."""
        if self._queue is None:
            self._queue, receive = trio.open_memory_channel[Batch](math.inf)

            async def write() -> None:
                async for item in receive:
                    await self.commit(item.name, item.next_id, item.changes)
                    item.committed(None)

            trio.lowlevel.spawn_system_task(write)
        self._queue.send_nowait(batch)


async def test_idle_expiry_racing_a_caller_never_fails_it(autojump_clock: trio.testing.MockClock) -> None:
    """A call that reaches a server in the same tick the idle reaper fires is served, never told 'shutting down'."""
    for _ in range(40):  # trio shuffles each tick's wake-ups: try both orders many times
        registry = Registry(FakeStore(), ServerConfig(idle_timeout=10.0))  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            await nursery.start(registry.run)
            t0 = trio.current_time()
            await registry.call("home", GetEntries())  # the server starts to wait for mail at t0
            await trio.sleep_until(t0 + 10.0)  # wake in the very tick the timer fires
            assert await registry.call("home", GetEntries()) == ()
            nursery.cancel_scope.cancel()


async def test_load_failure_answers_with_the_store_error_not_a_quarantine() -> None:
    """A list that cannot be loaded answers with the store's reason, counts no crash, and loads on the next call."""
    store = FakeStore()
    store.load_failures = 5
    registry = Registry(store, ServerConfig(idle_timeout=math.inf))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        with pytest.raises(StoreError, match="disk I/O error"):
            await registry.call("home", GetEntries())
        assert registry.events.restarts == 0 and registry.events.quarantines == 0
        store.load_failures = 0
        assert await registry.call("home", GetEntries()) == ()
        nursery.cancel_scope.cancel()


async def test_stop_during_a_commit_answers_in_doubt_not_unavailable() -> None:
    """A caller whose commit is with the store when the server stops is told it may have been applied (timeout)."""
    store = FakeStore()
    store.commit_gate = trio.Event()  # never set: the commit stays in flight
    registry = Registry(store, NO_TIMERS)  # type: ignore[arg-type]
    outcomes: list[BaseException] = []

    async def add() -> None:
        try:
            await registry.call("home", AddEntry(DAY, "x"))
        except Timeout as exc:
            outcomes.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as callers:
            async with trio.open_nursery() as servers:
                await servers.start(registry.run)
                callers.start_soon(add)
                await trio.testing.wait_all_tasks_blocked()
                registry.close()
                servers.cancel_scope.cancel()  # the daemon's shutdown, as open_core does it
    assert len(outcomes) == 1 and "may have been applied" in str(outcomes[0])


async def test_reads_of_never_written_lists_keep_no_server() -> None:
    """Reading lists that were never written leaves no server running, so made-up names cannot grow memory."""
    store = FakeStore(next_id=1)
    registry = Registry(store, ServerConfig(idle_timeout=math.inf))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        for i in range(100):
            assert await registry.call(f"nothing-{i}", GetEntries()) == ()
        await trio.testing.wait_all_tasks_blocked()
        assert registry.running() == 0
        nursery.cancel_scope.cancel()


async def test_a_closed_registry_starts_no_server() -> None:
    """After close(), a call for a new list is refused as unavailable instead of failing inside trio."""
    registry = Registry(FakeStore(), NO_TIMERS)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        registry.close()
        with pytest.raises(Unavailable, match="shutting down"):
            await registry.call("home", GetEntries())
        nursery.cancel_scope.cancel()


async def test_a_call_whose_caller_left_before_it_was_taken_is_not_applied(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A call that times out while it waits in the mailbox is dropped when the server reaches it: nobody waits
    for its answer, so the change is not made; the calls queued with it are served."""
    store = FakeStore()
    store.commit_gate = trio.Event()
    # A pipeline of one batch: the next calls stay in the mailbox while it commits.
    registry = Registry(store, attrs.evolve(NO_TIMERS, max_batch=1, pipeline_depth=1))  # type: ignore[arg-type]
    results: dict[str, object] = {}

    async def add(title: str, within: float | None = None) -> None:
        try:
            results[title] = (await registry.call("home", AddEntry(DAY, title), within)).id
        except Timeout as exc:
            results[title] = exc

    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        nursery.start_soon(add, "in commit")
        await trio.testing.wait_all_tasks_blocked()  # its commit now waits on the gate
        nursery.start_soon(add, "impatient", 1.0)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(add, "patient")
        await trio.sleep(2.0)
        assert isinstance(results.pop("impatient"), Timeout)
        store.commit_gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert results == {"in commit": 2, "patient": 3}, "the abandoned call took an id"
        assert registry.events.dropped_calls == 1
        assert titles(await registry.call("home", GetEntries())) == ["in commit", "patient"]
        nursery.cancel_scope.cancel()


async def test_the_idle_reaper_never_stops_a_server_in_a_commit(autojump_clock: trio.testing.MockClock) -> None:
    """A commit that outlasts idle_timeout is not cut short: the server answers it and stays registered."""
    store = FakeStore()
    registry = Registry(store, attrs.evolve(NO_TIMERS, idle_timeout=10.0))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        await registry.call("home", GetEntries())
        server = registry.lookup("home")
        store.commit_gate = trio.Event()
        entry: list[Entry] = []

        async def add() -> None:
            entry.append(await registry.call("home", AddEntry(DAY, "slow")))

        nursery.start_soon(add)
        await trio.sleep(35.0)  # three idle timeouts with the commit in flight
        assert registry.lookup("home") is server
        store.commit_gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert [e.id for e in entry] == [2]
        assert registry.lookup("home") is server
        await trio.sleep(10.5)  # idle from now on
        assert registry.lookup("home") is None
        nursery.cancel_scope.cancel()


async def test_a_caller_waiting_for_room_in_a_full_mailbox_times_out_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With the list stuck in a commit and its mailbox full, a caller waiting for room gets Timeout at its
    deadline, and its call is never applied."""
    store = FakeStore()
    store.commit_gate = trio.Event()
    # A pipeline of one batch: the next call stays in the mailbox while it commits.
    registry = Registry(store, attrs.evolve(NO_TIMERS, mailbox=1, max_batch=1, pipeline_depth=1))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        nursery.start_soon(registry.call, "home", AddEntry(DAY, "in commit"))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(registry.call, "home", AddEntry(DAY, "queued"))
        await trio.testing.wait_all_tasks_blocked()
        assert registry.mailbox_depth() == 1
        start = trio.current_time()
        with pytest.raises(Timeout, match="did not answer within 1 s"):
            await registry.call("home", AddEntry(DAY, "no room"), 1.0)
        assert trio.current_time() - start == pytest.approx(1.0)
        store.commit_gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert titles(await registry.call("home", GetEntries())) == ["in commit", "queued"]
        nursery.cancel_scope.cancel()


async def test_callers_that_waited_for_room_are_all_answered_once_the_list_moves_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Callers blocked on a full mailbox, whose calls a take moves into it before they count them, are all served."""
    store = FakeStore()
    store.commit_gate = trio.Event()
    registry = Registry(store, attrs.evolve(NO_TIMERS, mailbox=1, max_batch=1, pipeline_depth=1))  # type: ignore[arg-type]
    answered: list[str] = []

    async def add(title: str) -> None:
        await registry.call("home", AddEntry(DAY, title))
        answered.append(title)

    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        nursery.start_soon(add, "in commit")
        await trio.testing.wait_all_tasks_blocked()
        for title in ("queued", "waits 1", "waits 2", "waits 3"):
            nursery.start_soon(add, title)
            await trio.testing.wait_all_tasks_blocked()
        assert registry.mailbox_depth() == 1 and answered == []
        store.commit_gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(answered) == sorted(["in commit", "queued", "waits 1", "waits 2", "waits 3"])
        assert len(titles(await registry.call("home", GetEntries()))) == 5
        nursery.cancel_scope.cancel()


def test_a_mailbox_holds_at_least_one_call() -> None:
    """A mailbox of no room (a rendezvous channel) is refused: the server takes its mail without waiting in it."""
    with pytest.raises(ValueError, match="mailbox"):
        ServerConfig(mailbox=0)


async def test_calls_keep_their_deadline_while_a_closed_registry_winds_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A server that cannot stop at once (its load runs in a thread, which cancellation cannot interrupt) does not
    stretch its callers' wait: the call timer outlives the servers, so they get Timeout at their deadline."""

    class SlowLoad(FakeStore):
        async def load(self, name: str) -> TodoList:
            with trio.CancelScope(shield=True):  # stands for a load in a worker thread
                await trio.sleep(60)
            return await super().load(name)

    registry = Registry(SlowLoad(), attrs.evolve(NO_TIMERS, call_timeout=5.0))  # type: ignore[arg-type]
    outcomes: list[tuple[float, BaseException]] = []

    async def call() -> None:
        start = trio.current_time()
        try:
            await registry.call("home", GetEntries())
        except (Timeout, Unavailable) as exc:
            outcomes.append((trio.current_time() - start, exc))

    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        nursery.start_soon(call)
        await trio.testing.wait_all_tasks_blocked()
        registry.close()
    assert len(outcomes) == 1
    waited, exc = outcomes[0]
    assert isinstance(exc, Timeout) and waited == pytest.approx(5.0)


async def test_past_max_servers_the_longest_idle_lists_are_stopped(autojump_clock: trio.testing.MockClock) -> None:
    """A stream of new lists keeps at most max_servers running: the ones idle longest are stopped, the busiest
    recent ones stay; without any idle timeout at all."""
    registry = Registry(FakeStore(), attrs.evolve(NO_TIMERS, max_servers=10))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        for i in range(200):
            await registry.call(f"l{i}", GetEntries())
            await registry.call("hot", GetEntries())  # used all along: never the longest idle
            await trio.sleep(2 * REAP_TICK)  # the reaper trims at most once a tick
            assert registry.running() <= 11, "more lists in memory than max_servers allows"
        assert registry.lookup("hot") is not None
        assert registry.lookup("l199") is not None
        assert registry.lookup("l0") is None
        assert registry.events.evictions >= 190 - 11
        assert registry.events.restarts == 0
        nursery.cancel_scope.cancel()


async def test_a_stopped_list_comes_back_with_its_state(
    open_registry: OpenRegistry, lazy_autojump_clock: trio.testing.MockClock
) -> None:
    """A list stopped to make room loads again from the store on its next request, with every entry."""
    async with open_registry(attrs.evolve(NO_TIMERS, max_servers=2)) as (_store, registry):
        for name in ("a", "b", "c", "d"):
            await registry.call(name, AddEntry(DAY, f"{name} 1"))
            await registry.call(name, AddEntry(DAY, f"{name} 2"))
            await trio.sleep(2 * REAP_TICK)
        assert registry.lookup("a") is None
        assert titles(await registry.call("a", GetEntries())) == ["a 1", "a 2"]
        assert (await registry.call("a", AddEntry(DAY, "a 3"))).id == 3
        assert registry.events.loads == 5
