"""End to end: the real ``todo`` command against a real ``todod`` process."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import TODO, Daemon, raw_exchange, request, run_cli, short_tempdir, wait_until
from todod.protocol import TooLarge, encode_request


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    root = short_tempdir()
    d = Daemon(root)
    try:
        yield d.start()
    finally:
        d.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def todo(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(args, daemon.cli_env())


def ok(daemon: Daemon, *args: str) -> str:
    result = todo(daemon, *args)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def as_json(daemon: Daemon, *args: str) -> object:
    return json.loads(ok(daemon, *args, "--json"))


def test_session_survives_restart(daemon: Daemon) -> None:
    """add, entries (with and without date), list, update, done, delete and status work, and survive a restart."""
    assert ok(daemon, "add", "home", "Dentist", "--date", "2026-12-19").strip() == "1"
    added = as_json(daemon, "add", "home", "Buy milk", "--date", "2026-12-20")
    assert added == {"id": 2, "date": "2026-12-20", "title": "Buy milk", "done": False}
    assert ok(daemon, "add", "work", "Write report").strip() == "1"

    table = ok(daemon, "entries", "home")
    assert "Dentist" in table and "Buy milk" in table
    assert as_json(daemon, "entries", "home", "--date", "2026-12-19") == [
        {"id": 1, "date": "2026-12-19", "title": "Dentist", "done": False}
    ]
    assert as_json(daemon, "list") == [{"name": "home", "entries": 2}, {"name": "work", "entries": 1}]

    assert as_json(daemon, "update", "home", "1", "--title", "Dentist at 9", "--date", "2026-12-18") == {
        "id": 1,
        "date": "2026-12-18",
        "title": "Dentist at 9",
        "done": False,
    }
    assert as_json(daemon, "update", "home", "2", "--done")["done"] is True  # type: ignore[index]
    assert as_json(daemon, "delete", "work", "1")["title"] == "Write report"  # type: ignore[index]

    status = as_json(daemon, "status")
    assert status["version"] and status["stats"]["commits"] >= 5  # type: ignore[index]

    assert daemon.stop(signal.SIGTERM) == 0
    daemon.start()
    assert as_json(daemon, "entries", "home") == [
        {"id": 1, "date": "2026-12-18", "title": "Dentist at 9", "done": False},
        {"id": 2, "date": "2026-12-20", "title": "Buy milk", "done": True},
    ]
    assert as_json(daemon, "list") == [{"name": "home", "entries": 2}, {"name": "work", "entries": 0}]
    # An id is never reused, even after a delete and a restart.
    assert ok(daemon, "add", "work", "Another").strip() == "2"


def test_default_date_is_today(daemon: Daemon) -> None:
    """An add without --date is dated today."""
    entry = as_json(daemon, "add", "today", "Now")
    assert entry["date"] == datetime.date.today().isoformat()  # type: ignore[index]


def test_undone(daemon: Daemon) -> None:
    """--undone clears the done flag."""
    ok(daemon, "add", "flags", "Flip")
    ok(daemon, "update", "flags", "1", "--done")
    assert as_json(daemon, "update", "flags", "1", "--undone")["done"] is False  # type: ignore[index]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("add", "home", "x", "--date", "2026-02-30"), 65, "not a real date"),
        (("add", "home", "   "), 65, "must not be empty"),
        (("update", "home", "99", "--done"), 1, "no entry 99"),
        (("delete", "home", "99"), 1, "no entry 99"),
        (("add", "a/b", "x"), 65, "'/'"),
        (("add",), 2, ""),
    ],
)
def test_bad_input_exit_codes(daemon: Daemon, args: tuple[str, ...], code: int, message: str) -> None:
    """Bad input gets its documented exit code and a one-line message on stderr, and nothing is stored."""
    result = todo(daemon, *args)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr
    if code != 2:
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr
    assert request(daemon.socket, "entries", list="home") == []


def test_no_daemon_with_no_start_exits_69(tmp_path: Path) -> None:
    """With --no-start and no daemon, the CLI exits 69 and starts nothing."""
    root = short_tempdir()
    try:
        env = {**os.environ, "TODOD_SOCKET": str(root / "todod.sock"), "TODOD_DATA_DIR": str(root / "data")}
        result = subprocess.run([TODO, "list", "--no-start"], env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 69
        assert "no daemon" in result.stderr
        assert not (root / "data").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _daemon_pids(socket_path: Path) -> set[int]:
    """Pids of running todod processes whose command line names ``socket_path``."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"todod" in b" ".join(argv) and str(socket_path).encode() in argv:
            try:
                state = (entry / "stat").read_text().split()[2]
            except OSError:
                continue
            if state != "Z":
                pids.add(int(entry.name))
    return pids


def test_two_clis_start_exactly_one_daemon() -> None:
    """Two CLIs started at the same moment with no daemon running start exactly one daemon."""
    root = short_tempdir()
    sock = root / "run" / "todod.sock"
    env = {**os.environ, "TODOD_SOCKET": str(sock), "TODOD_DATA_DIR": str(root / "data")}
    env.pop("TODOD_NO_START", None)
    try:
        procs = [
            subprocess.Popen([TODO, "add", "race", f"from {i}", "--json"], env=env, stdout=subprocess.PIPE, text=True)
            for i in range(2)
        ]
        outs = [p.communicate(timeout=60)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0]
        ids = sorted(json.loads(out)["id"] for out in outs)
        assert ids == [1, 2]
        # The loser of the start-up race exits at once; give it a bounded time to go.
        wait_until(lambda: len(_daemon_pids(sock)) <= 1, 10, "the losing daemon to exit")
        pids = _daemon_pids(sock)
        assert len(pids) == 1, pids
        (pid,) = pids
        assert request(sock, "hello")["pid"] == pid
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not _daemon_pids(sock), 30, "the daemon to stop")
    finally:
        for pid in _daemon_pids(sock):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def test_entries_reads_a_list_too_big_for_one_answer_in_pages(daemon: Daemon) -> None:
    """Entries whose JSON is far over one page (1,000-character non-ASCII titles) all come out, table and JSON."""
    titles = [f"{i:04d} " + "é" * 995 for i in range(1, 1201)]  # about 7 MB of JSON, 7 pages
    for start in range(0, len(titles), 100):
        batch = b"".join(
            encode_request("add", list="big", title=t, date="2026-01-02") for t in titles[start : start + 100]
        )
        assert all(r["ok"] for r in raw_exchange(daemon.socket, batch))
    too_large = todo(daemon, "list")  # the lists still work; the whole read of the list is refused
    assert too_large.returncode == 0
    with pytest.raises(TooLarge):
        request(daemon.socket, "entries", list="big")
    read = as_json(daemon, "entries", "big")
    assert isinstance(read, list) and [e["title"] for e in read] == titles
    table = ok(daemon, "entries", "big").splitlines()
    assert table[0] == "  ID  DATE        DONE  TITLE"
    assert table[1] == "   1  2026-01-02  no    " + titles[0]
    assert len(table) == 1201 and table[-1].endswith(titles[-1])
