"""A real ``todod`` process for end-to-end tests, and a blocking protocol client.

The daemon runs from this checkout's interpreter (``sys.executable -m todod``),
on a socket and data directory of its own.  Socket paths are short (AF_UNIX
allows about 107 bytes), so they live in a fresh directory under the system's
temporary directory rather than under pytest's long ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import IO, Any

from todod.protocol import encode_request, parse_response

BIN = Path(sys.executable).parent
TODO = str(BIN / "todo")
TODOD = str(BIN / "todod")


#: Every directory short_tempdir made in this process, removed at the session's end (tests/conftest.py):
#: a test that ends early, or leaves a daemon's lock file behind, leaves nothing in /tmp.
_SHORT_TEMPDIRS: list[Path] = []


def short_tempdir() -> Path:
    """A new private directory with a short path (a Unix socket's path is capped at 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="todod-"))
    _SHORT_TEMPDIRS.append(path)
    return path


def remove_short_tempdirs() -> None:
    """Remove what short_tempdir made (only those: each by the path it returned)."""
    while _SHORT_TEMPDIRS:
        shutil.rmtree(_SHORT_TEMPDIRS.pop(), ignore_errors=True)


def connect(path: str | Path, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def read_line(sock: socket.socket, limit: int = 64 << 20) -> bytes:
    """One line from ``sock`` (without the newline), or b"" at EOF."""
    chunks = bytearray()
    while not chunks.endswith(b"\n"):
        data = sock.recv(65536)
        if not data:
            return bytes(chunks)
        chunks += data
        assert len(chunks) <= limit
    return bytes(chunks[:-1])


class PipeLines:
    """The lines a child process writes to a pipe, each batch read with a deadline.

    A plain ``readline()`` on a child's stdout blocks forever if the child
    never writes the line (the very failure a test looks for); this reads the
    pipe's descriptor with ``select`` instead, so a missing line fails the
    test.  Use it for every read of that pipe: it bypasses the file object's
    own buffer.
    """

    def __init__(self, stream: IO[Any] | None) -> None:
        assert stream is not None, "the child's pipe was not opened"
        self._fd = stream.fileno()
        self._buffer = b""

    def take(self, count: int, timeout: float = 30.0) -> list[str]:
        """The next ``count`` lines (newlines kept); fail after ``timeout`` seconds or at EOF."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while len(lines) < count:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                lines.append(self._buffer[: newline + 1].decode())
                self._buffer = self._buffer[newline + 1 :]
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s with {len(lines)} of {count} lines")
            readable, _, _ = select.select([self._fd], [], [], remaining)
            if readable:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    raise AssertionError(f"the pipe closed after {len(lines)} of {count} lines")
                self._buffer += chunk
        return lines


def request(path: str | Path, op: str, timeout: float = 10.0, **fields: Any) -> Any:
    """Send one request on a new connection and return its result (errors raise)."""
    with connect(path, timeout) as sock:
        sock.sendall(encode_request(op, **fields))
        return parse_response(read_line(sock)).result


def raw_exchange(path: str | Path, payload: bytes, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Send raw bytes, half-close, and return every response line decoded."""
    with connect(path, timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


class Daemon:
    """One ``todod`` process; ``start`` waits until it answers ``hello``."""

    def __init__(self, root: Path, extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.socket = root / "run" / "todod.sock"
        self.data_dir = root / "data"
        self.log_path = root / "todod.log"
        self.extra_args = list(extra_args)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def argv(self) -> list[str]:
        return [TODOD, "--socket", str(self.socket), "--data-dir", str(self.data_dir), *self.extra_args]

    def cli_env(self) -> dict[str, str]:
        """An environment in which ``todo`` talks to this daemon and never starts one."""
        return {
            **os.environ,
            "TODOD_SOCKET": str(self.socket),
            "TODOD_DATA_DIR": str(self.data_dir),
            "TODOD_NO_START": "1",
        }

    def start(self, timeout: float = 15.0) -> Daemon:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        def answers() -> bool:
            assert self.proc is None or self.proc.poll() is None, f"todod exited early:\n{self.log()}"
            try:
                request(self.socket, "hello", timeout=1.0)
            except OSError:
                return False
            return True

        wait_until(answers, timeout, f"todod to answer hello; its log:\n{self.log()}")

    def request(self, op: str, **fields: Any) -> Any:
        return request(self.socket, op, **fields)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` to the daemon we started and return its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        status = self.proc.wait(timeout)
        self.proc = None
        return status

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@contextmanager
def running_daemon(extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> Iterator[Daemon]:
    root = short_tempdir()
    daemon = Daemon(root, extra_args, env)
    try:
        yield daemon.start()
    finally:
        daemon.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def run_cli(args: Sequence[str], env: Mapping[str, str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run the installed ``todo`` command and capture its output."""
    return subprocess.run([TODO, *args], env=dict(env), capture_output=True, text=True, timeout=timeout)


# --- helpers of the reliability tests (tests/test_reliability_*.py, bench/) -------------


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout`` seconds.

    For conditions of another process (a daemon's log, its connection count)
    that no socket read can block on.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)  # polling another process, not synchronising tests


def exchange(sock: socket.socket, op: str, **fields: Any) -> dict[str, Any]:
    """Send one request on an open connection and return its decoded response (errors not raised).

    Raises:
        ConnectionError: the daemon closed the connection before answering.
    """
    sock.sendall(encode_request(op, **fields))
    line = read_line(sock)
    if not line.endswith(b"}"):
        raise ConnectionError(f"connection closed before a response (got {line[:80]!r})")
    response: dict[str, Any] = json.loads(line)
    return response


def vm_rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB (``VmRSS`` in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def file_digests(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (relative path → sha256), to prove files unchanged or not created."""
    digests = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_socket():
            digests[str(path.relative_to(directory))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def read_database(data_dir: Path) -> tuple[str, dict[str, int], dict[tuple[str, int], dict[str, Any]]]:
    """Read a stopped daemon's database read-only with the stdlib.

    Returns:
        ``PRAGMA integrity_check``'s verdict, each list's ``next_id`` by name,
        and every entry by (list, id) in its wire form.
    """
    uri = f"file:{data_dir / 'todod.sqlite3'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        verdict = "\n".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
        next_ids = dict(conn.execute("SELECT name, next_id FROM lists"))
        entries = {
            (name, entry_id): {
                "id": entry_id,
                "date": date,
                "title": title,
                "done": bool(done),
                "version": version,
                "tags": json.loads(tags),
            }
            for name, entry_id, date, title, done, version, tags in conn.execute(
                "SELECT l.name, e.id, e.date, e.title, e.done, e.version, e.tags "
                "FROM entries e JOIN lists l ON l.id = e.list_id"
            )
        }
    return verdict, next_ids, entries


def read_store(daemon: Daemon) -> tuple[str, dict[str, int], dict[tuple[str, int], dict[str, Any]]]:
    """:func:`read_database` of the daemon's store: its SQLite file, or its PostgreSQL database (``TODOD_STORE``)."""
    uri = daemon.env.get("TODOD_STORE")
    if not uri:
        return read_database(daemon.data_dir)
    import psycopg

    with psycopg.connect(uri) as conn:
        next_ids = {name: int(n) for name, n in conn.execute("SELECT name, next_id FROM lists")}
        entries = {
            (name, int(entry_id)): {
                "id": int(entry_id),
                "date": date,
                "title": title,
                "done": bool(done),
                "version": version,
                "tags": json.loads(tags),
            }
            for name, entry_id, date, title, done, version, tags in conn.execute(
                "SELECT l.name, e.id, e.date, e.title, e.done, e.version, e.tags "
                "FROM entries e JOIN lists l ON l.id = e.list_id"
            )
        }
    return "ok", next_ids, entries  # PostgreSQL checks its own pages


def store_log_out_of_step(daemon: Daemon) -> list[str]:
    """:func:`log_out_of_step` of the daemon's store, SQLite or PostgreSQL."""
    uri = daemon.env.get("TODOD_STORE")
    if not uri:
        return log_out_of_step(daemon.data_dir)
    import psycopg

    from todod._log import read_view, rebuild
    from todod.store._pg_sql import Compat as _Compat

    with psycopg.connect(uri) as conn:
        compat: Any = _Compat(conn)
        return _differences(rebuild(compat), read_view(compat))


def log_out_of_step(data_dir: Path) -> list[str]:
    """Every difference between the lists rebuilt from a stopped daemon's change log and the entries it serves."""
    from todod._log import read_view, rebuild  # the daemon's own replay; the test then compares

    uri = f"file:{data_dir / 'todod.sqlite3'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        rebuilt, view = rebuild(conn), read_view(conn)
    return _differences(rebuilt, view)


def _differences(rebuilt: Mapping[str, Any], view: Mapping[str, Any]) -> list[str]:
    problems = []
    for name in sorted(set(rebuilt) | set(view)):
        if rebuilt.get(name) != view.get(name):
            problems.append(f"list {name!r}: the log rebuilds {rebuilt.get(name)}, the view holds {view.get(name)}")
    return problems


class LineReader:
    """Response lines from one connection, one at a time (pipelined responses can share a ``recv``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()

    def line(self) -> bytes:
        """The next line without its newline; b"" at EOF (a partial last line is returned as is)."""
        while (end := self._buffer.find(b"\n")) < 0:
            data = self.sock.recv(65536)
            if not data:
                rest = bytes(self._buffer)
                self._buffer.clear()
                return rest
            self._buffer += data
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    def response(self) -> dict[str, Any]:
        """The next response decoded; ConnectionError if the daemon closed the connection first."""
        line = self.line()
        if not line:
            raise ConnectionError("connection closed before a response")
        response: dict[str, Any] = json.loads(line)
        return response
