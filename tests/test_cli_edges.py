"""The rough edges of issue 9 against a scripted fake daemon: arguments, errors, output, stop, backlog."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner, Result

from cli import _procs
from cli._main import main as console_main
from cli.app import MAX_TIMEOUT, app, main
from tests.fake_daemon import FakeDaemon

runner = CliRunner(env={"TODOD_NO_START": "1", "TODOD_SOCKET": None, "TODOD_DATA_DIR": None})

ENTRY = {"id": 7, "date": "2024-05-01", "title": "buy milk", "done": False}


@pytest.fixture
def daemon(short_dir: str) -> Iterator[FakeDaemon]:
    """A fake daemon serving a fresh socket for one test."""
    with FakeDaemon(os.path.join(short_dir, "todod.sock")) as fake:
        yield fake


def todo(daemon: FakeDaemon, *args: str) -> Result:
    return runner.invoke(app, [*args, "--socket", daemon.path])


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the console script's main() in-process: its exit status, stdout and stderr."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


# --- arguments ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("add", "home", "x", "--date", ""),
        ("entries", "home", "--date", ""),
        ("update", "home", "1", "--date", ""),
        ("add", "home", "x", "--date", "  "),
    ],
)
def test_empty_date_is_a_usage_error_everywhere(daemon: FakeDaemon, args: tuple[str, ...]) -> None:
    """An empty --date (a script's empty variable) is a usage error for every command, never today."""
    result = todo(daemon, *args)
    assert result.exit_code == 2, result.output
    assert "must not be empty" in result.stderr
    assert daemon.requests == []


@pytest.mark.parametrize(
    "args",
    [
        ("add", "home", "x", "--socket", ""),
        ("entries", "home", "--socket="),
        ("list", "--socket", " "),
        ("stop", "--socket", ""),
        ("add", "home", "x", "--data-dir", ""),
        ("status", "--data-dir="),
    ],
)
def test_empty_socket_or_data_dir_is_a_usage_error(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty --socket or --data-dir (a script's empty variable) is a usage error, never the default."""
    monkeypatch.setenv("TODOD_SOCKET", daemon.path)  # the default the empty value used to fall back to
    monkeypatch.setenv("TODOD_NO_START", "1")
    code, out, err = run_main(capsys, *args)
    assert (code, out) == (2, "")
    assert "a path must not be empty" in err
    with pytest.raises(SystemExit) as exited:  # the console script: the fast path declines it too
        console_main(list(args))
    assert exited.value.code == 2
    assert daemon.requests == []


@pytest.mark.parametrize("value", ["inf", "-inf", "1e12", "nan", "0", "-1", "3600.5", "soon"])
def test_bad_timeouts_are_usage_errors(daemon: FakeDaemon, value: str) -> None:
    """--timeout must be a finite number of seconds above 0 and at most an hour: else exit 2, nothing sent."""
    result = todo(daemon, "list", "--timeout", value)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert daemon.requests == []


def test_the_longest_timeout_is_accepted(daemon: FakeDaemon) -> None:
    """The documented maximum --timeout is itself allowed."""
    daemon.answer([])
    result = todo(daemon, "list", "--timeout", f"{MAX_TIMEOUT:g}")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("value", ["\uff13", "\u0663", "+3", " 3", "3 ", "1_0", "0x3", ""])
def test_entry_ids_are_ascii_digits_only(daemon: FakeDaemon, value: str) -> None:
    """An id written with anything but the digits 0-9 is refused as a usage error."""
    result = todo(daemon, "delete", "home", value)
    assert result.exit_code == 2, result.output
    assert "digits 0-9" in result.stderr
    assert daemon.requests == []


@pytest.mark.parametrize("command", [("find",), ("history", "home")])
@pytest.mark.parametrize("value", ["\uff13", "+3", " 3", "1_0", "0", "99999999999999999999999"])
def test_a_limit_is_ascii_digits_and_at_least_one(
    daemon: FakeDaemon,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: tuple[str, ...],
    value: str,
) -> None:
    """A --limit of find or history is a count like every other (digits 0-9, at least 1): else exit 2, nothing sent."""
    result = todo(daemon, *command, "--limit", value)
    assert result.exit_code == 2, result.output
    assert "digits 0-9" in result.stderr or "at least 1" in result.stderr or "at most" in result.stderr
    monkeypatch.setenv("TODOD_SOCKET", daemon.path)
    monkeypatch.setenv("TODOD_NO_START", "1")
    with pytest.raises(SystemExit) as exited:  # the console script: the fast path declines it too
        console_main([*command, "--limit", value])
    assert exited.value.code == 2
    assert daemon.requests == []


def test_an_entry_id_out_of_range_says_so(daemon: FakeDaemon) -> None:
    """An id past 2^63-1 says it is out of range, not that it is no integer."""
    result = todo(daemon, "delete", "home", "9223372036854775808")
    assert result.exit_code == 2, result.output
    assert "at most 9223372036854775807" in result.stderr
    assert daemon.requests == []


def test_an_entry_id_with_leading_zeros_is_that_number(daemon: FakeDaemon) -> None:
    """`007` is entry 7."""
    daemon.answer(ENTRY)
    result = todo(daemon, "delete", "home", "007")
    assert result.exit_code == 0, result.output
    assert daemon.requests == [{"op": "delete", "list": "home", "entry": 7}]


def test_a_title_is_the_remaining_words(daemon: FakeDaemon) -> None:
    """`todo add home Buy milk` adds the title "Buy milk", options may come between the words."""
    daemon.answer(ENTRY)
    daemon.answer(ENTRY)
    first = todo(daemon, "add", "home", "Buy", "milk")
    second = todo(daemon, "add", "home", "Buy", "--date", "2024-05-01", "oat", "milk")
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert [r["title"] for r in daemon.requests] == ["Buy milk", "Buy oat milk"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`todo --version` prints the version and exits 0."""
    from todod import __version__

    code, out, err = run_main(capsys, "--version")
    assert (code, out, err) == (0, f"todo {__version__}\n", "")


# --- usage errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("add",), "todo: usage: missing argument 'LIST' (see 'todo add --help')\n"),
        (("add", "home"), "todo: usage: missing argument 'TITLE...' (see 'todo add --help')\n"),
        (("bogus",), "todo: usage: no such command 'bogus' (see 'todo --help')\n"),
        (("list", "--bogus"), "todo: usage: no such option: --bogus (see 'todo list --help')\n"),
    ],
)
def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], args: tuple[str, ...], line: str) -> None:
    """A usage error is one `todo: usage: ...` line on stderr, exit 2, with no box-drawing characters."""
    code, out, err = run_main(capsys, *args)
    assert (code, out, err) == (2, "", line)


def test_usage_errors_with_json_are_a_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    """With --json, a usage error is one JSON error object on stderr, still exit 2."""
    code, out, err = run_main(capsys, "delete", "--json", "home", "+3")
    assert code == 2 and out == ""
    error = json.loads(err)["error"]
    assert error["code"] == "usage"
    assert "digits 0-9" in error["message"]
    assert err.count("\n") == 1


def test_usage_lines_have_no_braces(capsys: pytest.CaptureFixture[str]) -> None:
    """`todo add --help` shows `todo add [OPTIONS] LIST TITLE...`, without braces around the arguments."""
    code, out, _err = run_main(capsys, "add", "--help")
    assert code == 0
    assert "todo add [OPTIONS] LIST TITLE..." in out
    assert "{" not in out


# --- errors and output -------------------------------------------------------------


def test_json_errors_are_one_json_object(daemon: FakeDaemon) -> None:
    """With --json, a daemon's error is one JSON object on stderr and keeps its exit code."""
    daemon.fail("not_found", "no entry 7 in list 'home'")
    result = todo(daemon, "delete", "home", "7", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == '{"error": {"code": "not_found", "message": "no entry 7 in list \'home\'"}}\n'


def test_json_unreachable_is_a_json_object(short_dir: str) -> None:
    """With --json, no daemon at all is a JSON `unavailable` error object, exit 69."""
    result = runner.invoke(app, ["list", "--json", "--socket", os.path.join(short_dir, "none.sock")])
    assert result.exit_code == 69
    assert json.loads(result.stderr)["error"]["code"] == "unavailable"


def test_json_output_is_utf8_and_terminal_safe(daemon: FakeDaemon) -> None:
    """--json prints non-ASCII text as UTF-8 (grep finds it) but escapes C1 controls and bidi overrides."""
    daemon.answer({**ENTRY, "title": "Café 日本 \x9b\u202e"})
    result = todo(daemon, "add", "home", "x", "--json")
    assert result.exit_code == 0, result.output
    assert "Café 日本" in result.stdout
    assert "\\u009b\\u202e" in result.stdout
    assert json.loads(result.stdout)["title"] == "Café 日本 \x9b\u202e"


def test_entries_of_a_missing_list_says_so_with_near_names(daemon: FakeDaemon) -> None:
    """`todo entries hmoe` tells a person on stderr that there is no such list, and suggests `home`; exit 0."""
    daemon.answer([])
    daemon.answer([{"name": "home", "entries": 2}, {"name": "work", "entries": 1}])
    result = todo(daemon, "entries", "hmoe")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == "todo: no list 'hmoe' (did you mean 'home'?)\n"


def test_entries_of_an_empty_existing_list_says_nothing(daemon: FakeDaemon) -> None:
    """A list that exists but has no entries (for that date) prints nothing at all."""
    daemon.answer([])
    daemon.answer([{"name": "home", "entries": 0}])
    result = todo(daemon, "entries", "home")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


def test_entries_of_a_missing_list_with_json_is_just_an_empty_array(daemon: FakeDaemon) -> None:
    """With --json the result scripts rely on stays: `[]`, exit 0, nothing on stderr, one request."""
    daemon.answer([])
    result = todo(daemon, "entries", "hmoe", "--json")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "[]\n", "")
    assert len(daemon.requests) == 1


def test_status_shows_the_paths(daemon: FakeDaemon) -> None:
    """`todo status` shows the socket, data directory and database file the daemon reports."""
    daemon.answer(
        {
            "version": "0.1.0",
            "protocol": 1,
            "pid": 42,
            "uptime": 1.0,
            "socket": "/run/user/1000/todod.sock",
            "data_dir": "/home/u/.local/share/todod",
            "database": "/home/u/.local/share/todod/todod.sqlite3",
            "stats": {"requests": 1},
        }
    )
    result = todo(daemon, "status")
    assert result.exit_code == 0, result.output
    assert "socket    /run/user/1000/todod.sock\n" in result.stdout
    assert "data_dir  /home/u/.local/share/todod\n" in result.stdout
    assert "database  /home/u/.local/share/todod/todod.sqlite3\n" in result.stdout


# --- stop -----------------------------------------------------------------------------


def _exited_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stop_sends_stop_and_returns_once_the_daemon_has_exited(daemon: FakeDaemon) -> None:
    """`todo stop` sends the `stop` op and, the daemon's pid gone, says it stopped."""
    pid = _exited_pid()
    daemon.answer({"pid": pid})
    result = todo(daemon, "stop")
    assert result.exit_code == 0, result.output
    assert daemon.requests == [{"op": "stop"}]
    assert result.stdout == f"stopped todod (pid {pid})\n"


def test_stop_waits_no_longer_than_the_timeout(daemon: FakeDaemon) -> None:
    """A daemon that answers `stop` but does not exit makes `todo stop` exit 75 after --timeout."""
    daemon.answer({"pid": os.getpid()})  # this process: alive throughout
    result = todo(daemon, "stop", "--timeout", "0.2")
    assert result.exit_code == 75
    assert f"todod (pid {os.getpid()}) is stopping but has not exited within 0.2 s" in result.stderr


def test_stop_with_no_daemon_starts_none_and_exits_0(short_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no daemon running, `todo stop` says there is nothing to stop, exits 0, and never starts one."""

    def no_start(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("todo stop must not start a daemon")

    monkeypatch.setattr(subprocess, "Popen", no_start)
    sock = os.path.join(short_dir, "todod.sock")
    result = runner.invoke(app, ["stop", "--socket", sock], env={"TODOD_NO_START": None})
    assert result.exit_code == 0, result.output
    assert result.stderr == f"todo: no daemon at {sock}; nothing to stop\n"
    as_json = runner.invoke(app, ["stop", "--json", "--socket", sock], env={"TODOD_NO_START": None})
    assert (as_json.exit_code, json.loads(as_json.stdout)) == (0, {"pid": None})


# --- the socket: a full backlog, a lost socket file --------------------------------


def test_full_listen_backlog_is_retried_then_times_out_75(short_dir: str) -> None:
    """A daemon that listens but accepts nothing (backlog full) is retried until --timeout, then exit 75."""
    path = os.path.join(short_dir, "todod.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    queued: list[socket.socket] = []
    try:
        while True:  # fill the backlog: a Unix socket refuses with EAGAIN once it is full
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.setblocking(False)
            try:
                conn.connect(path)
            except BlockingIOError as exc:
                assert exc.errno == errno.EAGAIN
                conn.close()
                break
            queued.append(conn)
            assert len(queued) < 100, "the backlog never filled"
        result = runner.invoke(app, ["list", "--socket", path, "--timeout", "0.3"])
    finally:
        for conn in queued:
            conn.close()
        listener.close()
    assert result.exit_code == 75, result.output
    assert result.stderr == f"todo: timeout: the daemon at {path} accepts no connections (its listen backlog is full)\n"


def test_a_missing_socket_names_the_lock_holder(short_dir: str) -> None:
    """With the socket file gone but a live todod holding the lock, the refusal names its pid and what to do."""
    path = os.path.join(short_dir, "todod.sock")
    # The holder: a process whose command line names todod, with its pid in the lock file as todod writes it.
    holder = subprocess.Popen(["sleep", "60"])
    try:
        with open(path + ".lock", "w") as file:
            file.write(f"{holder.pid}\n")
        assert _procs.lock_holder(path) is None  # `sleep 60` is no todod: a reused pid is no holder
    finally:
        holder.kill()
        holder.wait()
    holder = subprocess.Popen(["todod-holder", "60"], executable="sleep")  # argv[0] names todod
    try:
        with open(path + ".lock", "w") as file:
            file.write(f"{holder.pid}\n")
        result = runner.invoke(app, ["list", "--socket", path])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 69
    assert f"todod pid {holder.pid} holds {path}.lock but its socket file is gone" in result.stderr
    assert f"kill {holder.pid}" in result.stderr


def test_lock_holder_ignores_a_dead_pid(short_dir: str) -> None:
    """A lock file left by a daemon that is gone names no holder."""
    path = os.path.join(short_dir, "todod.sock")
    with open(path + ".lock", "w") as file:
        file.write(f"{_exited_pid()}\n")
    assert _procs.lock_holder(path) is None


# --- auto-start ---------------------------------------------------------------------


def test_auto_start_that_lost_a_race_waits_for_the_winner(short_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A started daemon that exits while a socket is in place lost a start-up race: the CLI uses the winner."""
    sock = os.path.join(short_dir, "todod.sock")
    winners: list[FakeDaemon] = []

    class LostTheRace:
        """Stands in for subprocess.Popen: another CLI's daemon takes the socket, and ours exits 1."""

        pid = 4242

        def __init__(self, argv: list[str], **_kwargs: object) -> None:
            winners.append(FakeDaemon(sock).start())

        def poll(self) -> int | None:
            return 1

    monkeypatch.setattr(subprocess, "Popen", LostTheRace)
    try:
        result = runner.invoke(
            app, ["list", "--socket", sock, "--data-dir", os.path.join(short_dir, "data")], env={"TODOD_NO_START": None}
        )
    finally:
        for winner in winners:
            winner.close()
    assert result.exit_code == 0, result.output
    assert [r["op"] for r in winners[0].requests] == ["hello", "lists"]


def test_auto_start_quotes_the_exited_daemons_error_line(short_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A started daemon that exits with no socket in place is reported at once with its last error line."""
    data = os.path.join(short_dir, "data")

    class Fails:
        """Stands in for subprocess.Popen: a daemon that logs an error and exits 1."""

        pid = 4242

        def __init__(self, argv: list[str], **kwargs: object) -> None:
            log = kwargs["stderr"]
            assert isinstance(log, int)
            os.write(log, b"2026-01-01 00:00:00,000 INFO todod: listening\n")
            os.write(log, b"2026-01-01 00:00:00,001 ERROR todod: cannot start: it went wrong\n")

        def poll(self) -> int | None:
            return 1

    os.makedirs(data, mode=0o700)
    with open(os.path.join(data, "todod.log"), "w") as old:
        old.write("2025-01-01 00:00:00,000 ERROR todod: an older daemon's error\n")
    monkeypatch.setattr(subprocess, "Popen", Fails)
    sock = os.path.join(short_dir, "todod.sock")
    result = runner.invoke(app, ["list", "--socket", sock, "--data-dir", data], env={"TODOD_NO_START": None})
    assert result.exit_code == 69
    assert "but it exited with status 1: 'todod: cannot start: it went wrong'" in result.stderr
    assert "older" not in result.stderr


def test_empty_pages_before_the_first_entry_or_event_keep_the_json_valid(daemon: FakeDaemon) -> None:
    """Empty pages with a cursor (deleted ids, sparse events) before the first item still make one JSON value."""
    row = [9, "2024-05-01", "buy milk", False, 1, []]
    for _ in range(2):
        daemon.answer({"next": "s.1", "last_id": 9, "entries": []})
    daemon.answer({"next": None, "last_id": 9, "entries": [row]})
    for _ in range(2):
        daemon.answer({"next": "s.1", "last_id": 9, "entries": []})
    daemon.answer({"next": None, "last_id": 9, "entries": []})
    event = {"position": 5, "list": "home", "seq": 1, "op": "add", "entry": 9, "before": None, "after": None}
    page = {"list": "home", "horizon": 0, "base_entries": 0}
    daemon.answer({"next": 4, **page, "events": []})
    daemon.answer({"next": None, **page, "events": [event]})
    found = todo(daemon, "entries", "home", "--json")
    empty = todo(daemon, "entries", "home", "--json")
    history = todo(daemon, "history", "home", "--json")
    assert found.exit_code == 0, found.output
    assert [e["id"] for e in json.loads(found.stdout)] == [9]
    assert empty.exit_code == 0 and json.loads(empty.stdout) == []
    assert history.exit_code == 0, history.output
    assert json.loads(history.stdout) == {**page, "events": [event]}
