"""The blocking client: one request line out, one response line back, over a Unix socket.

Low-level errors are translated here, once: the commands only ever see
:class:`todod.protocol.TodoError` and its subclasses, plus :class:`Unreachable`.

Nothing is sent to a daemon the user cannot trust: the socket's directory must
be owned by the user or root and writable by no one else, and the process
listening on it must run as the user or as root (``SO_PEERCRED``).
Otherwise another local user who got to the socket's path first (the
``$TMPDIR/todod-UID/`` fallback is guessable) would receive every title and
list name, and its forged answers would be printed as the daemon's.
"""

from __future__ import annotations

import os
import socket
import sys
import time

from cli import _procs
from todod import paths, protocol

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the import: see todod/protocol.py
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Final

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


class NotRunning(Unreachable):
    """Nothing listens on the socket and auto-start is off."""


class Untrusted(Unreachable):
    """The socket's directory, or the process listening on it, belongs to another user."""


class Busy(protocol.Timeout):
    """The daemon's listen backlog stayed full (it is stopped or swamped) until the deadline."""


def request(op: str, fields: dict[str, Any], *, socket_path: str, timeout: float, data_dir: str | None) -> Any:
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
                raise _not_running(socket_path, exc) from None
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
        with _translated(socket_path, timeout):
            sock = _open_trusted(socket_path, data_dir, deadline)
        self._sock = sock

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._sock.close()

    def send(self, line: bytes, timeout: float | None = None) -> None:
        """Send one request line; its exchange's clock (``timeout``, default the connection's) starts now."""
        self._deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
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


def subscribe(
    op: str, fields: dict[str, Any], *, socket_path: str, timeout: float, data_dir: str | None
) -> Iterator[Any]:
    """Send a subscription request (``watch``) and yield each event it streams, forever.

    ``timeout`` bounds only the start (connecting, a daemon's start, the
    first response); then events are waited for as long as it takes.  The
    same trust checks as :func:`request` run before anything is sent.

    Raises:
        TodoError: the daemon refused the subscription (its subclass by code).
        Unreachable: no daemon answers, or it closed the subscription (it
            stopped: resume with ``--since`` the last position processed).
        protocol.Timeout: no first response within ``timeout``.
    """
    line = protocol.encode_request(op, **fields)
    deadline = time.monotonic() + timeout
    sock: socket.socket | None = None
    try:
        try:
            sock = _open_trusted(socket_path, data_dir, deadline)
            sock.settimeout(_remaining(deadline))
            sock.sendall(line)
            lines = _lines(sock)
            protocol.parse_response(next(lines))
        except TimeoutError:
            raise protocol.Timeout(f"no response from the daemon within {timeout:g} s") from None
        except OSError as exc:
            raise Unreachable(f"cannot talk to the daemon at {socket_path}: {exc.strerror or exc}") from None
        sock.settimeout(None)
        try:
            for received in lines:
                message = protocol.parse_line(received)
                if "event" in message:
                    yield message["event"]
        except OSError as exc:
            raise Unreachable(f"the subscription broke: {exc.strerror or exc}") from None
    finally:
        if sock is not None:
            sock.close()


def _lines(sock: socket.socket) -> Iterator[bytes]:
    """Each line the socket receives, newline included; Unreachable at EOF."""
    buffer = bytearray()
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            yield bytes(buffer[: end + 1])
            del buffer[: end + 1]
            continue
        if len(buffer) > MAX_RESPONSE:
            raise protocol.TooLarge(f"a line is longer than {MAX_RESPONSE} bytes")
        chunk = sock.recv(_RECV_SIZE)
        if not chunk:
            raise Unreachable("the daemon closed the connection (resume with --since the last position processed)")
        buffer += chunk


def _open_trusted(socket_path: str, data_dir: str | None, deadline: float) -> socket.socket:
    """A socket connected to a daemon we trust; if none listens and ``data_dir`` is given, start one first.

    Raises:
        NotRunning: nothing listens on ``socket_path`` and auto-start is off.
        Untrusted: the socket's directory or the peer fails a trust check.
        OSError, TimeoutError: from connecting (the callers translate them).
    """
    check_directory(socket_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            _connect(sock, socket_path, deadline)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            if data_dir is None:
                raise _not_running(socket_path, exc) from None
            _start_daemon(socket_path, data_dir, deadline)
            sock.close()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            _connect(sock, socket_path, deadline)
        check_peer(sock, socket_path)
    except BaseException:
        sock.close()
        raise
    return sock


def _not_running(socket_path: str, exc: OSError) -> NotRunning:
    """The error for a socket nothing listens on, naming a lock holder whose socket file is gone."""
    hint = _procs.holder_hint(socket_path)
    return NotRunning(f"no daemon at {socket_path} ({exc.strerror}) and auto-start is off{hint}")


def _exchange(socket_path: str, line: bytes, timeout: float) -> bytes:
    """Connect, send ``line``, and read one response line, all within ``timeout`` seconds.

    Raises:
        OSError: from the socket; ``TimeoutError`` when the time is up.
        Untrusted: the socket's directory or its listener is another user's;
            nothing was sent.
        Busy: the listen backlog stayed full until the deadline.
        Unreachable: the daemon closed the connection without a whole line.
        protocol.TooLarge: no newline within :data:`MAX_RESPONSE` bytes.
    """
    deadline = time.monotonic() + timeout
    check_directory(socket_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        _connect(sock, socket_path, deadline)
        check_peer(sock, socket_path)
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


def _connect(sock: socket.socket, socket_path: str, deadline: float) -> None:
    """Connect, retrying while the daemon's listen backlog is full, until ``deadline``.

    A full backlog (``EAGAIN`` from a Unix socket's connect) is a daemon that
    exists but does not accept right now (stopped with SIGSTOP, or swamped):
    worth waiting for, unlike a socket nobody listens on.

    Raises:
        Busy: the backlog was still full at ``deadline``.
        OSError: any other failure to connect; ``TimeoutError`` when the time is up.
    """
    delay = _FIRST_POLL
    sock.settimeout(_remaining(deadline))
    while True:
        try:
            sock.connect(socket_path)
            return
        except BlockingIOError:
            pass
        left = deadline - time.monotonic()
        if left > 0:
            time.sleep(min(delay, left))
            delay = min(delay * 2, _LAST_POLL)
            left = deadline - time.monotonic()
        if left <= 0:
            raise Busy(f"the daemon at {socket_path} accepts no connections (its listen backlog is full)")
        sock.settimeout(left)


def check_directory(socket_path: str) -> None:
    """Refuse a socket whose directory another user owns or may write to.

    Whoever may write to the directory can replace the socket file with one
    of their own.  A missing directory passes: connecting then fails, and an
    auto-started daemon creates the directory itself, private.

    Raises:
        Untrusted: the directory is owned by neither the user nor root, or is
            writable by its group or by others.
    """
    directory = os.path.dirname(socket_path) or "."
    try:
        st = os.stat(directory)
    except OSError:
        return
    uid = os.getuid()
    if st.st_uid not in (uid, 0):
        raise Untrusted(
            f"refusing the socket {socket_path}: its directory is owned by uid {st.st_uid}, not by you "
            f"(uid {uid}) or root; remove {directory} or use another --socket"
        )
    if st.st_mode & 0o022:
        shared = st.st_mode & 0o1000 or st.st_uid != uid  # sticky: a shared directory such as /tmp
        fix = "use a socket in a private directory" if shared else f"run: chmod 700 {directory}"
        raise Untrusted(
            f"refusing the socket {socket_path}: its directory is writable by other users "
            f"(mode {st.st_mode & 0o7777:o}); {fix}"
        )


def check_peer(sock: socket.socket, socket_path: str) -> None:
    """Refuse a connected socket whose listener runs as neither the user nor root (``SO_PEERCRED``).

    Raises:
        Untrusted: the listener's uid is another user's.
    """
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)  # struct ucred: pid, uid, gid
    pid = int.from_bytes(creds[0:4], sys.byteorder, signed=True)
    peer = int.from_bytes(creds[4:8], sys.byteorder, signed=True)
    uid = os.getuid()
    if peer not in (uid, 0):
        raise Untrusted(
            f"refusing the daemon at {socket_path}: it runs as uid {peer} (pid {pid}), not as you "
            f"(uid {uid}) or root; nothing was sent"
        )


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
    survive: a child that exits while a socket file is in place lost that race,
    and we poll the socket until the winner answers.  A child that exits with no
    socket in place failed (another daemon holds the data directory, the socket
    path is a regular file, ...): we say so at once, with its own error line
    from the log.

    Raises:
        Unreachable: the data directory is unsafe, the daemon could not be
            started or exited, or nothing answered within :data:`START_DEADLINE`.
        Untrusted: what answers on the socket is another user's.
        TimeoutError: ``deadline`` came first, with the daemon still starting.
    """
    import subprocess  # only on the rare start-up path

    # A daemon whose socket file was just removed still holds the lock until it
    # notices (within a second) and stops: a new one started now would find the
    # lock taken and exit.  Wait for the old one to go first.
    holder = _procs.lock_holder(socket_path)
    if holder is not None and not _is_socket(socket_path):
        if not _procs.wait_exited(holder, min(time.monotonic() + START_DEADLINE, deadline)):
            if deadline <= time.monotonic() + START_DEADLINE:
                raise TimeoutError  # the caller's --timeout: the old daemon may yet stop
            raise Unreachable(
                f"todod (pid {holder}) still holds the lock of {socket_path}, whose socket file is gone, "
                f"and has not stopped within {START_DEADLINE:g} s; stop it with: kill {holder}"
            )
    log_path = os.path.join(data_dir, "todod.log")
    # -P: the current directory is not put on sys.path, or a `todod` package
    # there (another version's checkout, a planted file) would run instead.
    argv = [sys.executable, "-P", "-m", "todod", "--socket", socket_path, "--data-dir", data_dir]
    try:
        paths.ensure_private_dir(data_dir)
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            log_start = os.lseek(log, 0, os.SEEK_END)  # where this child's lines begin
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
        except Untrusted:
            raise
        except (OSError, protocol.TodoError):
            pass  # not listening yet, or still starting up
        exited = child.poll()  # also reaps a child that lost a start-up race
        if exited is not None and not _is_socket(socket_path):
            line = _last_error_line(log_path, log_start)
            raise Unreachable(
                f"started the daemon (pid {child.pid}) but it exited with status {exited}"
                f"{': ' + repr(line) if line else ''}{_procs.holder_hint(socket_path)}; see {log_path}"
            )
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


def _is_socket(path: str) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


#: How much of the log an exited daemon's error line is looked for in: its
#: start-up writes a few lines, a traceback at most a few KiB.
_LOG_TAIL: Final = 16 * 1024


def _last_error_line(log_path: str, start: int) -> str:
    """The daemon's last ERROR or CRITICAL line written since ``start``, else its last line ("" if none).

    The timestamp is left out: ``todod: cannot start: ...``.
    """
    try:
        with open(log_path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(start, size - _LOG_TAIL))
            text = file.read(_LOG_TAIL).decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        for level in (" CRITICAL ", " ERROR "):
            if level in line:
                return line.partition(level)[2]
    return lines[-1] if lines else ""
