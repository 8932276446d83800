"""The bodies of the ``todo`` commands, shared by the Typer app and the fast path.

Each function here takes a command's parameters by their Python names (the
names of the Typer callback's parameters, which ``cli/_table.py`` records),
builds one request, calls :func:`cli._client.request`, renders the result and
returns the exit code.  ``cli.app``'s callbacks call them with what Typer
parsed; ``cli._main`` calls them with what ``cli._fast`` parsed.  So a
command's request, output, error line and exit code are written once.

No Typer here: this module is on the fast path.  A command line that parses
but makes no sense raises :class:`UsageError` before anything is sent or
printed; the Typer app reports it as a usage error (exit 2), and the fast path
hands such a command line to the Typer app, which reports it the same way.

Exit codes (names from sysexits.h):

- 0: success.
- 1: the daemon reported an error (``not_found``, ``unavailable``, ``internal``).
- 2: usage error (reported by Typer).
- 65 (EX_DATAERR): the daemon rejected the data (``invalid``, ``bad_request``, ``too_large``).
- 69 (EX_UNAVAILABLE): no daemon answers and none could be started, or it hung up.
- 75 (EX_TEMPFAIL): no answer in time (``--timeout``, or the daemon's ``timeout``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from cli import _client, _render
from todod import paths, protocol

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the import: see todod/protocol.py
if TYPE_CHECKING:
    from typing import Any, Final, TypedDict, Unpack

EX_OK: Final = 0
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

#: How long shell completion waits for the daemon's list names: a person is
#: waiting at a prompt, and a missing completion is better than a stuck one.
COMPLETION_TIMEOUT: Final = 0.5


class UsageError(Exception):
    """A command line that parses but makes no sense; raised before anything is sent."""


if TYPE_CHECKING:

    class Options(TypedDict):
        """The connection options every command takes."""

        json: bool
        socket: str | None
        data_dir: str | None
        timeout: float
        no_start: bool


def add(*, list_name: str, title: str, date: str | None, **options: Unpack[Options]) -> int:
    """Add an entry to LIST and print its id."""
    # time.strftime gives the local date without importing datetime.
    fields = {"list": list_name, "title": title, "date": date or time.strftime("%Y-%m-%d")}
    return _call("add", fields, _entry_id, options)


def entries(*, list_name: str, date: str | None, **options: Unpack[Options]) -> int:
    """Show the entries of LIST."""
    return _call("entries", {"list": list_name, "date": date}, _render.entries, options)


def list_(**options: Unpack[Options]) -> int:
    """Show every list and how many entries it has."""
    return _call("lists", {}, _render.lists, options)


def update(
    *,
    list_name: str,
    entry_id: int,
    title: str | None,
    date: str | None,
    done: bool | None,
    **options: Unpack[Options],
) -> int:
    """Change the title, date or done mark of entry ID in LIST."""
    if title is None and date is None and done is None:
        raise UsageError("nothing to change: give --title, --date, --done or --undone")
    fields = {"list": list_name, "entry": entry_id, "title": title, "date": date, "done": done}
    return _call("update", fields, _one_entry, options)


def delete(*, list_name: str, entry_id: int, **options: Unpack[Options]) -> int:
    """Delete entry ID from LIST and show what it was."""
    return _call("delete", {"list": list_name, "entry": entry_id}, _one_entry, options)


def status(**options: Unpack[Options]) -> int:
    """Show the daemon's version, uptime and statistics."""
    return _call("status", {}, _render.status, options)


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


def _call(op: str, fields: dict[str, Any], render: Callable[[Any], str], options: Options) -> int:
    """Make the request and print its result; on an error, print one line to stderr.

    Returns:
        The exit code.
    """
    try:
        result = _client.request(
            op,
            fields,
            socket_path=paths.resolve_socket(options["socket"]),
            timeout=options["timeout"],
            data_dir=None if options["no_start"] else paths.resolve_data_dir(options["data_dir"]),
        )
    except protocol.TodoError as exc:
        sys.stderr.write(f"todo: {exc.code.replace('_', ' ')}: {_render.clean(exc.message)}\n")
        return exit_code(exc)
    _render.write(_render.dump_json(result) if options["json"] else render(result))
    return EX_OK


def _entry_id(entry: Any) -> str:
    return f"{entry['id']}\n"


def _one_entry(entry: Any) -> str:
    return _render.entries([entry])
