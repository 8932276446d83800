"""Row-level changes for tests that write to the store directly, without a list server."""

from __future__ import annotations

import itertools

from todod._model import Change, Entry, Event

# One seq counter for the whole test run, so that no two changes of one list
# ever share a seq (the log's key), whatever a test commits.
_seqs = itertools.count(1)


def PutEntry(entry: Entry) -> Change:
    """A change that puts ``entry`` (its before is not tracked)."""
    seq = next(_seqs)
    return Change("update", seq, (Event(seq, entry.id, None, entry),))


def RemoveEntry(entry_id: int) -> Change:
    """A change that removes entry ``entry_id``."""
    seq = next(_seqs)
    return Change("delete", seq, (Event(seq, entry_id, None, None),))
