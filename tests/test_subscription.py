"""Watch: every change once, in position order, live or replayed, whatever the subscriber's pace."""

from __future__ import annotations

import datetime
import json
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from tests.conftest import backend_env
from tests.daemon import TODO, Daemon, LineReader, PipeLines, connect, running_daemon
from todod._core import open_core
from todod._model import NOBODY
from todod._subscription import Connection
from todod.protocol import encode_request

DAY = datetime.date(2026, 2, 3)

# Every test here runs on both backends unless marked SQLITE_ONLY (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("on_backend")


@pytest.fixture
def daemon(store_uri: str | None) -> Iterator[Daemon]:
    with running_daemon(env=backend_env(store_uri)) as d:
        yield d


def pipelined_adds(daemon: Daemon, name: str, titles: list[str]) -> None:
    """Send every add on one connection before reading any answer; fail unless all succeed."""
    with connect(daemon.socket, timeout=60.0) as sock:
        sock.sendall(b"".join(encode_request("add", list=name, title=t, date="2026-02-03") for t in titles))
        reader = LineReader(sock)
        for _ in titles:
            assert reader.response()["ok"] is True


def add_concurrently(daemon: Daemon, clients: int, per_client: int, tag: str) -> set[str]:
    """``clients`` connections, each pipelining ``per_client`` adds over three lists, all at once."""
    titles: set[str] = set()
    threads = []
    for c in range(clients):
        mine = [f"{tag}-{c}-{i}" for i in range(per_client)]
        titles.update(mine)
        threads.append(threading.Thread(target=pipelined_adds, args=(daemon, f"l{c % 3}", mine)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive(), "a writer never finished"
    return titles


class Watcher:
    """A raw watch subscription on its own connection."""

    def __init__(self, daemon: Daemon, **fields: Any) -> None:
        self.sock = connect(daemon.socket, timeout=30.0)
        self.sock.sendall(encode_request("watch", request_id="w", **fields))
        self.reader = LineReader(self.sock)
        first = json.loads(self.reader.line())
        assert first["ok"] is True and first["id"] == "w", first
        self.start = first["result"]

    def events(self, n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            line = json.loads(self.reader.line())
            assert line["id"] == "w" and "event" in line, line
            out.append(line["event"])
        return out

    def close(self) -> None:
        self.sock.close()


def check_exactly_once_in_order(events: list[dict[str, Any]], titles: set[str]) -> None:
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions), "out of order or repeated"
    seen = [e["after"]["title"] for e in events]
    assert len(seen) == len(set(seen)) and set(seen) == titles, "an add was missed or seen twice"


def test_a_watcher_sees_1000_concurrent_adds_exactly_once_in_position_order(daemon: Daemon) -> None:
    """Ten clients pipelining 100 adds each: the watcher gets 1,000 events, each once, positions increasing."""
    watcher = Watcher(daemon)
    titles = add_concurrently(daemon, 10, 100, "live")
    events = watcher.events(1000)
    check_exactly_once_in_order(events, titles)
    assert all(e["op"] == "add" and e["before"] is None and e["after"]["version"] == 1 for e in events)
    assert events[0]["position"] == watcher.start["position"] + 1
    watcher.close()


def test_a_stalled_watcher_never_slows_writers_and_catches_up_with_nothing_missing(daemon: Daemon) -> None:
    """A watcher that reads nothing while 6,000 adds are written does not hold them up (they all finish),
    is switched to reading the log, and then receives every add once, in order."""
    watcher = Watcher(daemon)
    # A small receive buffer, so the daemon's writes to it block early.
    watcher.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    other = Watcher(daemon, list="l0")
    titles = add_concurrently(daemon, 6, 1000, "stall")
    stats = daemon.request("status")["stats"]
    assert stats["watchers"] == 2
    assert stats["watch_catchups"] >= 1, "the stalled watcher's buffer never overflowed: the test proves nothing"
    events = watcher.events(6000)
    check_exactly_once_in_order(events, titles)
    only_l0 = other.events(2000)
    check_exactly_once_in_order(only_l0, {t for t in titles if t.split("-")[1] in ("0", "3")})
    watcher.close()
    other.close()


def test_watch_since_resumes_after_a_daemon_restart_with_no_gap_and_no_duplicate(daemon: Daemon) -> None:
    """`todo watch --since P` after a restart replays every change after P, then goes on live."""
    first = add_concurrently(daemon, 2, 50, "before")
    watcher = Watcher(daemon, since=0)
    seen = watcher.events(60)
    last = seen[-1]["position"]  # a consumer that processed 60 events, then the daemon went away
    watcher.close()
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    daemon.start()
    during = add_concurrently(daemon, 2, 20, "while-away")
    with subprocess.Popen(
        [TODO, "watch", "--json", "--since", str(last)],
        env=daemon.cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            out = PipeLines(proc.stdout)
            replayed = [json.loads(line) for line in out.take(80)]
            after = add_concurrently(daemon, 1, 10, "live")
            live = [json.loads(line) for line in out.take(10)]
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    resumed = seen + replayed + live
    check_exactly_once_in_order(resumed, first | during | after)
    assert [e["position"] for e in resumed] == list(range(seen[0]["position"], seen[0]["position"] + 150))


def test_watch_since_below_the_compacted_horizon_is_refused(daemon: Daemon) -> None:
    """Resuming from a position whose later events were compacted is a clear `compacted` error, not a gap."""
    add_concurrently(daemon, 1, 5, "old")
    assert daemon.request("compact", keep_days=0) == {"dropped": 5, "horizon": 5}
    error = refused_watch(daemon, since=2)
    assert error["code"] == "compacted" and "position 5" in error["message"]
    assert next_position_after(daemon, 5) == 6


def test_watch_since_past_the_end_of_the_log_is_refused(daemon: Daemon) -> None:
    """Resuming from a position the log has not reached is `invalid`, not a silent skip of every event up to it;
    the last position itself resumes with what comes next."""
    add_concurrently(daemon, 1, 3, "old")
    error = refused_watch(daemon, since=999)
    assert error["code"] == "invalid" and "position 999 is past the end of the change log (3)" in error["message"]
    assert next_position_after(daemon, 3) == 4


def refused_watch(daemon: Daemon, since: int) -> dict[str, Any]:
    """The error a watch from ``since`` is answered with (the test fails on a KeyError if it is accepted)."""
    with connect(daemon.socket) as sock:
        sock.sendall(encode_request("watch", since=since))
        error: dict[str, Any] = json.loads(LineReader(sock).line())["error"]
    return error


def next_position_after(daemon: Daemon, since: int) -> int:
    """The position of the first event a watch from ``since`` gets once one more add commits."""
    watcher = Watcher(daemon, since=since)
    add_concurrently(daemon, 1, 1, "new")
    (event,) = watcher.events(1)
    watcher.close()
    position: int = event["position"]
    return position


@attrs.define
class GatedConnection:
    """A subscriber's connection whose sends wait at a gate: a consumer that stops reading."""

    want: int
    lines: list[dict[str, Any]] = attrs.field(factory=list)
    gate: trio.Event = attrs.field(factory=trio.Event)
    got_all: trio.Event = attrs.field(factory=trio.Event)

    async def send(self, data: bytes) -> None:
        await self.gate.wait()
        self.lines.append(json.loads(data))
        if len(self.lines) >= self.want:
            self.got_all.set()


async def test_overflow_switches_to_the_log_and_back_without_loss(data_dir: str) -> None:
    """With a buffer of 4, a stalled subscriber overflows while 200 adds commit, then gets all 200 in order."""
    async with open_core(data_dir) as core, trio.open_nursery() as nursery:
        core.hub.capacity, core.hub.page = 4, 16
        gated = GatedConnection(want=201)
        connection = Connection(NOBODY, gated.send)
        nursery.start_soon(core.hub.serve, connection, 1, None, None)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(200):
            await core.add(f"l{i % 3}", f"t{i}", DAY)
        assert core.hub.statistics().watch_catchups >= 1
        gated.gate.set()
        await gated.got_all.wait()
        assert gated.lines[0]["ok"] is True
        events = [line["event"] for line in gated.lines[1:]]
        assert [e["position"] for e in events] == list(range(1, 201))
        assert [e["after"]["title"] for e in events] == [f"t{i}" for i in range(200)]
        connection.close()


def test_a_watcher_does_not_hold_up_a_clean_stop(daemon: Daemon) -> None:
    """SIGTERM with a watcher connected ends its subscription at once: a clean stop, and EOF for the watcher."""
    watcher = Watcher(daemon)
    add_concurrently(daemon, 1, 3, "x")
    assert len(watcher.events(3)) == 3
    assert daemon.stop(signal.SIGTERM) == 0
    assert watcher.reader.line() == b"", "the subscription was not ended"
    assert "still in flight" not in daemon.log(), "shutdown waited out its timeout for the subscription"
    watcher.close()


async def test_watch_events_carry_tags_live_and_replayed_alike(data_dir: str) -> None:
    """A watcher sees each entry's tags in before and after, live exactly as replayed from the log with since."""
    async with open_core(data_dir) as core, trio.open_nursery() as nursery:
        live = GatedConnection(want=5)
        live.gate.set()
        nursery.start_soon(core.hub.serve, Connection(NOBODY, live.send), 1, None, None)
        await trio.testing.wait_all_tasks_blocked()
        await core.add("l", "t", DAY, tags=["b", "a"])
        await core.update("l", 1, tag=["c"], untag=["a"])
        await core.undo("l")
        await core.delete("l", 1)
        await live.got_all.wait()
        events = [line["event"] for line in live.lines[1:]]
        assert [(e["op"], e["before"] and e["before"]["tags"], e["after"] and e["after"]["tags"]) for e in events] == [
            ("add", None, ["a", "b"]),
            ("update", ["a", "b"], ["b", "c"]),
            ("undo", ["b", "c"], ["a", "b"]),
            ("delete", ["a", "b"], None),
        ]
        replayed = GatedConnection(want=5)
        replayed.gate.set()
        nursery.start_soon(core.hub.serve, Connection(NOBODY, replayed.send), 2, None, 0)
        await replayed.got_all.wait()
        assert [line["event"] for line in replayed.lines[1:]] == events
        nursery.cancel_scope.cancel()
