"""`todo find`, `todo today`, tags and relative dates against a scripted fake daemon and a fixed clock."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli import _dates, _render
from cli._paging import FIND_FIRST_PAGE, PAGE_ENTRIES
from cli.app import app
from tests.fake_daemon import FakeDaemon

runner = CliRunner(env={"TODOD_NO_START": "1", "TODOD_SOCKET": None, "TODOD_DATA_DIR": None, "NO_COLOR": None})

#: Wednesday 2026-12-02 at 10:00 UTC.
NOW = 1_796_205_600.0


def found(*entries: dict[str, Any], more: bool = False) -> dict[str, Any]:
    return {"entries": list(entries), "more": more}


def entry(list_name: str, entry_id: int, date: str, title: str, tags: tuple[str, ...] = (), done: bool = False) -> Any:
    return {"list": list_name, "id": entry_id, "date": date, "title": title, "done": done, "tags": list(tags)}


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    """A fake daemon on a fresh socket, and the CLI's clock fixed at NOW in UTC."""
    monkeypatch.setattr(_dates, "clock", lambda: NOW)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    path = tempfile.mkdtemp(prefix="todo-find-", dir="/tmp")
    try:
        with FakeDaemon(os.path.join(path, "todod.sock")) as fake:
            yield fake
    finally:
        shutil.rmtree(path, ignore_errors=True)
        monkeypatch.undo()
        time.tzset()


def todo(daemon: FakeDaemon, *args: str, env: dict[str, str | None] | None = None) -> Result:
    return runner.invoke(app, [*args, "--socket", daemon.path], env=env)


def test_find_sends_every_filter_with_relative_dates_resolved(daemon: FakeDaemon) -> None:
    """`todo find` sends lists, ISO dates (from relative words), done, tags, search and limit as given."""
    daemon.answer(found())
    result = todo(
        daemon, "find", "--list", "home", "--list", "work", "--from", "yesterday", "--to", "+1w",
        "--pending", "--tag", "a", "--tag", "b", "--search", "milk", "--limit", "5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert daemon.requests == [
        {
            "op": "find",
            "lists": ["home", "work"],
            "from": "2026-12-01",
            "to": "2026-12-09",
            "done": False,
            "tags": ["a", "b"],
            "search": "milk",
            "limit": 5,
            "form": "rows",
        }
    ]
    assert result.stdout == ""


def test_find_without_options_sends_no_filter_and_shows_a_table(daemon: FakeDaemon) -> None:
    """`todo find` alone asks for everything and prints DATE, LIST, ID, DONE, TAGS, TITLE rows."""
    daemon.answer(
        found(entry("home", 2, "2026-11-30", "Buy milk", ("food",), True), entry("work", 11, "2026-12-02", "Report"))
    )
    result = todo(daemon, "find")
    assert result.exit_code == 0, result.output
    assert daemon.requests == [{"op": "find", "limit": FIND_FIRST_PAGE, "form": "rows"}], "a first page over dates"
    assert result.stdout == (
        "DATE        LIST  ID  DONE  TAGS  TITLE\n"
        "2026-11-30  home   2  yes   food  Buy milk\n"
        "2026-12-02  work  11  no    -     Report\n"
    )


def test_find_done_json_and_the_note_when_more_match(daemon: FakeDaemon) -> None:
    """`todo find --done --json` prints the entries as JSON and says on stderr that more matched."""
    items = [entry("home", 2, "2026-11-30", "Buy milk", done=True)]
    daemon.answer(found(*items, more=True))
    result = todo(daemon, "find", "--done", "--limit", "1", "--json")
    assert result.exit_code == 0, result.output
    assert daemon.requests == [{"op": "find", "done": True, "limit": 1, "form": "rows"}]
    assert json.loads(result.stdout) == items
    assert "more match" in result.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("--pending", "--done"), 2),
        (("--limit", "0"), 2),
        (("--limit", "many"), 2),
        (("--from", "someday"), 65),
        (("--to", "2026-2-3"), 65),
    ],
)
def test_find_refuses_bad_options_before_sending(daemon: FakeDaemon, args: tuple[str, ...], code: int) -> None:
    """Contradictory or bad options exit 2 (usage) or 65 (an unknown date, with the forms) and send nothing."""
    result = todo(daemon, "find", *args)
    assert result.exit_code == code, result.output
    assert daemon.requests == []
    if code == 65:
        assert "tomorrow" in result.stderr and "mon..sun" in result.stderr


def test_today_asks_for_pending_up_to_today_and_groups_by_date(daemon: FakeDaemon) -> None:
    """`todo today` asks for pending entries up to the local today and prints them under a heading per date."""
    daemon.answer(
        found(
            entry("home", 3, "2026-11-28", "Pay rent", ("bills",)),
            entry("work", 1, "2026-11-28", "Send the invoice"),
            entry("home", 12, "2026-12-02", "Dentist"),
        )
    )
    result = todo(daemon, "today")
    assert result.exit_code == 0, result.output
    assert daemon.requests == [
        {"op": "find", "to": "2026-12-02", "done": False, "limit": FIND_FIRST_PAGE, "form": "rows"}
    ]
    assert result.stdout == (
        "2026-11-28  overdue\n"
        "  home   3  bills  Pay rent\n"
        "  work   1  -      Send the invoice\n"
        "2026-12-02  today\n"
        "  home  12  -      Dentist\n"
    )
    assert "\x1b" not in result.stdout  # not a terminal: no colour


def test_today_json_is_the_entries(daemon: FakeDaemon) -> None:
    """`todo today --json` prints the entries with their lists, and nothing for an empty day."""
    items = [entry("home", 3, "2026-11-28", "Pay rent")]
    daemon.answer(found(*items))
    result = todo(daemon, "today", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == items
    daemon.answer(found())
    result = todo(daemon, "today")
    assert result.exit_code == 0 and result.stdout == ""


def test_agenda_marks_overdue_in_colour_only_when_asked() -> None:
    """With colour, overdue headings and rows are bold red and today's are plain; without, no escape at all."""
    items = [entry("a", 1, "2026-11-28", "late"), entry("a", 2, "2026-12-02", "now")]
    plain = _render.agenda(items, "2026-12-02", color=False)
    coloured = _render.agenda(items, "2026-12-02", color=True)
    assert "\x1b" not in plain
    assert coloured.splitlines() == [
        "\x1b[1;31m2026-11-28  overdue\x1b[0m",
        "  \x1b[1;31ma  1  -  late\x1b[0m",
        "2026-12-02  today",
        "  a  2  -  now",
    ]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_use_color_needs_a_terminal_and_honours_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    """Colour is on for a terminal, off for a pipe, and off whenever NO_COLOR is set to anything non-empty."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert _render.use_color(_Tty())
    assert not _render.use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not _render.use_color(_Tty())
    monkeypatch.setenv("NO_COLOR", "")
    assert _render.use_color(_Tty())


def test_add_sends_tags_and_a_relative_date(daemon: FakeDaemon) -> None:
    """`todo add --tag A --tag B --date tomorrow` sends the tags and tomorrow's ISO date."""
    daemon.answer({"id": 1, "date": "2026-12-03", "title": "t", "done": False, "tags": ["a", "b"]})
    result = todo(daemon, "add", "home", "t", "--tag", "a", "--tag", "b", "--date", "tomorrow")
    assert result.exit_code == 0, result.output
    assert daemon.requests == [{"op": "add", "list": "home", "title": "t", "date": "2026-12-03", "tags": ["a", "b"]}]


def test_add_without_a_date_sends_the_local_today(daemon: FakeDaemon) -> None:
    """`todo add` without --date sends the CLI's local date at the fixed clock."""
    daemon.answer({"id": 1, "date": "2026-12-02", "title": "t", "done": False, "tags": []})
    assert todo(daemon, "add", "home", "t").exit_code == 0
    assert daemon.requests[0]["date"] == "2026-12-02"


def test_update_sends_tag_and_untag_and_shows_the_tags(daemon: FakeDaemon) -> None:
    """`todo update --tag --untag` sends both lists, alone they are a change, and the table shows TAGS."""
    daemon.answer({"id": 7, "date": "2026-12-04", "title": "t", "done": False, "tags": ["new", "x"]})
    result = todo(daemon, "update", "home", "7", "--tag", "new", "--untag", "old", "--date", "fri")
    assert result.exit_code == 0, result.output
    assert daemon.requests == [
        {"op": "update", "list": "home", "entry": 7, "date": "2026-12-04", "tag": ["new"], "untag": ["old"]}
    ]
    assert result.stdout == "ID  DATE        DONE  TAGS   TITLE\n 7  2026-12-04  no    new,x  t\n"


def test_entries_takes_a_relative_date(daemon: FakeDaemon) -> None:
    """`todo entries --date yesterday` sends yesterday's ISO date."""
    daemon.answer([])
    assert todo(daemon, "entries", "home", "--date", "yesterday").exit_code == 0
    assert daemon.requests[0] == {
        "op": "entries",
        "list": "home",
        "date": "2026-12-01",
        "limit": 10_000,
        "form": "rows",
    }


def test_an_unknown_date_word_is_invalid_data(daemon: FakeDaemon) -> None:
    """An unknown date word exits 65 with the accepted forms, and nothing is sent."""
    result = todo(daemon, "add", "home", "t", "--date", "someday")
    assert result.exit_code == 65
    assert result.stderr.startswith("todo: invalid: unknown date 'someday'; use one of: YYYY-MM-DD, today, tomorrow")
    assert daemon.requests == []


def test_clean_fast_path_matches_the_escape_table() -> None:
    """clean() skips printable text, and gives what the escape table gives for every character of the BMP."""
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        assert _render.clean(f"a{char}b") == f"a{char}b".translate(_render._ESCAPES), hex(code)


def _as_row(item: dict[str, Any]) -> list[Any]:
    return [item.get(key) for key in ("list", "id", "date", "title", "done", "version", "tags")]


@pytest.mark.parametrize("command", [("find",), ("today",)])
def test_find_and_today_print_rows_as_they_print_objects(daemon: FakeDaemon, command: tuple[str, ...]) -> None:
    """A page of rows prints the same table, agenda and --json as the same page of objects."""
    items = [  # the keys in the wire's order
        {"list": "home", "id": 2, "date": "2026-11-30", "title": "Buy milk", "done": False, "version": 3,
         "tags": ["a"]},
        {"list": "wörk ☃", "id": 11, "date": "2026-12-02", "title": "Report \x1b[31m", "done": False, "version": 1,
         "tags": []},
    ]  # fmt: skip
    outputs = []
    for page in (found(*items), {"entries": [_as_row(i) for i in items], "more": False}):
        for flags in ((), ("--json",)):
            daemon.answer(page)
            result = todo(daemon, *command, *flags)
            assert result.exit_code == 0, result.output
            outputs.append(result.stdout)
    assert outputs[0] == outputs[2] and outputs[1] == outputs[3]
    assert "\\x1b" in outputs[0] and json.loads(outputs[3]) == items


def test_find_asks_an_older_daemon_again_for_objects(daemon: FakeDaemon) -> None:
    """A daemon that refuses the 'form' field is asked again without it, and its objects are printed."""
    daemon.fail("bad_request", "unknown field 'form' for op 'find'")
    daemon.answer(found(entry("home", 2, "2026-11-30", "Buy milk")))
    result = todo(daemon, "find", "--pending")
    assert result.exit_code == 0, result.output
    assert daemon.requests == [
        {"op": "find", "done": False, "limit": FIND_FIRST_PAGE, "form": "rows"},
        {"op": "find", "done": False, "limit": FIND_FIRST_PAGE},
    ]
    assert "Buy milk" in result.stdout
    daemon.fail("bad_request", "unknown field 'colour' for op 'find'")
    assert todo(daemon, "find").exit_code != 0, "any other refusal is an error"


def test_find_over_dates_asks_small_pages_first_and_a_search_the_most_at_once(daemon: FakeDaemon) -> None:
    """A find over dates alone asks a small first page, then twice as much a page; a search or a tag the most."""
    first = entry("home", 2, "2026-11-30", "Buy milk")
    daemon.answer({"next": "5.2026-11-30.2.home", "entries": [first], "more": True})
    daemon.answer({"next": "5.2026-12-01.3.home", "entries": [entry("home", 3, "2026-12-01", "Call")], "more": True})
    daemon.answer(found(entry("work", 11, "2026-12-02", "Report")))
    result = todo(daemon, "find", "--pending")
    assert result.exit_code == 0, result.output
    assert [r["limit"] for r in daemon.requests] == [FIND_FIRST_PAGE, 2 * FIND_FIRST_PAGE, 4 * FIND_FIRST_PAGE]
    assert [r.get("after") for r in daemon.requests] == [None, "5.2026-11-30.2.home", "5.2026-12-01.3.home"]
    assert ["Buy milk" in result.stdout, "Call" in result.stdout, "Report" in result.stdout] == [True] * 3
    for options in (("--search", "milk"), ("--tag", "food")):
        daemon.requests.clear()
        daemon.answer(found(first))
        assert todo(daemon, "find", *options).exit_code == 0
        assert daemon.requests[0]["limit"] == PAGE_ENTRIES, options
    daemon.requests.clear()
    daemon.answer(found(first))
    assert todo(daemon, "find", "--pending", "--limit", "300").exit_code == 0
    assert daemon.requests[0]["limit"] == 300, "--limit below a first page asks that many"
