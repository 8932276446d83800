"""The blocking client: one request line out, one response line back, over a Unix socket.

Low-level errors are translated here, once: the commands only ever see
:class:`todod.protocol.TodoError` and its subclasses, plus :class:`Unreachable`.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any, Final

from todod import paths, protocol

#: How long an auto-started daemon may take to answer ``hello``.  It opens
#: SQLite and binds the socket in well under a second; ten seconds leaves room
#: for a cold disk and a loaded machine without hanging a script for long.
START_DEADLINE: Final = 10.0

#: Auto-start polling backs off from the first to the last delay (seconds).
_FIRST_POLL, _LAST_POLL = 0.01, 0.1

_RECV_SIZE: Final = 64 * 1024

#: The longest response line we read, newline included: the daemon's own cap
#: (an ``entries`` answer for a very large list), past which it would have
#: sent a ``too_large`` error instead.
MAX_RESPONSE: Final = protocol.MAX_RESPONSE


class Unreachable(protocol.TodoError):
    """No daemon answers on the socket, and none could be started (or auto-start is off)."""

    code = protocol.ErrorCode.UNAVAILABLE


def request(
    op: str, fields: dict[str, Any], *, socket_path: str, timeout: float, data_dir: str | None
) -> Any:
    """Send one request and return the daemon's result.

    If nothing listens on ``socket_path`` and ``data_dir`` is given, start
    ``python -m todod`` in the background and wait for it to answer first.

    Args:
        op: the request's op (``"add"``, ``"entries"``, ...).
        fields: its fields; ``None`` values are left out.
        socket_path: the daemon's socket.
        timeout: seconds for the whole exchange (connect, send, receive).
        data_dir: where an auto-started daemon keeps its data and its log;
            ``None`` turns auto-start off.

    Returns:
        The ``result`` of the response.

    Raises:
        TodoError: the daemon answered with an error (its subclass by code).
        Unreachable: no daemon answers and none could be started, or the
            connection closed before a response.
        protocol.Timeout: no whole response within ``timeout`` seconds.
        protocol.TooLarge: the response line is longer than :data:`MAX_RESPONSE`.
        protocol.BadRequest: the response is not a well-formed response line.
    """
    line = protocol.encode_request(op, **fields)
    deadline = time.monotonic() + timeout
    try:
        try:
            response = _exchange(socket_path, line, timeout)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            if data_dir is None:
                raise Unreachable(
                    f"no daemon at {socket_path} ({exc.strerror}) and auto-start is off"
                ) from None
            # --timeout bounds the whole command, a daemon's start included.
            _start_daemon(socket_path, data_dir, deadline)
            response = _exchange(socket_path, line, _remaining(deadline))
    except TimeoutError:
        raise protocol.Timeout(f"no response from the daemon within {timeout:g} s") from None
    except OSError as exc:
        raise Unreachable(f"cannot talk to the daemon at {socket_path}: {exc.strerror or exc}") from None
    return protocol.parse_response(response).result


class Connection:
    """One connection for many exchanges, one at a time (a paged read); use it as a context manager.

    Each exchange (:meth:`send` then :meth:`receive`) has ``timeout``
    seconds.  Errors are translated as :func:`request` does.
    """

    def __init__(self, socket_path: str, *, timeout: float, data_dir: str | None) -> None:
        self._path = socket_path
        self._timeout = timeout
        self._buffer = bytearray()
        deadline = time.monotonic() + timeout
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _translated(socket_path, timeout):
                try:
                    self._sock.settimeout(timeout)
                    self._sock.connect(socket_path)
                except (FileNotFoundError, ConnectionRefusedError) as exc:
                    if data_dir is None:
                        raise Unreachable(
                            f"no daemon at {socket_path} ({exc.strerror}) and auto-start is off"
                        ) from None
                    _start_daemon(socket_path, data_dir, deadline)
                    self._sock.settimeout(_remaining(deadline))
                    self._sock.connect(socket_path)
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._sock.close()

    def send(self, line: bytes) -> None:
        """Send one request line; its exchange's clock starts now."""
        self._deadline = time.monotonic() + self._timeout
        with _translated(self._path, self._timeout):
            self._sock.settimeout(_remaining(self._deadline))
            try:
                self._sock.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                pass  # it may have refused us with an error line: read that

    def receive(self) -> bytes:
        """The next response line, newline included (raises as :func:`request` does)."""
        buffer = self._buffer
        scanned = 0
        with _translated(self._path, self._timeout):
            while True:
                end = buffer.find(b"\n", scanned)
                if end >= 0:
                    line = bytes(buffer[: end + 1])
                    del buffer[: end + 1]
                    return line
                scanned = len(buffer)
                if scanned > MAX_RESPONSE:
                    raise protocol.TooLarge(f"the response is longer than {MAX_RESPONSE} bytes")
                self._sock.settimeout(_remaining(self._deadline))
                chunk = self._sock.recv(_PAGE_RECV_SIZE)
                if not chunk:
                    raise Unreachable("the daemon closed the connection without a response")
                buffer += chunk


#: A page is up to a MiB: read it in a few large pieces.
_PAGE_RECV_SIZE: Final = 1 << 18


class _translated:
    """Turn socket errors into the project's errors, as :func:`request` does."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        self._path = socket_path
        self._timeout = timeout

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, TimeoutError):
            raise protocol.Timeout(f"no response from the daemon within {self._timeout:g} s") from None
        if isinstance(exc, OSError):
            raise Unreachable(f"cannot talk to the daemon at {self._path}: {exc.strerror or exc}") from None


def _exchange(socket_path: str, line: bytes, timeout: float) -> bytes:
    """Connect, send ``line``, and read one response line, all within ``timeout`` seconds.

    Raises:
        OSError: from the socket; ``TimeoutError`` when the time is up.
        Unreachable: the daemon closed the connection without a whole line.
        protocol.TooLarge: no newline within :data:`MAX_RESPONSE` bytes.
    """
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.settimeout(_remaining(deadline))
        try:
            sock.sendall(line)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it may have refused us (forbidden, busy) with an error line: read that
        received = bytearray()
        while True:
            sock.settimeout(_remaining(deadline))
            chunk = sock.recv(_RECV_SIZE)
            if not chunk:
                raise Unreachable("the daemon closed the connection without a response")
            end = chunk.find(b"\n")
            if end >= 0:
                received += chunk[: end + 1]
            else:
                received += chunk
            if len(received) > MAX_RESPONSE:
                raise protocol.TooLarge(f"the response is longer than {MAX_RESPONSE} bytes")
            if end >= 0:
                return bytes(received)


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    return remaining


def _start_daemon(socket_path: str, data_dir: str, deadline: float) -> None:
    """Start ``python -m todod`` in its own session and wait until it answers ``hello``.

    Waits until :data:`START_DEADLINE` from now, or until ``deadline`` (a
    ``time.monotonic()`` value: the caller's ``--timeout``) if that is sooner.

    The child is never waited for: it is a daemon and outlives us.  If another
    ``todo`` starts one at the same moment, the daemon's lock lets only one
    survive; either way we just poll the socket until someone answers.

    Raises:
        Unreachable: the data directory is unsafe, the daemon could not be
            started, or nothing answered within :data:`START_DEADLINE`.
        TimeoutError: ``deadline`` came first, with the daemon still starting.
    """
    import subprocess  # only on the rare start-up path

    log_path = os.path.join(data_dir, "todod.log")
    argv = [sys.executable, "-m", "todod", "--socket", socket_path, "--data-dir", data_dir]
    try:
        paths.ensure_private_dir(data_dir)
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        finally:
            os.close(log)
    except (OSError, paths.UnsafeDirectory) as exc:
        raise Unreachable(f"cannot start the daemon: {exc}") from None

    hello = protocol.encode_request("hello")
    started = time.monotonic()
    start_deadline = started + START_DEADLINE
    wait_until = min(start_deadline, deadline)
    delay = _FIRST_POLL
    while True:
        try:
            protocol.parse_response(_exchange(socket_path, hello, max(wait_until - time.monotonic(), 0.01)))
            return
        except (OSError, protocol.TodoError):
            pass  # not listening yet, or still starting up
        exited = child.poll()  # also reaps a child that lost a start-up race
        if time.monotonic() >= wait_until:
            if exited is None and wait_until < start_deadline:
                raise TimeoutError  # the caller's --timeout: the daemon may yet come up
            how = f"exited with status {exited}" if exited is not None else "is still starting"
            raise Unreachable(
                f"started the daemon (pid {child.pid}, {how}) but nothing answered on "
                f"{socket_path} within {wait_until - started:.3g} s; see {log_path}"
            )
        time.sleep(min(delay, max(wait_until - time.monotonic(), 0.0)))
        delay = min(delay * 2, _LAST_POLL)
