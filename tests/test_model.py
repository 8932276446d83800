"""The pure list model: TodoList against a dict model, validation, and Draft batches."""

from __future__ import annotations

import datetime
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from todod._model import (
    MAX_LIST_NAME,
    MAX_TITLE,
    Change,
    Draft,
    Entry,
    Event,
    TodoList,
    parse_date,
    replay,
    validate_list_name,
    validate_tag,
    validate_tags,
    validate_title,
)
from todod.protocol import Invalid, NotFound

DAY = datetime.date(2026, 2, 3)

dates = st.dates(min_value=datetime.date(2000, 1, 1), max_value=datetime.date(2100, 12, 31))
titles = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)


# --- the model against a plain dict -------------------------------------------


class TodoListMachine(RuleBasedStateMachine):
    """TodoList driven by random operations, checked against a dict of tuples."""

    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.todo = TodoList()
        self.model: dict[int, tuple[datetime.date, str, bool]] = {}
        self.issued: set[int] = set()
        self.log: list[Event] = []

    def _logged(self, change: Change, before: Entry | None, after: Entry | None) -> None:
        (event,) = change.events
        assert (event.seq, event.before, event.after) == (self.todo.seq, before, after)
        assert change.seq == event.seq == len(self.log) + 1
        self.log.append(event)

    @rule(target=ids, date=dates, title=titles)
    def add(self, date: datetime.date, title: str) -> int:
        self.todo, entry, change = self.todo.add(date, title)
        assert entry.id not in self.issued, "an id was handed out twice"
        assert entry == Entry(entry.id, date, title, False, version=1)
        self._logged(change, None, entry)
        self.issued.add(entry.id)
        self.model[entry.id] = (date, title, False)
        return entry.id

    @rule(entry_id=ids, title=st.none() | titles, date=st.none() | dates, done=st.none() | st.booleans())
    def update(self, entry_id: int, title: str | None, date: datetime.date | None, done: bool | None) -> None:
        if entry_id not in self.model:
            with pytest.raises(NotFound):
                self.todo.update(entry_id, title=title, date=date, done=done)
            return
        old_date, old_title, old_done = self.model[entry_id]
        expected = (
            old_date if date is None else date,
            old_title if title is None else title,
            old_done if done is None else done,
        )
        old = self.todo.get(entry_id)
        self.todo, entry, change = self.todo.update(entry_id, title=title, date=date, done=done)
        assert (entry.date, entry.title, entry.done) == expected
        assert entry.version == old.version + 1
        self._logged(change, old, entry)
        self.model[entry_id] = expected

    @rule(entry_id=consumes(ids))
    def delete(self, entry_id: int) -> None:
        if entry_id not in self.model:
            with pytest.raises(NotFound):
                self.todo.delete(entry_id)
            return
        self.todo, entry, change = self.todo.delete(entry_id)
        assert entry.id == entry_id
        self._logged(change, entry, None)
        del self.model[entry_id]

    @rule(entry_id=st.integers(min_value=0, max_value=10_000))
    def unknown_id(self, entry_id: int) -> None:
        if entry_id in self.model:
            return
        with pytest.raises(NotFound):
            self.todo.get(entry_id)
        with pytest.raises(NotFound):
            self.todo.update(entry_id, done=True)
        with pytest.raises(NotFound):
            self.todo.delete(entry_id)

    @rule(date=dates)
    def entries_of_a_date(self, date: datetime.date) -> None:
        got = [(e.id, e.date, e.title, e.done) for e in self.todo.list_entries(date)]
        want = [(i, *v) for i, v in sorted(self.model.items()) if v[0] == date]
        assert got == want

    @invariant()
    def matches_model(self) -> None:
        assert self.todo.size() == len(self.model)
        got = [(e.id, e.date, e.title, e.done) for e in self.todo.list_entries()]
        assert got == [(i, *v) for i, v in sorted(self.model.items())]
        # ids are never reused: the next one is above every id ever issued.
        assert self.todo.next_id == max(self.issued, default=0) + 1
        # The entries are what the log of their changes replays to.
        assert replay((), self.log) == dict(self.todo.entries)


def test_todo_list_matches_a_dict_model() -> None:
    """Random add/update/delete sequences keep TodoList equal to a dict model, with ids never reused."""
    run_state_machine_as_test(
        TodoListMachine, settings=settings(max_examples=150, stateful_step_count=40, deadline=None)
    )


def test_operations_leave_the_original_value_untouched() -> None:
    """A TodoList is a value: operations return a new list and never change the old one."""
    empty = TodoList()
    one, entry, _ = empty.add(DAY, "a")
    two, _, _ = one.update(entry.id, done=True)
    three, _, _ = two.delete(entry.id)
    assert empty.size() == 0
    assert one.get(entry.id).done is False
    assert two.get(entry.id).done is True
    assert three.size() == 0
    assert three.next_id == 2


def test_from_entries_never_hands_out_a_stored_id() -> None:
    """from_entries raises next_id above the highest stored id even if told a lower one."""
    todo = TodoList.from_entries([Entry(7, DAY, "seven")], next_id=3)
    assert todo.next_id == 8
    _, entry, _ = todo.add(DAY, "eight")
    assert entry.id == 8


def test_entries_are_in_id_order() -> None:
    """list_entries returns entries sorted by id whatever order they were built in."""
    todo = TodoList.from_entries([Entry(i, DAY, str(i)) for i in (5, 2, 9, 1)], next_id=1)
    assert [e.id for e in todo.list_entries()] == [1, 2, 5, 9]


# --- the Draft ------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), dates, titles),
        st.tuples(
            st.just("update"),
            st.integers(1, 12),
            st.none() | titles,
            st.none() | dates,
            st.none() | st.booleans(),
        ),
        st.tuples(st.just("delete"), st.integers(1, 12)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops)
def test_draft_batch_equals_successive_operations(ops: list[tuple[object, ...]]) -> None:
    """A Draft applying a batch gives the same list, results and changes as successive TodoList ops."""
    base, _, _ = TodoList().add(DAY, "existing")
    draft = Draft(base)
    todo = base
    for op in ops:
        try:
            got = _apply(draft, op)
        except NotFound as exc:
            got = exc
        try:
            todo, entry, change = _apply(todo, op)
        except NotFound:
            assert isinstance(got, NotFound), f"{op}: the draft accepted what the list refused"
        else:
            assert got == (entry, change), op
        assert draft.list_entries() == todo.list_entries()
    assert draft.freeze() == todo
    assert base.list_entries() == (Entry(1, DAY, "existing"),), "the draft changed its base"


def _apply(target: Any, op: tuple[Any, ...]) -> Any:
    match op:
        case ("add", date, title):
            return target.add(date, title)
        case ("update", entry_id, title, date, done):
            return target.update(entry_id, title=title, date=date, done=done)
        case ("delete", entry_id):
            return target.delete(entry_id)
    raise AssertionError(op)


def test_draft_is_frozen_once() -> None:
    """Freezing a draft twice is a programming error, caught by an assertion."""
    draft = Draft(TodoList())
    draft.freeze()
    with pytest.raises(AssertionError):
        draft.freeze()


# --- validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-30",
        "2026-2-3",
        "2026-02-3",
        "26-02-03",
        "2026/02/03",
        "",
        "2026-02-03x",
        "2026-0\uff12-03",
        "20260203",
    ],
)
def test_parse_date_rejects(text: str) -> None:
    """Impossible dates and anything but strict YYYY-MM-DD are Invalid."""
    with pytest.raises(Invalid):
        parse_date(text)


def test_parse_date_accepts_a_leap_day() -> None:
    """A real date in YYYY-MM-DD form, a leap day included, parses."""
    assert parse_date("2024-02-29") == datetime.date(2024, 2, 29)


@pytest.mark.parametrize(
    "title",
    ["", "   ", "\t\n", "two\nlines", "esc\x1b[31mred", "bell\x07", "sep\u2028arator", "x" * (MAX_TITLE + 1)],
)
def test_validate_title_rejects(title: str) -> None:
    """Empty, whitespace-only, multi-line, control-character and over-long titles are Invalid."""
    with pytest.raises(Invalid):
        validate_title(title)


def test_validate_title_strips_and_keeps_unicode() -> None:
    """A title is stripped of outer whitespace; 1,000 characters and non-ASCII text are fine."""
    assert validate_title("  buy milk  ") == "buy milk"
    assert validate_title("é" * MAX_TITLE) == "é" * MAX_TITLE
    assert validate_title("café ☕ 日本") == "café ☕ 日本"


@pytest.mark.parametrize("name", ["", "x" * (MAX_LIST_NAME + 1), "a/b", "/", "tab\tname", "nul\x00", "del\x7f"])
def test_validate_list_name_rejects(name: str) -> None:
    """Empty, over-long, slash-containing and control-character list names are Invalid."""
    with pytest.raises(Invalid):
        validate_list_name(name)


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30))
def test_control_check_matches_the_unicode_categories(text: str) -> None:
    """A title is refused for control characters exactly when one of its characters is Cc, Zl or Zp."""
    stripped = text.strip()
    if not stripped or len(stripped) > MAX_TITLE:
        return
    try:
        validate_title(text)
        refused = False
    except Invalid as exc:
        refused = "control" in exc.message
    assert refused == any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in stripped)


@pytest.mark.parametrize("name", ["x", "x" * MAX_LIST_NAME, "work stuff", "Éléments"])
def test_validate_list_name_accepts(name: str) -> None:
    """Names of 1 to 200 characters without '/' or control characters are returned unchanged."""
    assert validate_list_name(name) == name


# --- tags ---------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["", "two words", "a/b", "#work", "x" * 33, "tab\t", "é\u0301x!"])
def test_validate_tag_rejects(tag: str) -> None:
    """A tag that is empty, longer than 32 characters, or not one word of letters, digits, '-', '_' is invalid."""
    with pytest.raises(Invalid):
        validate_tag(tag)


def test_validate_tag_lower_cases_and_keeps_unicode_letters() -> None:
    """Tags are lower-cased (and NFC-composed), so `Work` and `work` are one tag."""
    assert validate_tag("Work") == "work"
    assert validate_tag("Q4-plan_2") == "q4-plan_2"
    assert validate_tag("Cafe\u0301") == "café"
    assert validate_tag("x" * 32) == "x" * 32


def test_entry_tags_are_sorted_and_on_the_wire() -> None:
    """An entry keeps its tags sorted without duplicates, and its wire form carries them."""
    entry = Entry(1, datetime.date(2026, 1, 2), "t", tags=["b", "a", "b"])
    assert entry.tags == ("a", "b")
    assert entry.to_wire()["tags"] == ["a", "b"]
    assert Entry(1, datetime.date(2026, 1, 2), "t").to_wire()["tags"] == []


def test_update_adds_and_removes_tags_within_the_limit() -> None:
    """update tags and untags; removing a missing tag is harmless; a 17th tag or a tag both ways is invalid."""
    day = datetime.date(2026, 1, 2)
    todo, entry, _ = TodoList().add(day, "t", validate_tags(["a", "b"]))
    assert entry.tags == ("a", "b")
    before = entry
    todo, entry, change = todo.update(entry.id, tag={"c"}, untag={"a", "zzz"})
    assert entry.tags == ("b", "c") and [(e.before, e.after) for e in change.events] == [(before, entry)]
    todo, entry, _ = todo.update(entry.id, done=True)
    assert entry.tags == ("b", "c")
    with pytest.raises(Invalid, match="both added and removed"):
        todo.update(entry.id, tag={"b"}, untag={"b"})
    with pytest.raises(Invalid, match="at most 16 tags"):
        todo.update(entry.id, tag={f"t{i}" for i in range(15)})
    with pytest.raises(Invalid, match="at most 16 tags"):
        validate_tags([f"t{i}" for i in range(17)])
    assert len(validate_tags([f"t{i}" for i in range(16)] + ["T0"])) == 16


@pytest.mark.parametrize("name", ["  home", "home  ", "\thome\u3000"])
def test_validate_list_name_strips(name: str) -> None:
    """List names are stripped of surrounding white space, like titles."""
    assert validate_list_name(name) == "home"


@pytest.mark.parametrize("blank", ["", "   ", "\u200b", "\u200b\u200d", "\u3164", "\u2800", "\u0301", "\ufeff "])
def test_blank_names_and_titles_are_refused(blank: str) -> None:
    """A list name or title of only white space or invisible characters is refused."""
    with pytest.raises(Invalid):
        validate_list_name(blank)
    with pytest.raises(Invalid):
        validate_title(blank)


@pytest.mark.parametrize("text", ["a\u200b", "\u200bé", "日本", "\u0301e"])
def test_text_with_a_visible_character_is_accepted(text: str) -> None:
    """One visible character is enough, invisible ones around it are kept."""
    assert validate_list_name(text) == text
    assert validate_title(text) == text
