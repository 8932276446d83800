"""The ``todo`` commands: one blocking request to todod per command.

Every command takes the connection options (``--json``, ``--socket``,
``--data-dir``, ``--timeout``, ``--no-start``) itself, so they go after the
command name: ``todo add --json home "buy milk"``.

Exit codes (names from sysexits.h):

- 0: success.
- 1: the daemon reported an error (``not_found``, ``unavailable``, ``internal``).
- 2: usage error (reported by Typer).
- 65 (EX_DATAERR): the daemon rejected the data (``invalid``, ``bad_request``, ``too_large``).
- 69 (EX_UNAVAILABLE): no daemon answers and none could be started, or it hung up.
- 75 (EX_TEMPFAIL): no answer in time (``--timeout``, or the daemon's ``timeout``).

Start time is the point of this module's shape: Typer without completion or
pretty exceptions, and nothing imported that only some commands need.
"""

import sys
import time
from collections.abc import Callable
from typing import Annotated, Any, Final, NoReturn

from cli import _client, _lazy, _paging, _render
from todod import paths, protocol

# Modules that Typer's imports pull in and `todo` hardly ever uses stay unrun
# until used, 7-14 ms of a ~145 ms `todo add` here: see cli/_lazy.py.
with _lazy.deferred_imports():
    import typer

EX_ERROR: Final = 1
EX_DATAERR: Final = 65
EX_UNAVAILABLE: Final = 69
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

app = typer.Typer(
    name="todo",
    help="Keep to-do lists in the todod daemon (started on first use).",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)

ListName = Annotated[str, typer.Argument(metavar="LIST", help="The list's name.", show_default=False)]
EntryId = Annotated[int, typer.Argument(metavar="ID", min=0, help="The entry's id.", show_default=False)]
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
    float, typer.Option("--timeout", metavar="SECONDS", min=0.001, help="Give up after this long.")
]
NoStart = Annotated[
    bool,
    typer.Option("--no-start", envvar="TODOD_NO_START", help="Do not start the daemon if it is not running."),
]


@app.command()
def add(
    list_name: ListName,
    title: Annotated[str, typer.Argument(metavar="TITLE", help="What to do.", show_default=False)],
    date: Annotated[
        str | None,
        typer.Option(
            "--date", metavar="YYYY-MM-DD", help="The entry's date (default: today).", show_default=False
        ),
    ] = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Add an entry to LIST and print its id."""
    # time.strftime gives the local date without importing datetime.
    fields = {"list": list_name, "title": title, "date": date or time.strftime("%Y-%m-%d")}
    entry = _call("add", fields, socket, data_dir, timeout, no_start)
    _render.write(_render.dump_json(entry) if json else f"{entry['id']}\n")


@app.command()
def entries(
    list_name: ListName,
    date: Annotated[
        str | None,
        typer.Option(
            "--date", metavar="YYYY-MM-DD", help="Only the entries of this date.", show_default=False
        ),
    ] = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Show the entries of LIST, page by page as they come (--timeout is per page)."""
    try:
        _paging.stream_entries(
            list_name,
            date,
            as_json=json,
            socket_path=paths.resolve_socket(socket),
            timeout=timeout,
            data_dir=None if no_start else paths.resolve_data_dir(data_dir),
        )
    except protocol.TodoError as exc:
        _fail(exc)


@app.command("list")
def list_(
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Show every list and how many entries it has."""
    result = _call("lists", {}, socket, data_dir, timeout, no_start)
    _render.write(_render.dump_json(result) if json else _render.lists(result))


@app.command()
def update(
    list_name: ListName,
    entry_id: EntryId,
    title: Annotated[str | None, typer.Option("--title", help="A new title.", show_default=False)] = None,
    date: Annotated[
        str | None, typer.Option("--date", metavar="YYYY-MM-DD", help="A new date.", show_default=False)
    ] = None,
    done: Annotated[
        bool | None,
        typer.Option("--done/--undone", help="Mark the entry done or not done.", show_default=False),
    ] = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Change the title, date or done mark of entry ID in LIST."""
    if title is None and date is None and done is None:
        raise typer.BadParameter("nothing to change: give --title, --date, --done or --undone")
    fields = {"list": list_name, "entry": entry_id, "title": title, "date": date, "done": done}
    entry = _call("update", fields, socket, data_dir, timeout, no_start)
    _render.write(_render.dump_json(entry) if json else _render.entries([entry]))


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
    entry = _call("delete", {"list": list_name, "entry": entry_id}, socket, data_dir, timeout, no_start)
    _render.write(_render.dump_json(entry) if json else _render.entries([entry]))


@app.command()
def status(
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Show the daemon's version, uptime and statistics."""
    result = _call("status", {}, socket, data_dir, timeout, no_start)
    _render.write(_render.dump_json(result) if json else _render.status(result))


def _call(
    op: str, fields: dict[str, Any], socket: str | None, data_dir: str | None, timeout: float, no_start: bool
) -> Any:
    """Make the request; on an error, print one line to stderr and exit with its code."""
    try:
        return _client.request(
            op,
            fields,
            socket_path=paths.resolve_socket(socket),
            timeout=timeout,
            data_dir=None if no_start else paths.resolve_data_dir(data_dir),
        )
    except protocol.TodoError as exc:
        _fail(exc)


def _fail(exc: protocol.TodoError) -> NoReturn:
    sys.stderr.write(f"todo: {exc.code.replace('_', ' ')}: {_render.clean(exc.message)}\n")
    raise typer.Exit(exit_code(exc)) from None


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
        app(args=args, prog_name="todo")
        return
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command(args[0])(callback)
    single(args=args[1:], prog_name=f"todo {args[0]}")


#: The commands by name, for :func:`main`'s fast path (a test checks that it
#: matches the app's commands).
_COMMANDS: Final[dict[str, Callable[..., None]]] = {
    "add": add,
    "entries": entries,
    "list": list_,
    "update": update,
    "delete": delete,
    "status": status,
}
