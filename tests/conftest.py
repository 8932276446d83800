"""Shared fixtures: a data directory, a commit gate, a running registry, a short private directory for sockets,
and the PostgreSQL cluster (one per session) with a fresh database per test.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.daemon import remove_short_tempdirs
from tests.pg import SKIP_REASON, Cluster, find_bindir
from todod import _core
from todod._registry import Registry
from todod._server import ServerConfig, ServerFaults
from todod.store import Store, StoreFaults, open_store


@pytest.fixture(scope="session", autouse=True)
def _short_tempdirs_removed() -> Iterator[None]:
    """The short directories the tests made for sockets (tests/daemon.py) go when the session ends."""
    yield
    remove_short_tempdirs()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the whole session (see tests/pg.py).

    Skipped, with the reason printed, where no PostgreSQL binaries exist;
    under CI (``CI`` set) that is a failure, since .ci/run installs them.
    """
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail(f"{SKIP_REASON} (CI must run them: .ci/run installs Debian's postgresql)")
        pytest.skip(SKIP_REASON)
    cluster = Cluster(bindir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_uri(pg_cluster: Cluster) -> Iterator[str]:
    """The URI of a fresh, empty PostgreSQL database (emptied afterwards for a later test)."""
    uri = pg_cluster.new_database()
    yield uri
    pg_cluster.release(uri)


#: The backends the contract tests run on: the store URI, None for SQLite.
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def store_uri(request: pytest.FixtureRequest) -> str | None:
    """Each backend in turn: None (SQLite in the data directory), then a fresh PostgreSQL database's URI."""
    if request.param == "sqlite":
        return None
    uri: str = request.getfixturevalue("pg_uri")
    return uri


#: Runs a test on SQLite only (it reads the SQLite file, or its point is SQLite's).
SQLITE_ONLY = pytest.mark.parametrize("store_uri", [None], ids=["sqlite"])


@pytest.fixture
def on_backend(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, store_uri: str | None) -> str | None:
    """Make the test module's ``open_core`` and ``open_store`` open ``store_uri``.

    Use: ``pytestmark = pytest.mark.usefixtures("on_backend")``.
    """
    monkeypatch.setattr(request.module, "open_core", functools.partial(_core.open_core, store_uri=store_uri))
    if hasattr(request.module, "open_store"):
        monkeypatch.setattr(request.module, "open_store", functools.partial(open_store, uri=store_uri))
    return store_uri


def backend_env(store_uri: str | None) -> dict[str, str]:
    """The environment that makes a ``todod`` use ``store_uri`` (none for SQLite)."""
    return {} if store_uri is None else {"TODOD_STORE": store_uri}


@pytest.fixture(scope="module", params=BACKENDS)
def module_store_uri(request: pytest.FixtureRequest) -> str | None:
    """As ``store_uri``, for module-scoped fixtures: one database for the module."""
    if request.param == "sqlite":
        return None
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    uri = cluster.new_database()
    request.addfinalizer(lambda: cluster.release(uri))
    return uri


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
def open_registry(data_dir: str, store_uri: str | None) -> OpenRegistry:
    """A factory: ``async with open_registry(config, ...) as (store, registry)``, on each backend.

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
        async with (
            open_store(data_dir, uri=store_uri, faults=store_faults) as store,
            trio.open_nursery() as nursery,
        ):
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
