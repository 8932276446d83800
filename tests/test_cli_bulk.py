"""``todo import``, ``todo export`` and ``todo move`` end to end: a real daemon, the installed CLI."""

from __future__ import annotations

import json
import os
import pty
import select
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import backend_env
from tests.daemon import TODO, Daemon, LineReader, connect, exchange, run_cli, running_daemon, wait_until
from todod.protocol import encode_request


@pytest.fixture
def daemon(store_uri: str | None) -> Iterator[Daemon]:
    """A daemon on each backend in turn (tests/conftest.py)."""
    with running_daemon(env=backend_env(store_uri)) as d:
        yield d


def values(entries: list[dict[str, Any]]) -> list[tuple[str, str, bool, list[str]]]:
    return [(e["date"], e["title"], e["done"], e["tags"]) for e in entries]


def todo(daemon: Daemon, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TODO, *args], env=daemon.cli_env(), capture_output=True, text=True, input=stdin, timeout=120)


def test_import_book_csv_with_quotes_commas_and_unicode(daemon: Daemon, tmp_path: Path) -> None:
    """The book's CSV imports with quoted commas and quotes and non-ASCII titles, in file order."""
    path = tmp_path / "book.csv"
    path.write_text('2026-12-19,Dentist\n2026-12-20,"Buy milk, eggs"\n\n2026-12-21,"Say ""hi"" to Zoë 🎉"\n')
    result = todo(daemon, "import", "home", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "imported 3 entries into home (ids 1 to 3)\n"
    assert result.stderr == "", "a progress bar on a stderr that is not a terminal"
    assert values(daemon.request("entries", list="home")) == [
        ("2026-12-19", "Dentist", False, []),
        ("2026-12-20", "Buy milk, eggs", False, []),
        ("2026-12-21", 'Say "hi" to Zoë 🎉', False, []),
    ]


def test_import_csv_with_a_header_done_and_tags(daemon: Daemon) -> None:
    """RFC 4180 CSV with a header in any column order gives done marks and tags; --json gives the result."""
    text = 'title,tags,date,done\n"Report, final",Work urgent,2026-11-30,yes\nCrème brûlée,,2026-12-04,\n'
    result = todo(daemon, "import", "home", "-", "--json", stdin=text)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"list": "home", "count": 2, "first": 1, "last": 2, "seq": 1}
    assert values(daemon.request("entries", list="home")) == [
        ("2026-11-30", "Report, final", True, ["urgent", "work"]),
        ("2026-12-04", "Crème brûlée", False, []),
    ]


def test_import_of_long_non_ascii_titles_fits_every_request_line(daemon: Daemon, tmp_path: Path) -> None:
    """Rows of 1,000-character non-ASCII titles, far more than a request line holds per 2,000, all import."""
    path = tmp_path / "long.csv"
    titles = [f"{i:04d}" + "é" * 996 for i in range(2_500)]
    path.write_text("".join(f"2026-12-19,{title}\n" for title in titles))
    result = todo(daemon, "import", "home", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "imported 2500 entries into home (ids 1 to 2500)\n"
    entries = run_cli_entries(daemon, "home")
    assert [e["title"] for e in entries] == titles


def run_cli_entries(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    result = todo(daemon, "export", name, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_import_json_lines(daemon: Daemon) -> None:
    """JSON lines import with their done marks and tags; blank lines are skipped."""
    lines = [
        {"date": "2026-12-19", "title": "Dentist, 9:00", "done": True, "tags": ["health"]},
        {"date": "2026-12-20", "title": "日本語のタイトル"},
    ]
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n\n"
    result = todo(daemon, "import", "home", "--format", "jsonl", stdin=text)
    assert result.returncode == 0, result.stderr
    assert values(daemon.request("entries", list="home")) == [
        ("2026-12-19", "Dentist, 9:00", True, ["health"]),
        ("2026-12-20", "日本語のタイトル", False, []),
    ]


def test_import_of_an_empty_file_imports_nothing(daemon: Daemon, tmp_path: Path) -> None:
    """An empty file is an import of no entries: exit 0, no list made."""
    path = tmp_path / "empty.csv"
    path.write_text("")
    result = todo(daemon, "import", "home", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "imported 0 entries into home\n"
    assert daemon.request("lists") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "2026-12-19,one\n2026-12-20,two\n2026-02-30,bad\n2026-12-22,four\n",
            "line 3: '2026-02-30' is not a real date",
        ),
        ('2026-12-19,one\n2026-12-20,"two\nlines"\n2026-12-22,four\n', "line 2: a title must be one line"),
        ("2026-12-19,one\n2026-12-20,two,three\n", "line 2: 3 fields, not 2"),
        ('{"date":"2026-12-19","title":"one"}\n{"date":"2026-12-19"\n', "line 2: not a JSON object"),
        ('{"date":"2026-12-19","title":"one"}\n{"date":"2026-12-19","title":"x","tags":["a b"]}\n', "line 2: a tag"),
        ("date,title,done\n2026-12-19,one,maybe\n", "line 2: done is true or false"),
    ],
)
def test_a_bad_line_in_the_middle_changes_nothing(daemon: Daemon, text: str, message: str) -> None:
    """A bad line is reported with its number and reason (exit 65), and nothing of the import is kept."""
    daemon.request("add", list="home", title="kept", date="2026-01-01")
    result = todo(daemon, "import", "home", stdin=text)
    assert result.returncode == 65, result.stderr
    assert message in result.stderr
    assert [e["title"] for e in daemon.request("entries", list="home")] == ["kept"]
    assert daemon.request("status")["stats"]["imports_open"] == 0


def test_a_bad_row_after_many_batches_changes_nothing(daemon: Daemon) -> None:
    """A bad row after several batches already staged fails the import with its line; nothing is published."""
    lines = [f"2026-12-19,entry {i}" for i in range(9_000)]
    lines[7_777] = "2026-12-19,   "
    result = todo(daemon, "import", "big", stdin="\n".join(lines) + "\n")
    assert result.returncode == 65
    assert "line 7778: a title must not be empty" in result.stderr
    assert daemon.request("lists") == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_export_then_import_gives_identical_entries(daemon: Daemon, fmt: str) -> None:
    """Export then import, in each format, gives the same entries in the same order (dates, titles, done, tags)."""
    for title, tags in [("Dentist", ["health"]), ('Say "hi", then leave', []), ("Zoë's café ☕", ["a", "b-c"])]:
        daemon.request("add", list="src", title=title, date="2026-12-19", tags=tags)
    daemon.request("update", list="src", entry=2, done=True)
    daemon.request("delete", list="src", entry=1)
    exported = todo(daemon, "export", "src", "--format", fmt)
    assert exported.returncode == 0, exported.stderr
    imported = todo(daemon, "import", "dst", stdin=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert values(daemon.request("entries", list="dst")) == values(daemon.request("entries", list="src"))
    again = todo(daemon, "export", "dst", "--format", fmt)
    if fmt == "csv":
        assert again.stdout == exported.stdout


def test_export_of_a_big_list_streams_every_entry_once(daemon: Daemon) -> None:
    """Export of a list larger than a page writes every entry once, in id order."""
    text = "".join(f"2026-12-19,entry {i}\n" for i in range(25_000))
    assert todo(daemon, "import", "big", stdin=text).returncode == 0
    exported = todo(daemon, "export", "big", "--format", "jsonl")
    assert exported.returncode == 0, exported.stderr
    ids = [json.loads(line)["id"] for line in exported.stdout.splitlines()]
    assert ids == list(range(1, 25_001))


def test_a_reader_during_an_import_sees_none_of_it(daemon: Daemon) -> None:
    """While an import's batches are staged, other connections see none of it; after its commit, all of it."""
    rows = [[i, "2026-12-19", f"entry {i}", False, ["bulk"]] for i in range(1, 6_001)]
    with connect(daemon.socket) as sock, connect(daemon.socket) as reader:
        started = exchange(sock, "import_begin", list="big")
        import_id = started["result"]["import"]
        for first in range(0, 6_000, 2_000):
            answer = exchange(
                sock, "import_rows", **{"import": import_id, "start": first + 1}, rows=rows[first : first + 2_000]
            )
            assert answer["ok"], answer
            assert exchange(reader, "entries", list="big")["result"] == []
            assert exchange(reader, "find", tags=["bulk"])["result"]["entries"] == []
            assert exchange(reader, "lists")["result"] == []
        done = exchange(sock, "import_commit", **{"import": import_id, "count": 6_000})
        assert done["ok"], done
        page = exchange(reader, "entries", list="big", limit=10_000)["result"]
        assert len(page["entries"]) == 6_000
        assert len(exchange(reader, "find", tags=["bulk"])["result"]["entries"]) == 6_000


def test_readers_polling_during_a_cli_import_see_nothing_or_everything(daemon: Daemon) -> None:
    """Readers polling while todo imports 30,000 lines see each time either none of them or all of them."""
    seen: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        with connect(daemon.socket) as sock:
            while not stop.is_set():
                seen.append(sum(item["entries"] for item in exchange(sock, "lists")["result"]))

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        text = "".join(f"2026-12-19,entry {i}\n" for i in range(30_000))
        assert todo(daemon, "import", "big", stdin=text).returncode == 0
    finally:
        stop.set()
        thread.join()
    assert set(seen) <= {0, 30_000}, sorted(set(seen))[:5]
    assert seen, "the reader never ran"


def test_undo_takes_an_import_back_in_one_step(daemon: Daemon) -> None:
    """One undo removes every entry of an import; the entries before it stay."""
    daemon.request("add", list="home", title="before", date="2026-01-01")
    assert todo(daemon, "import", "home", stdin="2026-12-19,a\n2026-12-20,b\n2026-12-21,c\n").returncode == 0
    result = todo(daemon, "undo", "home", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3
    assert [e["title"] for e in daemon.request("entries", list="home")] == ["before"]


def test_undo_of_a_large_import_is_given_time_by_its_size(store_uri: str | None, tmp_path: Path) -> None:
    """An undo that reverts 30,000 entries is answered within its own bound, which grows with the change:
    with a call timeout of 0.5 s it used to get timeout while it went on and was applied."""
    path = tmp_path / "big.csv"
    path.write_text("".join(f"2026-12-19,entry {i}\n" for i in range(30_000)))
    with running_daemon(["--call-timeout", "0.5"], env=backend_env(store_uri)) as daemon:
        daemon.request("add", list="big", title="before", date="2026-01-01")
        assert todo(daemon, "import", "big", str(path)).returncode == 0
        result = todo(daemon, "undo", "big", "--timeout", "120")
        assert result.returncode == 0, result.stderr
        assert [e["title"] for e in daemon.request("entries", list="big")] == ["before"]


def test_a_timed_out_undo_says_it_may_still_be_applied(daemon: Daemon, tmp_path: Path) -> None:
    """An undo that the CLI stops waiting for says that it may still be applied, how to look, and how to undo
    again without reverting one change too many."""
    path = tmp_path / "big.csv"
    path.write_text("".join(f"2026-12-19,entry {i}\n" for i in range(30_000)))
    assert todo(daemon, "import", "big", str(path)).returncode == 0
    result = todo(daemon, "undo", "big", "--timeout", "0.001")
    assert result.returncode == 75, result.stderr
    assert "the undo may still be applied (a large change takes longer): see 'todo history -- big'" in result.stderr
    assert "--if-seq" in result.stderr


def test_import_shows_a_progress_bar_on_a_terminal(daemon: Daemon, tmp_path: Path) -> None:
    """With stderr on a terminal, an import draws a progress bar there, and stdout stays the result."""
    path = tmp_path / "big.csv"
    path.write_text("".join(f"2026-12-19,entry {i}\n" for i in range(20_000)))
    main, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [TODO, "import", "big", str(path)], env=daemon.cli_env(), stdout=subprocess.PIPE, stderr=secondary
        )
        os.close(secondary)
        stdout, _ = proc.communicate(timeout=120)
        shown = b""
        while select.select([main], [], [], 0)[0]:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main)
    assert proc.returncode == 0
    assert stdout == b"imported 20000 entries into big (ids 1 to 20000)\n"
    assert b"20,000 entries" in shown and b"100%" in shown


def test_move_within_a_daemon_and_undo(daemon: Daemon) -> None:
    """todo move prints both ids (and --json the whole result); undo on the destination puts the entry back."""
    daemon.request("add", list="home", title="Dentist", date="2026-12-19", tags=["health"])
    daemon.request("add", list="work", title="Report", date="2026-12-19")
    moved = todo(daemon, "move", "home", "1", "work", "--json")
    assert moved.returncode == 0, moved.stderr
    result = json.loads(moved.stdout)
    assert result["from"] == {"list": "home", "id": 1} and result["to"] == {"list": "work", "id": 2}
    assert result["entry"]["tags"] == ["health"]
    assert todo(daemon, "move", "home", "1", "work").returncode == 1  # gone from home
    assert todo(daemon, "undo", "work").returncode == 0
    assert [e["title"] for e in daemon.request("entries", list="home")] == ["Dentist"]
    assert [e["title"] for e in daemon.request("entries", list="work")] == ["Report"]
    plain = todo(daemon, "move", "home", "1", "work")
    assert plain.stdout == "moved home 1 to work 3\n"


def test_run_cli_import_with_missing_file_is_an_io_error(daemon: Daemon) -> None:
    """An import of a file that cannot be read exits 74 with one line, and sends nothing."""
    result = run_cli(["import", "home", "/nonexistent/file.csv"], daemon.cli_env())
    assert result.returncode == 74
    assert result.stderr.startswith("todo: io error: cannot read /nonexistent/file.csv")


def test_a_watcher_gets_every_event_of_an_import_once(daemon: Daemon) -> None:
    """A watcher sees an import's events (read from the log) once each, in order, and the next add after them."""
    with connect(daemon.socket) as sock:
        reader = LineReader(sock)
        sock.sendall(encode_request("watch", 1, list="big"))
        assert reader.response()["ok"]
        text = "".join(f"2026-12-19,entry {i}\n" for i in range(3_000))  # more than a watcher's buffer
        assert todo(daemon, "import", "big", stdin=text).returncode == 0
        daemon.request("add", list="big", title="after", date="2026-12-19")
        events = [json.loads(reader.line())["event"] for _ in range(3_001)]
    assert [e["op"] for e in events] == ["import"] * 3_000 + ["add"]
    assert [e["entry"] for e in events] == list(range(1, 3_002))
    assert len({e["position"] for e in events}) == 3_001


def _import_under_way(daemon: Daemon) -> subprocess.Popen[bytes]:
    """A `todo import` that has sent its first batches and waits for more input on its stdin."""
    proc = subprocess.Popen([TODO, "import", "big"], env=daemon.cli_env(), stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write("".join(f"2026-12-19,entry {i}\n" for i in range(5_000)).encode())
    proc.stdin.flush()
    wait_until(lambda: daemon.request("status")["stats"]["imports_open"] == 1, 30, "the import to begin")
    return proc


def test_a_cli_killed_mid_import_publishes_nothing(daemon: Daemon) -> None:
    """A todo import killed (SIGKILL) after sending batches leaves the list untouched."""
    proc = _import_under_way(daemon)
    proc.kill()
    proc.wait(10)
    assert daemon.request("lists") == []
    assert daemon.request("entries", list="big") == []


def test_a_daemon_killed_mid_import_keeps_nothing_of_it() -> None:
    """A daemon killed during an import keeps none of it after the restart, staged rows included."""
    with running_daemon() as daemon:
        proc = _import_under_way(daemon)
        staging = daemon.data_dir / "imports"
        wait_until(lambda: any(staging.glob("*.sqlite3")), 30, "the import's staging file")
        daemon.kill()
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(30) != 0
        daemon.start()
        assert daemon.request("lists") == []
        daemon.stop()
        with closing(sqlite3.connect(f"file:{daemon.data_dir / 'todod.sqlite3'}?mode=ro", uri=True)) as conn:
            assert conn.execute("SELECT count(*) FROM entries").fetchone()[0] == 0
        assert list(staging.iterdir()) == []  # no staging file left


@pytest.mark.parametrize("limit", [32_766, 999, 13])
def test_a_staged_batch_holds_its_rows_in_order_whatever_the_limit_on_parameters(tmp_path: Path, limit: int) -> None:
    """A batch staged in multi-row INSERTs holds every row once, in order, within the connection's parameter limit."""
    from todod import _bulk

    conn = _bulk.open_staging(str(tmp_path / "import.sqlite3"))
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    rows = [("id", n, "2026-12-01", f"title {n}", n % 2, "[]", f"2026-12-01 {n % 2} 1 t {n}") for n in range(1, 2001)]
    _bulk.stage_file_rows(conn, rows)
    staged = conn.execute("SELECT n, date, title, done, tags, event FROM rows ORDER BY n").fetchall()
    assert staged == [r[1:] for r in rows]
    with pytest.raises(sqlite3.IntegrityError):  # a row staged twice fails the batch, which leaves nothing
        _bulk.stage_file_rows(conn, [(*rows[0][:1], 2001, *rows[0][2:]), rows[5]])
    assert _bulk.staged_file_count(conn) == (2000, 2000)
    conn.close()
