"""systemd glue, end to end: sd_notify, the watchdog, socket activation and journal logging.

The process tests run a real ``todod`` and stand in for systemd themselves: a
datagram socket as ``NOTIFY_SOCKET``, ``systemd-socket-activate`` for socket
activation, a file named by ``JOURNAL_STREAM`` as the journal.  They wait by
blocking on sockets with timeouts or by polling with deadlines, never by
sleeping a fixed time.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.daemon import TODOD, Daemon, request, run_cli, short_tempdir, wait_until
from todod._systemd import listen_fds, notify, run_watchdog, watchdog_interval
from todod.protocol import TodoError

#: WATCHDOG_USEC of the process tests: todod pings every 0.2 s.
WATCHDOG_USEC = 400_000
PING = WATCHDOG_USEC / 2 / 1e6


@pytest.fixture
def root() -> Iterator[Path]:
    """A short private directory (AF_UNIX paths are limited to about 107 bytes)."""
    path = short_tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


class NotifyListener:
    """A stand-in for systemd's notification socket that records what arrives, and when."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        #: (arrival on the monotonic clock, one ``KEY=value`` line) in order.
        self.seen: list[tuple[float, str]] = []

    def close(self) -> None:
        self.sock.close()

    def receive(self, timeout: float) -> bool:
        """Record the next datagram; False if none came within ``timeout`` seconds."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return False
        now = time.monotonic()
        self.seen.extend((now, line) for line in data.decode().splitlines())
        return True

    def drain(self) -> None:
        """Record whatever is already queued, without waiting."""
        while self.receive(0.001):
            pass

    def wait_for(self, match: Callable[[str], bool], timeout: float = 15.0, start: int = 0) -> int:
        """The index in ``seen`` of the first line from ``start`` on that matches, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for index in range(start, len(self.seen)):
                if match(self.seen[index][1]):
                    return index
            start = len(self.seen)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching notification within {timeout} s; seen {self.lines()}")
            self.receive(remaining)

    def lines(self, start: int = 0) -> list[str]:
        return [line for _, line in self.seen[start:]]


@pytest.fixture
def notifications(root: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(root / "notify")
    yield listener
    listener.close()


def spawn(daemon: Daemon, argv: list[str] | None = None) -> subprocess.Popen[bytes]:
    """Start the daemon's process without waiting for it (the test decides what ready means)."""
    with open(daemon.log_path, "ab") as log:
        daemon.proc = subprocess.Popen(
            argv or daemon.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=daemon.env
        )
    return daemon.proc


def wait_for_log(daemon: Daemon, text: str, timeout: float = 15.0) -> None:
    """Poll the daemon's log, with a deadline, until ``text`` appears in it."""

    def logged() -> bool:
        assert daemon.proc is None or daemon.proc.poll() is None, f"todod exited:\n{daemon.log()}"
        return text in daemon.log()

    wait_until(logged, timeout, f"{text!r} in the log")


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons to kill at teardown if a test left them running."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.cleanup()


# --- sd_notify and the watchdog -------------------------------------------------------


def test_notify_ready_status_watchdog_and_stopping(
    root: Path, notifications: NotifyListener, daemons: list[Daemon]
) -> None:
    """READY=1 comes first and only once todod answers, then STATUS= tracks load, WATCHDOG=1 every half WATCHDOG_USEC, and SIGTERM sends STOPPING=1 and exits 0."""  # noqa: E501
    env = {"NOTIFY_SOCKET": str(notifications.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    daemon = Daemon(root, env=env)
    daemons.append(daemon)
    proc = spawn(daemon)

    ready = notifications.wait_for(lambda line: line == "READY=1")
    # Right now, with nothing polled or retried, the socket must answer.
    assert request(daemon.socket, "hello", timeout=5.0)["pid"] == proc.pid
    assert ready == 0, f"READY=1 must be the first notification: {notifications.lines()}"

    pings = [ready]
    while len(pings) < 7:
        pings.append(notifications.wait_for(lambda line: line == "WATCHDOG=1", start=pings[-1] + 1))
    times = [notifications.seen[i][0] for i in pings[1:]]
    intervals = [b - a for a, b in itertools.pairwise(times)]
    assert 0.75 * PING <= statistics.median(intervals) <= 1.5 * PING, intervals

    first = notifications.wait_for(lambda line: line.startswith("STATUS=") and line != "STATUS=ready")
    assert "0 commits" in notifications.seen[first][1]
    request(daemon.socket, "add", list="home", title="milk", date="2024-05-01")
    notifications.wait_for(lambda line: line.startswith("STATUS=") and "1 commits" in line, start=first + 1)

    proc.send_signal(signal.SIGTERM)
    notifications.wait_for(lambda line: line == "STOPPING=1")
    assert proc.wait(timeout=20) == 0, daemon.log()
    assert "stopped cleanly" in daemon.log()


def test_watchdog_pings_stop_while_the_writer_hangs(
    root: Path, notifications: NotifyListener, daemons: list[Daemon]
) -> None:
    """A commit stuck in the store's writer stops the WATCHDOG=1 pings, so systemd would kill and restart todod."""
    env = {
        "NOTIFY_SOCKET": str(notifications.path),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "TODOD_TEST_FAULTS": "hang_writer_after=0",
    }
    daemon = Daemon(root, env=env)
    daemons.append(daemon)
    proc = spawn(daemon)
    ready = notifications.wait_for(lambda line: line == "READY=1")
    notifications.wait_for(lambda line: line == "WATCHDOG=1", start=ready)

    def add() -> None:
        # Never answered: the commit hangs.  The connection ends when todod is killed.
        try:
            request(daemon.socket, "add", timeout=30.0, list="home", title="milk", date="2024-05-01")
        except (OSError, TodoError):
            pass

    client = threading.Thread(target=add, daemon=True)
    client.start()
    wait_for_log(daemon, "injected fault: the writer hangs")
    wait_for_log(daemon, "withholding the watchdog pings")
    notifications.drain()  # pings sent before the verdict may still be queued
    stalled = len(notifications.seen)
    quiet_until = time.monotonic() + 5 * PING
    while (remaining := quiet_until - time.monotonic()) > 0:
        notifications.receive(remaining)
    assert "WATCHDOG=1" not in notifications.lines(stalled), notifications.lines(stalled)
    assert any(line.startswith("STATUS=writer stalled") for line in notifications.lines(ready))
    assert proc.poll() is None, "todod must keep running: the watchdog is systemd's to act on"

    # A hung writer thread cannot stop cleanly; systemd would SIGABRT/SIGKILL it.
    assert daemon.kill() == -signal.SIGKILL
    client.join(timeout=10)
    assert not client.is_alive()


# --- socket activation -------------------------------------------------------------


def _socket_activate(root: Path, daemon: Daemon, listen: list[Path], names: str) -> subprocess.Popen[bytes]:
    argv = ["systemd-socket-activate", f"--fdname={names}"]
    # It passes its child only PATH, HOME and TERM: keep PYTHONPATH, so that
    # todod runs the same code as the rest of the tests.
    if "PYTHONPATH" in daemon.env:
        argv.append(f"--setenv=PYTHONPATH={daemon.env['PYTHONPATH']}")
    for path in listen:
        argv += ["-l", str(path)]
    # No --socket: the daemon must take the passed socket, whatever its default.
    argv += [TODOD, "--data-dir", str(daemon.data_dir)]
    proc = spawn(daemon, argv)
    for path in listen:
        wait_for_log(daemon, f"Listening on {path} as")
    return proc


needs_socket_activate = pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None, reason="systemd-socket-activate is not installed"
)


@needs_socket_activate
def test_socket_activation_serves_the_passed_socket_and_leaves_it(root: Path, daemons: list[Daemon]) -> None:
    """Under systemd-socket-activate, todod serves the CLI on the passed fd 3 and leaves the socket file it did not create."""  # noqa: E501
    daemon = Daemon(root)
    daemons.append(daemon)
    sock = root / "activated.sock"
    proc = _socket_activate(root, daemon, [sock], "todod")
    assert "todod: " not in daemon.log(), "todod must start only on the first connection"
    env = {**daemon.cli_env(), "TODOD_SOCKET": str(sock)}

    added = run_cli(["add", "home", "buy milk", "--date", "2024-05-01"], env)
    assert added.returncode == 0, added.stderr
    assert request(sock, "hello")["pid"] == proc.pid  # systemd-socket-activate exec'd todod
    shown = run_cli(["entries", "home"], env)
    assert shown.returncode == 0, shown.stderr
    assert "buy milk" in shown.stdout
    log = daemon.log()
    assert "using the socket passed by systemd (fd 3)" in log
    assert "listening on" not in log  # it never bound a socket of its own

    assert daemon.stop(signal.SIGTERM) == 0, daemon.log()
    assert proc.returncode == 0
    assert stat.S_ISSOCK(os.lstat(sock).st_mode), "the passed socket's file must survive todod"
    assert not os.path.exists(f"{sock}.lock")  # bind_unix's lock: never taken


@needs_socket_activate
def test_socket_activation_picks_the_fd_named_todod(root: Path, daemons: list[Daemon]) -> None:
    """Of several passed sockets, todod serves the one LISTEN_FDNAMES calls "todod"."""
    daemon = Daemon(root)
    daemons.append(daemon)
    other, ours = root / "other.sock", root / "todod.sock"
    _socket_activate(root, daemon, [other, ours], "other:todod")
    env = {**daemon.cli_env(), "TODOD_SOCKET": str(ours)}

    listed = run_cli(["list", "--timeout", "5"], env)
    assert listed.returncode == 0, listed.stderr
    assert "using the socket passed by systemd (fd 4)" in daemon.log()
    assert daemon.stop(signal.SIGTERM) == 0, daemon.log()


#: Exec todod (argv[3:]) with argv[2] on fd 3 and LISTEN_* naming it, as
#: systemd would, but with fd 3 either only bound (argv[1] "bound") or a file.
_PASS_FD3 = """
import os, socket, sys
if sys.argv[1] == "bound":
    passed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    passed.bind(sys.argv[2])
    fd = passed.fileno()
else:
    fd = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT, 0o600)
os.dup2(fd, 3)
os.set_inheritable(3, True)  # dup2 onto itself keeps close-on-exec
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="todod")
os.execv(sys.argv[3], sys.argv[3:])
"""


@pytest.mark.parametrize(
    ("kind", "message"),
    [("bound", "fd 3 is a Unix stream socket that is not listening"), ("file", "fd 3 is not a socket")],
)
def test_socket_activation_refuses_a_passed_fd_it_cannot_serve(
    root: Path, daemons: list[Daemon], kind: str, message: str
) -> None:
    """A passed fd 3 that is not a listening socket makes todod refuse to start (exit 1) with one clear line, no traceback."""  # noqa: E501
    daemon = Daemon(root)
    daemons.append(daemon)
    argv = [sys.executable, "-c", _PASS_FD3, kind, str(root / "passed"), TODOD, "--data-dir", str(daemon.data_dir)]
    proc = spawn(daemon, argv)
    assert proc.wait(30) == 1, daemon.log()
    log = daemon.log()
    assert f"cannot start: {message}" in log
    assert "Traceback" not in log


# --- journal logging and signals ---------------------------------------------------------


def _journal_daemon(root: Path, log_path: Path, stream_of: Path, extra_args: list[str]) -> Daemon:
    log_path.touch()
    st = os.stat(stream_of)
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    daemon = Daemon(root, extra_args, env)
    daemon.log_path = log_path
    return daemon


def test_journal_stream_lines_carry_syslog_priorities(root: Path, daemons: list[Daemon]) -> None:
    """When JOURNAL_STREAM names todod's stderr, every line (tracebacks too) starts with its syslog priority <2>..<7>."""  # noqa: E501
    log_path = root / "journal"
    daemon = _journal_daemon(root, log_path, log_path, ["--log-level", "debug", "--idle-timeout", "0.1"])
    daemon.env["TODOD_TEST_FAULTS"] = "crash_title=boom"
    daemons.append(daemon)
    daemon.start()
    daemon.request("add", list="home", title="milk", date="2024-05-01")
    with pytest.raises(TodoError):
        daemon.request("add", list="home", title="boom", date="2024-05-01")
    wait_for_log(daemon, "idle, stopping")  # a debug line, after the idle timeout
    assert daemon.stop() == 0, daemon.log()

    lines = daemon.log().splitlines()
    assert lines
    bad = [line for line in lines if not re.match(r"<[2-7]>", line)]
    assert not bad, bad
    assert any(line.startswith("<6>todod: todod ") and " ready " in line for line in lines)
    assert any(line.startswith("<4>todod: test faults enabled") for line in lines)
    assert any(line.startswith("<3>") and "RuntimeError: injected crash" in line for line in lines)
    assert any(line.startswith("<7>") and "idle, stopping" in line for line in lines)
    assert not any(re.match(r"<\d>\d{4}-\d\d-\d\d ", line) for line in lines), "journald adds timestamps"


def test_journal_stream_naming_another_file_keeps_the_plain_format(root: Path, daemons: list[Daemon]) -> None:
    """An inherited JOURNAL_STREAM that does not name todod's stderr leaves the timestamped plain format."""
    other = root / "not-stderr"
    other.touch()
    daemon = _journal_daemon(root, root / "todod.log", other, [])
    daemons.append(daemon)
    daemon.start()
    assert daemon.stop() == 0
    lines = daemon.log().splitlines()
    assert lines
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ", line) for line in lines), lines


def test_sighup_is_logged_and_ignored(root: Path, daemons: list[Daemon]) -> None:
    """SIGHUP reloads nothing: todod logs it and keeps serving, and SIGTERM then stops it with status 0."""
    daemon = Daemon(root)
    daemons.append(daemon)
    daemon.start()
    daemon.request("add", list="home", title="milk", date="2024-05-01")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for_log(daemon, "SIGHUP: nothing to reload")
    assert [e["title"] for e in daemon.request("entries", list="home")] == ["milk"]
    assert daemon.stop(signal.SIGTERM) == 0, daemon.log()


# --- the functions themselves ----------------------------------------------------------


def test_listen_fds_picks_the_named_fd_and_clears_the_variables() -> None:
    """listen_fds returns the fd named "todod" and removes LISTEN_* so children cannot inherit them."""
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "3", "LISTEN_FDNAMES": "a:b:todod", "OTHER": "x"}
    assert listen_fds(env) == 5
    assert env == {"OTHER": "x"}
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "unnamed"}
    assert listen_fds(env) == 3  # no fd named todod: the first one


def test_listen_fds_ignores_variables_meant_for_another_process() -> None:
    """LISTEN_FDS inherited from a parent (LISTEN_PID is not ours) or malformed is ignored."""
    assert listen_fds({"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}) is None
    assert listen_fds({"LISTEN_PID": "x", "LISTEN_FDS": "1"}) is None
    assert listen_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "0"}) is None
    assert listen_fds({}) is None


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    """The ping interval is half of WATCHDOG_USEC, and none when it is unset or meant for another pid."""
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}) == 0.2
    assert watchdog_interval({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({}) is None


def test_notify_sends_to_path_and_abstract_sockets(root: Path) -> None:
    """notify sends one datagram to a path or an @abstract address, and is a no-op without NOTIFY_SOCKET."""
    listener = NotifyListener(root / "n")
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind(f"\0todod-test-{os.getpid()}")
    abstract.settimeout(5)
    try:
        assert notify("READY=1\nSTATUS=ok", {"NOTIFY_SOCKET": str(listener.path)})
        assert listener.receive(5) and listener.lines() == ["READY=1", "STATUS=ok"]
        assert notify("STOPPING=1", {"NOTIFY_SOCKET": f"@todod-test-{os.getpid()}"})
        assert abstract.recv(4096) == b"STOPPING=1"
        assert not notify("READY=1", {})
        assert not notify("READY=1", {"NOTIFY_SOCKET": str(root / "missing")})  # logged, not raised
    finally:
        listener.close()
        abstract.close()


async def test_run_watchdog_withholds_pings_while_unhealthy(autojump_clock: trio.testing.MockClock) -> None:
    """run_watchdog pings every interval only while healthy and sends STATUS= only when it changes."""
    sent: list[tuple[float, str]] = []
    health = {"ok": True}
    text = {"status": "idle"}

    def send(message: str) -> None:
        sent.append((trio.current_time(), message))

    async with trio.open_nursery() as nursery:
        await nursery.start(run_watchdog, 1.0, lambda: health["ok"], lambda: text["status"], send)
        await trio.sleep(2.5)  # pings at 0, 1, 2
        health["ok"], text["status"] = False, "stalled"
        await trio.sleep(3.0)  # none at 3, 4, 5
        health["ok"] = True
        await trio.sleep(0.5)  # one at 6
        await trio.sleep(0.6)
        nursery.cancel_scope.cancel()

    start = sent[0][0]
    pings = [t - start for t, m in sent if m == "WATCHDOG=1"]
    assert pings == [0.0, 1.0, 2.0, 6.0]
    assert [m for _, m in sent if m.startswith("STATUS=")] == ["STATUS=idle", "STATUS=stalled"]
