"""The ``todo`` commands: one blocking request to todod per command.

Every command takes the connection options (``--json``, ``--socket``,
``--data-dir``, ``--timeout``, ``--no-start``) itself, so they go after the
command name: ``todo add --json home buy milk``.

Exit codes (names from sysexits.h):

- 0: success.
- 1: the daemon reported an error (``not_found``, ``unavailable``, ``internal``).
- 2: usage error (from Typer, or an empty ``--date``, a bad ``--timeout`` or id).
- 65 (EX_DATAERR): the daemon rejected the data (``invalid``, ``bad_request``, ``too_large``).
- 69 (EX_UNAVAILABLE): no daemon answers and none could be started, it hung up,
  or it cannot be trusted (another user's socket directory or process).
- 74 (EX_IOERR): the command was done but its output could not be written.
- 75 (EX_TEMPFAIL): no answer in time (``--timeout``, the daemon's ``timeout``,
  a full listen backlog).

Every error is one line on stderr, ``todo: <code>: <message>``, or with
``--json`` one JSON object ``{"error": {"code": ..., "message": ...}}``; the
codes are the protocol's plus ``usage`` and ``io_error``.

Start time is the point of this module's shape: Typer without completion or
pretty exceptions, and nothing imported that only some commands need.
"""

import gc
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any, Final, NoReturn

from cli import _client, _dates, _lazy, _procs, _render
from todod import __version__, paths, protocol

# Modules that Typer's imports pull in and `todo` hardly ever uses stay unrun
# until used, 7-14 ms of a ~145 ms `todo add` here: see cli/_lazy.py.
with _lazy.deferred_imports():
    import typer

    from cli import _usage  # imports Typer too: inside the block


EX_ERROR: Final = 1
EX_USAGE: Final = 2
EX_DATAERR: Final = 65
EX_UNAVAILABLE: Final = 69
EX_IOERR: Final = 74
EX_TEMPFAIL: Final = 75

_EXIT_BY_CODE: Final = {
    protocol.ErrorCode.INVALID: EX_DATAERR,
    protocol.ErrorCode.BAD_REQUEST: EX_DATAERR,
    protocol.ErrorCode.TOO_LARGE: EX_DATAERR,
    protocol.ErrorCode.TIMEOUT: EX_TEMPFAIL,
}

#: Seconds for one whole exchange with the daemon.  Requests take
#: milliseconds; the daemon's own deadlines are shorter than this, so a
#: timeout here means the daemon is stuck, not slow.
DEFAULT_TIMEOUT: Final = 10.0

#: The longest ``--timeout``: an hour.  Requests take milliseconds and the
#: daemon's own deadlines are seconds, so a longer wait is a typo (``1e12``),
#: and a socket timeout must fit the kernel's timeval.
MAX_TIMEOUT: Final = 3600.0

app = typer.Typer(
    name="todo",
    help="Keep to-do lists in the todod daemon (started on first use).",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)


def _entry_id(value: str | int) -> int:
    """An entry id: ASCII digits only (no ``+3``, `` 3``, ``1_0``, no other script's digits), at most 2^63-1."""
    text = str(value)
    if not (text.isascii() and text.isdigit()):
        raise typer.BadParameter(f"an entry id is a number written with the digits 0-9 (got {text!r})")
    if len(text.lstrip("0")) > len(str(protocol.MAX_INT)) or int(text) > protocol.MAX_INT:
        raise typer.BadParameter(f"an entry id is at most {protocol.MAX_INT} (got {text[:40]})")
    return int(text)


_entry_id.__name__ = "integer"  # what --help shows as its type


def _timeout(value: str | float) -> float:
    """A ``--timeout``: a number of seconds above 0 and at most :data:`MAX_TIMEOUT` (not nan or inf)."""
    try:
        seconds = float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= MAX_TIMEOUT:  # also false for nan
        raise typer.BadParameter(f"a timeout is above 0 and at most {MAX_TIMEOUT:g} seconds (got {value})")
    return seconds


def _date(value: str) -> str:
    """A ``--date`` as given, but never empty: a script's empty variable must not mean "today"."""
    if not value.strip():
        raise typer.BadParameter(f"a date must not be empty ({_DATE_HELP[:-1]}); leave the option out for none")
    return value


ListName = Annotated[str, typer.Argument(metavar="LIST", help="The list's name.", show_default=False)]
EntryId = Annotated[
    int, typer.Argument(metavar="ID", parser=_entry_id, help="The entry's id.", show_default=False)
]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
Socket = Annotated[
    str | None,
    typer.Option(
        "--socket",
        metavar="PATH",
        help="The daemon's socket (default: $TODOD_SOCKET, else $XDG_RUNTIME_DIR/todod.sock).",
        show_default=False,
    ),
]
DataDir = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        metavar="DIR",
        help="Where an auto-started daemon keeps its data "
        "(default: $TODOD_DATA_DIR, else $XDG_DATA_HOME/todod).",
        show_default=False,
    ),
]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        parser=_timeout,
        help=f"Give up after this long (at most {MAX_TIMEOUT:g}).",
    ),
]
NoStart = Annotated[
    bool,
    typer.Option("--no-start", envvar="TODOD_NO_START", help="Do not start the daemon if it is not running."),
]
Tags = Annotated[
    list[str] | None,
    typer.Option(
        "--tag",
        metavar="TAG",
        help="A tag (a word of letters, digits, '-', '_'); repeat for more.",
        show_default=False,
    ),
]
#: The date forms, for the help of every date option.
_DATE_HELP: Final = "YYYY-MM-DD, today, tomorrow, yesterday, +3d, -2d, +1w or mon..sun."


def _version(value: bool) -> None:
    if value:
        _write(f"todo {__version__}\n", False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Keep to-do lists in the todod daemon (started on first use)."""


@app.command()
def add(
    list_name: ListName,
    title: Annotated[
        list[str],
        typer.Argument(
            metavar="TITLE...", help="What to do: the remaining words, joined by spaces.", show_default=False
        ),
    ],
    date: Annotated[
        str | None,
        typer.Option(
            "--date",
            metavar="DATE",
            parser=_date,
            help="The entry's date (default: today): " + _DATE_HELP,
            show_default=False,
        ),
    ] = None,
    tag: Tags = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Add an entry to LIST and print its id."""
    # cli/_dates.py gives the local date without importing datetime.
    day = _resolve_date(date, json) or _dates.today()
    fields = {"list": list_name, "title": " ".join(title), "date": day, "tags": tag}
    entry = _call("add", fields, socket, data_dir, timeout, no_start, json)
    _write(_render.dump_json(entry) if json else f"{entry['id']}\n", json)


@app.command()
def entries(
    list_name: ListName,
    date: Annotated[
        str | None,
        typer.Option(
            "--date",
            metavar="DATE",
            parser=_date,
            help="Only the entries of this date: " + _DATE_HELP,
            show_default=False,
        ),
    ] = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Show the entries of LIST."""
    deadline = time.monotonic() + timeout
    fields = {"list": list_name, "date": _resolve_date(date, json)}
    result = _call("entries", fields, socket, data_dir, timeout, no_start, json)
    if not result and not json:
        _note_missing_list(list_name, socket, deadline)
    _write(_render.dump_json(result) if json else _render.entries(result), json)


@app.command("list")
def list_(
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Show every list and how many entries it has."""
    result = _call("lists", {}, socket, data_dir, timeout, no_start, json)
    _write(_render.dump_json(result) if json else _render.lists(result), json)


@app.command()
def update(
    list_name: ListName,
    entry_id: EntryId,
    title: Annotated[str | None, typer.Option("--title", help="A new title.", show_default=False)] = None,
    date: Annotated[
        str | None,
        typer.Option("--date", metavar="DATE", parser=_date, help="A new date: " + _DATE_HELP, show_default=False),
    ] = None,
    done: Annotated[
        bool | None,
        typer.Option("--done/--undone", help="Mark the entry done or not done.", show_default=False),
    ] = None,
    tag: Tags = None,
    untag: Annotated[
        list[str] | None,
        typer.Option("--untag", metavar="TAG", help="A tag to remove; repeat for more.", show_default=False),
    ] = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Change the title, date, done mark or tags of entry ID in LIST."""
    if title is None and date is None and done is None and not tag and not untag:
        raise typer.BadParameter("nothing to change: give --title, --date, --done, --undone, --tag or --untag")
    fields = {
        "list": list_name,
        "entry": entry_id,
        "title": title,
        "date": _resolve_date(date, json),
        "done": done,
        "tag": tag or None,
        "untag": untag or None,
    }
    entry = _call("update", fields, socket, data_dir, timeout, no_start, json)
    _write(_render.dump_json(entry) if json else _render.entries([entry]), json)


@app.command()
def delete(
    list_name: ListName,
    entry_id: EntryId,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Delete entry ID from LIST and show what it was."""
    entry = _call("delete", {"list": list_name, "entry": entry_id}, socket, data_dir, timeout, no_start, json)
    _write(_render.dump_json(entry) if json else _render.entries([entry]), json)


@app.command()
def find(
    list_names: Annotated[
        list[str] | None,
        typer.Option("--list", metavar="LIST", help="Only this list; repeat for any of several.", show_default=False),
    ] = None,
    date_from: Annotated[
        str | None,
        typer.Option(
            "--from", metavar="DATE", parser=_date, help="Dated on or after: " + _DATE_HELP, show_default=False
        ),
    ] = None,
    date_to: Annotated[
        str | None,
        typer.Option("--to", metavar="DATE", parser=_date, help="Dated on or before DATE.", show_default=False),
    ] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Only entries not done.")] = False,
    done: Annotated[bool, typer.Option("--done", help="Only entries done.")] = False,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag", metavar="TAG", help="Only entries with this tag; repeat for all of several.", show_default=False
        ),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            "--search",
            metavar="TEXT",
            help="Titles holding every word of TEXT, in any case (words of 3+ characters also inside words).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            metavar="N",
            min=1,
            max=protocol.MAX_FIND,
            help="At most N entries (default and most: 10000).",
            show_default=False,
        ),
    ] = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Find entries across lists, in date order, then list, then id."""
    if pending and done:
        raise typer.BadParameter("--pending and --done exclude each other")
    fields = {
        "lists": list_names or None,
        "from": _resolve_date(date_from, json),
        "to": _resolve_date(date_to, json),
        "done": True if done else False if pending else None,
        "tags": tag or None,
        "search": search,
        "limit": limit,
    }
    result = _query(fields, socket, data_dir, timeout, no_start, json)
    _found(result, json, _render.found)


@app.command()
def today(
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Show what is pending and due today or overdue, across all lists, overdue first."""
    day = _dates.today()
    result = _query({"to": day, "done": False}, socket, data_dir, timeout, no_start, json)
    _found(result, json, lambda items: _render.agenda(items, day, _render.use_color(sys.stdout)))


def _query(
    fields: dict[str, Any], socket: str | None, data_dir: str | None, timeout: float, no_start: bool, json: bool
) -> Any:
    """Make a ``find`` request, whose answer can hold thousands of entries."""
    # Decoding and laying out 10,000 entries makes some 100,000 objects;
    # frozen, the objects of the start (Typer's) are no longer walked by
    # every full collection that their allocation triggers.
    gc.freeze()
    return _call("find", fields, socket, data_dir, timeout, no_start, json)


def _found(result: Any, json: bool, render: Callable[[Any], str]) -> None:
    items = result["entries"]
    _write(_render.dump_json(items) if json else render(items), json)
    if result.get("more"):
        _note(f"showing the first {len(items)} entries; more match (narrow the query or raise --limit)")


@app.command()
def status(
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Show the daemon's version, uptime, socket, data and statistics."""
    result = _call("status", {}, socket, data_dir, timeout, no_start, json)
    _write(_render.dump_json(result) if json else _render.status(result), json)


@app.command()
def stop(
    json: Json = False,
    socket: Socket = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Stop the daemon cleanly and wait until it has exited (never starts one)."""
    deadline = time.monotonic() + timeout
    socket_path = paths.resolve_socket(socket)
    try:
        result = _client.request("stop", {}, socket_path=socket_path, timeout=timeout, data_dir=None)
    except _client.NotRunning:
        if not json:
            _note(f"no daemon at {socket_path}; nothing to stop")
        _write(_render.dump_json({"pid": None}) if json else "", json)
        return
    except protocol.TodoError as exc:
        _fail(exc, json)
    pid = result.get("pid") if isinstance(result, dict) else None
    if isinstance(pid, int) and not _procs.wait_exited(pid, deadline):
        _fail(protocol.Timeout(f"todod (pid {pid}) is stopping but has not exited within {timeout:g} s"), json)
    _write(_render.dump_json({"pid": pid}) if json else f"stopped todod (pid {pid})\n", json)


def _resolve_date(text: str | None, json: bool) -> str | None:
    """A date option resolved to ISO (relative words in local time); an unknown form exits 65."""
    if text is None:
        return None
    try:
        return _dates.resolve(text)
    except _dates.DateError as exc:
        _fail(protocol.Invalid(str(exc)), json)


def _call(
    op: str,
    fields: dict[str, Any],
    socket: str | None,
    data_dir: str | None,
    timeout: float,
    no_start: bool,
    json: bool = False,
) -> Any:
    """Make the request; on an error, print it to stderr and exit with its code."""
    try:
        return _client.request(
            op,
            fields,
            socket_path=paths.resolve_socket(socket),
            timeout=timeout,
            data_dir=None if no_start else paths.resolve_data_dir(data_dir),
        )
    except protocol.TodoError as exc:
        _fail(exc, json)


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
    if list_name in names:
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


def _write(text: str, json: bool) -> None:
    """Print a command's output; if stdout fails, report it and exit 74 (the command was done)."""
    try:
        _render.write(text)
    except _render.OutputError as exc:
        if exc.quiet:
            raise typer.Exit(EX_IOERR) from None
        _error("io_error", str(exc), EX_IOERR, json)


def _fail(exc: protocol.TodoError, json: bool = False) -> NoReturn:
    _error(exc.code, exc.message, exit_code(exc), json)


def _error(code: str, message: str, status: int, json: bool) -> NoReturn:
    """Print one error (a line, or with ``--json`` a JSON object) on stderr and exit with ``status``."""
    _render.write_error(code, message, json)
    raise typer.Exit(status) from None


def exit_code(exc: protocol.TodoError) -> int:
    """The exit code for an error: see the module docstring."""
    if isinstance(exc, _client.Unreachable):
        return EX_UNAVAILABLE
    return _EXIT_BY_CODE.get(exc.code, EX_ERROR)


def main(argv: list[str] | None = None) -> None:
    """The ``todo`` console script.

    Typer turns every command's signature into a click command on each run
    (about 2 ms a command here).  When the first argument names a command,
    only that one is built, as a one-command app that Typer runs as its root;
    anything else (``todo``, ``todo --help``, a misspelt command) gets the
    whole app, so help and usage errors are unchanged.
    """
    args = sys.argv[1:] if argv is None else argv
    callback = _COMMANDS.get(args[0]) if args else None
    if callback is None:
        _usage.run(app, args, "todo")
        return
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command(args[0])(callback)
    _usage.run(single, args[1:], f"todo {args[0]}")


#: The commands by name, for :func:`main`'s fast path (a test checks that it
#: matches the app's commands).
_COMMANDS: Final[dict[str, Callable[..., None]]] = {
    "add": add,
    "entries": entries,
    "list": list_,
    "update": update,
    "delete": delete,
    "find": find,
    "today": today,
    "status": status,
    "stop": stop,
}
