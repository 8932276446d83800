"""End to end: the real ``todo`` command against a real ``todod`` process."""

from __future__ import annotations

import datetime
import json
import os
import pty
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import backend_env
from tests.daemon import TODO, Daemon, raw_exchange, request, run_cli, running_daemon, short_tempdir, wait_until
from todod.protocol import TooLarge, encode_request


@pytest.fixture
def daemon(store_uri: str | None) -> Iterator[Daemon]:
    with running_daemon(env=backend_env(store_uri)) as d:
        yield d


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
    assert added == {"id": 2, "date": "2026-12-20", "title": "Buy milk", "done": False, "version": 1, "tags": []}
    assert ok(daemon, "add", "work", "Write report").strip() == "1"

    table = ok(daemon, "entries", "home")
    assert "Dentist" in table and "Buy milk" in table
    assert as_json(daemon, "entries", "home", "--date", "2026-12-19") == [
        {"id": 1, "date": "2026-12-19", "title": "Dentist", "done": False, "version": 1, "tags": []}
    ]
    assert as_json(daemon, "list") == [{"name": "home", "entries": 2}, {"name": "work", "entries": 1}]

    assert as_json(daemon, "update", "home", "1", "--title", "Dentist at 9", "--date", "2026-12-18") == {
        "id": 1,
        "date": "2026-12-18",
        "title": "Dentist at 9",
        "done": False,
        "version": 2,
        "tags": [],
    }
    assert as_json(daemon, "update", "home", "2", "--done")["done"] is True  # type: ignore[index]
    assert as_json(daemon, "delete", "work", "1")["title"] == "Write report"  # type: ignore[index]

    status = as_json(daemon, "status")
    assert status["version"] and status["stats"]["commits"] >= 5  # type: ignore[index]

    assert daemon.stop(signal.SIGTERM) == 0
    daemon.start()
    assert as_json(daemon, "entries", "home") == [
        {"id": 1, "date": "2026-12-18", "title": "Dentist at 9", "done": False, "version": 2, "tags": []},
        {"id": 2, "date": "2026-12-20", "title": "Buy milk", "done": True, "version": 2, "tags": []},
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


def titles(daemon: Daemon, *args: str) -> list[str]:
    return [entry["title"] for entry in as_json(daemon, *args)]  # type: ignore[union-attr, index]


def test_find_today_and_tags_across_lists(daemon: Daemon) -> None:
    """Tags, relative dates, find and today work through the real CLI and daemon, and survive a restart."""
    today = time.strftime("%Y-%m-%d")
    ok(daemon, "add", "home", "Pay rent", "--date", "-2d", "--tag", "Bills")
    ok(daemon, "add", "work", "Send the invoice", "--date", "yesterday", "--tag", "bills", "--tag", "work")
    ok(daemon, "add", "home", "Dentist", "--date", "today")
    ok(daemon, "add", "home", "Crème brûlée", "--date", "+1w", "--tag", "party")
    ok(daemon, "update", "work", "1", "--untag", "work", "--tag", "urgent")
    ok(daemon, "add", "work", "Old and done", "--date", "-3d")
    ok(daemon, "update", "work", "2", "--done")

    agenda = as_json(daemon, "today")
    assert [(e["list"], e["title"]) for e in agenda] == [  # type: ignore[union-attr, index]
        ("home", "Pay rent"),
        ("work", "Send the invoice"),
        ("home", "Dentist"),
    ]
    human = ok(daemon, "today")
    assert human.splitlines()[0].endswith("overdue") and f"{today}  today" in human and "\x1b" not in human

    assert titles(daemon, "find", "--tag", "bills") == ["Pay rent", "Send the invoice"]
    assert titles(daemon, "find", "--tag", "bills", "--tag", "urgent") == ["Send the invoice"]
    assert titles(daemon, "find", "--search", "BRÛL") == ["Crème brûlée"]
    assert titles(daemon, "find", "--done") == ["Old and done"]
    assert titles(daemon, "find", "--list", "work", "--pending") == ["Send the invoice"]
    assert titles(daemon, "find", "--from", "tomorrow") == ["Crème brûlée"]
    table = ok(daemon, "find", "--tag", "party")
    assert table.splitlines()[0].split() == ["DATE", "LIST", "ID", "DONE", "TAGS", "TITLE"] and "party" in table

    assert daemon.stop(signal.SIGTERM) == 0
    daemon.start()
    assert as_json(daemon, "today") == agenda
    assert as_json(daemon, "entries", "work")[0]["tags"] == ["bills", "urgent"]  # type: ignore[index]


@pytest.mark.parametrize("no_color", [None, "1"])
def test_today_on_a_terminal_marks_overdue_unless_no_color(daemon: Daemon, no_color: str | None) -> None:
    """On a terminal `todo today` shows overdue entries in bold red, and never with NO_COLOR set."""
    ok(daemon, "add", "home", "Pay rent", "--date", "-2d")
    ok(daemon, "add", "home", "Dentist")
    env = daemon.cli_env()
    env.pop("NO_COLOR", None)
    if no_color is not None:
        env["NO_COLOR"] = no_color
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([TODO, "today"], stdout=follower, stderr=subprocess.PIPE, env=env)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=30) == 0
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    out = b"".join(chunks).decode()
    assert "Pay rent" in out and "Dentist" in out
    assert ("\x1b[1;31m" in out) is (no_color is None)


def test_history_undo_redo_and_conditional_writes_from_the_cli(daemon: Daemon) -> None:
    """todo history, undo, redo, compact and --if-version work end to end; a conflict exits 1 with one line."""
    ok(daemon, "add", "home", "Dentist", "--date", "2026-12-19")
    ok(daemon, "update", "home", "1", "--done", "--if-version", "1")
    refused = todo(daemon, "delete", "home", "1", "--if-version", "1")
    assert refused.returncode == 1 and refused.stderr == "todo: conflict: entry 1 is at version 2, not 1\n"
    history = as_json(daemon, "history", "home")
    assert [e["op"] for e in history["events"]] == ["add", "update"]  # type: ignore[index]
    assert "update" in ok(daemon, "history", "home", "--limit", "1")
    assert as_json(daemon, "undo", "home")[0]["done"] is False  # type: ignore[index]
    assert as_json(daemon, "redo", "home")[0]["version"] == 4  # type: ignore[index]
    assert todo(daemon, "redo", "home").returncode == 1
    assert as_json(daemon, "compact", "--keep-days", "0") == {"dropped": 4, "horizon": 4}
    assert "compacted" in ok(daemon, "history", "home")
    at_horizon = todo(daemon, "undo", "home")
    assert at_horizon.returncode == 1 and at_horizon.stderr.startswith("todo: compacted: nothing to undo")


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
