"""The parameter types of ``todo`` that Typer's own do not give: entry ids, ``--timeout``, dates, paths.

Each is a function of the word as typed that returns the value or raises
:class:`ValueError` with a message for a person.  ``cli.app`` hands them to
Typer as ``parser=`` functions (turning the ValueError into Typer's usage
error), and the fast path calls the very same functions by the names that
``cli/_table.py`` records; a ValueError there hands the command line to
Typer, which reports it.  No Typer here: this module is on the fast path.
"""

from __future__ import annotations

from cli import _dates
from todod import protocol

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the import: see todod/protocol.py
if TYPE_CHECKING:
    from typing import Final

#: The longest ``--timeout``: an hour.  Requests take milliseconds and the
#: daemon's own deadlines are seconds, so a longer wait is a typo (``1e12``),
#: and a socket timeout must fit the kernel's timeval.
MAX_TIMEOUT: Final = 3600.0


def entry_id(value: str | int) -> int:
    """An entry id: ASCII digits only (no ``+3``, `` 3``, ``1_0``, no other script's digits), at most 2^63-1."""
    text = str(value)
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"an entry id is a number written with the digits 0-9 (got {text!r})")
    if len(text.lstrip("0")) > len(str(protocol.MAX_INT)) or int(text) > protocol.MAX_INT:
        raise ValueError(f"an entry id is at most {protocol.MAX_INT} (got {text[:40]})")
    return int(text)


def number(value: str | int) -> int:
    """A count, version, seq or position: ASCII digits only, at most 2^63-1."""
    text = str(value)
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"a number here is written with the digits 0-9 (got {text!r})")
    if len(text.lstrip("0")) > len(str(protocol.MAX_INT)) or int(text) > protocol.MAX_INT:
        raise ValueError(f"a number here is at most {protocol.MAX_INT} (got {text[:40]})")
    return int(text)


def positive(value: str | int) -> int:
    """A count of at least 1 (a ``--limit``): ASCII digits only, as :func:`number`."""
    count = number(value)
    if count < 1:
        raise ValueError(f"a count here is at least 1 (got {value})")
    return count


def timeout(value: str | float) -> float:
    """A ``--timeout``: a number of seconds above 0 and at most :data:`MAX_TIMEOUT` (not nan or inf)."""
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= MAX_TIMEOUT:  # also false for nan
        raise ValueError(f"a timeout is above 0 and at most {MAX_TIMEOUT:g} seconds (got {value})")
    return seconds


def date(value: str) -> str:
    """A date option as given, but never empty: a script's empty variable must not mean "today".

    The word is resolved (``tomorrow``, ``+3d``) by the command body through
    ``cli._dates``, on both paths, where an unknown form is invalid data (exit 65).
    """
    if not value.strip():
        raise ValueError(f"a date must not be empty ({_dates.FORMS}); leave the option out for none")
    return value


def path(value: str) -> str:
    """A ``--socket`` or ``--data-dir`` as given, but never empty.

    An empty one used to mean the default (``$TODOD_SOCKET``, the XDG
    default), so a script's empty variable silently reached another daemon
    or data directory than the one it named.
    """
    if not value.strip():
        raise ValueError("a path must not be empty; leave the option out for the default")
    return value
