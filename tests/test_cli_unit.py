"""The ``todo`` commands against a scripted fake daemon: requests, output and exit codes."""

from __future__ import annotations

import datetime
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli import _client, _render
from cli._paging import PAGE_ENTRIES
from cli.app import app
from tests.fake_daemon import FakeDaemon

# Never auto-start a real daemon by accident, and never read the caller's socket.
runner = CliRunner(env={"TODOD_NO_START": "1", "TODOD_SOCKET": None, "TODOD_DATA_DIR": None})

ENTRY = {"id": 7, "date": "2024-05-01", "title": "buy milk", "done": False}


@pytest.fixture
def daemon(short_dir: str) -> Iterator[FakeDaemon]:
    """A fake daemon serving a fresh socket for one test."""
    with FakeDaemon(os.path.join(short_dir, "todod.sock")) as fake:
        yield fake


def page(entries: list[dict[str, Any]], cursor: str | None = None, last_id: int | None = None) -> dict[str, Any]:
    """An ``entries`` page as the daemon sends it."""
    top = max((e["id"] for e in entries), default=0) if last_id is None else last_id
    return {"next": cursor, "last_id": top, "entries": entries}


def todo(daemon: FakeDaemon, *args: str, env: dict[str, str | None] | None = None) -> Result:
    return runner.invoke(app, [*args, "--socket", daemon.path], env=env)


# --- requests and output ------------------------------------------------------


def test_add_sends_request_and_prints_only_the_id(daemon: FakeDaemon) -> None:
    """`todo add` sends list, title and date and prints just the new id."""
    daemon.answer(ENTRY)
    result = todo(daemon, "add", "home", "buy milk", "--date", "2024-05-01")
    assert result.exit_code == 0, result.output
    assert result.stdout == "7\n"
    assert daemon.requests == [{"op": "add", "list": "home", "title": "buy milk", "date": "2024-05-01"}]


def test_add_default_date_is_today(daemon: FakeDaemon) -> None:
    """Without --date, `todo add` sends today's local date explicitly."""
    daemon.answer(ENTRY)
    before = datetime.date.today().isoformat()
    result = todo(daemon, "add", "home", "buy milk")
    after = datetime.date.today().isoformat()
    assert result.exit_code == 0, result.output
    assert daemon.requests[0]["date"] in {before, after}


def test_add_json_prints_the_entry(daemon: FakeDaemon) -> None:
    """`todo add --json` prints the daemon's entry object as JSON."""
    daemon.answer(ENTRY)
    result = runner.invoke(app, ["add", "--json", "--socket", daemon.path, "home", "buy milk"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ENTRY


def test_entries_renders_an_aligned_table(daemon: FakeDaemon) -> None:
    """`todo entries` prints a header and one right-aligned id per row, no trailing spaces."""
    daemon.answer(
        page(
            [
                {"id": 3, "date": "2024-05-01", "title": "buy milk", "done": True},
                {"id": 12, "date": "2024-05-02", "title": "call 日本", "done": False},
            ]
        )
    )
    result = todo(daemon, "entries", "home")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines(keepends=True) == [
        "ID  DATE        DONE  TITLE\n",
        " 3  2024-05-01  yes   buy milk\n",
        "12  2024-05-02  no    call 日本\n",
    ]
    assert daemon.requests == [{"op": "entries", "list": "home", "limit": PAGE_ENTRIES, "form": "rows"}]


def test_entries_pages_through_the_list_and_lines_up_every_page(daemon: FakeDaemon) -> None:
    """`todo entries` asks for page after page with the cursor until there is none, and aligns all rows alike."""
    daemon.answer(page([{"id": 9, "date": "2024-05-01", "title": "a", "done": False}], "s1.9", 100))
    daemon.answer(page([], "s1.50", 100))  # a short page is not the end
    daemon.answer(page([{"id": 100, "date": "2024-05-02", "title": "b", "done": True}], None, 100))
    result = todo(daemon, "entries", "home")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines(keepends=True) == [
        " ID  DATE        DONE  TITLE\n",
        "  9  2024-05-01  no    a\n",
        "100  2024-05-02  yes   b\n",
    ]
    cursors = [r.get("after") for r in daemon.requests]
    assert cursors == [None, "s1.9", "s1.50"]
    daemon.answer(page([ENTRY], "s2.7", 7))
    daemon.answer(page([], "s2.8", 7))
    daemon.answer(page([{**ENTRY, "id": 8}], None, 8))
    result = todo(daemon, "entries", "home", "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout == json.dumps([ENTRY, {**ENTRY, "id": 8}], indent=2) + "\n"


def test_entries_shows_a_tags_column_from_the_first_page_with_a_tag(daemon: FakeDaemon) -> None:
    """A TAGS column starts, under a header line of its own, at the first page that has a tagged entry."""
    daemon.answer(page([{**ENTRY, "id": 1}], "s1.1", 12))
    daemon.answer(page([{**ENTRY, "id": 12, "tags": ["home", "urgent"]}], None, 12))
    result = todo(daemon, "entries", "home")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines(keepends=True) == [
        "ID  DATE        DONE  TITLE\n",
        " 1  2024-05-01  no    buy milk\n",
        "ID  DATE        DONE  TAGS         TITLE\n",
        "12  2024-05-01  no    home,urgent  buy milk\n",
    ]


def test_entries_stops_at_an_error_mid_read_with_its_exit_code(daemon: FakeDaemon) -> None:
    """An error on a later page (an expired snapshot) ends the read with one line on stderr, after what was printed."""
    daemon.answer(page([ENTRY], "s1.7", 9))
    daemon.fail("expired", "the snapshot 's1' of this read is gone")
    result = todo(daemon, "entries", "home")
    assert result.exit_code == 1
    assert result.stdout.endswith("buy milk\n")
    assert result.stderr == "todo: expired: the snapshot 's1' of this read is gone\n"


def test_entries_sends_the_date_filter_and_prints_json(daemon: FakeDaemon) -> None:
    """`todo entries --date D --json` asks for that date and prints the array as is."""
    daemon.answer(page([ENTRY]))
    result = todo(daemon, "entries", "home", "--date", "2024-05-01", "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout == json.dumps([ENTRY], indent=2) + "\n"
    assert daemon.requests == [
        {"op": "entries", "list": "home", "date": "2024-05-01", "limit": PAGE_ENTRIES, "form": "rows"}
    ]


def test_entries_json_is_utf8_like_every_other_json_output(daemon: FakeDaemon) -> None:
    """`todo entries --json` writes non-ASCII as UTF-8, as `todo find --json` does, escaping only unsafe characters."""
    entries = [
        {**ENTRY, "title": "Café 仕事", "tags": []},
        {**ENTRY, "id": 8, "title": "bidi \u202e and C1 \x85", "tags": ["ünï"]},
    ]
    daemon.answer(page(entries))
    result = todo(daemon, "entries", "home", "--json")
    assert result.exit_code == 0, result.output
    assert "Café 仕事" in result.stdout and "ünï" in result.stdout
    assert "\u202e" not in result.stdout and "\x85" not in result.stdout
    assert result.stdout == _render.dump_json(entries)
    assert json.loads(result.stdout) == entries


def test_entries_prints_nothing_for_an_empty_list(daemon: FakeDaemon) -> None:
    """An empty list prints no table at all (and ``[]`` with --json) and exits 0."""
    daemon.answer(page([]))
    result = todo(daemon, "entries", "home")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    daemon.answer(page([]))
    assert todo(daemon, "entries", "home", "--json").stdout == "[]\n"


def test_list_renders_names_and_counts(daemon: FakeDaemon) -> None:
    """`todo list` sends `lists` and aligns wide names by display width."""
    daemon.answer([{"name": "home", "entries": 3}, {"name": "仕事", "entries": 12}])
    result = todo(daemon, "list")
    assert result.exit_code == 0, result.output
    assert result.stdout == "LIST  ENTRIES\nhome        3\n仕事       12\n"
    assert daemon.requests == [{"op": "lists"}]


def test_list_json(daemon: FakeDaemon) -> None:
    """`todo list --json` prints the daemon's array."""
    lists = [{"name": "home", "entries": 3}]
    daemon.answer(lists)
    result = todo(daemon, "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == lists


def test_update_sends_only_the_given_fields(daemon: FakeDaemon) -> None:
    """`todo update` sends the fields given (--undone as done=false) and shows the entry."""
    daemon.answer({**ENTRY, "title": "buy oat milk"})
    result = todo(daemon, "update", "home", "7", "--title", "buy oat milk", "--undone")
    assert result.exit_code == 0, result.output
    assert daemon.requests == [{"op": "update", "list": "home", "entry": 7, "title": "buy oat milk", "done": False}]
    assert result.stdout == "ID  DATE        DONE  TITLE\n 7  2024-05-01  no    buy oat milk\n"


def test_update_done_json(daemon: FakeDaemon) -> None:
    """`todo update --done --date D --json` sends done=true and the date, and prints the entry."""
    done = {**ENTRY, "done": True, "date": "2024-06-01"}
    daemon.answer(done)
    result = todo(daemon, "update", "home", "7", "--done", "--date", "2024-06-01", "--json")
    assert result.exit_code == 0, result.output
    assert daemon.requests == [{"op": "update", "list": "home", "entry": 7, "date": "2024-06-01", "done": True}]
    assert json.loads(result.stdout) == done


def test_update_without_changes_is_a_usage_error(daemon: FakeDaemon) -> None:
    """`todo update` with nothing to change exits 2 without sending anything."""
    result = todo(daemon, "update", "home", "7")
    assert result.exit_code == 2
    assert daemon.requests == []


def test_delete_sends_request_and_shows_the_entry(daemon: FakeDaemon) -> None:
    """`todo delete` sends the list and id and shows the deleted entry."""
    daemon.answer(ENTRY)
    result = todo(daemon, "delete", "home", "7")
    assert result.exit_code == 0, result.output
    assert daemon.requests == [{"op": "delete", "list": "home", "entry": 7}]
    assert result.stdout == "ID  DATE        DONE  TITLE\n 7  2024-05-01  no    buy milk\n"


def test_delete_json(daemon: FakeDaemon) -> None:
    """`todo delete --json` prints the deleted entry as JSON."""
    daemon.answer(ENTRY)
    result = todo(daemon, "delete", "--json", "home", "7")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ENTRY


STATUS: dict[str, Any] = {
    "version": "0.1.0",
    "protocol": 1,
    "pid": 4242,
    "uptime": 3723.5,
    "stats": {"requests": 12, "active_lists": 2},
}


def test_status_renders_aligned_pairs(daemon: FakeDaemon) -> None:
    """`todo status` prints version, protocol, pid, a readable uptime and every stat."""
    daemon.answer(STATUS)
    result = todo(daemon, "status")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines(keepends=True) == [
        "version       0.1.0\n",
        "protocol      1\n",
        "pid           4242\n",
        "uptime        1h 02m\n",
        "requests      12\n",
        "active_lists  2\n",
    ]
    assert daemon.requests == [{"op": "status"}]


def test_status_json(daemon: FakeDaemon) -> None:
    """`todo status --json` prints the daemon's object unchanged."""
    daemon.answer(STATUS)
    result = todo(daemon, "status", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == STATUS


def test_socket_comes_from_the_environment(daemon: FakeDaemon) -> None:
    """Without --socket, the CLI connects to $TODOD_SOCKET."""
    daemon.answer([])
    result = runner.invoke(app, ["list"], env={"TODOD_SOCKET": daemon.path})
    assert result.exit_code == 0, result.output
    assert daemon.requests == [{"op": "lists"}]


# --- terminal safety ------------------------------------------------------------


def test_human_output_escapes_control_characters(daemon: FakeDaemon) -> None:
    """Control characters in titles and list names print as visible escapes, never raw."""
    daemon.answer(page([{"id": 1, "date": "2024-05-01", "title": "\x1b[2Jgone\x07\ttab", "done": False}]))
    entries = todo(daemon, "entries", "home")
    daemon.answer([{"name": "evil\x1b]0;owned\x07\x9b", "entries": 1}])
    lists = todo(daemon, "list")
    assert entries.exit_code == 0, entries.output
    assert lists.exit_code == 0, lists.output
    assert "\\x1b[2Jgone\\x07\\x09tab" in entries.stdout
    assert "evil\\x1b]0;owned\\x07\\x9b" in lists.stdout
    for text in (entries.stdout, lists.stdout):
        assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in text)


def test_error_messages_escape_control_characters(daemon: FakeDaemon) -> None:
    """A daemon error message quoting a hostile name is escaped on stderr too."""
    daemon.fail("not_found", "no list 'x\x1b[31m'")
    result = todo(daemon, "entries", "x\x1b[31m")
    assert result.exit_code == 1
    assert result.stderr == "todo: not found: no list 'x\\x1b[31m'\n"


# --- exit codes -------------------------------------------------------------------


@pytest.mark.parametrize("code", ["not_found", "unavailable", "internal"])
def test_daemon_errors_exit_1_with_one_line(daemon: FakeDaemon, code: str) -> None:
    """An error the daemon reports prints one `todo: <code>: <message>` line and exits 1."""
    daemon.fail(code, "no entry 7 in list 'home'")
    result = todo(daemon, "delete", "home", "7")
    assert result.exit_code == 1
    assert result.stderr == f"todo: {code.replace('_', ' ')}: no entry 7 in list 'home'\n"
    assert result.stdout == ""


@pytest.mark.parametrize("code", ["invalid", "bad_request", "too_large"])
def test_data_errors_exit_65(daemon: FakeDaemon, code: str) -> None:
    """Errors about the data sent (invalid, bad_request, too_large) exit 65."""
    daemon.fail(code, "not a date: '2024-13-01'")
    result = todo(daemon, "add", "home", "x", "--date", "2024-13-01")
    assert result.exit_code == 65
    assert result.stderr == f"todo: {code.replace('_', ' ')}: not a date: '2024-13-01'\n"


def test_refusal_before_the_request_is_read_is_reported(daemon: FakeDaemon) -> None:
    """An error line the daemon sends before reading (forbidden) is shown even if sending failed."""
    daemon.refuse("forbidden", "uid 1001 may not use this daemon")
    result = todo(daemon, "list")
    assert result.exit_code == 1
    assert result.stderr == "todo: forbidden: uid 1001 may not use this daemon\n"
    assert daemon.requests == []


def test_daemon_timeout_error_exits_75(daemon: FakeDaemon) -> None:
    """The daemon's own `timeout` error exits 75."""
    daemon.fail("timeout", "the list server did not answer in time")
    result = todo(daemon, "list")
    assert result.exit_code == 75
    assert result.stderr.startswith("todo: timeout: ")


def test_usage_error_exits_2(daemon: FakeDaemon) -> None:
    """A malformed command line exits 2 and sends nothing."""
    result = todo(daemon, "delete", "home", "seven")
    assert result.exit_code == 2
    assert daemon.requests == []


def test_no_daemon_and_no_start_exits_69(short_dir: str) -> None:
    """With no daemon listening and --no-start, the CLI exits 69 with one line."""
    path = os.path.join(short_dir, "missing.sock")
    result = runner.invoke(app, ["list", "--no-start", "--socket", path], env={"TODOD_NO_START": None})
    assert result.exit_code == 69
    assert result.stderr.startswith("todo: unavailable: no daemon at ")
    assert result.stderr.count("\n") == 1


def test_no_start_comes_from_the_environment(short_dir: str) -> None:
    """TODOD_NO_START=1 turns auto-start off like --no-start."""
    path = os.path.join(short_dir, "missing.sock")
    result = runner.invoke(app, ["list", "--socket", path], env={"TODOD_NO_START": "1"})
    assert result.exit_code == 69
    assert "auto-start is off" in result.stderr


def test_connection_closed_without_response_exits_69(daemon: FakeDaemon) -> None:
    """A daemon that hangs up without answering exits 69."""
    daemon.hang_up()
    result = todo(daemon, "list")
    assert result.exit_code == 69
    assert result.stderr == "todo: unavailable: the daemon closed the connection without a response\n"


def test_daemon_that_never_answers_times_out_75(daemon: FakeDaemon) -> None:
    """A daemon that never answers makes the CLI give up after --timeout and exit 75."""
    daemon.never_answer()
    result = todo(daemon, "list", "--timeout", "0.5")
    assert result.exit_code == 75
    assert result.stderr == "todo: timeout: no response from the daemon within 0.5 s\n"
    assert daemon.received.is_set()


def test_response_over_the_cap_exits_65(daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """A response line longer than the client's cap is cut off and exits 65."""
    monkeypatch.setattr(_client, "MAX_RESPONSE", 100_000)  # the real cap is 64 MiB
    daemon.answer_raw(b"x" * 200_000)
    result = todo(daemon, "list")
    assert result.exit_code == 65
    assert result.stderr.startswith("todo: too large: ")


def test_malformed_response_exits_65(daemon: FakeDaemon) -> None:
    """A response that is not a protocol line exits 65 with one line."""
    daemon.answer_raw(b"not json\n")
    result = todo(daemon, "list")
    assert result.exit_code == 65
    assert result.stderr.startswith("todo: bad request: malformed response")


# --- auto-start ---------------------------------------------------------------------


class FakePopen:
    """Stands in for subprocess.Popen: records the call and serves a FakeDaemon on --socket."""

    calls: list[tuple[list[str], dict[str, Any]]] = []
    daemons: list[FakeDaemon] = []

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        # The log is a descriptor the CLI closes after the call: keep which file it was.
        self.calls.append((argv, {**kwargs, "stderr": os.fstat(kwargs["stderr"]).st_ino}))
        self.daemons.append(FakeDaemon(argv[argv.index("--socket") + 1]).start())
        self.pid = 4242

    def poll(self) -> int | None:
        return None


def never_listening(exit_status: int | None) -> type:
    """A stand-in for subprocess.Popen: a daemon that never listens, exited with ``exit_status`` or (None)
    still running."""

    class NeverListening:
        pid = 4242

        def __init__(self, argv: list[str], **kwargs: Any) -> None:
            pass

        def poll(self) -> int | None:
            return exit_status

    return NeverListening


@pytest.fixture
def fake_popen(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakePopen]]:
    """subprocess.Popen replaced by FakePopen for one test; its daemons closed after."""
    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    FakePopen.calls, FakePopen.daemons = [], []
    yield FakePopen
    for fake in FakePopen.daemons:
        fake.close()


def test_auto_start_spawns_the_daemon_and_waits_for_hello(short_dir: str, fake_popen: type[FakePopen]) -> None:
    """With no daemon, the CLI starts `python -m todod` detached, polls hello, then sends the request."""
    sock = os.path.join(short_dir, "todod.sock")
    data = os.path.join(short_dir, "data")
    result = runner.invoke(app, ["list", "--socket", sock, "--data-dir", data], env={"TODOD_NO_START": None})
    assert result.exit_code == 0, result.output
    [(argv, kwargs)] = fake_popen.calls
    assert argv == [sys.executable, "-P", "-m", "todod", "--socket", sock, "--data-dir", data]
    assert kwargs == {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": os.stat(os.path.join(data, "todod.log")).st_ino,
        "start_new_session": True,
    }
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(data, "todod.log")).st_mode) == 0o600
    assert [r["op"] for r in fake_popen.daemons[0].requests] == ["hello", "lists"]


def test_auto_start_gives_up_after_the_deadline(short_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the started daemon runs but never answers, the CLI exits 69 after the start deadline, pointing at the log."""

    monkeypatch.setattr(subprocess, "Popen", never_listening(exit_status=None))
    monkeypatch.setattr(_client, "START_DEADLINE", 0.05)
    data = os.path.join(short_dir, "data")
    result = runner.invoke(
        app,
        ["list", "--socket", os.path.join(short_dir, "todod.sock"), "--data-dir", data],
        env={"TODOD_NO_START": None},
    )
    assert result.exit_code == 69
    assert "is still starting" in result.stderr
    assert os.path.join(data, "todod.log") in result.stderr


def test_timeout_bounds_a_slow_auto_start(short_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """--timeout bounds the whole command: a started daemon that is still starting up when it runs out is a
    timeout (exit 75), not a 10 s wait."""
    monkeypatch.setattr(subprocess, "Popen", never_listening(exit_status=None))
    data = os.path.join(short_dir, "data")
    start = time.monotonic()
    result = runner.invoke(
        app,
        ["list", "--socket", os.path.join(short_dir, "todod.sock"), "--data-dir", data, "--timeout", "0.3"],
        env={"TODOD_NO_START": None},
    )
    elapsed = time.monotonic() - start
    assert result.exit_code == 75, result.output
    assert "within 0.3 s" in result.stderr
    assert elapsed < _client.START_DEADLINE / 2, "the auto-start waited past --timeout"


def test_auto_start_refuses_an_unsafe_data_dir(short_dir: str, fake_popen: type[FakePopen]) -> None:
    """A data directory open to other users is not used: exit 69 and start nothing."""
    data = os.path.join(short_dir, "open")
    os.mkdir(data)
    os.chmod(data, 0o755)
    result = runner.invoke(
        app,
        ["list", "--socket", os.path.join(short_dir, "todod.sock"), "--data-dir", data],
        env={"TODOD_NO_START": None},
    )
    assert result.exit_code == 69
    assert "cannot start the daemon" in result.stderr
    assert fake_popen.calls == []


def test_fast_path_knows_every_command() -> None:
    """The fast path's generated table names exactly the commands of the Typer app."""
    import typer.main

    from cli import _table

    assert set(_table.COMMANDS) == set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_entries_reads_objects_from_a_daemon_that_knows_no_rows(daemon: FakeDaemon) -> None:
    """A daemon older than ``"form": "rows"`` refuses the field: `todo entries` asks again for its objects."""
    daemon.fail("bad_request", "op 'entries' has no field 'form'")
    daemon.answer(page([{"id": 3, "date": "2024-05-01", "title": "buy milk", "done": True}], None, 3))
    result = todo(daemon, "entries", "home")
    assert result.exit_code == 0, result.output
    assert result.stdout == "ID  DATE        DONE  TITLE\n 3  2024-05-01  yes   buy milk\n"
    assert daemon.requests == [
        {"op": "entries", "list": "home", "limit": PAGE_ENTRIES, "form": "rows"},
        {"op": "entries", "list": "home", "limit": PAGE_ENTRIES},
    ]
