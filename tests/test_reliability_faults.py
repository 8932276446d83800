"""Faults inside a running todod: a list server crashing on a poison title, a hung writer, a stop while it drains.

The daemon is the real process with ``TODOD_TEST_FAULTS`` (``crash_title=T``:
a list server crashes on any add or update with title T;
``hang_writer_after=N``: the writer blocks for ever before its (N+1)th
commit).  The in-process basics (batch replay after a crash, quarantine on a
mock clock, late replies) are in tests/test_server.py and tests/test_core.py.
"""

from __future__ import annotations

import datetime
import signal
import threading
import time
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import CommitGate
from tests.daemon import Daemon, running_daemon, short_tempdir, wait_until
from todod._core import CoreConfig, open_core
from todod._main import _serve, _Where
from todod._server import ServerConfig
from todod._socket import SocketConfig, bind_unix
from todod.protocol import Internal, Timeout, TodoError, Unavailable
from todod.store._sqlite import StoreFaults

POISON = "poison pill"
CALL_TIMEOUT = 1.0
#: How much later than its call timeout a caller may get its answer: process
#: scheduling on a loaded two-core machine, not the daemon's own waiting.
SLACK = 1.5


def _code(daemon: Daemon, op: str, **fields: Any) -> str:
    try:
        daemon.request(op, **fields)
    except TodoError as exc:
        return exc.code
    return "ok"


def test_poison_request_gets_internal_and_other_requests_go_on() -> None:
    """A list server crashing on one request answers it internal, keeps the list's entries and serves on."""
    with running_daemon(env={"TODOD_TEST_FAULTS": f"crash_title={POISON}"}) as daemon:
        daemon.request("add", list="a", title="kept")
        with pytest.raises(Internal, match="not applied"):
            daemon.request("add", list="a", title=POISON)
        assert [e["title"] for e in daemon.request("entries", list="a")] == ["kept"]
        assert daemon.request("add", list="a", title="after")["id"] == 2
        assert daemon.request("add", list="b", title="other list")["id"] == 1
        stats = daemon.request("status")["stats"]
        assert stats["restarts"] == 1 and stats["quarantined"] == 0
        assert "list server 'a' crashed; restarting" in daemon.log()


def test_four_poison_requests_quarantine_only_that_list() -> None:
    """Four crashes within 5 s make the list unavailable for the quarantine, other lists unaffected, data kept."""
    args = ["--quarantine", "2"]
    with running_daemon(args, env={"TODOD_TEST_FAULTS": f"crash_title={POISON}"}) as daemon:
        daemon.request("add", list="bad", title="kept")
        started = time.monotonic()
        codes = [_code(daemon, "add", list="bad", title=POISON) for _ in range(4)]
        assert time.monotonic() - started < 5, "the four crashes must fall within the 5 s window"
        assert codes == ["internal"] * 4
        with pytest.raises(Unavailable, match="quarantined"):
            daemon.request("entries", list="bad")
        with pytest.raises(Unavailable, match="quarantined"):
            daemon.request("add", list="bad", title="harmless")
        assert daemon.request("add", list="good", title="fine")["id"] == 1
        assert daemon.request("entries", list="good")[0]["title"] == "fine"
        assert daemon.request("status")["stats"]["quarantined"] == 1
        assert "quarantined" in daemon.log()
        # After the cool-down the list comes back with what was durable.
        wait_until(lambda: _code(daemon, "entries", list="bad") == "ok", 10, "the quarantine to end")
        assert [e["title"] for e in daemon.request("entries", list="bad")] == ["kept"]
        assert daemon.request("add", list="bad", title="back")["id"] == 2


def _timed(daemon: Daemon, op: str, **fields: Any) -> tuple[str, float]:
    started = time.monotonic()
    code = _code(daemon, op, **fields)
    return code, time.monotonic() - started


def test_hung_writer_times_callers_out_and_the_daemon_keeps_answering() -> None:
    """With the writer hung, writes get timeout within the call timeout, reads not behind a commit are served."""
    env = {"TODOD_TEST_FAULTS": "hang_writer_after=2"}
    with running_daemon(["--call-timeout", str(CALL_TIMEOUT)], env=env) as daemon:
        daemon.request("add", list="busy", title="one")
        daemon.request("add", list="busy", title="two")
        assert daemon.request("entries", list="quiet") == []  # loaded before the hang
        code, took = _timed(daemon, "add", list="busy", title="stuck")
        assert code == "timeout" and took < CALL_TIMEOUT + SLACK, (code, took)
        wait_until(lambda: "injected fault: the writer hangs" in daemon.log(), 10, "the writer to hang")

        # Concurrent writers to any list all get their timeout; none hangs.
        results: list[tuple[str, float]] = []

        def write(i: int) -> None:
            results.append(_timed(daemon, "add", list=f"w{i % 3}", title=f"t{i}"))

        threads = [threading.Thread(target=write, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(CALL_TIMEOUT + 10)
        assert len(results) == 12
        assert all(code == "timeout" and took < CALL_TIMEOUT + SLACK for code, took in results), results

        # A read queued behind the list's pending commit waits with it, and times out too.
        code, took = _timed(daemon, "entries", list="busy")
        assert code == "timeout" and took < CALL_TIMEOUT + SLACK, (code, took)
        # Reads that need no commit are served: a loaded list with nothing
        # pending, a list loaded now (through the read pool), the lists.
        assert daemon.request("entries", list="quiet") == []
        assert daemon.request("entries", list="fresh") == []
        assert daemon.request("lists") == [{"name": "busy", "entries": 2}]
        assert daemon.request("hello")["protocol"] == 1
        stats = daemon.request("status")["stats"]
        assert stats["writer_queue"] >= 1 and stats["commits"] == 2

        # The two acknowledged adds are durable; the timed-out ones may or may not be.
        daemon.kill()
        daemon.env.pop("TODOD_TEST_FAULTS")
        daemon.start()
        titles = [e["title"] for e in daemon.request("entries", list="busy")]
        assert titles[:2] == ["one", "two"] and set(titles[2:]) <= {"stuck"}


DAY = datetime.date(2026, 11, 22)


async def test_stop_while_the_writer_drains_does_not_restart_the_listener(
    data_dir: str, commit_gate: CommitGate
) -> None:
    """After SIGTERM the listener stays stopped while the writer drains: no restart loop, no escalation."""
    run_dir = short_tempdir()
    bound = bind_unix(str(run_dir / "todod.sock"))
    config = CoreConfig(server=ServerConfig(call_timeout=0.2))
    try:
        async with open_core(data_dir, config, store_faults=StoreFaults(before_commit=commit_gate)) as core:
            signals_in, signals = trio.open_memory_channel[int](1)
            async with trio.open_nursery() as nursery:
                where = _Where(str(bound.path), None, data_dir)
                nursery.start_soon(_serve, core, bound, SocketConfig(), signals, where)
                commit_gate.hold()
                # A commit outlives its caller's timeout: the writer is busy at the stop.
                with pytest.raises(Timeout):
                    await core.add("l", "slow", DAY)
                await signals_in.send(signal.SIGTERM)
            # The daemon's shutdown now waits for the writer to drain; every
            # other task gets to run meanwhile.
            await trio.testing.wait_all_tasks_blocked()
            assert core.supervisor.statistics().restarts == 0
            commit_gate.release()
    finally:
        bound.close()
