"""The ``todo`` commands: one blocking request to todod per command.

Every command takes the connection options (``--json``, ``--socket``,
``--data-dir``, ``--timeout``, ``--no-start``) itself, so they go after the
command name: ``todo add --json home buy milk``.

This module is the definition of the command line: its names, arguments,
options, help, usage errors and shell completion.  The command bodies live in
``cli._commands`` (exit codes and error lines there), and the parameter types
in ``cli._params``, shared with the fast path of ``cli._main``, which runs
everyday command lines without importing Typer after parsing them by the
table that ``cli._gen`` derives from this app.  After changing a command or
option here, run ``python -m cli._gen``.
"""

import functools
import sys
from collections.abc import Callable
from typing import Annotated, Any, Final

from cli import _commands, _lazy, _params
from cli._commands import (
    DEFAULT_TIMEOUT,
    EX_DATAERR,
    EX_ERROR,
    EX_IOERR,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    exit_code,
)
from cli._params import MAX_TIMEOUT
from todod import __version__

# Modules that Typer's imports pull in and `todo` hardly ever uses stay unrun
# until used, 7-14 ms of every Typer run (help, usage errors, each completion
# request of the shell): see cli/_lazy.py.
with _lazy.deferred_imports():
    import typer

    from cli import _usage  # imports Typer too: inside the block


__all__ = [
    "DEFAULT_TIMEOUT",
    "EX_DATAERR",
    "EX_ERROR",
    "EX_IOERR",
    "EX_TEMPFAIL",
    "EX_UNAVAILABLE",
    "EX_USAGE",
    "MAX_TIMEOUT",
    "app",
    "exit_code",
    "main",
]

app = typer.Typer(
    name="todo",
    help="Keep to-do lists in the todod daemon (started on first use).",
    # `todo --install-completion` / `--show-completion`; the completion
    # requests themselves (_TODO_COMPLETE set) are run by Typer, never by the fast path.
    add_completion=True,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)


def _parser(parse: Callable[[str], Any], name: str | None = None) -> Callable[[str], Any]:
    """A ``cli._params`` function as a Typer ``parser=``: its ValueError becomes Typer's usage error.

    The wrapper keeps the function as ``__wrapped__``, which ``cli._gen``
    records so that the fast path calls the function itself.
    """

    @functools.wraps(parse)
    def typer_parse(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    if name is not None:
        typer_parse.__name__ = name  # what --help shows as its type
    return typer_parse


def _complete_list(ctx: typer.Context, incomplete: str) -> list[str]:
    """The daemon's list names for shell completion (on ``--socket`` if given so far)."""
    socket = ctx.params.get("socket")
    return _commands.list_names(socket if isinstance(socket, str) else None, incomplete)


ListName = Annotated[
    str,
    typer.Argument(metavar="LIST", help="The list's name.", show_default=False, autocompletion=_complete_list),
]
EntryId = Annotated[
    int,
    typer.Argument(
        metavar="ID", parser=_parser(_params.entry_id, "integer"), help="The entry's id.", show_default=False
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
Socket = Annotated[
    str | None,
    typer.Option(
        "--socket",
        metavar="PATH",
        parser=_parser(_params.path, "path"),
        help="The daemon's socket (default: $TODOD_SOCKET, else $XDG_RUNTIME_DIR/todod.sock).",
        show_default=False,
    ),
]
DataDir = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        metavar="DIR",
        parser=_parser(_params.path, "path"),
        help="Where an auto-started daemon keeps its data (default: $TODOD_DATA_DIR, else $XDG_DATA_HOME/todod).",
        show_default=False,
    ),
]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        parser=_parser(_params.timeout),
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
IfVersion = Annotated[
    int | None,
    typer.Option(
        "--if-version",
        metavar="N",
        parser=_parser(_params.number, "integer"),
        help="Refuse (conflict) unless the entry is still at version N.",
        show_default=False,
    ),
]
Steps = Annotated[
    int,
    typer.Option("--steps", metavar="N", parser=_parser(_params.number, "integer"), help="How many changes."),
]
IfSeq = Annotated[
    int | None,
    typer.Option(
        "--if-seq",
        metavar="SEQ",
        parser=_parser(_params.number, "integer"),
        help="Refuse (conflict) unless the list's last change is still SEQ (see todo history).",
        show_default=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        raise typer.Exit(_commands.output(f"todo {__version__}\n", False))


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
            parser=_parser(_params.date),
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
    _run(_commands.add, locals())


@app.command()
def entries(
    list_name: ListName,
    date: Annotated[
        str | None,
        typer.Option(
            "--date",
            metavar="DATE",
            parser=_parser(_params.date),
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
    _run(_commands.entries, locals())


@app.command("list")
def list_(
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Show every list and how many entries it has."""
    _run(_commands.list_, locals())


@app.command()
def update(
    list_name: ListName,
    entry_id: EntryId,
    title: Annotated[str | None, typer.Option("--title", help="A new title.", show_default=False)] = None,
    date: Annotated[
        str | None,
        typer.Option(
            "--date", metavar="DATE", parser=_parser(_params.date), help="A new date: " + _DATE_HELP, show_default=False
        ),
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
    if_version: IfVersion = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Change the title, date, done mark or tags of entry ID in LIST."""
    _run(_commands.update, locals())


@app.command()
def delete(
    list_name: ListName,
    entry_id: EntryId,
    if_version: IfVersion = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Delete entry ID from LIST and show what it was."""
    _run(_commands.delete, locals())


@app.command()
def move(
    list_name: ListName,
    entry_id: EntryId,
    to_list: Annotated[str, typer.Argument(metavar="DEST", help="The list to move it to.", show_default=False)],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="SOCKET",
            parser=_parser(_params.path, "path"),
            help="DEST is a list of the daemon on this socket (a saga: see docs/ARCHITECTURE.md).",
            show_default=False,
        ),
    ] = None,
    if_version: IfVersion = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Move entry ID of LIST to list DEST; it gets DEST's next id, and is in exactly one list at every moment."""
    _run(_commands.move, locals())


Format = Annotated[
    str | None,
    typer.Option(
        "--format", metavar="FORMAT", help="csv, jsonl or json (default: from the first line).", show_default=False
    ),
]


@app.command("import")
def import_(
    list_name: ListName,
    file: Annotated[
        str | None,
        typer.Argument(metavar="[FILE]", help="The file to read ('-' or none: stdin).", show_default=False),
    ] = None,
    format: Format = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Import entries into LIST from FILE or stdin, all or nothing (CSV, JSON lines or JSON)."""
    _run(_commands.import_, locals())


@app.command()
def export(
    list_name: ListName,
    format: Annotated[str, typer.Option("--format", metavar="FORMAT", help="csv, jsonl or json.")] = "csv",
    date: Annotated[
        str | None,
        typer.Option(
            "--date",
            metavar="DATE",
            parser=_parser(_params.date),
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
    """Write the entries of LIST to stdout, streamed, in a form todo import reads back."""
    _run(_commands.export, locals())


@app.command()
def find(
    list_names: Annotated[
        list[str] | None,
        typer.Option(
            "--list",
            metavar="LIST",
            help="Only this list; repeat for any of several.",
            show_default=False,
            autocompletion=_complete_list,
        ),
    ] = None,
    date_from: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="DATE",
            parser=_parser(_params.date),
            help="Dated on or after: " + _DATE_HELP,
            show_default=False,
        ),
    ] = None,
    date_to: Annotated[
        str | None,
        typer.Option(
            "--to", metavar="DATE", parser=_parser(_params.date), help="Dated on or before DATE.", show_default=False
        ),
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
            parser=_parser(_params.positive, "integer"),
            help="At most N entries in all (default: every match).",
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
    _run(_commands.find, locals())


@app.command()
def today(
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Show what is pending and due today or overdue, across all lists, overdue first."""
    _run(_commands.today, locals())


@app.command()
def history(
    list_name: ListName,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            metavar="N",
            parser=_parser(_params.positive, "integer"),
            help="Only the last N events.",
            show_default=False,
        ),
    ] = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Show the changes made to LIST, oldest first."""
    _run(_commands.history, locals())


@app.command()
def undo(
    list_name: ListName,
    steps: Steps = 1,
    if_seq: IfSeq = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Revert the last changes of LIST, newest first, and show the entries they touched."""
    _run(_commands.undo, locals())


@app.command()
def redo(
    list_name: ListName,
    steps: Steps = 1,
    if_seq: IfSeq = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Re-apply what undo reverted in LIST (until a new change is made)."""
    _run(_commands.redo, locals())


@app.command()
def watch(
    list_name: Annotated[
        str | None,
        typer.Argument(
            metavar="[LIST]",
            help="Only this list's changes (default: every list).",
            show_default=False,
            autocompletion=_complete_list,
        ),
    ] = None,
    since: Annotated[
        int | None,
        typer.Option(
            "--since",
            metavar="POSITION",
            parser=_parser(_params.number, "integer"),
            help="First replay every change after POSITION from the log (resume with the last one you processed).",
            show_default=False,
        ),
    ] = None,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Print changes as they happen, one per line, until interrupted."""
    _run(_commands.watch, locals())


@app.command()
def compact(
    keep_days: Annotated[
        int,
        typer.Option(
            "--keep-days",
            metavar="N",
            parser=_parser(_params.number, "integer"),
            help="Keep the changes of the last N days.",
        ),
    ] = 30,
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Drop older changes from the log; every list keeps its current entries."""
    _run(_commands.compact, locals())


@app.command()
def status(
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Show the daemon's version, uptime, socket, data and statistics."""
    _run(_commands.status, locals())


@app.command()
def stop(
    json: Json = False,
    socket: Socket = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Stop the daemon cleanly and wait until it has exited (never starts one)."""
    _run(_commands.stop, locals())


def _run(body: Callable[..., int], params: dict[str, Any]) -> None:
    """Run a command's body from ``cli._commands`` with the parameters Typer parsed.

    The callbacks pass their ``locals()``: their parameter names are the
    body's, as the fast path relies on (``cli/_table.py`` records them).
    """
    try:
        code = body(**params)
    except _commands.UsageError as exc:
        raise typer.BadParameter(str(exc)) from None
    if code:
        raise typer.Exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the Typer app on ``argv`` (default: ``sys.argv[1:]``): the slow path of ``todo``.

    A usage error is one ``todo: usage: ...`` line (``cli._usage``).  The
    ``todo`` console script is ``cli._main:main``, which runs everyday command
    lines itself and hands the rest here.
    """
    _usage.run(app, sys.argv[1:] if argv is None else argv, "todo")
