"""The fast path's parser: the command lines it can show Typer would parse the same way, or none.

:func:`parse` reads a command line by the table that ``cli._gen`` derives
from the Typer app (``cli/_table.py``) and returns the command's body name
and its parameters by their Python names, exactly as Typer would pass them to
the command's callback; or ``None`` ("decline") for anything it is not sure
of, which ``cli._main`` then hands to the Typer app.  It follows click's
parser where it accepts:

- the first word names a command (group options such as
  ``--install-completion`` come before it: declined);
- options anywhere among the arguments, until a first ``--``, after which
  every word is an argument; ``--opt value`` and ``--opt=value`` (the value
  may start with ``-``, or be empty after ``=``); a repeated option's last
  value wins, and a repeatable one (``multiple``) collects every value;
- flags and ``--x/--y`` pairs, the last one given winning;
- arguments in order, a variadic one (``nargs=-1``) taking what the others
  leave; ``-`` is an argument;
- environment variables of flags with click's boolean words (``1``, ``yes``,
  ``true``, ...), an empty one counting as unset;
- values converted as click converts them: ``int()`` and ``float()`` (then
  checked against the type's bounds), a ``parser=`` function of a light
  module called as it is, and strings as they are.

It declines everything else: an unknown option or any word starting with
``-`` (``--help`` among them), a flag given a value, a missing value or
argument, extra arguments, a value that does not convert or is out of range,
an infinite or NaN float (Typer's to report), an environment variable that is
not a boolean word, an option whose use runs a callback, and any command line
while shell completion is asked for (``_TODO_COMPLETE``).
``tests/test_cli_fast.py`` checks that whatever it accepts, Typer parses to
the same values, request, output and exit code.

Table format, per command: ``body`` (the function of ``cli._commands``, or
``None`` for a command left to Typer),
``arguments`` (parameter names in order), ``options`` (each option string
with its parameter and, for a flag, the value it sets), and ``params`` (each
parameter's ``type``, ``nargs``, ``multiple``, ``required``, ``default``,
``envvar`` names, ``flag`` and ``decline``).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping, Sequence

from cli import _table

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the import: see todod/protocol.py
if TYPE_CHECKING:
    from typing import Any, NamedTuple

# click's BoolParamType words; an empty value counts as unset (as click's
# resolve_envvar_value has it).
_BOOL_WORDS = {
    "1": True, "0": False, "yes": True, "no": False, "true": True, "false": False,
    "on": True, "off": False, "t": True, "f": False, "y": True, "n": False,
}  # fmt: skip

if TYPE_CHECKING:

    class Invocation(NamedTuple):
        """A command line the fast path accepted.

        Attributes:
            command: the command's name (``"add"``).
            body: the name of its function in ``cli._commands``.
            params: its parameters by Python name, as Typer would pass them.
        """

        command: str
        body: str
        params: dict[str, Any]

else:
    Invocation = collections.namedtuple("Invocation", ["command", "body", "params"])


class _Decline(Exception):
    """The command line is not one the fast path is sure of."""


def parse(argv: Sequence[str], environ: Mapping[str, str], table: Mapping[str, Any] | None = None) -> Invocation | None:
    """Parse ``argv`` (without the program name) as Typer would, or decline with ``None``.

    Args:
        argv: the command line's words after ``todo``.
        environ: the environment (for options' environment variables).
        table: the commands, by default ``cli._table.COMMANDS``.
    """
    if _table.COMPLETE_VAR in environ:
        return None
    commands = _table.COMMANDS if table is None else table
    if not argv or argv[0] not in commands:
        return None
    spec: Mapping[str, Any] = commands[argv[0]]
    if spec["body"] is None:
        return None  # a command without a shared body runs in the Typer app only
    try:
        params = _parse_command(spec, argv[1:], environ)
    except _Decline:
        return None
    return Invocation(argv[0], spec["body"], params)


def _parse_command(spec: Mapping[str, Any], args: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any]:
    if not args and spec["no_args_is_help"]:
        raise _Decline
    options: Mapping[str, tuple[str, bool | None]] = spec["options"]
    params: Mapping[str, Mapping[str, Any]] = spec["params"]
    given: dict[str, Any] = {}
    positional: list[str] = []
    i, n = 0, len(args)
    while i < n:
        arg = args[i]
        i += 1
        if arg == "--":
            positional.extend(args[i:])
            break
        if len(arg) < 2 or arg[0] != "-":
            positional.append(arg)
            if not spec["interspersed"]:
                positional.extend(args[i:])
                break
            continue
        name, eq, value = arg.partition("=")
        if name not in options:
            raise _Decline  # unknown option, --help, a short option or a negative number
        param, flag_value = options[name]
        pspec = params[param]
        if pspec["decline"]:
            raise _Decline
        if flag_value is not None:
            if eq:
                raise _Decline  # click: "Option '--json' does not take a value."
            given[param] = flag_value
            continue
        if not eq:
            if i == n:
                raise _Decline  # click: "Option '--date' requires an argument."
            value = args[i]
            i += 1
        converted = _convert(pspec["type"], value)
        if pspec["multiple"]:
            given.setdefault(param, []).append(converted)
        else:
            given[param] = converted

    result: dict[str, Any] = {}
    _assign_arguments(spec["arguments"], params, positional, result)
    for param, pspec in params.items():
        if param in result:
            continue
        if param in given:
            result[param] = given[param]
            continue
        from_env = _from_environ(pspec, environ)
        if from_env is not None:
            result[param] = from_env
        elif pspec["required"]:
            raise _Decline  # click: "Missing option"
        else:
            result[param] = _default(pspec)
    return result


def _assign_arguments(
    names: Sequence[str], params: Mapping[str, Mapping[str, Any]], words: list[str], result: dict[str, Any]
) -> None:
    """Give each argument its words, as click does: one each, the variadic one the rest."""
    variadic = [i for i, name in enumerate(names) if params[name]["nargs"] == -1]
    if variadic:
        v = variadic[0]
        before, after = names[:v], names[v + 1 :]
        if len(words) < len(before) + len(after):
            raise _Decline
        head, rest = words[: len(before)], words[len(before) :]
        middle, tail = (rest[: len(rest) - len(after)], rest[len(rest) - len(after) :]) if after else (rest, [])
        for name, word in zip(before, head, strict=True):
            result[name] = _convert(params[name]["type"], word)
        for name, word in zip(after, tail, strict=True):
            result[name] = _convert(params[name]["type"], word)
        pspec = params[names[v]]
        values = [_convert(pspec["type"], word) for word in middle]
        if not values:
            if pspec["required"]:
                raise _Decline  # click: "Missing argument"
            result[names[v]] = _default(pspec)
        else:
            result[names[v]] = values
        return
    if len(words) > len(names):
        raise _Decline  # click: "Got unexpected extra argument"
    for k, name in enumerate(names):
        pspec = params[name]
        if k < len(words):
            result[name] = _convert(pspec["type"], words[k])
        elif pspec["required"]:
            raise _Decline  # click: "Missing argument"
        else:
            result[name] = _default(pspec)


def _default(pspec: Mapping[str, Any]) -> Any:
    """The value Typer passes for a parameter not given: the default, a list for a multiple one."""
    default = pspec["default"]
    if pspec["multiple"] or pspec["nargs"] == -1:
        # Typer passes None for an empty multiple parameter whose default is None.
        return None if default is None else list(default)
    return default


def _from_environ(pspec: Mapping[str, Any], environ: Mapping[str, str]) -> Any:
    """The value of the parameter's environment variable, ``None`` if unset or empty; declines if unsure."""
    for var in pspec["envvar"]:
        raw = environ.get(var)
        if raw:
            if not pspec["flag"]:
                raise _Decline  # not needed yet: leave it to Typer
            word = _BOOL_WORDS.get(raw.strip().lower())
            if word is None:
                raise _Decline  # click: "... is not a valid boolean"
            return word
    return None


def _convert(kind: Sequence[Any], value: str) -> Any:
    """``value`` converted as click's type would (the same call), or :class:`_Decline` if that fails."""
    name = kind[0]
    if name == "str":
        return value
    if name == "func":
        # click's FuncParamType calls the function on the word as it is.
        module, qualname = kind[1], kind[2]
        try:
            return getattr(__import__(module, fromlist=["_"]), qualname)(value)
        except Exception:
            raise _Decline from None  # click reports a ValueError as a usage error; Typer's to say
    if name not in ("int", "float"):
        raise _Decline  # "bool" as a value option: not needed yet
    try:
        # IntParamType and FloatParamType call int() and float() on the word.
        number: int | float = int(value) if name == "int" else float(value)
    except ValueError:
        raise _Decline from None  # also an int of more digits than int() reads
    if not math.isfinite(number):
        raise _Decline  # inf, nan, 1e999: Typer's to accept or refuse
    low, high, low_open, high_open = kind[1:5]
    if low is not None and (number <= low if low_open else number < low):
        raise _Decline
    if high is not None and (number >= high if high_open else number > high):
        raise _Decline
    return number
