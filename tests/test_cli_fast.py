"""The fast path: its table matches the Typer app, and whatever it accepts, Typer does the same with.

The property test generates command lines for every command, valid and
invalid, and runs each through both paths for real: the Typer app through
``CliRunner``, and ``cli._fast.parse`` followed by the shared command body.
The daemon is replaced at the ``cli._client.request`` boundary, which records
each call and answers from the example's script.  Whenever the fast path
accepts, the calls (op, fields, socket, timeout, auto-start), the output, the
error line and the exit code must be the same as Typer's.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli import _client, _commands, _fast, _gen, _main, _procs, _table
from cli.app import app
from cli.app import main as typer_main
from tests.fake_daemon import FakeDaemon
from todod import protocol

runner = CliRunner()

#: Where the generated environments point: a path in a private directory of
#: this run that nothing creates (the stand-ins below refuse to start a
#: daemon), so no lock file or daemon of anyone else's can be found there.
NOWHERE = os.path.join(tempfile.mkdtemp(prefix="todo-fast-"), "nowhere")


@pytest.fixture(autouse=True, scope="module")
def _remove_nowhere() -> Iterator[None]:
    yield
    shutil.rmtree(os.path.dirname(NOWHERE), ignore_errors=True)


def _refuse(what: str) -> Any:
    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the CLI under test tried to {what}: {args}")

    return refused


def _stand_in(patch: pytest.MonkeyPatch, daemon: Daemon) -> None:
    """Replace the daemon with ``daemon``, and make any attempt to start or signal a real process fail.

    ``todo stop`` signals the holder of a socket's lock file and auto-start
    runs ``todod``: neither may touch a real process from a property test.
    """
    patch.setattr(_client, "request", daemon.request)
    patch.setattr(_client, "subscribe", daemon.subscribe)
    patch.setattr(_client, "Connection", daemon.connection)
    patch.setattr(_client, "_start_daemon", _refuse("start a daemon"))
    patch.setattr(_procs, "terminate", _refuse("signal a process"))


ENTRY = {"id": 7, "date": "2024-05-01", "title": "buy milk", "done": False, "version": 1, "tags": ["home"]}
RESULTS: dict[str, Any] = {
    "add": ENTRY,
    "update": {**ENTRY, "done": True},
    "delete": ENTRY,
    "entries": [ENTRY, {"id": 12, "date": "2024-05-02", "title": "call 日本\x1b", "done": True}],
    "lists": [{"name": "home", "entries": 2}, {"name": "仕事", "entries": 12}],
    "status": {"version": "0.1.0", "protocol": 1, "pid": 1, "uptime": 61.5, "stats": {"requests": 3}},
    "stop": {"pid": None},  # no pid: `todo stop` does not wait for a process
    "find": {
        "entries": [
            {**ENTRY, "list": "home", "date": "2000-01-01", "tags": ["urgent", "work"]},
            {"id": 3, "date": "2999-12-31", "title": "call 日本\x1b", "done": True, "version": 2, "list": "仕事"}
            | {"tags": []},
        ],
        "more": True,
    },
    "history": {
        "list": "home",
        "horizon": 2,
        "base_entries": 1,
        "events": [
            {
                "position": 9,
                "list": "home",
                "seq": 3,
                "change": 3,
                "op": "undo",
                "entry": 7,
                "before": ENTRY,
                "after": None,
                "time": "2024-05-01T10:00:00.000Z",
                "uid": 1000,
                "pid": 42,
                "target": 2,
            }
        ],
    },
    "undo": [ENTRY],
    "redo": [ENTRY],
    "compact": {"dropped": 3, "horizon": 9},
    "move": {"from": {"list": "home", "id": 7}, "to": {"list": "仕事", "id": 1}, "entry": ENTRY},
    "import_begin": {"import": "0123456789abcdef"},
    "import_rows": {"staged": 1},
    "import_commit": {"list": "home", "count": 0, "first": None, "last": None},
    "import_abort": {"import": "0123456789abcdef"},
}
EVENTS = [RESULTS["history"]["events"][0], {**RESULTS["history"]["events"][0], "position": 10, "after": ENTRY}]
ERRORS = [
    protocol.NotFound("no entry 7 in list 'home'"),
    protocol.Invalid("not a date: '2024-13-01'"),
    protocol.Timeout("no response from the daemon within 0.5 s"),
    _client.Unreachable("cannot talk to the daemon at /x: Connection reset by peer"),
    _client.NotRunning("no daemon at /x (No such file or directory) and auto-start is off"),
]

# Words that click and a careless parser might read differently.
WORDS = [
    "home", "buy milk", "", "-", "--", "7", "0", "007", "-3", "+3", "\uff13", "\u0663", "1_0", " 3", "3 ",
    "1.5", "0.0005", "0.001", ".5", "5.", "1e3", "1E-2", "inf", "nan", "-inf", "1e999", "x=y", "=",
    "2024-05-01", "Café", "\udcff", "--json", "--date", "-x", "9" * 30,
]  # fmt: skip
UNKNOWN = ["--help", "--version", "--nope", "-x", "-h", "--jso", "--json=1", "--no-start=0", "--done=yes", "---"]
ENVS = [None, None, None, "1", "1", "", "0", "yes", " TRUE ", "off", "garbage", "2"]


# Values that click reads as the type says (and the fast path should accept).
VALID = {
    "str": st.sampled_from(["home", "buy milk", "", "-", "2024-05-01", "Café", "x=y", "日本"]),
    "int": st.integers(0, 10**20).map(str),
    "float": st.sampled_from(["0.001", "0.5", "2", "10", "1e3", "2.5E1", ".25", "7."]),
    # The parser= functions of cli._params, by name.
    "entry_id": st.integers(0, 2**63).map(str),
    "timeout": st.sampled_from(["0.001", "0.5", "2", "10", "1e3", "3600", "3600.5", "2.5E1", ".25", "7."]),
    "date": st.sampled_from(
        ["2024-05-01", "2024-13-01", "today", "tomorrow", "Yesterday", "+3d", "-2d", "+1w", "fri", " mon ", "x", "+d"]
    ),
    "path": st.sampled_from([NOWHERE + "/todod.sock", "rel/todod.sock", "Café/x", "-", "", " "]),
}


def _value(draw: st.DrawFn, kind: tuple[Any, ...]) -> str:
    """A word for a parameter of this type: mostly a valid one, sometimes any of WORDS or some text."""
    choice = draw(st.integers(0, 19))
    name = kind[2] if kind[0] == "func" else kind[0]
    if choice < 17 and name in VALID:
        return draw(VALID[name])
    if choice < 19:
        return draw(st.sampled_from(WORDS))
    return draw(st.text(max_size=6))


@st.composite
def command_lines(draw: st.DrawFn) -> tuple[list[str], dict[str, str | None]]:
    """A command line for some command (now and then an unknown one), and an environment."""
    names = sorted(_table.COMMANDS)
    # Not --install-completion: run for real, Typer's path would write to the shell's files in $HOME.
    name = draw(st.sampled_from([*names, *names, *names, "nope", "--help", "--version", "--show-completion"]))
    spec = _table.COMMANDS.get(name)
    tokens: list[list[str]] = []
    if spec is not None:
        params = spec["params"]
        # The right number of arguments, sometimes too few or too many.
        arguments = list(spec["arguments"])
        arguments += [arguments[-1] if arguments else "extra"] * draw(st.sampled_from([0, 0, 0, 0, 0, 0, 1, 2]))
        if arguments and draw(st.integers(0, 7)) == 0:
            arguments.pop()
        tokens += [[_value(draw, params.get(arg, {"type": ("str",)})["type"])] for arg in arguments]
        chosen = draw(st.lists(st.sampled_from(sorted(spec["options"])), max_size=5))
        # A repeatable option (--tag, --list) often given again, with its own value.
        chosen += [o for o in chosen if params[spec["options"][o][0]]["multiple"]] * draw(st.integers(0, 2))
        for option in chosen:
            param, flag = spec["options"][option]
            if flag is not None:
                tokens.append([option])
            elif draw(st.booleans()):
                tokens.append([f"{option}={_value(draw, params[param]['type'])}"])
            else:
                tokens.append([option, _value(draw, params[param]["type"])])
        if draw(st.integers(0, 7)) == 0:
            tokens.append([draw(st.sampled_from(UNKNOWN))])
    order = draw(st.permutations(tokens))
    argv = [name, *(word for group in order for word in group)]
    if draw(st.integers(0, 7)) == 0:
        argv.insert(draw(st.integers(1, len(argv))), "--")
    env: dict[str, str | None] = {
        "TODOD_NO_START": draw(st.sampled_from(ENVS)),
        "TODOD_SOCKET": draw(st.sampled_from([None, NOWHERE + "/todod.sock"])),
        "TODOD_DATA_DIR": NOWHERE + "/data",
        "XDG_RUNTIME_DIR": NOWHERE + "/run",
        "HOME": NOWHERE + "/home",  # whatever runs, it never writes to the real home
        "_TODO_COMPLETE": None,
    }
    return argv, env


class Daemon:
    """A stand-in for ``_client.request``: records each call and answers or raises as scripted.

    Only the first call raises the scripted error; ``empty`` makes ``entries``
    answer ``[]`` (and `todo entries` then asks for ``lists`` too).
    """

    def __init__(self, error: protocol.TodoError | None, empty: bool = False) -> None:
        self.error = error
        self.empty = empty
        self.calls: list[tuple[Any, ...]] = []

    def request(
        self, op: str, fields: dict[str, Any], *, socket_path: str, timeout: float, data_dir: str | None
    ) -> Any:
        self.calls.append((op, dict(fields), socket_path, timeout, data_dir))
        if self.error is not None and len(self.calls) == 1:
            raise self.error
        if op == "entries" and self.empty:
            return []
        return RESULTS[op]

    def subscribe(
        self, op: str, fields: dict[str, Any], *, socket_path: str, timeout: float, data_dir: str | None
    ) -> Iterator[Any]:
        """A subscription that streams two events and ends (as if the daemon went away quietly)."""
        self.calls.append((op, dict(fields), socket_path, timeout, data_dir))
        if self.error is not None and len(self.calls) == 1:
            raise self.error
        yield from EVENTS

    def connection(self, socket_path: str, *, timeout: float, data_dir: str | None) -> _PagedConnection:
        """A stand-in for ``_client.Connection`` (a paged ``entries``), answering each page from this script."""
        return _PagedConnection(self, socket_path, timeout, data_dir)

    def normalized(self) -> list[tuple[Any, ...]]:
        """The calls, a follow-up call's timeout (what is left of the command's) checked and left out."""
        calls = list(self.calls)
        for i, call in enumerate(calls[1:], 1):
            assert 0 < call[3] <= calls[0][3]
            calls[i] = (*call[:3], "rest of the timeout", call[4])
        return calls


class _PagedConnection:
    """One paged read (entries, find, history) through :class:`Daemon`: each request is a call, answered by a page."""

    def __init__(self, daemon: Daemon, socket_path: str, timeout: float, data_dir: str | None) -> None:
        self._daemon, self._where = daemon, (socket_path, timeout, data_dir)
        self._answers: list[Any] = []

    def __enter__(self) -> _PagedConnection:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass

    def send(self, line: bytes, timeout: float | None = None) -> None:
        request = json.loads(line)
        op = request.pop("op")
        self._answers.append(
            self._daemon.request(
                op, request, socket_path=self._where[0], timeout=self._where[1], data_dir=self._where[2]
            )
        )

    def receive(self) -> bytes:
        answer = self._answers.pop(0)
        if isinstance(answer, dict) and ("entries" in answer or "events" in answer):
            return protocol.encode_ok(None, {"next": None, **answer})  # a find or history: its one page
        if isinstance(answer, dict):  # not a page: an import's or a move's answer
            return protocol.encode_ok(None, answer)
        page = {"next": None, "last_id": max((e["id"] for e in answer), default=0), "entries": answer}
        return protocol.encode_ok(None, page)


@contextlib.contextmanager
def environment(env: Mapping[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``env`` applied (``None`` unsets), restored after."""
    saved = dict(os.environ)
    try:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def isolated(env: Mapping[str, str | None], daemon: Daemon) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """``env`` applied, ``daemon`` standing in for the real one, and stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with (
        environment(env),
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        _stand_in(patch, daemon)
        yield out, err


def run_typer(argv: list[str], env: Mapping[str, str | None], daemon: Daemon) -> tuple[int, str, str]:
    """What the Typer path gives: ``cli.app.main``, the app run as ``todo`` runs it when the fast path declines."""
    with isolated(env, daemon) as (out, err):
        try:
            typer_main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
    return code, out.getvalue(), err.getvalue()


def run_fast(argv: list[str], env: Mapping[str, str | None], daemon: Daemon) -> tuple[int, str, str] | None:
    """The fast path's result, or ``None`` if it declines (also on a usage error it leaves to Typer)."""
    with isolated(env, daemon) as (out, err):
        invocation = _fast.parse(argv, os.environ)
        if invocation is None:
            return None
        try:
            code = getattr(_commands, invocation.body)(**invocation.params)
        except _commands.UsageError:
            assert daemon.calls == [] and out.getvalue() == "" and err.getvalue() == ""
            return None
    return code, out.getvalue(), err.getvalue()


def run_console(argv: list[str], env: Mapping[str, str | None], daemon: Daemon) -> tuple[int, str, str]:
    """What the ``todo`` console script gives: ``cli._main.main``, fast path or not."""
    with isolated(env, daemon) as (out, err):
        try:
            code = _main.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=command_lines(), error=st.sampled_from([None, None, *ERRORS]), empty=st.booleans())
def test_fast_path_declines_or_matches_typer(
    line: tuple[list[str], dict[str, str | None]], error: protocol.TodoError | None, empty: bool
) -> None:
    """For any command line, the fast path declines or makes the same calls, output and exit code as Typer."""
    argv, env = line
    fast_daemon, typer_daemon = Daemon(error, empty), Daemon(error, empty)
    fast = run_fast(argv, env, fast_daemon)
    typer = run_typer(argv, env, typer_daemon)
    event("declined" if fast is None else "accepted")
    if fast is None:
        return
    assert fast_daemon.normalized() == typer_daemon.normalized(), argv
    assert fast == typer, argv


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=command_lines(), error=st.sampled_from([None, *ERRORS]))
def test_the_console_script_is_the_typer_app(
    line: tuple[list[str], dict[str, str | None]], error: protocol.TodoError | None
) -> None:
    """For any command line, `todo` (fast path or not) makes the same calls, output and exit code as the Typer app."""
    argv, env = line
    console_daemon, typer_daemon = Daemon(error), Daemon(error)
    assert run_console(argv, env, console_daemon) == run_typer(argv, env, typer_daemon), argv
    assert console_daemon.normalized() == typer_daemon.normalized(), argv


EVERYDAY = [
    ["add", "home", "buy milk"],
    ["add", "home", "Buy", "oat", "milk"],
    ["add", "--json", "home", "buy milk", "--date", "2024-05-01"],
    ["add", "home", "--", "--not-an-option"],
    ["entries", "home"],
    ["entries", "home", "--json"],
    ["entries", "--date=2024-05-01", "home"],
    ["list"],
    ["list", "--json", "--timeout", "2.5"],
    ["status"],
    ["status", "--json", "--no-start", "--socket", "/x/todod.sock"],
    ["update", "home", "7", "--done"],
    ["update", "home", "7", "--title", "x", "--undone", "--done"],
    ["delete", "home", "7", "--json"],
    ["stop"],
    ["stop", "--json", "--timeout", "3"],
    ["add", "home", "buy milk", "--date", "tomorrow", "--tag", "work", "--tag=urgent"],
    ["entries", "home", "--date", "-2d"],
    ["update", "home", "7", "--tag", "a", "--untag", "b", "--untag", "c", "--date", "fri"],
    ["find"],
    ["find", "--json"],
    ["find", "--list", "home", "--list", "work", "--tag", "a", "--tag", "b", "--from", "yesterday", "--to", "+1w"],
    ["find", "--pending", "--search", "milk", "--limit", "5"],
    ["find", "--done", "--from", "2024-05-01", "--to=today"],
    ["find", "--to", "nope"],
    ["today"],
    ["today", "--json", "--no-start"],
]


@pytest.mark.parametrize("argv", EVERYDAY, ids=" ".join)
def test_everyday_command_lines_take_the_fast_path(argv: list[str]) -> None:
    """Each everyday command line is accepted by the fast path and matches Typer's run of it."""
    env = {"TODOD_NO_START": "1", "TODOD_SOCKET": NOWHERE + "/todod.sock", "_TODO_COMPLETE": None}
    fast_daemon, typer_daemon = Daemon(None), Daemon(None)
    fast = run_fast(argv, env, fast_daemon)
    assert fast is not None
    assert fast == run_typer(argv, env, typer_daemon)
    assert fast_daemon.normalized() == typer_daemon.normalized()


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["--version"],
        ["add", "--help"],
        ["--install-completion"],
        ["add", "home"],
        ["update", "home", "7"],
        ["delete", "home", "+3"],
        ["list", "--timeout", "nan"],
        ["entries", "home", "--date", ""],
        ["find", "--pending", "--done"],
        ["find", "--from", ""],
        ["find", "--limit", "0"],
        ["update", "home", "7", "--tag"],
    ],
    ids=repr,
)
def test_help_completion_and_usage_errors_are_left_to_typer(argv: list[str]) -> None:
    """Help, the completion options and usage errors (also one found by the body) are declined."""
    assert run_fast(argv, {"_TODO_COMPLETE": None}, Daemon(None)) is None


def test_a_completion_request_is_left_to_typer() -> None:
    """With the completion variable set, even an everyday command line goes to Typer."""
    assert _table.COMPLETE_VAR == "_TODO_COMPLETE"
    assert _fast.parse(["list"], {"_TODO_COMPLETE": "complete_bash"}) is None
    assert _fast.parse(["list"], {}) is not None


def test_the_parser_handles_what_later_commands_need() -> None:
    """A variadic trailing argument, a repeatable option and an option with a callback parse as Typer's would."""
    table = {
        "add": {
            "body": "add",
            "no_args_is_help": False,
            "interspersed": True,
            "arguments": ("list_name", "title"),
            "options": {"--tag": ("tag", None), "--version": ("version", True)},
            "params": {
                "list_name": _param(),
                "title": {**_param(), "nargs": -1},
                "tag": {**_param(), "required": False, "multiple": True, "default": ()},
                "version": {**_param(), "required": False, "flag": True, "default": False, "decline": True},
            },
        }
    }
    parsed = _fast.parse(["add", "home", "Buy", "--tag", "a", "oat", "milk", "--tag=b"], {}, table)
    assert parsed is not None
    assert parsed.params == {"list_name": "home", "title": ["Buy", "oat", "milk"], "tag": ["a", "b"], "version": False}
    assert _fast.parse(["add", "home"], {}, table) is None  # the variadic title is required
    assert _fast.parse(["add", "home", "x", "--version"], {}, table) is None


def _param() -> dict[str, Any]:
    return {
        "type": ("str",),
        "nargs": 1,
        "multiple": False,
        "required": True,
        "default": None,
        "envvar": (),
        "flag": False,
        "decline": False,
    }


def test_table_is_up_to_date() -> None:
    """cli/_table.py is what `python -m cli._gen` makes of the Typer app today."""
    assert _gen.TABLE.read_text() == _gen.render(), "cli/_table.py is out of date: run python -m cli._gen"
    assert _gen.main(["--check"]) == 0


def test_every_command_has_a_shared_body() -> None:
    """Every command of the app has its body in cli._commands, so none is left to the slow path."""
    for name, spec in _table.COMMANDS.items():
        assert spec["body"] is not None, f"todo {name}: move its body into cli._commands"
        assert callable(getattr(_commands, spec["body"])), name


def test_a_command_without_a_shared_body_is_declined() -> None:
    """A command recorded without a body (its code still in the Typer callback) goes to Typer."""
    table = {"stop": {**_table.COMMANDS["status"], "body": None}}
    assert _fast.parse(["stop"], {}, table) is None


def test_console_script_is_the_light_entry_point() -> None:
    """The installed `todo` script runs cli._main:main, not the Typer app."""
    [script] = [ep for ep in metadata.entry_points(group="console_scripts") if ep.name == "todo"]
    assert script.value == "cli._main:main"


# Run the way pip's console-script wrapper runs it, and report what got imported.
OPS = {
    "add": ["add"],
    "entries": ["entries", "lists"],
    "list": ["lists"],
    "status": ["status"],
    "find": ["find"],
    "today": ["find"],
}
NO_TYPER = """
import re, sys
from cli._main import main
code = main(sys.argv[1:])
HEAVY = {"typer", "click", "rich", "trio", "attrs", "inspect", "typing", "datetime"}
heavy = sorted({m.split(".")[0] for m in sys.modules} & HEAVY)
print("IMPORTED", ",".join(heavy), code)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["add", "home", "buy milk"],
        ["add", "home", "buy milk", "--date", "fri", "--tag", "a", "--tag", "b"],
        ["entries", "home", "--date", "+3d"],
        ["list", "--json"],
        ["status"],
        ["find", "--list", "home", "--tag", "a", "--from", "-1w", "--to", "tomorrow"],
        ["today"],
    ],
)
def test_a_fast_run_imports_no_typer(argv: list[str]) -> None:
    """A whole everyday `todo` run, against a daemon, never imports Typer, click, rich, inspect, typing or datetime."""
    root = tempfile.mkdtemp(prefix="todo-fast-", dir="/tmp")
    try:
        with FakeDaemon(os.path.join(root, "todod.sock")) as fake:
            env = {**os.environ, "TODOD_SOCKET": fake.path, "TODOD_NO_START": "1"}
            done = subprocess.run(
                [sys.executable, "-c", NO_TYPER, *argv], capture_output=True, text=True, env=env, timeout=60
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.splitlines()[-1] == "IMPORTED  0"
            # An empty `entries` answer makes it ask for the lists too, for its "no list" note.
            assert [r["op"] for r in fake.requests] == OPS[argv[0]]
    finally:
        shutil.rmtree(root, ignore_errors=True)


TYPER_PATH = "import sys\nfrom cli.app import main\nmain(sys.argv[1:])\n"
FAST_PATH = "import sys\nfrom cli._main import main\nsys.exit(main(sys.argv[1:]))\n"


def test_a_reader_gone_exits_the_same_on_both_paths() -> None:
    """When stdout's reader has gone (`todo entries home | head -0`), both paths exit 74 with nothing on stderr."""
    root = tempfile.mkdtemp(prefix="todo-pipe-", dir="/tmp")
    try:
        with FakeDaemon(os.path.join(root, "todod.sock")) as fake:
            env = {**os.environ, "TODOD_SOCKET": fake.path, "TODOD_NO_START": "1"}
            outcomes = []
            for code in (FAST_PATH, TYPER_PATH):
                fake.answer([ENTRY])
                read_end, write_end = os.pipe()
                os.close(read_end)  # no reader at all: the first write fails with EPIPE
                try:
                    done = subprocess.run(
                        [sys.executable, "-c", code, "entries", "home"],
                        stdout=write_end,
                        stderr=subprocess.PIPE,
                        env=env,
                        timeout=60,
                    )
                finally:
                    os.close(write_end)
                outcomes.append((done.returncode, done.stderr))
            assert outcomes[0] == outcomes[1] == (74, b""), outcomes
            assert [r["op"] for r in fake.requests] == ["entries", "entries"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_ctrl_c_exits_130_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C while waiting for the daemon exits 130 without a traceback, on either path."""

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(_client, "request", interrupted)
    typer = runner.invoke(app, ["list"])
    assert (typer.exit_code, typer.stdout, typer.stderr) == (130, "", "")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert _main.main(["list"]) == 130
    assert err.getvalue() == ""


def test_a_parser_function_is_called_as_click_calls_it() -> None:
    """A `parser=` type is called on the word; a failure declines; the generator takes only light modules."""
    import typer

    assert _fast._convert(("func", "os.path", "basename"), "/a/b") == "b"
    with pytest.raises(_fast._Decline):
        _fast._convert(("func", "builtins", "int"), "x")
    func_type = typer._click.types.FuncParamType
    assert _gen._type("w", func_type(_commands.exit_code)) == ("func", "cli._commands", "exit_code")
    with pytest.raises(_gen.Unsupported):
        _gen._type("w", func_type(lambda word: word))
