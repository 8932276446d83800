"""Load and slow clients against a running todod: many connections, the connection cap, slow and stuck readers.

Every figure here is far from a timing edge: the bounds under test
(connection cap, write timeout) are set by flags, and the checks are about
answers, disconnections and memory, not about speed.
"""

from __future__ import annotations

import collections
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.daemon import Daemon, LineReader, connect, exchange, raw_exchange, running_daemon, vm_rss_kib, wait_until
from todod.protocol import encode_request

MIB = 1024  # in KiB, the unit of VmRSS
#: Allowed growth of the daemon's resident memory over a test's load.
RSS_SLACK_KIB = 50 * MIB


def connections(daemon: Daemon) -> int:
    return int(daemon.request("status")["stats"]["connections"])


def run_threads(target: Callable[[int], None], count: int) -> list[BaseException]:
    """Run ``target(i)`` in ``count`` threads; return what they raised."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a client thread hung"
    return errors


def busy_client(daemon: Daemon, i: int, ops: int, ids: dict[str, list[int]]) -> None:
    """One working client on its own connection: adds, reads back, marks done, deletes."""
    name = f"busy-{i % 8}"
    with connect(daemon.socket, timeout=30) as sock:
        mine = []
        for n in range(ops):
            response = exchange(sock, "add", list=name, title=f"client {i} op {n}")
            assert response["ok"], response
            mine.append(response["result"]["id"])
        response = exchange(sock, "entries", list=name)
        assert response["ok"] and set(mine) <= {e["id"] for e in response["result"]}, response
        assert exchange(sock, "update", list=name, entry=mine[0], done=True)["result"]["done"] is True
        assert exchange(sock, "delete", list=name, entry=mine[-1])["ok"]
    ids[name].extend(mine)


def test_a_thousand_idle_connections_and_64_busy_clients() -> None:
    """With 1,000 connections open, 64 clients all get correct answers; memory comes back down after."""
    with running_daemon(["--max-connections", "1100"]) as daemon:
        assert daemon.proc is not None
        rss_before = vm_rss_kib(daemon.proc.pid)
        idle = [connect(daemon.socket) for _ in range(1000)]
        try:
            wait_until(lambda: connections(daemon) >= 1000, 30, "1,000 accepted connections")
            ids: dict[str, list[int]] = collections.defaultdict(list)
            errors = run_threads(lambda i: busy_client(daemon, i, 20, ids), 64)
            assert not errors, errors[:3]
            # Every add got its own id: 8 lists, 8 clients each, 20 adds each.
            assert {name: sorted(got) for name, got in ids.items()} == {
                f"busy-{k}": list(range(1, 161)) for k in range(8)
            }
            peak = vm_rss_kib(daemon.proc.pid)
        finally:
            for sock in idle:
                sock.close()
        wait_until(lambda: connections(daemon) <= 1, 30, "the idle connections to close")
        assert peak - rss_before < 2 * RSS_SLACK_KIB, (rss_before, peak)
        assert vm_rss_kib(daemon.proc.pid) - rss_before < RSS_SLACK_KIB


def test_clients_past_the_cap_are_refused_at_once_while_the_others_work() -> None:
    """Past --max-connections new clients get an unavailable line and EOF promptly; clients inside keep working."""
    cap = 100
    with running_daemon(["--max-connections", str(cap)]) as daemon:
        held = [connect(daemon.socket, timeout=30) for _ in range(cap)]
        try:
            for sock in held:  # each one accepted and counted: the cap is now full
                assert exchange(sock, "hello")["ok"]
            workers = held[:8]
            refusals: list[tuple[dict[str, Any], float]] = []

            def crowd() -> None:
                started = time.monotonic()
                with connect(daemon.socket, timeout=10) as sock:
                    reader = LineReader(sock)
                    response = reader.response()
                    assert reader.line() == b"", "a refused connection must be closed"
                refusals.append((response, time.monotonic() - started))

            def work(i: int) -> None:
                for n in range(30):
                    response = exchange(workers[i], "add", list="inside", title=f"{i}-{n}")
                    assert response["ok"], response

            errors = run_threads(lambda i: work(i) if i < len(workers) else crowd(), len(workers) + 50)
            assert not errors, errors[:3]
            assert len(refusals) == 50
            assert all(r["error"]["code"] == "unavailable" for r, _ in refusals), refusals[:3]
            assert max(took for _, took in refusals) < 5, "a refused client was kept waiting"
            inside = exchange(workers[0], "entries", list="inside")["result"]
            assert sorted(e["id"] for e in inside) == list(range(1, 8 * 30 + 1))
            assert exchange(workers[0], "status")["result"]["stats"]["refused_connections"] >= 50
        finally:
            for sock in held:
                sock.close()


def fill_list(daemon: Daemon, name: str, count: int, width: int) -> int:
    """Add ``count`` entries with ``width``-character titles; return the size of an entries response."""
    for start in range(0, count, 64):
        batch = b"".join(
            encode_request("add", list=name, title=f"{i:05d} " + "w" * width) for i in range(start, start + 64)
        )
        assert all(r["ok"] for r in raw_exchange(daemon.socket, batch))
    return len(encode_request("entries", list=name)) + len(json.dumps(daemon.request("entries", list=name)))


def test_slow_reader_gets_every_response() -> None:
    """A client reading its pipelined responses slowly, but within the write timeout, gets all of them intact."""
    with running_daemon(["--write-timeout", "3"]) as daemon:
        fill_list(daemon, "slow", 320, 300)  # about 110 KB per entries response
        expected = daemon.request("entries", list="slow")
        with connect(daemon.socket, timeout=30) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            sock.sendall(encode_request("entries", list="slow") * 12)
            data = bytearray()
            while data.count(b"\n") < 12:
                chunk = sock.recv(8192)
                assert chunk, "disconnected before the last response"
                data += chunk
                time.sleep(0.004)  # pacing: this is the slow client (about 2 MB/s), not a wait
        responses = [json.loads(line) for line in data.splitlines()]
        assert all(r == {"ok": True, "result": expected} for r in responses)
        assert "stopped reading" not in daemon.log()


def test_client_that_never_reads_is_disconnected_while_others_are_served() -> None:
    """A pipelining client that never reads is cut off after the write timeout; others meanwhile get answers."""
    with running_daemon(["--write-timeout", "1"]) as daemon:
        assert daemon.proc is not None
        size = fill_list(daemon, "big", 640, 400)  # about 280 KB per entries response
        assert size > 200_000
        rss_before = vm_rss_kib(daemon.proc.pid)
        stuck = connect(daemon.socket)
        try:
            stuck.sendall(encode_request("entries", list="big") * 200)
            served: list[float] = []

            def other_client() -> None:
                with connect(daemon.socket, timeout=10) as sock:
                    for n in range(40):
                        started = time.monotonic()
                        assert exchange(sock, "add", list="others", title=f"n{n}")["ok"]
                        assert exchange(sock, "entries", list="others")["ok"]
                        served.append(time.monotonic() - started)

            errors = run_threads(lambda _i: other_client(), 1)
            assert not errors, errors
            wait_until(lambda: "disconnecting a client that stopped reading" in daemon.log(), 30, "the disconnect")
            wait_until(lambda: connections(daemon) <= 1, 30, "the stuck connection to be closed")
            assert len(served) == 40 and max(served) < 1.0, served
        finally:
            stuck.close()
        assert vm_rss_kib(daemon.proc.pid) - rss_before < RSS_SLACK_KIB
        assert daemon.request("hello")["protocol"] == 1


def test_response_budgets_hold_with_clients_that_never_read() -> None:
    """Clients that pipeline page reads and never read pin no more than the connection's and the daemon's byte
    budgets (the daemon stops reading them), while another client's small requests are served at once."""
    budgets = ["--connection-budget", "2200K", "--daemon-budget", "3M", "--write-timeout", "60"]
    with running_daemon(budgets) as daemon:
        assert daemon.proc is not None
        for start in range(0, 1100, 100):  # about 1.1 MB of JSON: a page of it stops at its 1 MiB
            batch = b"".join(encode_request("add", list="big", title=f"{i:05d} " + "w" * 990) for i in range(100))
            assert all(r["ok"] for r in raw_exchange(daemon.socket, batch)), start
        rss_before = vm_rss_kib(daemon.proc.pid)
        stuck = [connect(daemon.socket) for _ in range(3)]
        try:
            for sock in stuck:
                sock.sendall(encode_request("entries", list="big", limit=10_000) * 64)
            wait_until(lambda: daemon.request("status")["stats"]["budget_waits"] >= 3, 30, "every reader to wait")
            stats = daemon.request("status")["stats"]
            # Two page reservations (1 MiB and a margin each) fit in one
            # connection's 2,200 KiB, and a third connection's would pass
            # the daemon's 3 MiB: the first holds two, the others none.
            assert 2 << 20 < stats["response_bytes"] <= 3 << 20, stats
            with connect(daemon.socket, timeout=10) as sock:
                for n in range(20):
                    started = time.monotonic()
                    assert exchange(sock, "add", list="others", title=f"n{n}")["ok"]
                    assert exchange(sock, "hello")["ok"]
                    assert time.monotonic() - started < 1.0
            assert vm_rss_kib(daemon.proc.pid) - rss_before < RSS_SLACK_KIB
        finally:
            for sock in stuck:
                sock.close()
        # What is left is the reservation of the status request asking.
        released = lambda: daemon.request("status")["stats"]["response_bytes"] == 16 << 10  # noqa: E731
        wait_until(released, 30, "the budget to be released")
