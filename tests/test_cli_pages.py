"""`todo find` and `todo history` page through answers far over one page, against a real daemon."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import backend_env
from tests.daemon import Daemon, raw_exchange, request, run_cli, running_daemon
from todod.protocol import encode_request

#: 1,000-character non-ASCII titles: about 6 KB of JSON an entry, so 1,200
#: of them are seven pages of a MiB, in find and in history alike.
TITLES = [f"{i:04d} " + "é" * 995 for i in range(1, 1201)]


@pytest.fixture(scope="module")
def daemon(module_store_uri: str | None) -> Iterator[Daemon]:
    """A daemon with 1,200 long entries: even ids in `a`, odd in `b`, over three dates (on each backend)."""
    with running_daemon(env=backend_env(module_store_uri)) as d:
        for start in range(0, len(TITLES), 100):
            batch = b"".join(
                encode_request("add", list="ab"[i % 2], title=t, date=f"2026-01-0{1 + i % 3}")
                for i, t in enumerate(TITLES[start : start + 100], start)
            )
            assert all(r["ok"] for r in raw_exchange(d.socket, batch))
        yield d


def todo(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(args, daemon.cli_env())
    assert result.returncode == 0, (result.stdout, result.stderr[-2000:])
    return result


def test_find_streams_every_page_and_limit_is_the_total(daemon: Daemon) -> None:
    """`todo find` prints every match across pages in (date, list, id) order; --limit N prints N and notes the rest."""
    page = request(daemon.socket, "find")
    assert page["next"] is not None and page["more"] and len(page["entries"]) < 300, "one answer is a MiB"
    found = json.loads(todo(daemon, "find", "--json").stdout)
    assert len(found) == len(TITLES)
    keys = [(e["date"], e["list"], e["id"]) for e in found]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert sorted(e["title"] for e in found) == TITLES
    table = todo(daemon, "find").stdout.splitlines()
    assert table[0].split() == ["DATE", "LIST", "ID", "DONE", "TAGS", "TITLE"] and len(table) == 1 + len(TITLES)
    limited = todo(daemon, "find", "--limit", "1100", "--list", "a", "--list", "b")
    assert len(limited.stdout.splitlines()) == 1 + 1100
    assert "showing the first 1100 entries; more match" in limited.stderr
    exact = todo(daemon, "find", "--limit", "600", "--list", "a", "--json")
    assert [e["id"] for e in json.loads(exact.stdout)] == [e["id"] for e in found if e["list"] == "a"]
    assert "more match" not in exact.stderr, "600 entries in list a: nothing more"


def test_history_streams_every_page_and_limit_is_the_last_n(daemon: Daemon) -> None:
    """`todo history` prints every event across pages in position order; --limit N the last N, oldest first."""
    events = json.loads(todo(daemon, "history", "a", "--json").stdout)
    assert set(events) == {"list", "horizon", "base_entries", "events"}
    items = events["events"]
    assert [e["seq"] for e in items] == list(range(1, 601))
    positions = [e["position"] for e in items]
    assert positions == sorted(set(positions))
    assert [e["after"]["title"] for e in items] == TITLES[0::2]
    last = json.loads(todo(daemon, "history", "a", "--limit", "450", "--json").stdout)["events"]
    assert [e["seq"] for e in last] == list(range(151, 601))
    table = todo(daemon, "history", "b", "--limit", "500").stdout.splitlines()
    assert table[0].split() == ["SEQ", "POS", "TIME", "OP", "ID", "VER", "ENTRY"]
    assert len(table) == 501 and table[1].split()[0] == "101" and table[-1].split()[0] == "600"


def test_today_streams_every_page_under_its_date_headings(daemon: Daemon) -> None:
    """`todo today` shows all 1,200 overdue entries over seven pages, one heading per date, columns never narrowing."""
    assert len(json.loads(todo(daemon, "today", "--json").stdout)) == len(TITLES)
    lines = todo(daemon, "today").stdout.splitlines()
    assert [line for line in lines if not line.startswith("  ")] == [
        "2026-01-01  overdue",
        "2026-01-02  overdue",
        "2026-01-03  overdue",
    ]
    assert len(lines) == 3 + len(TITLES)
    title_columns = [line.index("é") - 5 for line in lines if line.startswith("  ")]
    assert title_columns == sorted(title_columns)
