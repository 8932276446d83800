"""The Unix socket server: binding, peer checks, framing and its bounds.

Trio has no Unix listener helper, so :func:`bind_unix` binds one by hand:
refuse if a daemon already answers on the path, replace a stale file, bind
with mode 0600 inside a private directory.  :class:`SocketServer` accepts
connections and serves newline-delimited JSON on each, with a bound on
everything a client can make it wait for or buffer.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import math
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from todod._model import Origin
from todod._subscription import CONNECTION, NO_REPLY, Connection
from todod.paths import ensure_private_dir
from todod.protocol import (
    MAX_LINE,
    MAX_RESPONSE,
    BadRequest,
    Forbidden,
    Internal,
    Request,
    TodoError,
    TooLarge,
    Unavailable,
    encode_error,
    encode_ok,
    parse_request,
)

log = logging.getLogger("todod.socket")

Handler = Callable[[Request], Awaitable[Any]]


class AlreadyRunning(Exception):
    """Another todod answers on the socket path (or holds its lock)."""


@attrs.frozen
class SocketConfig:
    #: Connections served at once.  A connection costs a task, an fd and a
    #: few KiB; 1,024 serves every realistic number of shells and scripts.
    #: The entry point raises the soft fd limit to fit it (or lowers it to
    #: fit the hard limit).  Over it, a client gets an ``unavailable`` error
    #: line and is closed.
    max_connections: int = 1024
    #: Requests in flight on one connection (pipelining).  Beyond it we stop
    #: reading that connection, so a client cannot queue unbounded work.
    max_in_flight: int = 64
    #: Longest request line (without its newline).
    max_line: int = MAX_LINE
    #: How long a line may take from its first byte to its newline.
    line_timeout: float = 10.0
    #: How long writing one response may take; a client that stops reading
    #: is disconnected after it.
    write_timeout: float = 10.0
    #: How long shutdown waits for requests in flight.
    shutdown_timeout: float = 10.0


@attrs.define
class SocketStatistics:
    connections: int = 0
    accepted: int = 0
    refused_busy: int = 0
    refused_peer: int = 0
    requests: int = 0
    errors: int = 0


# --- binding ---------------------------------------------------------------------


@attrs.define(eq=False)
class BoundSocket:
    """A listening socket and how to clean up after it."""

    sock: socket.socket
    path: str | None  # None for a socket we adopted and must never unlink
    _inode: tuple[int, int] | None = None
    _lock_fd: int | None = None

    def close(self) -> None:
        self.sock.close()
        if self.path is not None and self._inode is not None:
            try:
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)  # only the file we bound, never a successor's
            except FileNotFoundError:
                pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)


def bind_unix(path: str, backlog: int = 4096) -> BoundSocket:
    """Bind and listen on a Unix socket at ``path``, mode 0600, in a private directory.

    Args:
        backlog: the kernel's queue of connections not yet accepted (capped
            by net.core.somaxconn).  A burst of scripts connecting at once
            must find room even while the accept loop is busy, so this is
            sized like the connection cap, not like Linux's old 128.

    Raises:
        AlreadyRunning: a daemon answers on ``path`` or holds its lock.
        OSError, UnsafeDirectory: the path cannot be used.
    """
    directory = os.path.dirname(path) or "."
    ensure_private_dir(directory)
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(f"another todod holds {path}.lock") from None
        # Who holds the lock, for a `todo` that finds the socket file gone.
        os.ftruncate(lock_fd, 0)
        os.write(lock_fd, f"{os.getpid()}\n".encode())
        _remove_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            old_umask = os.umask(0o177)  # the socket is born 0600: no window at 0755
            try:
                sock.bind(path)
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
            sock.listen(backlog)
            st = os.lstat(path)
        except BaseException:
            sock.close()
            raise
        return BoundSocket(sock, path, (st.st_dev, st.st_ino), lock_fd)
    except BaseException:
        os.close(lock_fd)
        raise


def _remove_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise AlreadyRunning(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale socket %s", path)
        os.unlink(path)
        return
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise
        os.unlink(path)
        return
    finally:
        probe.close()
    raise AlreadyRunning(f"a todod is already running on {path}")


def adopt_socket(fd: int) -> BoundSocket:
    """Wrap a listening socket passed by systemd; we will never unlink its path."""
    sock = socket.socket(fileno=fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise OSError(f"fd {fd} is not a Unix stream socket")
    os.set_inheritable(fd, False)
    return BoundSocket(sock, None)


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """The pid and uid of the peer of a connected Unix socket (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return int(pid), int(uid)


def peer_uid(sock: socket.socket) -> int:
    """The uid of the peer of a connected Unix socket (``SO_PEERCRED``)."""
    return peer_credentials(sock)[1]


# --- serving ---------------------------------------------------------------------


class _Disconnect(Exception):
    """End this connection (the client stopped reading, or broke a bound)."""


@attrs.define(eq=False)
class SocketServer:
    """Serves the protocol on a bound socket; see :meth:`serve`."""

    handler: Handler
    config: SocketConfig = attrs.field(factory=SocketConfig)
    stats: SocketStatistics = attrs.field(factory=SocketStatistics)
    #: The daemon's uid; peers with another uid (except root) are refused.
    uid: int = attrs.field(factory=os.getuid)
    _accept_scope: trio.CancelScope | None = attrs.field(default=None, init=False)
    _readers: set[trio.CancelScope] = attrs.field(factory=set, init=False)
    _connections: trio.Nursery | None = attrs.field(default=None, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _all_closed: trio.Event = attrs.field(factory=trio.Event, init=False)

    async def serve(
        self, bound: BoundSocket, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept and serve connections; never returns unless cancelled or closed.

        Connections live in a nursery inside this task, so cancelling it ends
        them all; :meth:`shutdown` ends them gracefully instead.
        """
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(_dup(bound.sock)))
        async with listener, trio.open_nursery() as nursery:
            self._connections = nursery
            with trio.CancelScope() as self._accept_scope:
                task_status.started()
                while not self._closing:
                    stream = await _accept(listener)
                    if stream is None:
                        continue
                    self.stats.accepted += 1
                    if self.stats.connections >= self.config.max_connections:
                        self.stats.refused_busy += 1
                        nursery.start_soon(self._refuse, stream, Unavailable("too many connections; try again"))
                        continue
                    # Counted here, not in the new task: a burst of accepts
                    # runs before any of their tasks do, and must see the cap.
                    self.stats.connections += 1
                    nursery.start_soon(self._serve_connection, stream)

    async def shutdown(self) -> None:
        """Stop accepting, stop reading, and wait (bounded) for requests in flight."""
        self._closing = True
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        for scope in list(self._readers):
            scope.cancel()
        with trio.move_on_after(self.config.shutdown_timeout) as waited:
            if self.stats.connections:
                await self._all_closed.wait()
        if waited.cancelled_caught and self._connections is not None:
            log.warning("requests still in flight after %g s; closing", self.config.shutdown_timeout)
            self._connections.cancel_scope.cancel()

    async def _refuse(self, stream: trio.SocketStream, error: TodoError) -> None:
        with trio.move_on_after(1.0):
            try:
                await stream.send_all(encode_error(None, error))
            except trio.BrokenResourceError:
                pass
        await stream.aclose()

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection (already counted in ``stats.connections``)."""
        try:
            pid, uid = peer_credentials(stream.socket)  # type: ignore[arg-type]
            if uid not in (self.uid, 0):
                self.stats.refused_peer += 1
                log.warning("refused a connection from uid %d", uid)
                await self._refuse(stream, Forbidden(f"uid {uid} may not use this daemon"))
                return
            await self._converse(stream, Origin(uid, pid))
        except* (trio.BrokenResourceError, trio.ClosedResourceError, _Disconnect):
            pass
        except* Exception as group:
            # The boundary of one connection: log and close; never the listener.
            log.error("connection failed", exc_info=group)
        finally:
            self.stats.connections -= 1
            with trio.CancelScope(shield=True):
                await stream.aclose()
            if self._closing and not self.stats.connections:
                self._all_closed.set()

    async def _converse(self, stream: trio.SocketStream, origin: Origin) -> None:
        in_flight = trio.Semaphore(self.config.max_in_flight)
        send_lock = trio.Lock()

        async def stream_line(data: bytes) -> None:
            async with send_lock:
                await stream.send_all(data)

        # The hook of todod/_subscription.py: requests (in tasks started below, which
        # copy this context) find their peer, and a watch streams its events;
        # when reading ends, so do the connection's subscriptions.
        connection = Connection(origin, stream_line)
        CONNECTION.set(connection)
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as reader:
                self._readers.add(reader)
                if self._closing:
                    reader.cancel()
                try:
                    buffer = bytearray()
                    while True:
                        line = await self._read_line(stream, buffer, send_lock)
                        if line is None:
                            break
                        await in_flight.acquire()
                        nursery.start_soon(self._respond, stream, line, in_flight, send_lock)
                finally:
                    self._readers.discard(reader)
                    connection.close()

    async def _read_line(self, stream: trio.SocketStream, buffer: bytearray, send_lock: trio.Lock) -> bytes | None:
        """The next line without its newline, or None at end of stream."""
        cap = self.config.max_line
        scanned = 0
        # The line timeout runs from the line's first byte, not per receive:
        # a client trickling a byte at a time must not hold a buffer forever.
        deadline = trio.current_time() + self.config.line_timeout if buffer else math.inf
        while True:
            newline = buffer.find(b"\n", scanned)
            if newline >= 0:
                if newline > cap:
                    break
                line = bytes(buffer[:newline])
                del buffer[: newline + 1]
                return line
            scanned = len(buffer)
            if scanned > cap:
                break
            # Only a connection half-way through a line is on the clock: an
            # idle connection between requests may wait as long as it likes.
            with trio.move_on_at(deadline) as slow:
                data = await stream.receive_some(65536)
            if slow.cancelled_caught:
                await self._send(stream, send_lock, encode_error(None, BadRequest("incomplete line timed out")))
                raise _Disconnect
            if not data:
                return None  # a partial line at EOF is a client that gave up
            if not buffer:
                deadline = trio.current_time() + self.config.line_timeout
            buffer += data
        self.stats.errors += 1
        await self._send(stream, send_lock, encode_error(None, TooLarge(f"a request line is at most {cap} bytes")))
        raise _Disconnect

    async def _respond(
        self, stream: trio.SocketStream, line: bytes, in_flight: trio.Semaphore, send_lock: trio.Lock
    ) -> None:
        try:
            self.stats.requests += 1
            response = await self._answer(line)
            if response:  # empty for a request that answered on its own (a watch)
                await self._send(stream, send_lock, response)
        finally:
            in_flight.release()

    async def _answer(self, line: bytes) -> bytes:
        request_id: Any = None
        try:
            request = parse_request(line)
            request_id = request.id
            result = await self.handler(request)
            if result is NO_REPLY:
                return b""
            response = encode_ok(request_id, result)
        except TodoError as exc:
            self.stats.errors += 1
            return encode_error(getattr(exc, "request_id", request_id), exc)
        except Exception:
            # The boundary of one request: the client gets an error, we a log.
            self.stats.errors += 1
            log.exception("request failed")
            return encode_error(request_id, Internal("internal error; see the daemon's log"))
        if len(response) > MAX_RESPONSE:
            return encode_error(request_id, TooLarge("the response would be too large"))
        return response

    async def _send(self, stream: trio.SocketStream, send_lock: trio.Lock, data: bytes) -> None:
        async with send_lock:
            with trio.move_on_after(self.config.write_timeout) as slow:
                await stream.send_all(data)
        if slow.cancelled_caught:
            log.info("disconnecting a client that stopped reading")
            raise _Disconnect


def _dup(sock: socket.socket) -> socket.socket:
    # The listener owns a duplicate: a restarted listener (a permanent child)
    # gets a fresh one while the bound socket stays open underneath.
    return sock.dup()


async def _accept(listener: trio.SocketListener) -> trio.SocketStream | None:
    try:
        return await listener.accept()
    except OSError as exc:
        # EMFILE/ENFILE/ENOBUFS/ENOMEM: out of resources; back off briefly
        # rather than spin (trio's serve_listeners does the same).
        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            log.error("accept failed (%s); pausing 100 ms", exc)
            await trio.sleep(0.1)
            return None
        raise
