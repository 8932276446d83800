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
import functools
import logging
import math
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import outcome
import trio

from todod._model import Origin
from todod._reply import Wakeup
from todod._subscription import CONNECTION, NO_REPLY, Connection
from todod.paths import ensure_private_dir
from todod.protocol import (
    MAX_LINE,
    MAX_PAGE_BYTES,
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

Reply = Callable[[outcome.Outcome[Any]], None]


class Handler(Protocol):
    """What serves the requests: :class:`todod._dispatch.Dispatcher`."""

    def __call__(self, request: Request) -> Awaitable[Any]:
        """Answer one request (its wire result), in a task of its own."""

    async def submit(self, request: Request, reply: Reply, origin: Origin) -> bool:
        """Queue a request with no task of its own, if it can be (``reply`` gets its outcome); else False.

        ``origin`` is the peer that sent it.
        """


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
    #: Bytes of responses one connection may hold (reserved for requests in
    #: flight, queued, being written), and all connections together.  Past
    #: its own budget a connection is not read until it drains; past the
    #: daemon's, no connection takes a new request until some drain.  8 MiB
    #: is eight whole pages in flight, as much as a reader can use; 256 MiB
    #: bounds what clients that never read can pin, in a daemon whose lists
    #: take tens of MB (docs/PROTOCOL.md, "Byte budgets").
    connection_budget: int = 8 << 20
    daemon_budget: int = 256 << 20
    #: What a request reserves until its response is written: an ``entries``
    #: page (its entries' JSON and a margin for the rest of the line), and
    #: any other request (an entry's answer is at most about 12 KB: a title
    #: of 1,000 characters at up to 12 bytes of JSON each).  A response
    #: longer than its reservation (``lists`` of very many lists) counts
    #: its real size once it is built.
    page_reserve: int = MAX_PAGE_BYTES + (16 << 10)
    small_reserve: int = 16 << 10


#: The ops whose answer is a page (at most MAX_PAGE_BYTES of entries or
#: events): they reserve ``page_reserve``, the others ``small_reserve``.
_PAGED_OPS = frozenset({"entries", "find", "history"})


@attrs.define
class SocketStatistics:
    connections: int = 0
    accepted: int = 0
    refused_busy: int = 0
    refused_peer: int = 0
    requests: int = 0
    errors: int = 0
    #: Times a connection's reader waited for its own or the daemon's byte budget.
    budget_waits: int = 0


@attrs.define(eq=False)
class ResponseBudget:
    """The daemon's byte budget for responses, shared by every connection."""

    limit: int
    used: int = 0
    #: Readers waiting for room, woken whenever a connection releases bytes.
    _waiting: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot, init=False)

    def release(self, size: int) -> None:
        self.used -= size
        if self._waiting:
            self._waiting.unpark_all()

    async def wait_released(self) -> None:
        await self._waiting.park()


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
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise OSError(f"fd {fd} is not a socket ({exc.strerror})") from None
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise OSError(f"fd {fd} is not a Unix stream socket")
    # systemd passes a listening socket; one that is only bound would make the
    # listener crash (a traceback, then exit 1) instead of a clear refusal.
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise OSError(f"fd {fd} is a Unix stream socket that is not listening")
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
    budget: ResponseBudget = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.budget = ResponseBudget(self.config.daemon_budget)

    async def serve(self, bound: BoundSocket, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
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
        """Read requests and write responses until EOF, a broken bound, or shutdown.

        Two tasks: this one reads, parses and queues each request (a list op
        goes straight into its list's mailbox, with no task of its own), and
        the connection's writer sends every response that is ready in one
        ``send_all``.  Only the other ops (hello, lists, status, ...) get a
        task each.  After reading stops, the connection's subscriptions end,
        the responses still owed are written, then the connection closes.

        ``origin`` (the peer's uid and pid) goes with every list op to the
        change log; the other ops find it, and a watch the way to stream its
        events, in the :data:`CONNECTION` context variable, which their tasks
        inherit from this one.
        """
        config = self.config
        conn = _Connection(stream, config.write_timeout, config.connection_budget, self.budget, config.small_reserve)
        connection = Connection(origin, conn.stream)
        CONNECTION.set(connection)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.run_writer)
                with trio.CancelScope() as reader:
                    self._readers.add(reader)
                    if self._closing:
                        reader.cancel()
                    try:
                        await self._read_requests(stream, conn, nursery, origin)
                    finally:
                        self._readers.discard(reader)
                        connection.close()
                await conn.wait_drained()
                if conn.farewell is not None:
                    # The error that ended reading goes last, after every
                    # answer owed to the lines before it, as a client expects.
                    conn.push(conn.farewell, 0)
                    await conn.wait_drained()
                nursery.cancel_scope.cancel()
        finally:
            conn.close()

    async def _read_requests(
        self, stream: trio.SocketStream, conn: _Connection, nursery: trio.Nursery, origin: Origin
    ) -> None:
        buffer = bytearray()
        max_in_flight = self.config.max_in_flight
        submit = self.handler.submit
        stats = self.stats
        page_reserve, small_reserve = self.config.page_reserve, self.config.small_reserve
        while True:
            line = await self._read_line(stream, buffer, conn)
            if line is None:
                return
            # Requests in flight are counted until their response is written,
            # so a client cannot queue unbounded work or unbounded replies.
            while conn.in_flight >= max_in_flight:
                await conn.wait_written()
            conn.in_flight += 1
            stats.requests += 1
            try:
                request = parse_request(line)
            except TodoError as exc:
                conn.push(_encode_result(getattr(exc, "request_id", None), outcome.Error(exc), stats))
                continue
            # The response's bytes are reserved before the request is queued:
            # an answer is never built that the budgets have no room for.
            reserve = page_reserve if request.op in _PAGED_OPS else small_reserve
            if not conn.reserve(reserve):
                stats.budget_waits += 1
                while not conn.reserve(reserve):
                    await conn.wait_for_budget()
            try:
                if await submit(request, functools.partial(_answer_to, conn, request.id, stats, reserve), origin):
                    continue  # queued: the answer comes through the callback
            except TodoError as exc:
                conn.push(_encode_result(request.id, outcome.Error(exc), stats), reserved=reserve)
                continue
            except Exception as exc:
                conn.push(_encode_result(request.id, outcome.Error(exc), stats), reserved=reserve)
                continue
            nursery.start_soon(self._respond, conn, request, reserve)

    async def _read_line(self, stream: trio.SocketStream, buffer: bytearray, conn: _Connection) -> bytes | None:
        """The next line without its newline, or None when reading must stop.

        Reading stops at end of stream, and after a line that breaks a bound
        (its error is then kept in ``conn.farewell``, to be sent after the
        answers still owed).
        """
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
            data = await conn.receive(deadline)
            if data is None:
                conn.farewell = encode_error(None, BadRequest("incomplete line timed out"))
                return None
            if not data:
                return None  # a partial line at EOF is a client that gave up
            if not buffer:
                deadline = trio.current_time() + self.config.line_timeout
            buffer += data
        self.stats.errors += 1
        conn.farewell = encode_error(None, TooLarge(f"a request line is at most {cap} bytes"))
        return None

    async def _respond(self, conn: _Connection, request: Request, reserved: int) -> None:
        """Answer one request that is not a list op, in a task of its own."""
        try:
            result: outcome.Outcome[Any] = outcome.Value(await self.handler(request))
        except Exception as exc:
            result = outcome.Error(exc)
        if type(result) is outcome.Value and result.value is NO_REPLY:
            conn.answered(reserved)  # it answered on its own (a watch): nothing to send
            return
        conn.push(_encode_result(request.id, result, self.stats), reserved=reserved)


def _answer_to(
    conn: _Connection, request_id: Any, stats: SocketStatistics, reserved: int, result: outcome.Outcome[Any]
) -> None:
    """A list op's answer, from whichever task answers it: encode it and queue it for the writer."""
    conn.push(_encode_result(request_id, result, stats), reserved=reserved)


def _encode_result(request_id: Any, result: outcome.Outcome[Any], stats: SocketStatistics) -> bytes:
    """The response line of one request; never raises (the boundary of one request)."""
    try:
        if type(result) is outcome.Value:
            response = encode_ok(request_id, result.value)
            if len(response) <= MAX_RESPONSE:
                return response
            error: BaseException = TooLarge("the response would be too large")
        else:
            assert isinstance(result, outcome.Error)
            error = result.error
        if isinstance(error, TodoError):
            stats.errors += 1
            return encode_error(getattr(error, "request_id", request_id), error)
        # The boundary of one request: the client gets an error, we a log.
        log.error("request failed", exc_info=error)
    except Exception:
        log.exception("request failed")
    stats.errors += 1
    return encode_error(request_id, Internal("internal error; see the daemon's log"))


class _Connection:
    """One connection's socket I/O: its outbox, its writer, its reads.

    Responses are pushed by whichever task answers a request (synchronously,
    never blocking).  When nothing is waiting to be sent, ``push`` writes the
    line to the socket at once, in that task, without waking anyone: the
    kernel's buffer almost always takes it.  Otherwise (a client slow to
    read, or a burst behind a partial write) lines queue in the outbox, and
    the connection's writer task sends all that are queued in one write
    each time the socket has room, under the write timeout.

    A watch's events are lines that answer no request (:meth:`stream`): their
    task waits until they are written, with no time limit while nothing but
    such lines is owed, since a subscriber may pause as long as it likes (its
    hub buffer bounds what waits for it).  A response queued behind them, or
    the end of the connection, puts the write back under the write timeout.

    ``in_flight`` counts requests read and not yet written; the reader keeps
    it within ``max_in_flight``.  ``used`` counts the bytes of responses the
    connection holds: reserved for requests in flight (:meth:`reserve`),
    then their real size while queued or being written (a watch's lines
    too); the reader keeps it within the connection's budget, and every
    connection's within the daemon's (:class:`ResponseBudget`).  The socket is used non-blocking through its
    file descriptor, below trio's stream, which costs two cancel scopes and
    a context manager per request on this path.
    """

    __slots__ = (
        "_broken",
        "_budget",
        "_draining",
        "_fd",
        "_floor",
        "_flushed",
        "_limit",
        "_outbox",
        "_outbox_requests",
        "_outbox_streamed",
        "_ready",
        "_write_scope",
        "_write_timeout",
        "_writing",
        "_written",
        "closed",
        "farewell",
        "in_flight",
        "outbox_bytes",
        "used",
        "used_peak",
        "writes",
    )

    def __init__(
        self, stream: trio.SocketStream, write_timeout: float, limit: int, budget: ResponseBudget, floor: int
    ) -> None:
        self._fd = stream.socket.fileno()
        self._limit = limit
        self._floor = floor
        self._budget = budget
        self.used = 0
        self.used_peak = 0
        self._write_timeout = write_timeout
        self._outbox: list[bytes] = []
        self._outbox_requests = 0
        self._ready = Wakeup()
        self._written = Wakeup()
        self._writing = False
        self._broken: OSError | None = None
        #: Lines in the outbox that answer no request (a watch's events).
        self._outbox_streamed = 0
        #: The scope of the write in progress (its deadline is inf for a write of streamed lines only).
        self._write_scope: trio.CancelScope | None = None
        #: Set after each write to the socket, for the tasks that stream lines.
        self._flushed: trio.Event | None = None
        self._draining = False
        self.closed = False
        #: The error line that ended reading (a bound broken), sent after every answer still owed.
        self.farewell: bytes | None = None
        self.in_flight = 0
        self.outbox_bytes = 0
        #: Writes to the socket so far (a test checks that queued responses share them).
        self.writes = 0

    def reserve(self, size: int) -> bool:
        """Reserve ``size`` bytes for a response, if this connection's and the daemon's budgets have room.

        A connection holding nothing may always reserve a small response
        (at most ``floor`` bytes): a client asking one thing at a time is
        served even while clients that never read fill the daemon's budget,
        which it may then pass by ``floor`` bytes per connection at most.
        """
        budget = self._budget
        if self.used:
            if self.used + size > self._limit or budget.used + size > budget.limit:
                return False
        elif size > self._floor and budget.used + size > budget.limit:
            return False
        self.used += size
        budget.used += size
        if self.used > self.used_peak:
            self.used_peak = self.used
        return True

    async def wait_for_budget(self) -> None:
        """Wait until some connection (this one included) releases bytes."""
        await self._budget.wait_released()

    def _release(self, size: int) -> None:
        self.used -= size
        self._budget.release(size)

    def close(self) -> None:
        """No more I/O; give back every byte this connection held (answers still owed are dropped)."""
        self.closed = True
        if self.used:
            self._release(self.used)

    def push(self, data: bytes, requests: int = 1, *, streamed: bool = False, reserved: int = 0) -> None:
        """Send one response line, or queue it for the writer (``requests``: how many requests it answers).

        ``streamed``: the line answers no request and may wait for the
        client without a time limit (see :meth:`stream`).  ``reserved``: the
        bytes reserved for it, now replaced by its real size until written.
        """
        if self.closed or self._broken is not None:
            return
        if not streamed:
            self._limit_write()
        if not self._outbox and not self._writing:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:  # the peer is gone: the writer ends the connection
                self._broken = exc
                self._ready.set()
                return
            self.writes += 1
            if sent == len(data):
                self.in_flight -= requests
                if reserved:
                    self._release(reserved)
                self._written.set()
                return
            data = data[sent:]
        size = len(data)
        self.used += size - reserved
        self._budget.used += size - reserved
        if self.used > self.used_peak:
            self.used_peak = self.used
        self._outbox.append(data)
        self._outbox_requests += requests
        self._outbox_streamed += streamed
        self.outbox_bytes += size
        if len(self._outbox) == 1:
            self._ready.set()

    async def run_writer(self) -> None:
        """Send what is queued, all of it in one write, as long as the connection lives.

        Raises:
            _Disconnect: sending what was queued took longer than the write
                timeout (the client stopped reading).
            trio.BrokenResourceError: the peer is gone.
        """
        while True:
            while not self._outbox and self._broken is None:
                await self._ready.wait()
            if self._broken is not None:
                raise trio.BrokenResourceError("the peer is gone") from self._broken
            out, self._outbox = self._outbox, []
            answered, self._outbox_requests = self._outbox_requests, 0
            streamed, self._outbox_streamed = self._outbox_streamed, 0
            size, self.outbox_bytes = self.outbox_bytes, 0
            data = out[0] if len(out) == 1 else b"".join(out)
            self._writing = True
            with trio.CancelScope() as slow:
                if streamed < len(out) or self._draining:
                    slow.deadline = trio.current_time() + self._write_timeout
                self._write_scope = slow
                await self._write_all(data)
            self._write_scope = None
            self._writing = False
            if slow.cancelled_caught:
                log.info("disconnecting a client that stopped reading")
                raise _Disconnect
            self.in_flight -= answered
            self._release(size)
            self._written.set()
            if self._flushed is not None:
                self._flushed.set()
                self._flushed = None

    def _limit_write(self) -> None:
        """Put a write of streamed lines only back under the write timeout (something else is owed now)."""
        scope = self._write_scope
        if scope is not None and scope.deadline == math.inf:
            scope.deadline = trio.current_time() + self._write_timeout

    async def stream(self, data: bytes) -> None:
        """Send a line that answers no request (a watch's event) and return once it is written.

        Lines are written in the order they are pushed, responses included.
        No time limit of its own: the caller's wait is the backpressure that
        a subscription's bounded buffer turns into reading from the log.

        Raises:
            trio.BrokenResourceError: the peer is gone.
        """
        if self.closed or self._broken is not None:
            raise trio.BrokenResourceError("the connection is closed")
        self.push(data, 0, streamed=True)
        while self._outbox or self._writing:
            if self._flushed is None:
                self._flushed = trio.Event()
            await self._flushed.wait()
        if self._broken is not None:
            raise trio.BrokenResourceError("the peer is gone") from self._broken

    def answered(self, reserved: int = 0) -> None:
        """Count a request as answered that sends no response line of its own (a watch), and release its bytes."""
        self.in_flight -= 1
        if reserved and not self.closed:
            self._release(reserved)
        self._written.set()

    async def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = os.write(self._fd, view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._fd)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError("the peer is gone") from exc
            self.writes += 1
            view = view[sent:]

    async def receive(self, deadline: float) -> bytes | None:
        """The next bytes from the peer (b"" at end of stream), or None if ``deadline`` passed first."""
        while True:
            if deadline == math.inf:
                await trio.lowlevel.wait_readable(self._fd)
            else:
                with trio.move_on_at(deadline) as slow:
                    await trio.lowlevel.wait_readable(self._fd)
                if slow.cancelled_caught:
                    return None
            try:
                return os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise trio.BrokenResourceError("the peer is gone") from exc

    async def wait_written(self) -> None:
        """Wait until a response has been written (or one was, since the last wait)."""
        await self._written.wait()

    async def wait_drained(self) -> None:
        """Wait until every request read has been answered and written.

        Everything still to write is under the write timeout from here on.
        """
        self._draining = True
        self._limit_write()
        while self.in_flight or self._outbox or self._writing:
            await self._written.wait()


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
