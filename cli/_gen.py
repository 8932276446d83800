"""Derive the fast path's table of commands from the Typer app: ``python -m cli._gen [--check]``.

The Typer app in ``cli/app.py`` is the one definition of the command line.
This script builds the click command Typer makes of it and writes what
``cli._fast`` needs to parse the same command lines (each command's
arguments, options, flags and ``--x/--y`` pairs, types with their bounds,
defaults, environment variables) into ``cli/_table.py``, as plain literals
that load in well under a millisecond.  ``--check`` only compares, and exits
1 if the file is out of date; ``tests/test_cli_fast.py`` does the same.

Whatever the fast path cannot reproduce exactly is refused here with
:class:`Unsupported`, naming the parameter, rather than approximated: a
new kind of parameter needs ``cli._fast`` taught first.  Parameters that only
ever act when given (eager options such as ``--help`` or ``--version``,
options with a callback, deprecated ones) are recorded as "decline": the fast
path hands a command line that uses them to Typer.  A ``parser=`` type is
recorded by the module and name of its function (unwrapping ``cli.app``'s
``_parser``), which must be a light module's (``cli._params``), for the fast
path calls it too.  A command whose callback has no function of the same
name in ``cli._commands`` is recorded without a body, and the fast path
leaves it to Typer.  The root group's own options (``--version``,
``--install-completion``, ``--show-completion``) come before the command
name, so the fast path never sees them; the group's callback is not run by
the fast path, so it must do nothing unless one of its eager options is given.
"""

from __future__ import annotations

import math
import pprint
import sys
from pathlib import Path
from typing import Any

import typer.main

from cli import _commands
from cli.app import app

TABLE = Path(__file__).with_name("_table.py")

HEADER = '''"""The fast path's table of commands: generated from the Typer app by ``python -m cli._gen``; do not edit.

Regenerate it after changing a command or option in ``cli/app.py``;
``tests/test_cli_fast.py`` fails while it is out of date.  Format: see
``cli/_fast.py``.
"""

# fmt: off
'''


class Unsupported(Exception):
    """The app has a parameter or setting the fast path cannot reproduce."""


def table() -> dict[str, Any]:
    """The table of the Typer app's commands, as ``cli/_table.py`` holds it."""
    group = typer.main.get_command(app)
    if not isinstance(group, typer.core.TyperGroup):
        raise Unsupported("the app is a single command, not a group")
    bodies = {
        cmd.name or typer.main.get_command_name(cmd.callback.__name__): cmd.callback.__name__
        for cmd in app.registered_commands
        if cmd.callback is not None
    }
    commands: dict[str, Any] = {}
    for name, command in sorted(group.commands.items()):
        if command.hidden or command.deprecated:
            continue  # leave them to Typer, which warns or hides
        for setting in ("allow_extra_args", "ignore_unknown_options"):
            if getattr(command, setting):
                raise Unsupported(f"{name}: {setting}")
        if command.context_settings:
            raise Unsupported(f"{name}: context_settings {command.context_settings}")
        # A command whose body is not (yet) a function of cli._commands is
        # left to Typer: recorded without a body, the fast path declines it.
        body = bodies[name] if callable(getattr(_commands, bodies[name], None)) else None
        commands[name] = _command(name, command, body)
    # Typer's rule for the variable its completion scripts set (typer/completion.py).
    prog = str(app.info.name)
    return {"complete_var": "_{}_COMPLETE".format(prog.replace("-", "_").upper()), "commands": commands}


def _command(name: str, command: Any, body: str | None) -> dict[str, Any]:
    arguments: list[str] = []
    options: dict[str, tuple[str, bool | None]] = {}
    params: dict[str, dict[str, Any]] = {}
    variadic = 0
    for param in command.params:
        where = f"{name} {param.name}"
        if not param.expose_value or getattr(param, "prompt", None) or getattr(param, "count", False):
            raise Unsupported(f"{where}: prompt, count or hidden value")
        spec: dict[str, Any] = {
            "type": _type(where, param.type),
            "nargs": param.nargs,
            "multiple": bool(getattr(param, "multiple", False)),
            "required": bool(param.required),
            "default": _literal(where, param.default),
            "envvar": _envvars(param.envvar),
            "flag": False,
            "decline": bool(param.is_eager or param.callback is not None or getattr(param, "deprecated", None)),
        }
        if isinstance(param, typer.core.TyperArgument):
            if param.nargs == -1:
                variadic += 1
            elif param.nargs != 1:
                raise Unsupported(f"{where}: nargs={param.nargs}")
            if spec["decline"] or spec["envvar"]:
                raise Unsupported(f"{where}: an argument with a callback or envvar")
            arguments.append(str(param.name))
        else:
            if param.nargs != 1:
                raise Unsupported(f"{where}: nargs={param.nargs}")
            if any(not opt.startswith("--") for opt in (*param.opts, *param.secondary_opts)):
                raise Unsupported(f"{where}: short option in {param.opts}")
            if param.is_flag:
                if not param.is_bool_flag or getattr(param, "flag_value", None) not in (None, True) or spec["multiple"]:
                    raise Unsupported(f"{where}: a flag that is not a plain boolean")
                spec["flag"] = True
                for opt in param.opts:
                    options[opt] = (param.name, True)
                for opt in param.secondary_opts:
                    options[opt] = (param.name, False)
            else:
                if param.secondary_opts:
                    raise Unsupported(f"{where}: secondary options on a value option")
                for opt in param.opts:
                    options[opt] = (param.name, None)
        params[param.name] = spec
    if variadic > 1:
        raise Unsupported(f"{name}: more than one variadic argument")
    return {
        "body": body,
        "no_args_is_help": bool(command.no_args_is_help),
        "interspersed": bool(command.allow_interspersed_args),
        "arguments": tuple(arguments),
        "options": options,
        "params": params,
    }


def _type(where: str, kind: Any) -> tuple[Any, ...]:
    """The parameter type as a tuple.

    ``("str",)``, ``("bool",)``, ``("int" or "float", min, max, min_open,
    max_open)``, or ``("func", module, name)`` for a ``parser=`` function.
    """
    click = typer._click  # the click that Typer vendors and builds its commands from
    if isinstance(kind, click.types.StringParamType):
        return ("str",)
    if isinstance(kind, click.types.BoolParamType):
        return ("bool",)
    if isinstance(kind, click.types.IntRange | click.types.FloatRange):
        if kind.clamp:
            raise Unsupported(f"{where}: a clamped range")
        name = "int" if isinstance(kind, click.types.IntRange) else "float"
        return (name, kind.min, kind.max, bool(kind.min_open), bool(kind.max_open))
    if isinstance(kind, click.types.IntParamType):
        return ("int", None, None, False, False)
    if isinstance(kind, click.types.FloatParamType):
        return ("float", None, None, False, False)
    if isinstance(kind, click.types.FuncParamType):
        # A parser= function: the fast path calls it too, so it must live in
        # a module that imports no Typer, and be reachable by its name.
        func = getattr(kind.func, "__wrapped__", kind.func)  # cli.app's _parser wraps a cli._params function
        module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
        if module is None or module == "cli.app" or not module.startswith("cli.") or "." in qualname:
            raise Unsupported(f"{where}: parser {func!r} must be a top-level function of a light cli module")
        return ("func", module, qualname)
    raise Unsupported(f"{where}: parameter type {kind!r}; teach cli/_fast.py to parse it first")


def _envvars(envvar: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    if envvar is None:
        return ()
    return (envvar,) if isinstance(envvar, str) else tuple(envvar)


def _literal(where: str, value: Any) -> Any:
    """``value`` if it is a plain literal the table can hold (lists as tuples); else Unsupported."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, list | tuple):
        return tuple(_literal(where, item) for item in value)
    raise Unsupported(f"{where}: default {value!r}")


def render() -> str:
    """The text of ``cli/_table.py``."""
    data = table()
    body = "\n".join(
        [
            f"COMPLETE_VAR = {data['complete_var']!r}",
            "",
            "COMMANDS = " + pprint.pformat(data["commands"], indent=1, width=100, sort_dicts=True),
            "",
        ]
    )
    return HEADER + "\n" + body


def main(argv: list[str]) -> int:
    """Write ``cli/_table.py``, or with ``--check`` say whether it is up to date (exit 1 if not)."""
    text = render()
    if argv == ["--check"]:
        if TABLE.exists() and TABLE.read_text() == text:
            return 0
        sys.stderr.write(f"{TABLE} is out of date: run python -m cli._gen\n")
        return 1
    if argv:
        sys.stderr.write("usage: python -m cli._gen [--check]\n")
        return 2
    TABLE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
