"""The to-do list as a pure value (the book's ``Todo.List``), with validation.

No trio here: every operation takes a :class:`TodoList` and returns a new one
together with the changes the store must make durable.  The list server
applies operations to a copy and adopts it only once the store has committed.
"""

from __future__ import annotations

import datetime
import unicodedata
from collections.abc import Iterable, Mapping

import attrs
import immutables

from todod.protocol import Invalid, NotFound

MAX_TITLE = 1000
MAX_LIST_NAME = 200


def _has_control(text: str) -> bool:
    # Cc covers C0, DEL and C1; line and paragraph separators would break a
    # one-line title in a terminal or a log as surely as a newline does.
    # str.isprintable() is False for every Cc, Zl and Zp character, so a
    # printable text skips the per-character scan, which was about 8% of the
    # event loop's CPU per add (bench/core_throughput.py under cProfile).
    return not text.isprintable() and any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


def _has_surrogate(text: str) -> bool:
    # A lone surrogate (JSON allows "\ud800") is no character: it has no UTF-8
    # form, so SQLite cannot store it.  Unrefused, it failed the commit of
    # every list in its group and crashed a list server at load.
    return not text.isprintable() and any("\ud800" <= ch <= "\udfff" for ch in text)


def validate_title(title: str) -> str:
    """Return the title stripped; raise :class:`Invalid` unless it is one clean line."""
    stripped = title.strip()
    if not stripped:
        raise Invalid("a title must not be empty")
    if len(stripped) > MAX_TITLE:
        raise Invalid(f"a title is at most {MAX_TITLE} characters (got {len(stripped)})")
    if _has_control(stripped):
        raise Invalid("a title must be one line without control characters")
    if _has_surrogate(stripped):
        raise Invalid("a title must be valid Unicode (it holds a lone surrogate)")
    return stripped


def validate_list_name(name: str) -> str:
    """Return the list name unchanged; raise :class:`Invalid` unless it is allowed."""
    if not 1 <= len(name) <= MAX_LIST_NAME:
        raise Invalid(f"a list name is 1 to {MAX_LIST_NAME} characters (got {len(name)})")
    if "/" in name:
        raise Invalid("a list name must not contain '/'")
    if _has_control(name):
        raise Invalid("a list name must not contain control characters")
    if _has_surrogate(name):
        raise Invalid("a list name must be valid Unicode (it holds a lone surrogate)")
    return name


def parse_date(text: str) -> datetime.date:
    """Parse a strict ``YYYY-MM-DD`` date; raise :class:`Invalid` for anything else."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-" or not text.replace("-", "").isascii():
        raise Invalid(f"a date is YYYY-MM-DD (got {text[:40]!r})")
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{text!r} is not a real date") from None


@attrs.frozen
class Entry:
    """One to-do entry.  Its id never changes."""

    id: int
    date: datetime.date
    title: str
    done: bool = False

    def to_wire(self) -> dict[str, object]:
        return {"id": self.id, "date": self.date.isoformat(), "title": self.title, "done": self.done}


# --- changes: what the store makes durable ----------------------------------


@attrs.frozen
class PutEntry:
    """Insert or replace one entry."""

    entry: Entry


@attrs.frozen
class RemoveEntry:
    """Remove one entry by id."""

    entry_id: int


Change = PutEntry | RemoveEntry


def _select(entries: Mapping[int, Entry], date: datetime.date | None) -> tuple[Entry, ...]:
    return tuple(e for _id, e in sorted(entries.items()) if date is None or e.date == date)


def _to_map(entries: Mapping[int, Entry]) -> immutables.Map[int, Entry]:
    return entries if isinstance(entries, immutables.Map) else immutables.Map(entries)


@attrs.frozen
class TodoList:
    """A to-do list: entries by id and the next id to hand out.

    ``next_id`` only grows, so ids are never reused, even after a delete.
    Operations return a new list; :class:`Draft` applies a batch of them.
    """

    #: A persistent map (a hash array mapped trie): a batch of changes makes
    #: a new map that shares all but the changed paths with the old one, so
    #: a write costs O(log n), not a copy of the list.  A dict copied per
    #: batch cost 9 us per add on a list of 60,000 entries, and grew with it.
    entries: immutables.Map[int, Entry] = attrs.field(factory=immutables.Map, converter=_to_map)
    next_id: int = 1

    @classmethod
    def from_entries(cls, entries: Iterable[Entry], next_id: int) -> TodoList:
        by_id = {e.id: e for e in entries}
        return cls(by_id, max(next_id, max(by_id, default=0) + 1))

    def size(self) -> int:
        return len(self.entries)

    def get(self, entry_id: int) -> Entry:
        try:
            return self.entries[entry_id]
        except KeyError:
            raise NotFound(f"no entry {entry_id}") from None

    def list_entries(self, date: datetime.date | None = None) -> tuple[Entry, ...]:
        """All entries, or those of one date, in id order."""
        return _select(self.entries, date)

    def add(self, date: datetime.date, title: str) -> tuple[TodoList, Entry, Change]:
        draft = Draft(self)
        entry, change = draft.add(date, title)
        return draft.freeze(), entry, change

    def update(
        self,
        entry_id: int,
        *,
        title: str | None = None,
        date: datetime.date | None = None,
        done: bool | None = None,
    ) -> tuple[TodoList, Entry, Change]:
        draft = Draft(self)
        entry, change = draft.update(entry_id, title=title, date=date, done=done)
        return draft.freeze(), entry, change

    def delete(self, entry_id: int) -> tuple[TodoList, Entry, Change]:
        draft = Draft(self)
        entry, change = draft.delete(entry_id)
        return draft.freeze(), entry, change


class Draft:
    """A private working copy of a :class:`TodoList` for one batch of writes.

    It is a mutation of the list's persistent map: the base list is never
    changed, and :meth:`freeze` hands the result over as a new value.
    """

    __slots__ = ("_changed", "_entries", "_frozen", "base", "next_id")

    def __init__(self, base: TodoList) -> None:
        self.base = base
        self._entries = base.entries.mutate()
        self.next_id = base.next_id
        self._frozen = False
        self._changed = False

    def list_entries(self, date: datetime.date | None = None) -> tuple[Entry, ...]:
        """Like :meth:`TodoList.list_entries`, on the draft's current state."""
        # A mutation cannot be iterated: take its value and go on mutating a
        # copy (both steps are cheap; the map is persistent).
        current = self._entries.finish()
        self._entries = current.mutate()
        return _select(current, date)

    def current(self) -> immutables.Map[int, Entry]:
        """The draft's current entries, as a value that later changes to the draft leave alone.

        Unchanged, it is the base list's own map, the same object every time:
        readers of one version can share one snapshot of it.
        """
        if not self._changed:
            return self.base.entries
        current = self._entries.finish()
        self._entries = current.mutate()
        return current

    def get(self, entry_id: int) -> Entry:
        try:
            return self._entries[entry_id]
        except KeyError:
            raise NotFound(f"no entry {entry_id}") from None

    def add(self, date: datetime.date, title: str) -> tuple[Entry, Change]:
        entry = Entry(self.next_id, date, title)
        self._entries[entry.id] = entry
        self._changed = True
        self.next_id += 1
        return entry, PutEntry(entry)

    def update(
        self,
        entry_id: int,
        *,
        title: str | None = None,
        date: datetime.date | None = None,
        done: bool | None = None,
    ) -> tuple[Entry, Change]:
        old = self.get(entry_id)
        new = attrs.evolve(
            old,
            title=old.title if title is None else title,
            date=old.date if date is None else date,
            done=old.done if done is None else done,
        )
        self._entries[entry_id] = new
        self._changed = True
        return new, PutEntry(new)

    def delete(self, entry_id: int) -> tuple[Entry, Change]:
        old = self.get(entry_id)
        del self._entries[entry_id]
        self._changed = True
        return old, RemoveEntry(entry_id)

    def freeze(self) -> TodoList:
        """The new list value; the draft must not be used afterwards."""
        assert not self._frozen, "a draft is frozen once"
        self._frozen = True
        return TodoList(self._entries.finish(), self.next_id)
