"""Dates as the CLI takes them: ISO, or a word relative to today in the local time zone.

The wire only ever carries ``YYYY-MM-DD``: a relative date is resolved here,
in the CLI's own time zone, so ``todo add --date tomorrow`` means the
tomorrow of the person typing it whatever zone the daemon runs in.

Only :mod:`time` is used, never :mod:`datetime`: this module is on the path
of every ``todo`` start that takes a date, which avoids heavy imports on
purpose (``python -X importtime``).
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the import: see todod/protocol.py
if TYPE_CHECKING:
    from typing import Final

#: What :func:`resolve` accepts, for error messages and help.
FORMS: Final = "YYYY-MM-DD, today, tomorrow, yesterday, +Nd, -Nd, +Nw, -Nw (N days or weeks from today), mon..sun"

_WORDS: Final = {"today": 0, "tomorrow": 1, "yesterday": -1}
_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNITS: Final = {"d": 1, "w": 7}
#: A hundred years each way: far enough for any plan, and it keeps the
#: arithmetic inside what ``time.mktime`` handles everywhere.
_MAX_DAYS: Final = 36_525


#: The clock every date is relative to; tests replace it with a fixed one.
clock = time.time


class DateError(ValueError):
    """A date the CLI cannot read; its message lists the accepted forms."""


def today(now: float | None = None) -> str:
    """The local date, ``YYYY-MM-DD``, at ``now`` (seconds since the epoch; default: the clock)."""
    return time.strftime("%Y-%m-%d", time.localtime(clock() if now is None else now))


def resolve(text: str, now: float | None = None) -> str:
    """The ISO date that ``text`` names, relative to the local date at ``now``.

    An ISO-shaped text is passed through untouched: the daemon checks that it
    is a real date, with the same message for every client.

    Raises:
        DateError: ``text`` is no date form this CLI knows.
    """
    if now is None:
        now = clock()
    word = text.strip().lower()
    if len(word) == 10 and word[4] == word[7] == "-" and word.replace("-", "").isdigit():
        return word
    offset = _offset(word, time.localtime(now))
    if offset is None:
        raise DateError(f"unknown date {text[:40]!r}; use one of: {FORMS}")
    return shift(today(now), offset)


def shift(iso: str, days: int) -> str:
    """``iso`` moved by ``days`` calendar days."""
    year, month, day = (int(part) for part in iso.split("-"))
    # Noon, and mktime normalising the day of the month, step over DST
    # changes and month ends alike.
    moved = time.mktime((year, month, day + days, 12, 0, 0, 0, 0, -1))
    return time.strftime("%Y-%m-%d", time.localtime(moved))


def _offset(word: str, local: time.struct_time) -> int | None:
    if word in _WORDS:
        return _WORDS[word]
    if word in _WEEKDAYS or word in _FULL_WEEKDAYS:
        target = _WEEKDAYS.index(word[:3])
        # The next such day after today: a week ahead when it is today.
        return (target - local.tm_wday - 1) % 7 + 1
    if len(word) >= 3 and word[0] in "+-" and word[-1] in _UNITS and word[1:-1].isdigit() and word[1:-1].isascii():
        days = int(word[1:-1]) * _UNITS[word[-1]]
        if days > _MAX_DAYS:
            return None
        return days if word[0] == "+" else -days
    return None
