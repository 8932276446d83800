"""Shared fixtures: a data directory, a commit gate, a running registry, a short private directory for sockets."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from todod._registry import Registry
from todod._server import ServerConfig, ServerFaults
from todod.store import Store, StoreFaults, open_store


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    """A data directory that does not exist yet (the store creates it 0700)."""
    return str(tmp_path / "data")


@pytest.fixture
def lazy_autojump_clock() -> trio.testing.MockClock:
    """A mock clock that jumps to the next deadline after 10 ms of real idleness.

    pytest-trio's ``autojump_clock`` jumps at once, so while SQLite runs in a
    worker thread the run loop spins, polling, and competes with that thread
    for the GIL and the CPU.  Waiting 10 ms of real time first lets the
    thread finish: tests stay fast and steady under load.  As with any
    autojump clock, a deadline pending while a thread runs may still fire
    early, so tests using it keep no deadline they do not mean to reach.
    """
    return trio.testing.MockClock(autojump_threshold=0.01)


class CommitGate:
    """A ``StoreFaults.before_commit`` hook that can hold the writer's thread.

    While held, the next transaction stops in the hook: ``entered`` is set and
    the thread waits, through trio, until :meth:`release`.  Waiting through
    trio means a cancelled writer (a failing test unwinding) is never left
    blocked.  Every call records its group size in ``groups``.
    """

    def __init__(self) -> None:
        self.entered = trio.Event()
        self.groups: list[int] = []
        self._released: trio.Event | None = None

    def hold(self) -> None:
        """Hold the next transaction in the hook until :meth:`release`."""
        self.entered = trio.Event()
        self._released = trio.Event()

    def release(self) -> None:
        if self._released is not None:
            self._released.set()
            self._released = None

    def __call__(self, group_size: int) -> None:
        self.groups.append(group_size)
        released = self._released
        if released is not None:
            trio.from_thread.run_sync(self.entered.set)
            trio.from_thread.run(released.wait)


@pytest.fixture
def commit_gate() -> CommitGate:
    """A commit gate to pass as ``StoreFaults(before_commit=...)``; it holds nothing until told."""
    return CommitGate()


OpenRegistry = Callable[..., AbstractAsyncContextManager[tuple[Store, Registry]]]


@pytest.fixture
def open_registry(data_dir: str) -> OpenRegistry:
    """A factory: ``async with open_registry(config, ...) as (store, registry)``.

    It runs the store's writer and the registry (no supervisor, no checkpointer)
    for the body's duration, then stops the list servers and the writer.
    """

    @asynccontextmanager
    async def open_(
        config: ServerConfig | None = None,
        *,
        server_faults: ServerFaults | None = None,
        store_faults: StoreFaults | None = None,
    ) -> AsyncIterator[tuple[Store, Registry]]:
        async with open_store(data_dir, faults=store_faults) as store, trio.open_nursery() as nursery:
            await nursery.start(store.run_writer)
            registry = Registry(store, config or ServerConfig(), server_faults or ServerFaults())
            await nursery.start(registry.run)
            yield store, registry
            nursery.cancel_scope.cancel()

    return open_


@pytest.fixture
def short_dir() -> Iterator[str]:
    """A private directory under /tmp, short enough for AF_UNIX socket paths."""
    path = tempfile.mkdtemp(prefix="todo-test-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)
