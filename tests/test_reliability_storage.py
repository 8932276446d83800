"""Storage faults under a running todod: a full disk, read-only data, and files it must refuse to touch.

We run as root here, so permission bits stop no write: read-only data is a
read-only bind mount (in a private mount namespace) or an immutable file
(``chattr +i``), and a full disk is a file-size limit (``RLIMIT_FSIZE``, so
writes fail with EFBIG) or a small tmpfs (ENOSPC).  Each case is skipped with
its reason where the machine cannot provide it.
"""

from __future__ import annotations

import os
import resource
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon, LineReader, connect, exchange, file_digests, read_database, short_tempdir
from todod.protocol import encode_request

DB = "todod.sqlite3"
LONG = "x" * 900  # a title that fills a page in a few adds


class LimitedDaemon(Daemon):
    """A daemon whose files may grow to ``fsize`` bytes at most (RLIMIT_FSIZE; None: no limit)."""

    fsize: int | None = None

    def start(self, timeout: float = 15.0) -> LimitedDaemon:
        limit = self.fsize

        def preexec() -> None:
            if limit is not None:
                # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG.
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env, preexec_fn=preexec
            )
        self.wait_ready(timeout)
        return self


@contextmanager
def daemon_root() -> Iterator[Path]:
    root = short_tempdir()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def require(command: list[str], what: str) -> None:
    """Run ``command``; skip the test, saying it needs ``what``, if it fails or is missing."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip(f"needs {what}: {command[0]} is not installed")
    if result.returncode != 0:
        pytest.skip(f"needs {what}: {' '.join(command[:2])} failed: {result.stderr.strip()}")


def fill(daemon: Daemon, name: str, limit: int = 4000) -> tuple[list[str], list[dict[str, Any]]]:
    """Add long entries, 16 pipelined at a time, until adds fail.

    Returns:
        The titles acknowledged, in id order, and the errors of the failed adds.
    """
    acked: list[tuple[int, str]] = []
    errors: list[dict[str, Any]] = []
    with connect(daemon.socket) as sock:
        responses = LineReader(sock)
        for batch in range(limit // 16):
            titles = [f"{batch}-{i} {LONG}" for i in range(16)]
            sock.sendall(b"".join(encode_request("add", list=name, title=t) for t in titles))
            for _ in titles:
                response = responses.response()
                if response["ok"]:
                    acked.append((response["result"]["id"], response["result"]["title"]))
                else:
                    errors.append(response["error"])
            if errors:
                break
    return [title for _id, title in sorted(acked)], errors


def test_file_size_limit_fails_adds_cleanly_and_keeps_durable_data() -> None:
    """Past RLIMIT_FSIZE adds get unavailable naming the disk, the daemon lives on, and acked data survives."""
    with daemon_root() as root:
        daemon = LimitedDaemon(root)
        daemon.fsize = 1 << 20
        try:
            daemon.start()
            acked, errors = fill(daemon, "big")
            assert acked and errors, "the limit was never reached"
            assert {e["code"] for e in errors} == {"unavailable"}, errors
            message = errors[0]["message"]
            assert "disk" in message and "full" in message, message
            # Still alive: it answers, serves reads, and refuses writes the same way.
            assert daemon.request("hello")["protocol"] == 1
            assert [e["title"] for e in daemon.request("entries", list="big")] == acked
            assert daemon.stop() == 0, daemon.log()
            daemon.fsize = None
            daemon.start()
            assert [e["title"] for e in daemon.request("entries", list="big")] == acked
            assert daemon.request("add", list="big", title="room again")["id"] == len(acked) + 1
            assert daemon.stop() == 0
            verdict, _next_ids, entries = read_database(daemon.data_dir)
            assert verdict == "ok" and len(entries) == len(acked) + 1
        finally:
            daemon.cleanup()


def test_full_tmpfs_fails_adds_with_disk_full_and_recovers_when_grown() -> None:
    """On a full file system (ENOSPC) adds get 'the disk is full'; grown again, acked data is all there."""
    with daemon_root() as root:
        data = root / "data"
        data.mkdir(mode=0o700)
        require(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(data)], "a tmpfs mount (root)")
        daemon = Daemon(root)
        try:
            daemon.start()
            acked, errors = fill(daemon, "big")
            assert acked and errors, "the file system never filled up"
            assert errors[0] == {"code": "unavailable", "message": errors[0]["message"]}
            assert "the disk is full" in errors[0]["message"], errors
            assert daemon.request("hello")["protocol"] == 1
            assert len(daemon.request("entries", list="big")) == len(acked)
            assert daemon.stop() == 0, daemon.log()
            subprocess.run(["mount", "-o", "remount,size=16m", str(data)], check=True)
            daemon.start()
            assert [e["title"] for e in daemon.request("entries", list="big")] == acked
            assert daemon.stop() == 0
            assert read_database(data)[0] == "ok"
        finally:
            daemon.cleanup()
            subprocess.run(["umount", str(data)], check=True)


def test_database_turning_immutable_fails_writes_but_serves_reads() -> None:
    """While the database and its WAL are immutable, adds get unavailable, reads are served, and it recovers."""
    with daemon_root() as root, closing_daemon(Daemon(root)) as daemon:
        daemon.request("add", list="l", title="before")
        # Not the -shm file: it is memory-mapped, and a mapped page that can
        # no longer be written kills the process with SIGBUS (no real disk
        # does that to the shared-memory index).
        files = [str(daemon.data_dir / DB), str(daemon.data_dir / f"{DB}-wal")]
        require(["chattr", "+i", *files], "chattr +i (root, a file system with the immutable flag)")
        try:
            with connect(daemon.socket) as sock:
                response = exchange(sock, "add", list="l", title="refused")
            assert response["ok"] is False and response["error"]["code"] == "unavailable", response
            assert "disk" in response["error"]["message"]
            assert [e["title"] for e in daemon.request("entries", list="l")] == ["before"]
            assert daemon.request("entries", list="other") == []
            assert daemon.request("hello")["protocol"] == 1
        finally:
            subprocess.run(["chattr", "-i", *files], check=True)
        assert daemon.request("add", list="l", title="after")["id"] == 2
        daemon.kill()
        daemon.start()
        assert [e["title"] for e in daemon.request("entries", list="l")] == ["before", "after"]


@contextmanager
def closing_daemon(daemon: Daemon) -> Iterator[Daemon]:
    try:
        yield daemon.start()
    finally:
        daemon.cleanup()


def run_once(daemon: Daemon, argv_prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run todod expecting it to refuse to start; its log is its stderr."""
    return subprocess.run(
        [*(argv_prefix or []), *daemon.argv], capture_output=True, text=True, timeout=30, env=daemon.env
    )


def test_read_only_data_directory_is_refused_at_start_and_left_unchanged() -> None:
    """On a read-only data directory todod exits 1 saying so, and writes nothing there."""
    with daemon_root() as root, closing_daemon(Daemon(root)) as daemon:
        daemon.request("add", list="l", title="kept")
        assert daemon.stop() == 0
        before = file_digests(daemon.data_dir)
        # A private mount namespace: the read-only bind mount is seen by this
        # todod only and vanishes with it.
        readonly = [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', str(daemon.data_dir),
        ]  # fmt: skip
        require(["unshare", "--mount", "true"], "unshare(1) of a mount namespace (root)")
        result = run_once(daemon, readonly)
        assert result.returncode == 1, result.stderr
        assert "cannot start" in result.stderr and "Read-only file system" in result.stderr, result.stderr
        assert file_digests(daemon.data_dir) == before


def _refused(daemon: Daemon, expected: str) -> None:
    """Start todod on the data directory as it is: it must exit 1 with ``expected`` and leave the file as it was."""
    before = file_digests(daemon.data_dir)
    result = run_once(daemon)
    assert result.returncode == 1, result.stderr
    assert "cannot start" in result.stderr and expected in result.stderr, result.stderr
    after = file_digests(daemon.data_dir)
    assert set(after) - set(before) <= {"todod.lock"}, "todod created files beside the database"
    assert {name: after.get(name) for name in before} == before, "todod changed a file it refused"


def test_random_bytes_as_database_are_refused_and_untouched() -> None:
    """A database file of random bytes makes todod exit 1 with 'not a database', the file byte for byte the same."""
    with daemon_root() as root:
        daemon = Daemon(root)
        daemon.data_dir.mkdir(mode=0o700)
        (daemon.data_dir / DB).write_bytes(os.urandom(64 * 1024))
        _refused(daemon, "file is not a database")


def test_foreign_sqlite_database_is_refused_and_untouched() -> None:
    """Someone else's SQLite database makes todod exit 1 with 'not a todod database', untouched."""
    with daemon_root() as root:
        daemon = Daemon(root)
        daemon.data_dir.mkdir(mode=0o700)
        with closing(sqlite3.connect(daemon.data_dir / DB)) as conn:
            conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)")
            conn.execute("INSERT INTO photos (path) VALUES ('/home/me/cat.jpg')")
            conn.commit()
        _refused(daemon, "is not a todod database")


def test_newer_schema_version_is_refused_and_untouched() -> None:
    """A todod database stamped with user_version 99 is refused (exit 1, 'newer than this todod knows'), untouched."""
    with daemon_root() as root:
        daemon = Daemon(root).start()
        try:
            daemon.request("add", list="l", title="from the future")
            assert daemon.stop() == 0
        finally:
            daemon.cleanup()
        with closing(sqlite3.connect(daemon.data_dir / DB)) as conn:
            conn.execute("PRAGMA user_version = 99")
        _refused(daemon, "newer than this todod knows")
