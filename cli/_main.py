"""The ``todo`` console script: everyday command lines without Typer, the rest through it.

Importing Typer (click, typing's machinery, inspect) is most of what a Typer
command costs to start.  :func:`main` first tries :func:`cli._fast.parse`,
which accepts only the command lines it can show the Typer app parses the
same way, and runs the command's body from ``cli._commands`` itself, the
body that the Typer callback would run.  Everything else (``--help``, usage
errors, shell completion, any command line it is not sure of) goes to the
Typer app, ``cli.app``, which is imported only then.

This module and what it imports must stay light: ``tests/test_cli_fast.py``
checks that a whole fast ``todo`` run never imports Typer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from cli import _commands, _fast


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``todo`` on ``argv`` (default: ``sys.argv[1:]``) and return its exit code.

    Typer's usage errors and ``typer.Exit`` end in ``SystemExit`` as usual.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    invocation = _fast.parse(args, os.environ)
    if invocation is not None:
        body = getattr(_commands, invocation.body)
        try:
            code: int = body(**invocation.params)
        except _commands.UsageError:
            pass  # raised before anything was sent: let Typer say it, in its words
        except KeyboardInterrupt:
            return 130  # Ctrl-C: Typer exits 130 without a word, and so do we
        else:
            return code
    from cli import app  # the slow path: help, usage errors, completion

    app.main(args)
    return 0
