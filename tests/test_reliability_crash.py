"""Crash consistency: SIGKILL a todod under load from several processes and check every acknowledgement.

The harness is ``bench/crash_consistency.py``; CI runs three rounds of it, the
long run twenty or more (docs/RELIABILITY.md has the figures).  The checker's
own tests below feed it made-up journals and files, so a checker that passes
everything would fail here.
"""

from __future__ import annotations

from typing import Any

from bench.crash_consistency import Ledger, check_round, run_rounds

ADD = {"kind": "add", "list": "l", "entry": None}


def test_acknowledged_changes_survive_sigkill_under_load(store_uri: str | None) -> None:
    """Three rounds of four client processes, each ended by SIGKILL, lose no acknowledged change and reuse no id."""
    report = run_rounds(3, clients=4, lists=3, kill_after=(0, 300), store_uri=store_uri)
    assert report.rounds == 3 and report.kills == 3
    acked = sum(n for kind, n in report.stats.items() if kind.startswith("acked_"))
    assert acked > 0 and report.stats["acked_add"] > 0
    assert report.entries_at_end > 0


def _entry(entry_id: int, title: str, done: bool = False) -> dict[str, Any]:
    return {"id": entry_id, "date": "2026-11-22", "title": title, "done": done, "tags": []}


def _acked_add(entry_id: int, title: str) -> dict[str, Any]:
    after = {"date": "2026-11-22", "title": title, "done": False}
    return {**ADD, "fields": {"title": title, "date": "2026-11-22"}, "after": after, "ack": _entry(entry_id, title)}


def _ledger_with(entry: dict[str, Any]) -> Ledger:
    ledger = Ledger()
    ledger.known[("l", entry["id"])] = entry
    ledger.owner[("l", entry["id"])] = 0
    ledger.max_id["l"] = entry["id"]
    return ledger


def test_checker_accepts_a_consistent_round() -> None:
    """An acknowledged add found on disk with a higher next_id is no problem."""
    problems = check_round(Ledger(), {0: [_acked_add(1, "a")]}, {("l", 1): _entry(1, "a")}, {"l": 2})
    assert problems == []


def test_checker_flags_a_lost_acknowledged_add() -> None:
    """An acknowledged add missing from the file is reported."""
    problems = check_round(Ledger(), {0: [_acked_add(1, "a")]}, {}, {"l": 2})
    assert any("expected" in p and "found None" in p for p in problems), problems


def test_checker_flags_an_entry_never_requested() -> None:
    """An entry no client asked for is reported."""
    problems = check_round(Ledger(), {}, {("l", 7): _entry(7, "ghost")}, {"l": 8})
    assert any("never requested" in p for p in problems), problems


def test_checker_flags_a_resurrected_delete() -> None:
    """An entry whose delete was acknowledged must be gone."""
    before = _entry(1, "a")
    delete = {"kind": "delete", "list": "l", "entry": 1, "fields": {}, "before": before, "after": None, "ack": before}
    problems = check_round(_ledger_with(before), {0: [delete]}, {("l", 1): before}, {"l": 2})
    assert any("expected None" in p for p in problems), problems


def test_checker_flags_a_half_applied_change_in_doubt() -> None:
    """A change whose ack was lost must leave the entry before or after it, not a third state."""
    before = _entry(1, "a")
    after = _entry(1, "b")
    lost = {"kind": "title", "list": "l", "entry": 1, "fields": {"title": "b"}, "before": before, "after": after}
    problems = check_round(_ledger_with(before), {0: [lost]}, {("l", 1): _entry(1, "b", done=True)}, {"l": 2})
    assert any("in doubt" in p for p in problems), problems


def test_checker_adopts_either_outcome_of_a_change_in_doubt() -> None:
    """A change whose ack was lost may be applied or not; the ledger takes what the file holds."""
    before, after = _entry(1, "a"), _entry(1, "b")
    lost = {"kind": "title", "list": "l", "entry": 1, "fields": {"title": "b"}, "before": before, "after": after}
    for found in (before, after):
        ledger = _ledger_with(before)
        assert check_round(ledger, {0: [lost]}, {("l", 1): found}, {"l": 2}) == []
        assert ledger.known[("l", 1)] == found


def test_checker_flags_reused_ids() -> None:
    """An add acknowledged with an id already seen, or a next_id not above every id seen, is reported."""
    ledger = _ledger_with(_entry(5, "old"))
    ledger.known[("l", 5)] = None  # deleted earlier: its id must still never come back
    problems = check_round(ledger, {0: [_acked_add(5, "new")]}, {("l", 5): _entry(5, "new")}, {"l": 5})
    assert any("reused id" in p for p in problems), problems
    assert any("next_id" in p for p in problems), problems


def test_checker_flags_a_duplicated_add() -> None:
    """An add in doubt found twice (two ids, one title) is reported."""
    lost = {
        **ADD,
        "fields": {"title": "t", "date": "2026-11-22"},
        "after": {"date": "2026-11-22", "title": "t", "done": False},
    }
    entries = {("l", 1): _entry(1, "t"), ("l", 2): _entry(2, "t")}
    problems = check_round(Ledger(), {0: [lost]}, entries, {"l": 3})
    assert any("appears 2 times" in p for p in problems), problems
