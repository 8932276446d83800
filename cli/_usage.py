"""Running a Typer app the way ``todo`` reports usage errors: one line, ``todo: usage: ...``.

Typer prints a usage error as a usage line and a box of box-drawing
characters, and writes required arguments in braces (``{LIST}``).  ``todo``
promises one line on stderr per error (a JSON object with ``--json``), and
usage lines as in man pages and click itself: ``todo add [OPTIONS] LIST TITLE...``.
"""

from __future__ import annotations

import sys
from typing import Any, Final, NoReturn

import typer
import typer.core

from cli import _render

try:  # Typer 0.2x vendors click; older ones depend on it
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, UsageError  # type: ignore[import-not-found, no-redef]

EX_USAGE: Final = 2


def run(typer_app: typer.Typer, args: list[str], prog_name: str) -> NoReturn:
    """Run a Typer app on ``args``; a usage error becomes one ``todo: usage: ...`` line and exit 2.

    With ``--json`` among the arguments the error is a JSON object instead
    (the parse failed, so the arguments are only scanned for the flag).
    Plain ``todo`` still prints the help (and exits 2, as Typer does).

    Raises:
        SystemExit: always, with the command's exit code.
    """
    try:
        status = typer_app(args=args, prog_name=prog_name, standalone_mode=False)
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.stdout.write(exc.ctx.get_help() + "\n" if exc.ctx is not None else "")
            raise SystemExit(EX_USAGE) from None
        command = exc.ctx.command_path if exc.ctx is not None else prog_name
        message = exc.format_message().rstrip(".")
        if message[1:2].islower():  # "Missing argument" -> "missing argument", but keep "ID ..."
            message = message[:1].lower() + message[1:]
        _exit("usage", f"{message} (see '{command} --help')", EX_USAGE, args)
    except ClickException as exc:
        _exit("usage" if exc.exit_code == EX_USAGE else "error", exc.format_message(), exc.exit_code, args)
    raise SystemExit(status if isinstance(status, int) else 0)


def _exit(code: str, message: str, status: int, args: list[str]) -> NoReturn:
    _render.write_error(code, message, "--json" in args)
    raise SystemExit(status)


def _make_metavar(self: Any, ctx: Any, *, usage: bool = False) -> str:
    """Typer's ``TyperArgument.make_metavar`` without the braces around required arguments.

    Every argument of ``todo`` has a metavar, the only case handled here;
    any other goes to Typer's own method.
    """
    if self.metavar is None:
        return str(_typer_make_metavar(self, ctx, usage=usage))
    return f"[{self.metavar}]" if usage and not self.required else str(self.metavar)


_typer_make_metavar = typer.core.TyperArgument.make_metavar
typer.core.TyperArgument.make_metavar = _make_metavar  # type: ignore[method-assign]
