"""Relative dates in the CLI, against a fixed clock and fixed time zones."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from cli import _dates

#: Wednesday 2026-12-02 at 10:00 UTC.
NOW = 1_796_205_600.0


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Resolve in UTC for the test, then restore the process's zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("today", "2026-12-02"),
        ("Today", "2026-12-02"),
        ("tomorrow", "2026-12-03"),
        ("yesterday", "2026-12-01"),
        ("+3d", "2026-12-05"),
        ("-2d", "2026-11-30"),
        ("+0d", "2026-12-02"),
        ("+1w", "2026-12-09"),
        ("-1w", "2026-11-25"),
        ("+30d", "2027-01-01"),  # across a month and a year end
        ("thu", "2026-12-03"),
        ("sun", "2026-12-06"),
        ("mon", "2026-12-07"),
        ("wed", "2026-12-09"),  # the next Wednesday after today, not today
        ("Friday", "2026-12-04"),
        ("2026-02-30", "2026-02-30"),  # ISO-shaped text is the daemon's to check
        (" 2027-01-05 ", "2027-01-05"),
    ],
)
def test_resolve_relative_dates(zone: None, text: str, expected: str) -> None:
    """Each relative form resolves against the fixed clock to the ISO date the user means."""
    assert _dates.resolve(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["someday", "next week", "3d", "+d", "+3x", "2026-2-3", "+\u0661d", "+99999999d", ""])
def test_resolve_rejects_unknown_words_with_the_accepted_forms(zone: None, text: str) -> None:
    """An unknown form is refused with a message that lists every accepted form."""
    with pytest.raises(_dates.DateError) as info:
        _dates.resolve(text, now=NOW)
    assert _dates.FORMS in str(info.value)


def test_resolve_uses_the_local_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """At one instant, 'today' is the date of the CLI's own zone: ahead of UTC it is already tomorrow."""
    instant = 1_796_248_800.0  # 2026-12-02 22:00 UTC
    try:
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
        assert _dates.resolve("today", now=instant) == "2026-12-02"
        monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
        time.tzset()
        assert _dates.resolve("today", now=instant) == "2026-12-03"
        assert _dates.resolve("tomorrow", now=instant) == "2026-12-04"
        monkeypatch.setenv("TZ", "America/New_York")
        time.tzset()
        assert _dates.resolve("today", now=instant) == "2026-12-02"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_shift_steps_over_daylight_saving_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Moving by days is by calendar days, even across a DST change of the local zone."""
    try:
        monkeypatch.setenv("TZ", "Europe/Berlin")
        time.tzset()
        assert _dates.shift("2026-03-28", 1) == "2026-03-29"
        assert _dates.shift("2026-03-29", 1) == "2026-03-30"
        assert _dates.shift("2026-10-24", 2) == "2026-10-26"
        assert _dates.shift("2028-02-28", 1) == "2028-02-29"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_dates_module_imports_no_datetime() -> None:
    """cli/_dates.py resolves dates with the time module alone: importing and using it loads no datetime."""
    code = "import sys, cli._dates as d; d.resolve('+3d'); d.resolve('fri'); print('datetime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
