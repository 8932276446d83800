"""A real ``todod`` process for end-to-end tests, and a blocking protocol client.

The daemon runs from this checkout's interpreter (``sys.executable -m todod``),
on a socket and data directory of its own.  Socket paths are short (AF_UNIX
allows about 107 bytes), so they live in a fresh directory under the system's
temporary directory rather than under pytest's long ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from todod.protocol import encode_request, parse_response

BIN = Path(sys.executable).parent
TODO = str(BIN / "todo")
TODOD = str(BIN / "todod")


def short_tempdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="todod-"))


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
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is None or self.proc.poll() is None, f"todod exited early:\n{self.log()}"
            try:
                request(self.socket, "hello", timeout=1.0)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"todod not ready after {timeout} s:\n{self.log()}") from None
                time.sleep(0.02)  # polling a process for readiness, not synchronising tests

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
