"""A throwaway PostgreSQL cluster for the tests: ``initdb`` and ``pg_ctl`` in a temporary directory.

The cluster listens on a Unix socket in its own directory only
(``listen_addresses=''``), runs as the ``postgres`` user when the tests run
as root (``initdb`` refuses root), and is stopped with ``pg_ctl`` afterwards.
The tests' cluster runs with ``fsync=off``: they kill daemons, never the
cluster, so they do not need its durability, and CI stays fast; the
benchmarks' (``durable=True``) runs with PostgreSQL's defaults, ``fsync=on``.  Each test gets a fresh
database (:meth:`Cluster.new_database`).
A cluster records its owner's PID; a new one first stops and removes the
clusters whose owner is gone (a test run killed before its teardown).

Where no PostgreSQL binaries exist, :func:`find_bindir` returns None and the
PostgreSQL tests skip with the reason printed; under CI (``CI`` set) they fail
instead, since ``.ci/run`` installs Debian's ``postgresql``.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cli._procs import process_alive

SKIP_REASON = "no PostgreSQL binaries (initdb, pg_ctl): install Debian's postgresql to run the PostgreSQL tests"


def find_bindir() -> str | None:
    """The directory holding ``initdb`` and ``pg_ctl``: ``TODOD_PG_BINDIR``, Debian's, or on PATH."""
    candidates = [os.environ.get("TODOD_PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(initdb))
    for bindir in candidates:
        if (
            bindir
            and os.access(os.path.join(bindir, "initdb"), os.X_OK)
            and os.access(os.path.join(bindir, "pg_ctl"), os.X_OK)
        ):
            return bindir
    return None


def _version(path: str) -> int:
    part = Path(path).parent.name
    return int(part) if part.isdigit() else 0


#: Where clusters live: a short path, since the socket's path must fit in 107 bytes.
PARENT = "/tmp"
PREFIX = "todod-pg-"


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "-"


def owner_line() -> str:
    """What a cluster's ``owner`` file says: this process, its PID namespace and its user."""
    return f"{os.getpid()} {_pid_namespace()} {os.getuid()}\n"


def sweep_stale(bindir: str) -> list[str]:
    """Stop and remove the clusters that test runs killed before their teardown left behind.

    A cluster is stale when the process named in its ``owner`` file, of this
    user and PID namespace, is gone (a pytest killed by a signal never runs
    the fixture's teardown); one without an owner file, another user's or
    namespace's, or one whose owner lives, is left alone.  Returns the
    directories removed.
    """
    removed = []
    for root in glob.glob(os.path.join(PARENT, PREFIX + "*")):
        try:
            pid, namespace, uid = Path(root, "owner").read_text().split()
            owner = int(pid)
        except (OSError, ValueError):
            continue
        # Only a cluster of this user's runs in this PID namespace: elsewhere
        # "no such process" says nothing about its owner.
        if namespace != _pid_namespace() or uid != str(os.getuid()) or process_alive(owner):
            continue
        data = os.path.join(root, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            argv = [os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]
            if os.geteuid() == 0:
                argv = ["runuser", "-u", "postgres", "--", *argv]
            subprocess.run(argv, capture_output=True, timeout=60, check=False, cwd=root)
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root)
    return removed


class Cluster:
    """One running cluster; :meth:`start` and :meth:`stop` bracket its life."""

    def __init__(self, bindir: str, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.durable = durable
        sweep_stale(bindir)
        self.root = tempfile.mkdtemp(prefix=PREFIX, dir=PARENT)
        self.data = os.path.join(self.root, "data")
        # Whose cluster this is: sweep_stale stops it once this process is gone.
        Path(self.root, "owner").write_text(owner_line())
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.db_user = self._user or pwd.getpwuid(os.geteuid()).pw_name
        self._numbers = itertools.count(1)
        self._free: list[str] = []

    def _run(self, argv: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        if self._user is not None:
            argv = ["runuser", "-u", self._user, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True, cwd=self.root)

    def start(self) -> None:
        """``initdb`` (trust on the socket only) and ``pg_ctl start``, waiting until it accepts connections."""
        initdb = [os.path.join(self.bindir, "initdb"), "-D", self.data, "-A", "trust", "-U", self.db_user]
        self._run([*initdb, "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        options = " ".join(
            [
                "-c listen_addresses=''",
                f"-c unix_socket_directories={self.root}",
                f"-c fsync={'on' if self.durable else 'off'}",
                "-c synchronous_commit=on",
                f"-c full_page_writes={'on' if self.durable else 'off'}",
                "-c max_connections=200",
                "-c shared_buffers=32MB",
            ]
        )
        pg_ctl = [os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-o", options]
        self._run([*pg_ctl, "-l", os.path.join(self.root, "log"), "-w", "-t", "60", "start"])

    def stop(self) -> None:
        """``pg_ctl stop -m fast``, then remove the directory."""
        try:
            self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"])
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pid = self.postmaster_pid()
            if pid is not None:
                os.kill(pid, 9)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def postmaster_pid(self) -> int | None:
        try:
            return int(Path(self.data, "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def uri(self, dbname: str) -> str:
        """A libpq URI for ``dbname`` over the cluster's socket."""
        return f"postgresql:///{dbname}?host={self.root}&user={self.db_user}"

    def psql(self, dbname: str, sql: str) -> str:
        """Run ``sql`` with ``psql`` (unaligned, tuples only) and return its output."""
        psql = [os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t", "-h", self.root, "-U", self.db_user]
        out = self._run([*psql, "-d", dbname, "-v", "ON_ERROR_STOP=1", "-c", sql])
        return out.stdout

    def new_database(self) -> str:
        """A fresh, empty database; returns its URI.

        One that a test gave back (:meth:`release`) is used again, emptied: a
        database is some 300 files, and making and removing one per test cost
        the suite minutes (the removal of the cluster's directory alone took
        80 s after 200 tests on this disk).
        """
        if self._free:
            return self.uri(self._free.pop())
        name = f"t{os.getpid()}_{next(self._numbers)}"
        self.psql("postgres", f"CREATE DATABASE {name} TEMPLATE template0")
        return self.uri(name)

    def release(self, uri: str) -> None:
        """Give a database from :meth:`new_database` back: its connections ended, everything in it dropped.

        todod keeps all it makes (tables, its schema table, the pg_trgm
        extension) in the ``public`` schema, so dropping that schema and
        making it again leaves the database as template0 made it.  A database
        that cannot be emptied is not used again.
        """
        name = uri.split("///", 1)[1].split("?", 1)[0]
        try:
            self.psql(
                name,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid(); "
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public",
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return
        self._free.append(name)
