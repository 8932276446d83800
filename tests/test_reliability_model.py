"""Model-based testing of a running todod: random operations and restarts, every answer checked against a model.

A hypothesis state machine drives a real daemon through the protocol with
add, update, done, delete, entries and lists on a few lists, and restarts it
now and then with SIGTERM or SIGKILL.  A plain Python model predicts every
answer, error codes included; after a SIGKILL every acknowledged write must
still be there, since an acknowledgement means the change is durable.
"""

from __future__ import annotations

import datetime
import shutil
import signal
import unicodedata
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.daemon import Daemon, request, short_tempdir
from todod.protocol import TodoError

LISTS = ["work", "ünï ✓", ".."]
DATES = [None, "2026-11-22", "2026-12-24", "2027-02-28"]

# Mostly ordinary titles; one in four the daemon must strip or refuse.
plain_titles = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=12)
ODD_TITLES = ["  padded  ", "", "   ", "line\nbreak", "esc \x1b[31m", "tab\tin", "nul\x00", "\u2028sep", "bell\x07"]
odd_titles = st.sampled_from([*ODD_TITLES, " \u00a0nbsp\u00a0 ", "x" * 1000, "y" * 1001])
titles = st.one_of(plain_titles, plain_titles, plain_titles, odd_titles)


def _model_title(title: str) -> str | None:
    """What validate_title makes of ``title``: the stripped title, or None when it must be refused."""
    stripped = title.strip()
    if not stripped or len(stripped) > 1000:
        return None
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in stripped):
        return None
    if all(ch in _SHOW_NOTHING or unicodedata.category(ch) in ("Zs", "Cf", "Mn", "Me") for ch in stripped):
        return None  # no visible character: refused (docs/PROTOCOL.md)
    return stripped


#: Letters that show nothing: the Hangul fillers and the blank Braille pattern
#: (plain_titles draws them, as category L; str.strip() keeps them).
_SHOW_NOTHING = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _call(daemon: Daemon, op: str, **fields: Any) -> tuple[bool, Any]:
    """(True, result) or (False, error code)."""
    try:
        return True, request(daemon.socket, op, **fields)
    except TodoError as exc:
        return False, exc.code


class TodoMachine(RuleBasedStateMachine):
    """The daemon against a dict of lists; each list a dict of entries and a next id."""

    def __init__(self) -> None:
        super().__init__()
        self.root = short_tempdir()
        self.daemon = Daemon(self.root, ["--call-timeout", "10"]).start()
        self.lists: dict[str, dict[int, dict[str, Any]]] = {}
        self.next_id: dict[str, int] = {}
        self.writes_since_restart = 0
        self.total_writes = 0

    def teardown(self) -> None:
        event(f"writes={self.total_writes}")
        self.daemon.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)

    def _ids(self, name: str) -> list[int]:
        return sorted(self.lists.get(name, {}))

    @initialize(adds=st.lists(st.tuples(st.sampled_from(LISTS), plain_titles), min_size=1, max_size=4))
    def seed(self, adds: list[tuple[str, str]]) -> None:
        # Hypothesis turns rules off at random per run (swarm testing); a few
        # entries from the start give update, delete and restart work even
        # in a run without the add rule.
        for name, title in adds:
            self.add(name, title, "2026-11-22")

    @rule(name=st.sampled_from(LISTS), title=titles, date=st.sampled_from(DATES))
    def add(self, name: str, title: str, date: str | None) -> None:
        today = {datetime.date.today().isoformat()}
        ok, result = _call(self.daemon, "add", list=name, title=title, date=date)
        today.add(datetime.date.today().isoformat())  # the call may straddle midnight
        expected = _model_title(title)
        if expected is None:
            assert (ok, result) == (False, "invalid")
            return
        assert ok, result
        entry_id = self.next_id.get(name, 1)
        assert result == {
            "id": entry_id,
            "date": date or result["date"],
            "title": expected,
            "done": False,
            "version": 1,
            "tags": [],
        }
        assert date is not None or result["date"] in today
        self.lists.setdefault(name, {})[entry_id] = result
        self.next_id[name] = entry_id + 1
        self.writes_since_restart += 1
        self.total_writes += 1

    @rule(name=st.sampled_from(LISTS), data=st.data())
    def update(self, name: str, data: st.DataObject) -> None:
        entry_id = data.draw(st.sampled_from([*self._ids(name), 0, 99]), label="entry")
        fields = data.draw(
            st.fixed_dictionaries(
                {}, optional={"title": titles, "date": st.sampled_from(DATES[1:]), "done": st.booleans()}
            ),
            label="fields",
        )
        ok, result = _call(self.daemon, "update", list=name, entry=entry_id, **fields)
        if not fields:
            assert (ok, result) == (False, "bad_request")
            return
        title = fields.get("title")
        if isinstance(title, str) and _model_title(title) is None:
            assert (ok, result) == (False, "invalid")
            return
        current = self.lists.get(name, {}).get(entry_id)
        if current is None:
            assert (ok, result) == (False, "not_found")
            return
        if isinstance(title, str):
            fields["title"] = _model_title(title)
        expected = {**current, **fields, "version": current["version"] + 1}
        assert (ok, result) == (True, expected)
        self.lists[name][entry_id] = expected
        self.writes_since_restart += 1
        self.total_writes += 1

    @rule(name=st.sampled_from(LISTS), data=st.data())
    def done(self, name: str, data: st.DataObject) -> None:
        entry_id = data.draw(st.sampled_from([*self._ids(name), 42]), label="entry")
        ok, result = _call(self.daemon, "update", list=name, entry=entry_id, done=True)
        current = self.lists.get(name, {}).get(entry_id)
        if current is None:
            assert (ok, result) == (False, "not_found")
            return
        assert (ok, result) == (True, {**current, "done": True, "version": current["version"] + 1})
        self.lists[name][entry_id] = result
        self.writes_since_restart += 1
        self.total_writes += 1

    @rule(name=st.sampled_from(LISTS), data=st.data())
    def delete(self, name: str, data: st.DataObject) -> None:
        entry_id = data.draw(st.sampled_from([*self._ids(name), 7]), label="entry")
        ok, result = _call(self.daemon, "delete", list=name, entry=entry_id)
        current = self.lists.get(name, {}).pop(entry_id, None)
        if current is None:
            assert (ok, result) == (False, "not_found")
            return
        assert (ok, result) == (True, current)
        self.writes_since_restart += 1
        self.total_writes += 1

    @rule(name=st.sampled_from(LISTS), date=st.sampled_from(DATES))
    def entries(self, name: str, date: str | None) -> None:
        ok, result = _call(self.daemon, "entries", list=name, date=date)
        expected = [e for _i, e in sorted(self.lists.get(name, {}).items()) if date is None or e["date"] == date]
        assert (ok, result) == (True, expected)

    @rule()
    def lists_(self) -> None:
        ok, result = _call(self.daemon, "lists")
        # A list exists once a write to it was committed, even if it is empty again.
        expected = sorted(({"name": n, "entries": len(e)} for n, e in self.lists.items()), key=lambda x: str(x["name"]))
        assert (ok, result) == (True, expected)

    @precondition(lambda self: self.writes_since_restart >= 1)
    @rule(sig=st.sampled_from([signal.SIGTERM, signal.SIGKILL]))
    def restart(self, sig: signal.Signals) -> None:
        event(f"restart with {sig.name}")
        status = self.daemon.stop(sig)
        assert status == (0 if sig == signal.SIGTERM else -signal.SIGKILL), self.daemon.log()
        self.daemon.start()
        self.writes_since_restart = 0

    @invariant()
    def daemon_alive(self) -> None:
        assert self.daemon.proc is not None and self.daemon.proc.poll() is None, self.daemon.log()


TodoMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_daemon_matches_the_model = TodoMachine.TestCase
test_daemon_matches_the_model.__doc__ = (
    "Random operations and SIGTERM/SIGKILL restarts give the answers the model predicts, acks surviving kills."
)
