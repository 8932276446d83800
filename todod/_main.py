"""The ``todod`` entry point: run the daemon in the foreground.

Exit status: 0 after a clean stop (SIGTERM/SIGINT, the ``stop`` op, or its
socket file deleted or replaced: see todod/_watch.py); 1 when it cannot start
(another todod runs, the data cannot be opened); 2 for a bad option; 70 when a
permanent child crashed more often than its restart intensity allows, so that
the service manager restarts the whole daemon.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence

import attrs
import trio

from todod import __version__
from todod._core import Core, CoreConfig, open_core
from todod._dispatch import Dispatcher
from todod._server import AddEntry, Op, ServerConfig, ServerFaults, UpdateEntry
from todod._socket import AlreadyRunning, BoundSocket, SocketConfig, SocketServer, adopt_socket, bind_unix
from todod._supervisor import ChildSpec, Restart, SupervisorEscalation
from todod._systemd import listen_fds, notify, run_watchdog, watchdog_interval
from todod._watch import FileIdentity, socket_file_identity, watch_socket_file
from todod.paths import UnsafeDirectory, resolve_data_dir, resolve_socket
from todod.store import StoreError, StoreFaults

log = logging.getLogger("todod")

EXIT_STARTUP = 1
EXIT_ESCALATION = 70  # EX_SOFTWARE


class _JournalFormatter(logging.Formatter):
    """Prefix each line with its syslog priority so journald keeps the level."""

    _PRIORITY = {
        logging.CRITICAL: 2,
        logging.ERROR: 3,
        logging.WARNING: 4,
        logging.INFO: 6,
        logging.DEBUG: 7,
    }

    def format(self, record: logging.LogRecord) -> str:
        prio = self._PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).splitlines())


def _stderr_is_journal() -> bool:
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if _stderr_is_journal():
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse type: a number above zero (a zero bound would hang or refuse everything)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be above zero and finite: {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


#: File descriptors kept beyond the connection cap: the database and its
#: WAL, the listening socket, logs, worker threads' files.
FD_RESERVE = 64


def _fit_fd_limit(config: SocketConfig) -> SocketConfig:
    """Raise the soft fd limit to fit the connection cap, or lower the cap to fit.

    Many systems (and systemd user services) start with a soft limit of 1,024,
    which the default cap would hit first: accept() would fail with EMFILE and
    clients past it would hang instead of being refused with an error.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = config.max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        soft = new_soft
    if soft != resource.RLIM_INFINITY and soft < wanted:
        cap = max(1, soft - FD_RESERVE)
        log.warning("the fd limit (%d) allows only %d connections at once, not %d", soft, cap, config.max_connections)
        config = attrs.evolve(config, max_connections=cap)
    return config


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups, for a one-line log."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}

#: The smallest byte budget: one whole page and its margin, so that a
#: connection can always take the largest answer there is.
_MIN_BUDGET = SocketConfig().page_reserve


def _size(text: str) -> int:
    """A byte count such as ``8388608``, ``8M`` or ``512K`` (at least one page's reservation)."""
    digits, suffix = (text[:-1], text[-1].upper()) if text[-1:].isalpha() else (text, "")
    if suffix not in _SUFFIXES or not digits.isdigit():
        raise argparse.ArgumentTypeError(f"expected a byte count such as 8M or 262144, got {text!r}")
    value = int(digits) * _SUFFIXES[suffix]
    if value < _MIN_BUDGET:
        raise argparse.ArgumentTypeError(f"a budget is at least one page's reservation, {_MIN_BUDGET} bytes")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (got {value})")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todod", description="The todod to-do daemon (runs in the foreground).")
    parser.add_argument("--version", action="version", version=f"todod {__version__}")
    parser.add_argument("--socket", help="socket path (env TODOD_SOCKET; default $XDG_RUNTIME_DIR/todod.sock)")
    parser.add_argument("--data-dir", help="data directory (env TODOD_DATA_DIR; default $XDG_DATA_HOME/todod)")
    parser.add_argument(
        "--store",
        metavar="URI",
        default=os.environ.get("TODOD_STORE") or None,
        help="a PostgreSQL connection URI (postgresql://...) shared by several daemons "
        "(env TODOD_STORE; default: SQLite in the data directory)",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("TODOD_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log level (env TODOD_LOG_LEVEL; default info)",
    )
    sock, server = SocketConfig(), ServerConfig()
    bounds = parser.add_argument_group("bounds (defaults in docs/ARCHITECTURE.md)")
    bounds.add_argument("--max-connections", type=_positive(int), default=sock.max_connections)
    bounds.add_argument("--max-in-flight", type=_positive(int), default=sock.max_in_flight)
    bounds.add_argument("--line-timeout", type=_positive(float), default=sock.line_timeout)
    bounds.add_argument("--write-timeout", type=_positive(float), default=sock.write_timeout)
    bounds.add_argument("--call-timeout", type=_positive(float), default=server.call_timeout)
    bounds.add_argument("--idle-timeout", type=_positive(float), default=server.idle_timeout)
    bounds.add_argument("--quarantine", type=_positive(float), default=server.quarantine)
    bounds.add_argument("--max-lists", type=_positive(int), default=server.max_servers)
    bounds.add_argument(
        "--connection-budget",
        type=_size,
        default=sock.connection_budget,
        metavar="BYTES",
        help="bytes of responses one connection may hold (K, M, G suffixes; default 8M)",
    )
    bounds.add_argument(
        "--daemon-budget",
        type=_size,
        default=sock.daemon_budget,
        metavar="BYTES",
        help="bytes of responses all connections together may hold (default 256M)",
    )
    parser.add_argument(
        "--keep-days",
        type=_non_negative_int,
        default=None,
        help="compact the change log at start and hourly, keeping this many days (default: keep it all)",
    )
    parser.add_argument(
        "--commit-in-loop",
        action="store_true",
        help="run each group commit in the event loop rather than in a worker thread (see docs/ARCHITECTURE.md)",
    )
    parser.add_argument(
        "--switch-interval",
        type=_positive(float),
        default=SWITCH_INTERVAL * 1000,
        metavar="MS",
        help=f"the thread switch interval in ms (default {SWITCH_INTERVAL * 1000:g}; see docs/ARCHITECTURE.md)",
    )
    sub = parser.add_subparsers(dest="command")
    units = sub.add_parser("install-units", help="write the systemd user units for this todod")
    units.add_argument("--user-dir", help="where to write them (default ~/.config/systemd/user)")
    return parser


def _faults_from_env() -> tuple[StoreFaults, ServerFaults]:
    """Test-only fault injection, from ``TODOD_TEST_FAULTS`` (see docs/RELIABILITY.md).

    ``crash_title=T``: a list server crashes on any add/update with title T.
    ``hang_writer_after=N``: the writer blocks forever before its (N+1)th commit.
    """
    spec = os.environ.get("TODOD_TEST_FAULTS", "")
    settings = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)
    store, server = StoreFaults(), ServerFaults()
    if "crash_title" in settings:
        poison = settings["crash_title"]

        def crash(name: str, op: Op) -> None:
            if isinstance(op, AddEntry | UpdateEntry) and op.title == poison:
                raise RuntimeError(f"injected crash on title {poison!r}")

        server.on_request = crash
    if "hang_writer_after" in settings:
        remaining = [int(settings["hang_writer_after"])]
        forever = threading.Event()

        def hang(_group: int) -> None:
            if remaining[0] <= 0:
                log.warning("injected fault: the writer hangs")
                forever.wait()
            remaining[0] -= 1

        store.before_commit = hang
    if spec:
        log.warning("test faults enabled: %s", spec)
    return store, server


async def _amain(args: argparse.Namespace, socket_path: str, data_dir: str) -> None:
    server_config = ServerConfig(
        call_timeout=args.call_timeout,
        idle_timeout=args.idle_timeout,
        quarantine=args.quarantine,
        max_servers=args.max_lists,
    )
    socket_config = _fit_fd_limit(
        SocketConfig(
            max_connections=args.max_connections,
            max_in_flight=args.max_in_flight,
            line_timeout=args.line_timeout,
            write_timeout=args.write_timeout,
            connection_budget=args.connection_budget,
            daemon_budget=args.daemon_budget,
        )
    )
    store_faults, server_faults = _faults_from_env()
    # Signals are caught from the start: a SIGTERM during start-up must also
    # end in a clean stop, not a traceback.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        # The socket's lock is taken first: of two daemons started at once
        # (two CLIs auto-starting), the loser stops here and touches no data.
        bound = _listening_socket(socket_path)
        try:
            # Taken at once: a file deleted while the store opens is noticed too.
            identity = None if bound.path is None else socket_file_identity(bound.path)
            where = _Where(bound.path or str(bound.sock.getsockname()), identity, data_dir)
            config = CoreConfig(server=server_config, keep_days=args.keep_days, inline_commits=args.commit_in_loop)
            async with open_core(
                data_dir, config, store_faults=store_faults, server_faults=server_faults, store_uri=args.store
            ) as core:
                await _serve(core, bound, socket_config, signals, where)
        finally:
            bound.close()
    log.info("stopped cleanly")


def _listening_socket(socket_path: str) -> BoundSocket:
    fd = listen_fds()
    if fd is not None:
        log.info("using the socket passed by systemd (fd %d)", fd)
        return adopt_socket(fd)
    bound = bind_unix(socket_path)
    log.info("listening on %s", socket_path)
    return bound


@attrs.frozen
class _Where:
    """Where this daemon is: its socket (and the file's identity, to watch it) and its data."""

    socket: str
    identity: FileIdentity | None  # None for a socket passed by systemd: not watched
    data_dir: str


async def _serve(
    core: Core, bound: BoundSocket, config: SocketConfig, signals: AsyncIterator[int], where: _Where
) -> None:
    stopping = trio.Event()

    def stop(reason: str) -> None:
        if not stopping.is_set():
            log.info("%s; stopping", reason)
            stopping.set()

    dispatcher = Dispatcher(
        core,
        paths={
            "socket": where.socket,
            "data_dir": where.data_dir,
            "database": core.store.path,
        },
        on_stop=functools.partial(stop, "a client asked to stop"),
    )
    server = SocketServer(dispatcher, config)
    dispatcher.extra_status = lambda: {
        "connections": server.stats.connections,
        "requests": server.stats.requests,
        "refused_connections": server.stats.refused_busy + server.stats.refused_peer,
        "response_bytes": server.budget.used,
        "budget_waits": server.stats.budget_waits,
    }
    # Transient: restarted after a crash, but its normal return is the end of
    # a graceful shutdown, which must not count as a crash while the store drains.
    listener = ChildSpec("listener", functools.partial(server.serve, bound), restart=Restart.TRANSIENT)
    await core.supervisor.start_child(listener)
    # Ready: the store is open and the listener accepts.  Sent before the
    # watchdog starts, whose first STATUS= then replaces "ready".
    notify("READY=1\nSTATUS=ready")
    log.info("todod %s ready (pid %d)", __version__, os.getpid())
    interval = watchdog_interval()
    if interval is not None:

        def healthy() -> bool:
            # A transaction running for longer than a ping interval is a hung
            # writer as far as systemd is concerned.
            return not core.store.writer_stalled(interval)

        def status() -> str:
            st = core.statistics()
            stalled = "" if healthy() else "writer stalled; "
            clients = server.stats.connections
            return f"{stalled}{st.servers_running} lists active, {st.commits} commits, {clients} clients"

        await core.supervisor.start_child(
            ChildSpec("watchdog", functools.partial(run_watchdog, interval, healthy, status))
        )
    # Three ways to stop, one shutdown: a signal, the `stop` op, a lost socket file.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_wait_signal, signals, stop)
        if bound.path is not None and where.identity is not None:
            nursery.start_soon(watch_socket_file, bound.path, where.identity, stop)
        await stopping.wait()
        nursery.cancel_scope.cancel()
    notify("STOPPING=1")
    await server.shutdown()


async def _wait_signal(signals: AsyncIterator[int], stop: Callable[[str], None]) -> None:
    """Call ``stop`` on the first SIGTERM or SIGINT; log and ignore SIGHUP."""
    async for signum in signals:
        if signum == signal.SIGHUP:
            log.info("SIGHUP: nothing to reload (configuration is read at start; logs go to stderr)")
            continue
        stop(f"received {signal.Signals(signum).name}")
        return


#: The cyclic collector's thresholds for the daemon (Python's default is
#: 700, 10, 10).  Every request allocates a dozen short-lived containers,
#: and the running list servers hold many long-lived ones, so the default
#: ran a young collection every few groups and a full one over every list's
#: objects often; in same-run A/B runs (bench/run.py's load, 1,000 lists,
#: 6 interleaved repetitions) these thresholds took the event loop's CPU per
#: add from 147 to 126 us and adds/s from 4,063 to 4,648.  Reference
#: counting still frees almost everything at once; what waits longer is
#: cyclic garbage, at most about 20,000 young objects of it.
GC_THRESHOLDS = (20_000, 50, 100)


def _tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


#: The interpreter's thread switch interval, in seconds (Python's default is
#: 5 ms).  A group commit runs in a worker thread, which takes the GIL back
#: after each SQLite call (a dozen per transaction) and, while the event
#: loop is busy (paging big lists for 16 readers), waits up to one interval
#: each time: an unrelated add's p99 was 155 to 244 ms during such reads,
#: against 17 ms when it committed in the loop.  At 0.5 ms it was 41 to
#: 71 ms, its p50 and other clients' latency unchanged (bench/big_read.py
#: --latency-only --compare, docs/ARCHITECTURE.md).  The loop, alone or
#: beside idle threads, pays nothing for it.
SWITCH_INTERVAL = 0.0005


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``todod``; returns its exit status (also raised as SystemExit by the script)."""
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.command == "install-units":
        from todod._units import install_units

        return install_units(args.user_dir)
    socket_path = resolve_socket(args.socket)
    data_dir = resolve_data_dir(args.data_dir)
    status = 0
    _tune_gc()
    sys.setswitchinterval(args.switch_interval / 1000)
    try:
        trio.run(_amain, args, socket_path, data_dir)
    except* SupervisorEscalation as group:
        log.critical("%s; exiting so the service manager restarts todod", _leaf(group), exc_info=group)
        status = EXIT_ESCALATION
    except* (AlreadyRunning, StoreError, UnsafeDirectory, OSError) as group:
        log.error("cannot start: %s", _leaf(group))
        status = EXIT_STARTUP
    return status


def run() -> None:
    sys.exit(main())
