"""Reads in pages: snapshots of a list, cursors, and pages encoded in chunks.

A page is read from one version of the list's persistent map, in id order,
without a sort: ids are handed out in increasing order and never reused, so
the ids from a cursor's id up to the highest id the version may hold are
probed in turn (a deleted id is one lookup that finds nothing).  The page is
encoded as it is read, entry by entry, straight to its JSON text, and the
reader checkpoints after every :data:`CHUNK` ids, so no read holds the event
loop for longer than one chunk, however large the list.

A paged read keeps its version as a :class:`Snapshot` in the list server,
named in the cursor, so every page of one read comes from the same version
while writers go on (docs/PROTOCOL.md, "Paging").
"""

from __future__ import annotations

import datetime
import os
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Final

import attrs
import immutables
import trio

from todod._model import Entry
from todod.protocol import Expired, Invalid, RawResult, TooLarge

#: Ids probed (found or not) between two checkpoints.  An entry costs about
#: 1.5 us to read and encode here, a missing id a tenth of that, so a chunk
#: holds the loop for well under a millisecond, and the checkpoint itself
#: (a few us) stays a small share of the read.
CHUNK: Final = 512

#: Ids a page probes at most per entry it may hold, beyond one chunk: a page
#: of a list full of deleted ids ends short (even empty) with a cursor, so
#: one page is bounded in work as well as in entries and bytes.
PROBES_PER_ENTRY: Final = 4

#: How many chunks were read so far, in this process (tests compare it with
#: other tasks' steps to show that a read checkpoints between chunks).
_chunks_read = 0


def chunks_read() -> int:
    """How many chunks of ids pages have read so far, in this process."""
    return _chunks_read


@attrs.frozen
class Snapshot:
    """One version of a list, kept for the later pages of a read."""

    entries: immutables.Map[int, Entry]
    #: No entry of this version has a higher id (the list's next id, less one).
    last_id: int


@attrs.frozen
class PageRequest:
    """What one ``entries`` request asks for (checked by the dispatcher)."""

    date: datetime.date | None
    #: Most entries in the page; None for a whole read (one answer or ``too_large``).
    limit: int | None
    #: The snapshot the cursor names (None: the current version), and the id to read after.
    snapshot: str | None
    after: int
    #: Entries as arrays (``"form": "rows"``, :data:`ROW_COLUMNS`) rather than objects.
    rows: bool = False


#: The order of an entry's fields in a page of rows.  Arrays decode about
#: three times faster than objects in the client's json module, and are 40%
#: shorter: what ``todo entries`` of a big list spends most of its time on.
ROW_COLUMNS: Final = ("id", "date", "title", "done", "version", "tags")


def parse_cursor(text: str) -> tuple[str | None, int]:
    """A cursor's snapshot id (or None) and entry id: ``"<snapshot>.<id>"`` or a bare ``"<id>"``.

    Raises:
        Invalid: the text is neither.
    """
    snapshot, dot, number = text.rpartition(".")
    if (dot and not (snapshot.isascii() and snapshot.isalnum())) or not (number.isascii() and number.isdigit()):
        raise Invalid(f"a cursor is '<snapshot>.<id>' or an entry id (got {text[:40]!r})")
    after = int(number)
    if after >= 1 << 63:
        raise Invalid("a cursor's id must fit in 63 bits")
    return (snapshot if dot else None), after


@attrs.define(eq=False)
class Snapshots:
    """The snapshots one list server keeps for paged reads: bounded in number and in time.

    A snapshot lives ``ttl`` seconds from its last use; beyond ``limit`` of
    them the least recently used is dropped.  All times are trio's clock.
    """

    ttl: float
    limit: int
    #: snapshot id -> (snapshot, when it expires); in order of last use.
    _kept: dict[str, tuple[Snapshot, float]] = attrs.field(factory=dict, init=False)

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, snapshot: Snapshot) -> str:
        """Keep ``snapshot`` and return its id: a new one, or that of a kept snapshot of the same version."""
        self.prune()
        for name, (kept, _until) in self._kept.items():
            if kept.entries is snapshot.entries and kept.last_id == snapshot.last_id:
                # Readers of one version share its snapshot (and its count).
                del self._kept[name]
                self._kept[name] = (kept, trio.current_time() + self.ttl)
                return name
        while len(self._kept) >= self.limit:
            del self._kept[next(iter(self._kept))]
        # Random, not counted: a cursor from a server that has since stopped
        # (or another daemon) must not name a new snapshot by chance.
        name = os.urandom(6).hex()
        self._kept[name] = (snapshot, trio.current_time() + self.ttl)
        return name

    def get(self, name: str) -> Snapshot:
        """The snapshot named ``name``, its life renewed.

        Raises:
            Expired: no such snapshot (it timed out, was dropped, or the
                list server restarted since).
        """
        self.prune()
        kept = self._kept.pop(name, None)
        if kept is None:
            raise Expired(
                f"the snapshot {name!r} of this read is gone (kept {self.ttl:g} s after each page, "
                f"{self.limit} per list); read again from the start"
            )
        self._kept[name] = (kept[0], trio.current_time() + self.ttl)
        return kept[0]

    def clear(self) -> None:
        self._kept.clear()

    def prune(self) -> None:
        """Drop the snapshots whose time is up."""
        if not self._kept:
            return
        now = trio.current_time()
        for name in [name for name, (_s, until) in self._kept.items() if until <= now]:
            del self._kept[name]


def _encode(entry: Entry) -> str:
    # The JSON of Entry.to_wire(), built directly: the same keys in the same
    # order, ASCII only like every response line (a test compares them).
    tags = ",".join(map(encode_basestring_ascii, entry.tags)) if entry.tags else ""
    return (
        f'{{"id":{entry.id},"date":"{entry.date.isoformat()}","title":{encode_basestring_ascii(entry.title)},'
        f'"done":{"true" if entry.done else "false"},"version":{entry.version},"tags":[{tags}]}}'
    )


def _encode_row(entry: Entry) -> str:
    # An entry as an array of ROW_COLUMNS, ASCII only like every response line.
    tags = ",".join(map(encode_basestring_ascii, entry.tags)) if entry.tags else ""
    return (
        f'[{entry.id},"{entry.date.isoformat()}",{encode_basestring_ascii(entry.title)},'
        f"{'true' if entry.done else 'false'},{entry.version},[{tags}]]"
    )


async def read_page(
    snapshot: Snapshot, request: PageRequest, max_entries: int, max_bytes: int
) -> tuple[list[str], int | None]:
    """Read one page of ``snapshot``: its entries' JSON texts and the id to read after next (None at the end).

    A page ends at ``request.limit`` (or ``max_entries``) entries, before the
    entry that would take its text past ``max_bytes``, or after probing
    :data:`PROBES_PER_ENTRY` ids per entry it may hold, whichever comes
    first; it holds at least one entry unless it ran out of ids or probes.
    Checkpoints after every :data:`CHUNK` ids; the snapshot is immutable, so
    nothing changes under it meanwhile.

    Raises:
        TooLarge: a whole read (``limit`` None) of more than ``max_bytes``.
    """
    global _chunks_read
    whole = request.limit is None
    limit = max_entries if request.limit is None else min(request.limit, max_entries)
    probes_left = (limit * PROBES_PER_ENTRY + CHUNK) if not whole else snapshot.last_id
    get = snapshot.entries.get
    encode = _encode_row if request.rows else _encode
    date = request.date
    parts: list[str] = []
    size = 0
    last_id = snapshot.last_id
    position = request.after
    while position < last_id and probes_left > 0:
        stop = min(last_id, position + CHUNK, position + probes_left)
        probes_left -= stop - position
        for entry_id in range(position + 1, stop + 1):
            entry = get(entry_id)
            if entry is None or (date is not None and entry.date != date):
                continue
            text = encode(entry)
            size += len(text) + 1
            if size > max_bytes and (parts or whole):
                if whole:
                    raise TooLarge(
                        f"the list's entries take more than {max_bytes} bytes: read them in pages ('limit', 'after')"
                    )
                return parts, entry_id - 1
            parts.append(text)
            if not whole and len(parts) >= limit:
                return parts, (entry_id if entry_id < last_id else None)
        position = stop
        _chunks_read += 1
        await trio.lowlevel.checkpoint()
    return parts, (position if position < last_id else None)


def page_result(parts: list[str], next_cursor: str | None, last_id: int) -> RawResult:
    """A page's result: ``{"next": ..., "last_id": ..., "entries": [...]}``.

    The cursor comes first, so a client can ask for the next page before it
    decodes this one.
    """
    cursor = "null" if next_cursor is None else f'"{next_cursor}"'
    return RawResult(f'{{"next":{cursor},"last_id":{last_id},"entries":[{",".join(parts)}]}}')


def whole_result(parts: list[str]) -> RawResult:
    """A whole read's result: the array of entries."""
    return RawResult(f"[{','.join(parts)}]")


__all__ = [
    "CHUNK",
    "ROW_COLUMNS",
    "PageRequest",
    "Snapshot",
    "Snapshots",
    "chunks_read",
    "page_result",
    "parse_cursor",
    "read_page",
    "whole_result",
]
