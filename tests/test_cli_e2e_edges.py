"""End to end, the rough edges of issue 9: `todo stop`, status paths, a lost socket file, auto-start failures,
output errors and list names, with the real `todo` and `todod`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import TODO, Daemon, raw_exchange, read_database, run_cli, running_daemon, short_tempdir, wait_until


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with running_daemon() as d:
        yield d


def todo(daemon: Daemon, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(args, env or daemon.cli_env())


def auto_start_env(daemon: Daemon) -> dict[str, str]:
    """The daemon's socket and data directory, with auto-start on."""
    env = daemon.cli_env()
    del env["TODOD_NO_START"]
    return env


def test_stop_stops_the_daemon_cleanly(daemon: Daemon) -> None:
    """`todo stop` returns once the daemon has exited with status 0, and what it acknowledged is on disk."""
    assert todo(daemon, "add", "home", "Buy", "milk").returncode == 0
    assert daemon.proc is not None
    pid = daemon.proc.pid
    assert (daemon.socket.parent / "todod.sock.lock").read_text() == f"{pid}\n"
    result = todo(daemon, "stop")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"stopped todod (pid {pid})\n"
    assert daemon.proc.poll() is not None, "todo stop returned before the daemon exited"
    assert daemon.stop() == 0
    assert "a client asked to stop; stopping" in daemon.log()
    assert "stopped cleanly" in daemon.log()
    assert not daemon.socket.exists()
    verdict, _next_ids, entries = read_database(daemon.data_dir)
    assert verdict == "ok"
    assert [e["title"] for e in entries.values()] == ["Buy milk"]


def test_stop_op_is_answered_before_the_daemon_goes(daemon: Daemon) -> None:
    """The `stop` op gets its answer, the daemon's pid, and the daemon then exits 0."""
    assert daemon.proc is not None
    [response] = raw_exchange(daemon.socket, b'{"id":1,"op":"stop"}\n')
    assert response == {"id": 1, "ok": True, "result": {"pid": daemon.proc.pid}}
    assert daemon.proc.wait(30) == 0


def test_status_reports_socket_data_dir_and_database(daemon: Daemon) -> None:
    """`todo status --json` names the socket, the data directory and the database file."""
    result = todo(daemon, "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["socket"] == str(daemon.socket)
    assert status["data_dir"] == str(daemon.data_dir)
    assert status["database"] == str(daemon.data_dir / "todod.sqlite3")
    rows = [line.split() for line in todo(daemon, "status").stdout.splitlines()]
    assert ["database", str(daemon.data_dir / "todod.sqlite3")] in rows


def test_a_deleted_socket_file_stops_the_daemon_and_the_next_todo_starts_one(daemon: Daemon) -> None:
    """A daemon whose socket file is deleted stops cleanly by itself; the next `todo` starts a new one."""
    assert todo(daemon, "add", "home", "kept").returncode == 0
    daemon.socket.unlink()
    assert daemon.proc is not None
    proc = daemon.proc
    wait_until(lambda: proc.poll() is not None, 20, "the daemon to notice its socket file is gone")
    assert daemon.stop() == 0
    assert f"its socket file {daemon.socket} is gone; stopping" in daemon.log()
    env = auto_start_env(daemon)
    try:
        result = todo(daemon, "entries", "home", "--json", env=env)
        assert result.returncode == 0, result.stderr
        assert [e["title"] for e in json.loads(result.stdout)] == ["kept"]
    finally:
        assert todo(daemon, "stop", env=env).returncode == 0


def test_todo_right_after_the_socket_file_is_deleted_waits_for_the_old_daemon_and_starts_one(daemon: Daemon) -> None:
    """A `todo` run at once after the socket file is deleted waits for the old daemon to stop, then starts a new one."""
    assert todo(daemon, "add", "home", "kept").returncode == 0
    assert daemon.proc is not None
    old = daemon.proc
    daemon.socket.unlink()
    env = auto_start_env(daemon)
    try:
        result = todo(daemon, "entries", "home", "--json", env=env)  # before the old daemon has noticed
        assert result.returncode == 0, result.stderr
        assert [e["title"] for e in json.loads(result.stdout)] == ["kept"]
        assert old.poll() is not None, "a new daemon answered while the old one still held the lock"
        assert f"its socket file {daemon.socket} is gone; stopping" in daemon.log()
    finally:
        assert todo(daemon, "stop", env=env).returncode == 0
        assert daemon.stop() == 0


def test_a_replaced_socket_file_stops_the_daemon_and_is_left_alone(daemon: Daemon) -> None:
    """A daemon whose socket path now holds another file stops cleanly and does not remove that file."""
    daemon.socket.unlink()
    daemon.socket.write_text("not ours\n")
    assert daemon.proc is not None
    proc = daemon.proc
    wait_until(lambda: proc.poll() is not None, 20, "the daemon to notice its socket file was replaced")
    assert daemon.stop() == 0
    assert "was replaced; stopping" in daemon.log()
    assert daemon.socket.read_text() == "not ours\n"


def test_auto_start_reports_the_daemons_own_error_at_once() -> None:
    """When the daemon it starts exits (the socket path is a regular file), `todo` says why, from its log."""
    root = short_tempdir()
    try:
        (root / "run").mkdir(mode=0o700)
        sock = root / "run" / "todod.sock"
        sock.write_text("a regular file\n")
        env = {**os.environ, "TODOD_SOCKET": str(sock), "TODOD_DATA_DIR": str(root / "data")}
        env.pop("TODOD_NO_START", None)
        result = run_cli(["list"], env)
        assert result.returncode == 69
        # The message of the child's exit, not of the start deadline ("nothing answered within").
        assert "but it exited with status 1: 'todod: cannot start: " in result.stderr
        assert "exists and is not a socket" in result.stderr
        assert str(root / "data" / "todod.log") in result.stderr
        assert result.stderr.count("\n") == 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_auto_start_reports_a_data_directory_held_by_another_daemon(daemon: Daemon) -> None:
    """Auto-start on another socket with a running daemon's data directory fails at once, saying why."""
    other = short_tempdir()
    try:
        env = {**daemon.cli_env(), "TODOD_SOCKET": str(other / "todod.sock")}
        del env["TODOD_NO_START"]
        result = run_cli(["list"], env)
        assert result.returncode == 69
        assert f"cannot start: another todod is already using {daemon.data_dir}" in result.stderr
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_output_to_a_full_disk_exits_74_after_doing_the_work(daemon: Daemon) -> None:
    """`todo add ... > /dev/full` reports the output error in one line and exits 74; the entry was added."""
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [TODO, "add", "home", "x"], env=daemon.cli_env(), stdout=full, stderr=subprocess.PIPE, text=True, timeout=30
        )
    assert result.returncode == 74
    assert result.stderr == "todo: io error: cannot write the output: No space left on device\n"
    assert [e["title"] for e in daemon.request("entries", list="home")] == ["x"]


def test_output_to_a_closed_stdout_exits_74(daemon: Daemon) -> None:
    """With stdout closed, `todo add` adds the entry, says the output failed, and exits 74."""
    result = subprocess.run(
        ["sh", "-c", 'exec "$0" "$@" >&-', TODO, "add", "home", "x", "--json"],
        env=daemon.cli_env(),
        stderr=subprocess.PIPE,
        text=True,
        timeout=30,
    )
    assert result.returncode == 74
    assert json.loads(result.stderr) == {
        "error": {"code": "io_error", "message": "cannot write the output: stdout is closed"}
    }
    assert len(daemon.request("entries", list="home")) == 1


def test_output_to_a_closed_pipe_exits_74_quietly(daemon: Daemon) -> None:
    """A reader that went away (`| head`) ends `todo` with exit 74 and no message, and no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [TODO, "add", "home", "x"], env=daemon.cli_env(), stdout=write_end, stderr=subprocess.PIPE, timeout=30
        )
    finally:
        os.close(write_end)
    assert result.returncode == 74
    assert result.stderr == b""


@pytest.mark.parametrize("blank", ["   ", "\u200b", "\u3164", " \u200d\ufe0f "])
def test_blank_list_names_are_refused(daemon: Daemon, blank: str) -> None:
    """A list name of only white space or invisible characters is refused (65), like such a title."""
    result = todo(daemon, "add", blank, "x")
    assert result.returncode == 65, result.stderr
    assert "list name" in result.stderr
    title = todo(daemon, "add", "home", blank)
    assert title.returncode == 65, title.stderr
    assert daemon.request("lists") == []


def test_list_names_are_stripped(daemon: Daemon) -> None:
    """`todo add ' home ' x` adds to the list `home`."""
    assert todo(daemon, "add", " home ", "x").returncode == 0
    assert daemon.request("lists") == [{"name": "home", "entries": 1}]
    assert [e["title"] for e in daemon.request("entries", list="  home")] == ["x"]


def test_entries_of_a_missing_list_suggests_near_names(daemon: Daemon) -> None:
    """`todo entries hmoe` says there is no list 'hmoe' and suggests 'home'; exit 0."""
    assert todo(daemon, "add", "home", "x").returncode == 0
    result = todo(daemon, "entries", "hmoe")
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == "todo: no list 'hmoe' (did you mean 'home'?)\n"


def test_entries_of_an_empty_list_named_with_spaces_is_not_called_missing(daemon: Daemon) -> None:
    """`todo entries ' home '` of the existing, empty list `home` prints no "no list" note."""
    assert todo(daemon, "add", "home", "x").returncode == 0
    assert todo(daemon, "delete", "home", "1").returncode == 0
    result = todo(daemon, "entries", " home ")
    assert (result.returncode, result.stderr) == (0, "")


def test_readme_states_how_todo_gets_on_path() -> None:
    """The README says how `todo` gets on PATH before its session uses it."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    session = readme.index("## A session")
    assert "pipx install ." in readme[:session]
    assert "source .venv/bin/activate" in readme[:session]


def test_stop_of_a_daemon_whose_socket_file_is_gone_stops_the_lock_holder(tmp_path: Path) -> None:
    """`todo stop` with no socket file but a live todod holding its lock stops that process and waits for it."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    socket_path = run / "todod.sock"
    # A stand-in for a daemon that has not yet noticed its socket file is gone:
    # a process named todod that holds the lock's pid and runs until SIGTERM.
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "todod"], stdin=subprocess.PIPE)
    try:
        (run / "todod.sock.lock").write_text(f"{holder.pid}\n")
        env = {**os.environ, "TODOD_SOCKET": str(socket_path)}
        result = run_cli(["stop"], env)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"stopped todod (pid {holder.pid})\n"
        assert holder.poll() is not None, "todo stop returned with the lock holder still running"
        assert holder.returncode == -signal.SIGTERM
    finally:
        holder.kill()
        holder.wait()


def test_auto_start_runs_the_installed_todod_not_one_in_the_current_directory() -> None:
    """`todo` run in a directory holding a `todod` package starts the installed daemon, not that package."""
    root = short_tempdir()
    env = {**os.environ, "TODOD_SOCKET": str(root / "run" / "todod.sock"), "TODOD_DATA_DIR": str(root / "data")}
    env.pop("TODOD_NO_START", None)
    try:
        (root / "run").mkdir(mode=0o700)
        checkout = root / "checkout"  # another version's source tree, or a planted file
        (checkout / "todod").mkdir(parents=True)
        (checkout / "todod" / "__init__.py").write_text("")
        (checkout / "todod" / "__main__.py").write_text(
            "import pathlib\npathlib.Path(__file__).with_name('ran').write_text('')\nraise SystemExit(1)\n"
        )
        result = subprocess.run([TODO, "list"], env=env, cwd=checkout, capture_output=True, text=True, timeout=30)
        assert not (checkout / "todod" / "ran").exists(), "the todod of the current directory was run"
        assert result.returncode == 0, result.stderr
    finally:
        run_cli(["stop"], env)
        shutil.rmtree(root, ignore_errors=True)
