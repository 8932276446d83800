"""The bodies of the ``todo`` commands, shared by the Typer app and the fast path.

Each command function here takes the command's parameters by their Python
names (the names of the Typer callback's parameters, which ``cli/_table.py``
records), makes its request through :func:`cli._client.request`, prints the
result and returns the exit code.  ``cli.app``'s callbacks call them with
what Typer parsed; ``cli._main`` calls them with what ``cli._fast`` parsed.
So a command's request, output, error line and exit code are written once.

No Typer here: this module is on the fast path.  A command line that parses
but makes no sense raises :class:`UsageError` before anything is sent or
printed; the Typer app reports it as a usage error (exit 2), and the fast path
hands such a command line to the Typer app, which reports it the same way.

Exit codes (names from sysexits.h):

- 0: success.
- 1: the daemon reported an error (``not_found``, ``unavailable``, ``internal``,
  ``conflict``, ``compacted``).
- 2: usage error (from Typer, or an empty ``--date``, a bad ``--timeout`` or id).
- 65 (EX_DATAERR): the daemon rejected the data (``invalid``, ``bad_request``, ``too_large``),
  or a date word the CLI does not know (``--date nope``; an ``invalid`` error line).
- 69 (EX_UNAVAILABLE): no daemon answers and none could be started, it hung up,
  or it cannot be trusted (another user's socket directory or process).
- 74 (EX_IOERR): the command was done but its output could not be written.
- 75 (EX_TEMPFAIL): no answer in time (``--timeout``, the daemon's ``timeout``,
  a full listen backlog).

Every error is one line on stderr, ``todo: <code>: <message>``, or with
``--json`` one JSON object ``{"error": {"code": ..., "message": ...}}``; the
codes are the protocol's plus ``usage`` and ``io_error``.
"""

from __future__ import annotations

import sys
import time

from cli import _client, _dates, _paging, _procs, _render
from todod import paths, protocol

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the import: see todod/protocol.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Final, NoReturn, ParamSpec, TypedDict, Unpack

    P = ParamSpec("P")

    class Options(TypedDict):
        """The connection options every command but ``stop`` takes."""

        json: bool
        socket: str | None
        data_dir: str | None
        timeout: float
        no_start: bool


EX_OK: Final = 0
EX_ERROR: Final = 1
EX_USAGE: Final = 2
EX_DATAERR: Final = 65
EX_UNAVAILABLE: Final = 69
EX_IOERR: Final = 74
EX_TEMPFAIL: Final = 75
#: ``todo watch`` ended by Ctrl-C, as a shell reports a command killed by SIGINT.
EX_INTERRUPTED: Final = 130

_EXIT_BY_CODE: Final = {
    protocol.ErrorCode.INVALID: EX_DATAERR,
    protocol.ErrorCode.BAD_REQUEST: EX_DATAERR,
    protocol.ErrorCode.TOO_LARGE: EX_DATAERR,
    protocol.ErrorCode.TIMEOUT: EX_TEMPFAIL,
}

#: Seconds for one whole exchange with the daemon.  Requests take
#: milliseconds; the daemon's own deadlines are shorter than this, so a
#: timeout here means the daemon is stuck, not slow (but for an undo or a
#: redo of a large change, which the daemon gives more time: see
#: todod._core.REVERT_SECONDS_PER_EVENT).
DEFAULT_TIMEOUT: Final = 10.0

#: How long shell completion waits for the daemon's list names: a person is
#: waiting at a prompt, and a missing completion is better than a stuck one.
COMPLETION_TIMEOUT: Final = 0.5


class UsageError(Exception):
    """A command line that parses but makes no sense; raised before anything is sent."""


class _Exit(Exception):
    """Ends a command body early with an exit code (the error has been printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _command(body: Callable[P, None]) -> Callable[P, int]:
    """A command body that prints and may end in :class:`_Exit`, as a function returning the exit code."""

    def run(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            body(*args, **kwargs)
        except _Exit as done:
            return done.code
        return EX_OK

    run.__name__, run.__doc__ = body.__name__, body.__doc__
    return run


@_command
def add(
    *, list_name: str, title: list[str], date: str | None, tag: list[str] | None, **options: Unpack[Options]
) -> None:
    """Add an entry to LIST and print its id."""
    # cli._dates gives the local date without importing datetime.
    day = _resolve_date(date, options["json"]) or _dates.today()
    fields = {"list": list_name, "title": " ".join(title), "date": day, "tags": tag}
    entry = _call("add", fields, options)
    _write(_render.dump_json(entry) if options["json"] else f"{entry['id']}\n", options["json"])


@_command
def entries(*, list_name: str, date: str | None, **options: Unpack[Options]) -> None:
    """Show the entries of LIST."""
    deadline = time.monotonic() + options["timeout"]
    json = options["json"]
    day = _resolve_date(date, json)
    try:
        # Page by page as they come; --timeout bounds each page's exchange.
        shown = _paging.stream_entries(
            list_name,
            day,
            as_json=json,
            socket_path=paths.resolve_socket(options["socket"]),
            timeout=options["timeout"],
            data_dir=None if options["no_start"] else paths.resolve_data_dir(options["data_dir"]),
            write=lambda text: _write(text, json),
        )
    except protocol.TodoError as exc:
        _fail(exc, json)
    if not shown and not json:
        _note_missing_list(list_name, options["socket"], deadline)


@_command
def list_(**options: Unpack[Options]) -> None:
    """Show every list and how many entries it has."""
    result = _call("lists", {}, options)
    _write(_render.dump_json(result) if options["json"] else _render.lists(result), options["json"])


@_command
def update(
    *,
    list_name: str,
    entry_id: int,
    title: str | None,
    date: str | None,
    done: bool | None,
    tag: list[str] | None,
    untag: list[str] | None,
    if_version: int | None = None,
    **options: Unpack[Options],
) -> None:
    """Change the title, date, done mark or tags of entry ID in LIST."""
    if title is None and date is None and done is None and not tag and not untag:
        raise UsageError("nothing to change: give --title, --date, --done, --undone, --tag or --untag")
    fields = {
        "list": list_name,
        "entry": entry_id,
        "title": title,
        "date": _resolve_date(date, options["json"]),
        "done": done,
        "tag": tag or None,
        "untag": untag or None,
        "if_version": if_version,
    }
    entry = _call("update", fields, options)
    _write(_render.dump_json(entry) if options["json"] else _render.entries([entry]), options["json"])


@_command
def delete(*, list_name: str, entry_id: int, if_version: int | None = None, **options: Unpack[Options]) -> None:
    """Delete entry ID from LIST and show what it was."""
    entry = _call("delete", {"list": list_name, "entry": entry_id, "if_version": if_version}, options)
    _write(_render.dump_json(entry) if options["json"] else _render.entries([entry]), options["json"])


@_command
def move(
    *,
    list_name: str,
    entry_id: int,
    to_list: str,
    to: str | None,
    if_version: int | None = None,
    **options: Unpack[Options],
) -> None:
    """Move entry ID of LIST to list DEST (of the daemon at --to, if given): it is in exactly one of them."""
    json = options["json"]
    if to is not None and if_version is not None:
        raise UsageError("--if-version is for moves within a daemon, not with --to")
    to_socket = None if to is None else _absolute(to)
    fields = {"list": list_name, "entry": entry_id, "to_list": to_list, "to_socket": to_socket}
    fields["if_version"] = if_version
    if to_socket is None:
        result = _call("move", fields, options)
    else:
        result = _saga(fields, options)
    if result.get("state") == "cancelled":
        _fail(protocol.Conflict(f"the move was taken back: {result.get('message')}"), json)
    where = "" if to_socket is None else f" at {to_socket}"
    src, dst = _render.clean(list_name), _render.clean(to_list)
    text = f"moved {src} {result['from']['id']} to {dst} {result['to']['id']}{where}\n"
    _write(_render.dump_json(result) if json else text, json)


#: The test-only fault point of ``todo move --to`` (see tests/test_saga.py).
FAULT_ENV: Final = "TODO_FAULT"


def _saga(fields: dict[str, Any], options: Options) -> Any:
    """A move to another daemon: the source daemon runs the saga; this process only asks and waits."""
    import os

    try:
        with _client.Connection(
            paths.resolve_socket(options["socket"]),
            timeout=options["timeout"],
            data_dir=None if options["no_start"] else paths.resolve_data_dir(options["data_dir"]),
        ) as conn:
            conn.send(protocol.encode_request("move", **fields))
            if os.environ.get(FAULT_ENV) == "move:after-send":  # test-only: die with the request sent
                import signal

                os.kill(os.getpid(), signal.SIGKILL)
            return protocol.parse_response(conn.receive()).result
    except protocol.TodoError as exc:
        _fail(exc, options["json"])


def _absolute(path: str) -> str:
    import os.path

    return os.path.abspath(path)


@_command
def import_(*, list_name: str, file: str | None, format: str | None, **options: Unpack[Options]) -> None:
    """Import entries into LIST from FILE (or stdin), all or nothing."""
    from cli import _bulk

    json = options["json"]
    if format is not None and format not in ("csv", "jsonl", "json"):
        raise UsageError(f"--format is csv, jsonl or json (got {format!r})")
    try:
        stream = sys.stdin.buffer if file in (None, "-") else open(file, "rb")
    except OSError as exc:
        _error("io_error", f"cannot read {file}: {exc.strerror or exc}", EX_IOERR, json)
    try:
        progress = None
        if sys.stderr.isatty():
            import os

            size = os.fstat(stream.fileno()).st_size if stream is not sys.stdin.buffer else 0
            progress = _bulk.Progress(size or None)
        result = _bulk.import_stream(
            list_name,
            stream,
            format,
            socket_path=paths.resolve_socket(options["socket"]),
            timeout=options["timeout"],
            data_dir=None if options["no_start"] else paths.resolve_data_dir(options["data_dir"]),
            progress=progress,
        )
    except protocol.TodoError as exc:
        _fail(exc, json)
    except OSError as exc:
        _error("io_error", f"cannot read the input: {exc.strerror or exc}", EX_IOERR, json)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    count = result["count"]
    text = (
        f"imported {count} entries into {_render.clean(list_name)}"
        + (f" (ids {result['first']} to {result['last']})" if count else "")
        + "\n"
    )
    _write(_render.dump_json(result) if json else text, json)


@_command
def export(*, list_name: str, format: str, date: str | None, **options: Unpack[Options]) -> None:
    """Write the entries of LIST to stdout in a format that todo import reads back."""
    from cli import _bulk

    json = options["json"]
    if format not in ("csv", "jsonl", "json"):
        raise UsageError(f"--format is csv, jsonl or json (got {format!r})")
    day = _resolve_date(date, json)
    try:
        _bulk.export_stream(
            list_name,
            day,
            format,
            socket_path=paths.resolve_socket(options["socket"]),
            timeout=options["timeout"],
            data_dir=None if options["no_start"] else paths.resolve_data_dir(options["data_dir"]),
            write=lambda text: _write(text, json),
        )
    except protocol.TodoError as exc:
        _fail(exc, json)


@_command
def find(
    *,
    list_names: list[str] | None,
    date_from: str | None,
    date_to: str | None,
    pending: bool,
    done: bool,
    tag: list[str] | None,
    search: str | None,
    limit: int | None,
    **options: Unpack[Options],
) -> None:
    """Find entries across lists, in date order, then list, then id."""
    if pending and done:
        raise UsageError("--pending and --done exclude each other")
    json = options["json"]
    fields = {
        "lists": list_names or None,
        "from": _resolve_date(date_from, json),
        "to": _resolve_date(date_to, json),
        "done": True if done else False if pending else None,
        "tags": tag or None,
        "search": search,
    }
    try:
        # Page by page as they come; --limit is the total, --timeout bounds each page's exchange.
        shown, more = _paging.stream_found(
            fields,
            limit,
            as_json=json,
            socket_path=paths.resolve_socket(options["socket"]),
            timeout=options["timeout"],
            data_dir=None if options["no_start"] else paths.resolve_data_dir(options["data_dir"]),
            write=lambda text: _write(text, json),
        )
    except protocol.TodoError as exc:
        _fail(exc, json)
    if more:
        _note(f"showing the first {shown} entries; more match (narrow the query or raise --limit)")


@_command
def today(**options: Unpack[Options]) -> None:
    """Show what is pending and due today or overdue, across all lists, overdue first."""
    day = _dates.today()
    json = options["json"]
    agenda = _render.Agenda(day, _render.use_color(sys.stdout))
    try:
        _paging.stream_found(
            {"to": day, "done": False},
            None,
            as_json=json,
            socket_path=paths.resolve_socket(options["socket"]),
            timeout=options["timeout"],
            data_dir=None if options["no_start"] else paths.resolve_data_dir(options["data_dir"]),
            write=lambda text: _write(text, json),
            render=agenda.page,
        )
    except protocol.TodoError as exc:
        _fail(exc, json)


@_command
def history(*, list_name: str, limit: int | None, **options: Unpack[Options]) -> None:
    """Show the changes made to LIST, oldest first."""
    json = options["json"]
    try:
        # Page by page as they come; --limit is the total (the last N), --timeout bounds each page's exchange.
        _paging.stream_history(
            list_name,
            limit,
            as_json=json,
            socket_path=paths.resolve_socket(options["socket"]),
            timeout=options["timeout"],
            data_dir=None if options["no_start"] else paths.resolve_data_dir(options["data_dir"]),
            write=lambda text: _write(text, json),
        )
    except protocol.TodoError as exc:
        _fail(exc, json)


@_command
def undo(*, list_name: str, steps: int, if_seq: int | None, **options: Unpack[Options]) -> None:
    """Revert the last changes of LIST, newest first, and show the entries they touched."""
    _revert("undo", list_name, steps, if_seq, options)


@_command
def redo(*, list_name: str, steps: int, if_seq: int | None, **options: Unpack[Options]) -> None:
    """Re-apply what undo reverted in LIST (until a new change is made)."""
    _revert("redo", list_name, steps, if_seq, options)


@_command
def watch(*, list_name: str | None, since: int | None, **options: Unpack[Options]) -> None:
    """Print changes as they happen, one per line, until interrupted (exit 130 on Ctrl-C)."""
    json = options["json"]
    try:
        for event in _client.subscribe(
            "watch",
            {"list": list_name, "since": since},
            socket_path=paths.resolve_socket(options["socket"]),
            timeout=options["timeout"],
            data_dir=None if options["no_start"] else paths.resolve_data_dir(options["data_dir"]),
        ):
            _write(_render.dump_line(event) if json else _render.event(event), json)
    except protocol.TodoError as exc:
        _fail(exc, json)
    except KeyboardInterrupt:
        raise _Exit(EX_INTERRUPTED) from None


@_command
def compact(*, keep_days: int, **options: Unpack[Options]) -> None:
    """Drop older changes from the log; every list keeps its current entries."""
    result = _call("compact", {"keep_days": keep_days}, options)
    text = (
        _render.dump_json(result)
        if options["json"]
        else f"dropped {result['dropped']} event(s); the log now starts after position {result['horizon']}\n"
    )
    _write(text, options["json"])


@_command
def status(**options: Unpack[Options]) -> None:
    """Show the daemon's version, uptime, socket, data and statistics."""
    result = _call("status", {}, options)
    _write(_render.dump_json(result) if options["json"] else _render.status(result), options["json"])


@_command
def stop(*, json: bool, socket: str | None, timeout: float) -> None:
    """Stop the daemon cleanly and wait until it has exited (never starts one)."""
    deadline = time.monotonic() + timeout
    socket_path = paths.resolve_socket(socket)
    try:
        result = _client.request("stop", {}, socket_path=socket_path, timeout=timeout, data_dir=None)
    except _client.NotRunning:
        # A daemon whose socket file is gone cannot hear the op, but it still
        # runs (for up to a second, until it notices) and still holds the
        # lock: stop it with SIGTERM, the same clean stop, and wait for it.
        holder = _procs.lock_holder(socket_path)
        if holder is None:
            if not json:
                _note(f"no daemon at {socket_path}; nothing to stop")
            _write(_render.dump_json({"pid": None}) if json else "", json)
            return
        try:
            _procs.terminate(holder)
        except PermissionError:
            _fail(_client.Unreachable(f"cannot stop todod pid {holder}: it is not yours"), json)
        result = {"pid": holder}
    except protocol.TodoError as exc:
        _fail(exc, json)
    pid = result.get("pid") if isinstance(result, dict) else None
    if isinstance(pid, int) and not _procs.wait_exited(pid, deadline):
        _fail(protocol.Timeout(f"todod (pid {pid}) is stopping but has not exited within {timeout:g} s"), json)
    _write(_render.dump_json({"pid": pid}) if json else f"stopped todod (pid {pid})\n", json)


def list_names(socket: str | None, incomplete: str) -> list[str]:
    """The daemon's list names that start with ``incomplete``, for shell completion.

    Asks the daemon with a short timeout and never starts one; any failure
    gives no names, since a completion must never print an error into a
    person's command line.
    """
    try:
        result = _client.request(
            "lists", {}, socket_path=paths.resolve_socket(socket), timeout=COMPLETION_TIMEOUT, data_dir=None
        )
        names = [item["name"] for item in result]
    except (protocol.TodoError, TypeError, KeyError):
        return []
    return [name for name in names if isinstance(name, str) and name.startswith(incomplete)]


def exit_code(exc: protocol.TodoError) -> int:
    """The exit code for an error: see the module docstring."""
    if isinstance(exc, _client.Unreachable):
        return EX_UNAVAILABLE
    return _EXIT_BY_CODE.get(exc.code, EX_ERROR)


def _call(op: str, fields: dict[str, Any], options: Options, *, on_timeout: str | None = None) -> Any:
    """Make the request; on an error, print it to stderr and end the command with its code.

    ``on_timeout``: said after a timeout's message (what the daemon may still do).
    """
    try:
        return _client.request(
            op,
            fields,
            socket_path=paths.resolve_socket(options["socket"]),
            timeout=options["timeout"],
            data_dir=None if options["no_start"] else paths.resolve_data_dir(options["data_dir"]),
        )
    except protocol.TodoError as exc:
        # A full listen backlog (Busy) is a timeout in which nothing was sent.
        if on_timeout and isinstance(exc, protocol.Timeout) and not isinstance(exc, _client.Busy):
            exc = protocol.Timeout(f"{exc}; {on_timeout}")
        _fail(exc, options["json"])


def _revert(op: str, list_name: str, steps: int, if_seq: int | None, options: Options) -> None:
    """An undo or a redo, and the entries it touched; a timeout says what it may still do.

    A large change (an import) takes the daemon longer to revert.  Typed
    again at once, it would revert the change before that one too, once the
    first is applied: ``--if-seq`` makes it refuse that instead.
    """
    import shlex  # only on this path

    name = shlex.quote(list_name)
    note = (
        f"the {op} may still be applied (a large change takes longer): see 'todo history -- {name}', "
        f"and {op} again with --if-seq set to the list's last seq so that it reverts nothing else"
    )
    result = _call(op, {"list": list_name, "steps": steps, "if_seq": if_seq}, options, on_timeout=note)
    _write(_render.dump_json(result) if options["json"] else _render.entries(result), options["json"])


def _resolve_date(text: str | None, json: bool) -> str | None:
    """A date option resolved to ISO (relative words in local time); an unknown form ends the command with 65.

    Both paths get here with the word as typed, checked only for being
    non-empty (``cli._params.date``), so both resolve it alike.
    """
    if text is None:
        return None
    try:
        return _dates.resolve(text)
    except _dates.DateError as exc:
        _fail(protocol.Invalid(str(exc)), json)


def _note_missing_list(list_name: str, socket: str | None, deadline: float) -> None:
    """Tell a person on stderr that ``list_name`` does not exist, with near names if any.

    Best effort, within what is left of the command's ``--timeout``
    (``deadline``): the ``lists`` request it needs is only made for an empty
    result, and if it fails the note is left out.
    """
    left = deadline - time.monotonic()
    if left <= 0:
        return
    try:
        lists = _client.request("lists", {}, socket_path=paths.resolve_socket(socket), timeout=left, data_dir=None)
    except protocol.TodoError:
        return
    names = [item["name"] for item in lists if isinstance(item, dict) and isinstance(item.get("name"), str)]
    if list_name.strip() in names:  # the daemon strips names as todod._model does
        return
    import difflib  # only for this note

    near = difflib.get_close_matches(list_name, names, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(_render.clean(n)) for n in near)}?)" if near else ""
    _note(f"no list {_render.clean(list_name)!r}{hint}")


def _note(message: str) -> None:
    """One ``todo: ...`` line on stderr that is not an error (the exit code stays 0)."""
    try:
        sys.stderr.write(f"todo: {message}\n")
    except (OSError, ValueError, AttributeError):
        pass


def output(text: str, json: bool) -> int:
    """Print a command's output and return 0; if stdout fails, report it and return 74 (the command was done).

    A reader that went away (``| head``) is not reported, only exited for.
    """
    try:
        _render.write(text)
    except _render.OutputError as exc:
        if not exc.quiet:
            _render.write_error("io_error", str(exc), json)
        return EX_IOERR
    return EX_OK


def _write(text: str, json: bool) -> None:
    """:func:`output`, ending the command if stdout failed."""
    code = output(text, json)
    if code:
        raise _Exit(code)


def _fail(exc: protocol.TodoError, json: bool = False) -> NoReturn:
    _error(exc.code, exc.message, exit_code(exc), json)


def _error(code: str, message: str, status: int, json: bool) -> NoReturn:
    """Print one error (a line, or with ``--json`` a JSON object) on stderr and end with ``status``."""
    _render.write_error(code, message, json)
    raise _Exit(status) from None
