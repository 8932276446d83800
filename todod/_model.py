"""The to-do list as a pure value (the book's ``Todo.List``), with validation.

No trio here: every operation takes a :class:`TodoList` and returns a new one
together with the change the store must make durable.  The list server
applies operations to a copy and adopts it only once the store has committed.

A :class:`Change` is what one request did to one list: its events, each the
entry before and after, numbered by the list's ``seq``.  The store writes the
events to the change log and applies them to the entries it serves in the
same transaction, so the entries are a materialized view of the log.
"""

from __future__ import annotations

import datetime
import unicodedata
from collections.abc import Iterable, Mapping

import attrs
import immutables

from todod.protocol import Conflict, Invalid, NotFound

MAX_TITLE = 1000
MAX_LIST_NAME = 200
#: A tag is a short word for grouping entries across lists; 16 of 32
#: characters keep an entry's tags on one table line and bound the tag index
#: at 16 rows per entry.
MAX_TAG = 32
MAX_TAGS = 16


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


#: Characters that show nothing although they are neither white space nor
#: format characters (Cf): Hangul fillers and the blank Braille pattern, the
#: usual ways to make a "blank" name that str.strip() keeps.
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _invisible(text: str) -> bool:
    """Whether ``text`` (already stripped) shows nothing: only format, combining or blank characters."""
    if text.isascii():
        return False  # a stripped, non-empty ASCII text has a visible character or a control (refused)
    return all(
        ch in _BLANKS or ch.isspace() or unicodedata.category(ch) in ("Cf", "Mn", "Me", "Cc", "Zs") for ch in text
    )


def validate_title(title: str) -> str:
    """Return the title stripped; raise :class:`Invalid` unless it is one clean, visible line."""
    stripped = title.strip()
    if not stripped:
        raise Invalid("a title must not be empty")
    if len(stripped) > MAX_TITLE:
        raise Invalid(f"a title is at most {MAX_TITLE} characters (got {len(stripped)})")
    if _has_control(stripped):
        raise Invalid("a title must be one line without control characters")
    if _has_surrogate(stripped):
        raise Invalid("a title must be valid Unicode (it holds a lone surrogate)")
    if _invisible(stripped):
        raise Invalid("a title must have a visible character (it is only white space or invisible characters)")
    return stripped


def validate_list_name(name: str) -> str:
    """Return the list name stripped, like a title; raise :class:`Invalid` unless it is allowed."""
    name = name.strip()
    if not name:
        raise Invalid("a list name must not be empty or only white space")
    if len(name) > MAX_LIST_NAME:
        raise Invalid(f"a list name is 1 to {MAX_LIST_NAME} characters (got {len(name)})")
    if "/" in name:
        raise Invalid("a list name must not contain '/'")
    if _has_control(name):
        raise Invalid("a list name must not contain control characters")
    if _has_surrogate(name):
        raise Invalid("a list name must be valid Unicode (it holds a lone surrogate)")
    if _invisible(name):
        raise Invalid("a list name must have a visible character (it is only invisible characters)")
    return name


def validate_tag(tag: str) -> str:
    """Return the tag lower-cased (NFC); raise :class:`Invalid` unless it is 1-32 letters, digits, ``-``, ``_``."""
    folded = unicodedata.normalize("NFC", tag).lower()
    if not 1 <= len(folded) <= MAX_TAG:
        raise Invalid(f"a tag is 1 to {MAX_TAG} characters (got {len(folded)})")
    if not all(ch.isalnum() or ch in "-_" for ch in folded):
        raise Invalid(f"a tag is one word of letters, digits, '-' and '_' (got {folded[:40]!r})")
    return folded


def validate_tags(tags: Iterable[str]) -> frozenset[str]:
    """The set of valid tags; raise :class:`Invalid` for a bad tag or more than 16 of them."""
    if not tags:
        return frozenset()  # most entries: no generator to build
    result = frozenset(validate_tag(t) for t in tags)
    if len(result) > MAX_TAGS:
        raise Invalid(f"an entry has at most {MAX_TAGS} tags (got {len(result)})")
    return result


def _sorted_tags(tags: Iterable[str]) -> tuple[str, ...]:
    if not tags:
        return ()  # most entries: no set to build and sort (once per entry made, every add and update)
    return tuple(sorted(set(tags)))


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
    """One to-do entry.  Its id never changes; its version is 1 when added and grows by 1 at each change."""

    id: int
    date: datetime.date
    title: str
    done: bool = False
    version: int = 1
    #: Sorted and without duplicates, so equal entries compare equal and the
    #: wire shows them in one order.
    tags: tuple[str, ...] = attrs.field(default=(), converter=_sorted_tags)

    def to_wire(self) -> dict[str, object]:
        return {
            "id": self.id,
            "date": self.date.isoformat(),
            "title": self.title,
            "done": self.done,
            "version": self.version,
            "tags": list(self.tags),
        }

    def same_values(self, other: Entry | None) -> bool:
        """Whether ``other`` has this entry's date, title, done mark and tags (versions aside)."""
        return (
            other is not None
            and other.date == self.date
            and other.title == self.title
            and other.done == self.done
            and other.tags == self.tags
        )


# --- changes: what the store makes durable ----------------------------------


@attrs.frozen
class Origin:
    """Who made a change: the peer's uid and pid from the socket (None in-process)."""

    uid: int | None = None
    pid: int | None = None


NOBODY = Origin()

#: The ops of changes that an undo can revert ("do" changes); a new one ends
#: what redo can re-apply.  An undo or a redo is a change too, but it moves
#: along this stack rather than onto it.
DO_OPS: tuple[str, ...] = ("add", "update", "delete", "import", "move")


@attrs.frozen
class Event:
    """One row-level effect of a change: the entry before and after (None: absent)."""

    seq: int
    entry_id: int
    before: Entry | None
    after: Entry | None


@attrs.frozen
class Change:
    """What one request did to one list, as the log records it.

    ``seq`` is the seq of its first event, and names the change in its list.
    ``target`` is, for an undo or a redo, the seq of the change undone or redone.
    """

    op: str
    seq: int
    events: tuple[Event, ...]
    origin: Origin = NOBODY
    target: int | None = None


@attrs.frozen
class Step:
    """One change to revert, as an undo or a redo plan holds it.

    ``target`` is the change undone or redone; ``events`` are the events whose
    effect is reverted (the target's own for an undo, its undo's for a redo).
    """

    target: int
    events: tuple[Event, ...]


class Stale(Conflict):
    """A plan was read for another head of the list than the one it meets: the list changed since."""

    def __init__(self) -> None:
        super().__init__("the list changed since the plan was read")


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
    #: The seq of the list's last event (0: none yet).
    seq: int = 0

    @classmethod
    def from_entries(cls, entries: Iterable[Entry], next_id: int, seq: int = 0) -> TodoList:
        by_id = {e.id: e for e in entries}
        return cls(by_id, max(next_id, max(by_id, default=0) + 1), seq)

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

    def add(self, date: datetime.date, title: str, tags: Iterable[str] = ()) -> tuple[TodoList, Entry, Change]:
        draft = Draft(self)
        entry, change = draft.add(date, title, tags)
        return draft.freeze(), entry, change

    def update(
        self,
        entry_id: int,
        *,
        title: str | None = None,
        date: datetime.date | None = None,
        done: bool | None = None,
        tag: Iterable[str] = (),
        untag: Iterable[str] = (),
        if_version: int | None = None,
    ) -> tuple[TodoList, Entry, Change]:
        draft = Draft(self)
        entry, change = draft.update(
            entry_id, title=title, date=date, done=done, tag=tag, untag=untag, if_version=if_version
        )
        return draft.freeze(), entry, change

    def delete(self, entry_id: int, if_version: int | None = None) -> tuple[TodoList, Entry, Change]:
        draft = Draft(self)
        entry, change = draft.delete(entry_id, if_version)
        return draft.freeze(), entry, change


def _check_count(tags: frozenset[str]) -> frozenset[str]:
    if len(tags) > MAX_TAGS:
        raise Invalid(f"an entry has at most {MAX_TAGS} tags (it would have {len(tags)})")
    return tags


class Draft:
    """A private working copy of a :class:`TodoList` for one batch of writes.

    It is a mutation of the list's persistent map: the base list is never
    changed, and :meth:`freeze` hands the result over as a new value.
    """

    __slots__ = ("_entries", "_frozen", "base", "next_id", "seq")

    def __init__(self, base: TodoList) -> None:
        self.base = base
        self._entries = base.entries.mutate()
        self.next_id = base.next_id
        self.seq = base.seq
        self._frozen = False

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
        if self.seq == self.base.seq:  # every change is an event, and bumps seq
            return self.base.entries
        current = self._entries.finish()
        self._entries = current.mutate()
        return current

    def get(self, entry_id: int) -> Entry:
        try:
            return self._entries[entry_id]
        except KeyError:
            raise NotFound(f"no entry {entry_id}") from None

    def _one(self, op: str, entry_id: int, before: Entry | None, after: Entry | None, origin: Origin) -> Change:
        self.seq += 1
        return Change(op, self.seq, (Event(self.seq, entry_id, before, after),), origin)

    def add(
        self, date: datetime.date, title: str, tags: Iterable[str] = (), origin: Origin = NOBODY
    ) -> tuple[Entry, Change]:
        entry = Entry(self.next_id, date, title, tags=_check_count(frozenset(tags)))
        self._entries[entry.id] = entry
        self.next_id += 1
        return entry, self._one("add", entry.id, None, entry, origin)

    def insert(self, values: Entry, op: str, origin: Origin = NOBODY) -> tuple[Entry, Change]:
        """Add an entry with ``values``' date, title, done and tags as the next id, version 1 (a move's arrival)."""
        entry = Entry(self.next_id, values.date, values.title, values.done, 1, values.tags)
        self._entries[entry.id] = entry
        self.next_id += 1
        return entry, self._one(op, entry.id, None, entry, origin)

    def remove(
        self, entry_id: int, op: str, if_version: int | None = None, origin: Origin = NOBODY
    ) -> tuple[Entry, Change]:
        """Remove an entry as a change of ``op`` (a move's departure); as :meth:`delete` otherwise."""
        old = self.get(entry_id)
        self._expect(old, if_version)
        del self._entries[entry_id]
        return old, self._one(op, entry_id, old, None, origin)

    def _expect(self, entry: Entry, if_version: int | None) -> None:
        if if_version is not None and entry.version != if_version:
            raise Conflict(f"entry {entry.id} is at version {entry.version}, not {if_version}")

    def update(
        self,
        entry_id: int,
        *,
        title: str | None = None,
        date: datetime.date | None = None,
        done: bool | None = None,
        tag: Iterable[str] = (),
        untag: Iterable[str] = (),
        if_version: int | None = None,
        origin: Origin = NOBODY,
    ) -> tuple[Entry, Change]:
        old = self.get(entry_id)
        self._expect(old, if_version)
        added, removed = frozenset(tag), frozenset(untag)
        if added & removed:
            raise Invalid(f"a tag cannot be both added and removed: {', '.join(sorted(added & removed))}")
        tags = old.tags if not (added or removed) else _check_count((frozenset(old.tags) | added) - removed)
        new = attrs.evolve(
            old,
            title=old.title if title is None else title,
            date=old.date if date is None else date,
            done=old.done if done is None else done,
            tags=tags,
            version=old.version + 1,
        )
        self._entries[entry_id] = new
        return new, self._one("update", entry_id, old, new, origin)

    def delete(self, entry_id: int, if_version: int | None = None, origin: Origin = NOBODY) -> tuple[Entry, Change]:
        old = self.get(entry_id)
        self._expect(old, if_version)
        del self._entries[entry_id]
        return old, self._one("delete", entry_id, old, None, origin)

    def revert(
        self, op: str, head: int, steps: Iterable[Step], origin: Origin = NOBODY
    ) -> tuple[tuple[Entry, ...], tuple[Change, ...]]:
        """Revert each step's events, newest first: one change per step (``op`` is undo or redo).

        An entry must still have the values the reverted event left (or be
        absent if it removed it), else nothing is done: an undo is refused
        rather than guessed.  Values, not versions, are compared, so a change
        undone in between does not block the undo of an earlier one.

        Returns:
            The entries as the revert leaves them (removed ones as they were
            before), in the order reverted, and the changes.

        Raises:
            Stale: the list's last event is no longer ``head``: the plan was
                read for another state.
            Conflict: an entry changed since; nothing is changed.
        """
        if head != self.seq:
            raise Stale
        overlay: dict[int, Entry | None] = {}
        changes: list[Change] = []
        touched: list[Entry] = []
        seq = self.seq
        for step in steps:
            events: list[Event] = []
            for event in reversed(step.events):
                cur = overlay[event.entry_id] if event.entry_id in overlay else self._entries.get(event.entry_id)
                expected = event.after
                if (cur is None) != (expected is None) or (expected is not None and not expected.same_values(cur)):
                    raise Conflict(
                        f"cannot {op} change {step.target}: entry {event.entry_id} changed since (now {_describe(cur)})"
                    )
                restored = event.before
                new: Entry | None = None
                if restored is not None:
                    last = cur.version if cur is not None else restored.version
                    new = attrs.evolve(restored, version=last + 1)
                seq += 1
                events.append(Event(seq, event.entry_id, cur, new))
                overlay[event.entry_id] = new
                touched.append(new if new is not None else cur)  # type: ignore[arg-type]
            changes.append(Change(op, events[0].seq if events else seq, tuple(events), origin, step.target))
        for entry_id, value in overlay.items():
            if value is None:
                self._entries.pop(entry_id, None)  # it may have been absent, restored and removed again
            else:
                self._entries[entry_id] = value
        self.seq = seq
        return tuple(touched), tuple(changes)

    def freeze(self) -> TodoList:
        """The new list value; the draft must not be used afterwards."""
        assert not self._frozen, "a draft is frozen once"
        self._frozen = True
        return TodoList(self._entries.finish(), self.next_id, self.seq)


def _describe(entry: Entry | None) -> str:
    return "deleted" if entry is None else f"version {entry.version}"


def replay(base: Iterable[Entry], events: Iterable[Event]) -> dict[int, Entry]:
    """The entries a list's base state and its later events make, in seq order (a rebuild from the log)."""
    state = {e.id: e for e in base}
    for event in events:
        if event.after is None:
            state.pop(event.entry_id, None)
        else:
            state[event.entry_id] = event.after
    return state
