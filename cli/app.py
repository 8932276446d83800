"""The ``todo`` commands: one blocking request to todod per command.

Every command takes the connection options (``--json``, ``--socket``,
``--data-dir``, ``--timeout``, ``--no-start``) itself, so they go after the
command name: ``todo add --json home "buy milk"``.

This module is the definition of the command line: its names, arguments,
options, help, usage errors and shell completion.  The command bodies live in
``cli._commands`` (exit codes there), shared with the fast path of
``cli._main``, which runs everyday command lines without importing Typer
after parsing them by the table that ``cli._gen`` derives from this app.
After changing a command or option here, run ``python -m cli._gen``.
"""

from collections.abc import Callable
from typing import Annotated, Any

from cli import _commands, _lazy
from cli._commands import DEFAULT_TIMEOUT, EX_DATAERR, EX_ERROR, EX_TEMPFAIL, EX_UNAVAILABLE, exit_code

# Modules that Typer's imports pull in and `todo` hardly ever uses stay unrun
# until used, 7-14 ms of every Typer run (help, usage errors, each completion
# request of the shell): see cli/_lazy.py.
with _lazy.deferred_imports():
    import typer

__all__ = ["DEFAULT_TIMEOUT", "EX_DATAERR", "EX_ERROR", "EX_TEMPFAIL", "EX_UNAVAILABLE", "app", "exit_code", "main"]

app = typer.Typer(
    name="todo",
    help="Keep to-do lists in the todod daemon (started on first use).",
    # `todo --install-completion` / `--show-completion`; the completion
    # requests themselves (_TODO_COMPLETE set) are run by Typer, never by the fast path.
    add_completion=True,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)


def _complete_list(ctx: typer.Context, incomplete: str) -> list[str]:
    """The daemon's list names for shell completion (on ``--socket`` if given so far)."""
    socket = ctx.params.get("socket")
    return _commands.list_names(socket if isinstance(socket, str) else None, incomplete)


ListName = Annotated[
    str,
    typer.Argument(metavar="LIST", help="The list's name.", show_default=False, autocompletion=_complete_list),
]
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
    _run(_commands.add, locals())


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
    _run(_commands.update, locals())


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
    _run(_commands.delete, locals())


@app.command()
def status(
    json: Json = False,
    socket: Socket = None,
    data_dir: DataDir = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    no_start: NoStart = False,
) -> None:
    """Show the daemon's version, uptime and statistics."""
    _run(_commands.status, locals())


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

    The ``todo`` console script is ``cli._main:main``, which runs everyday
    command lines itself and hands the rest here.
    """
    app(args=argv, prog_name="todo")

