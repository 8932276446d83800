"""What each part of the writer's commit transaction costs per add, in process, in one run.

Run it from the repository root::

    .venv/bin/python bench/write_cost.py [--reps 7] [--groups 20] [--group 64] [--lists 1000] [--prefill 20]

It drives the store's own writer code (``Store._write_group``, the
transaction the writer thread runs for a group) directly, with no event
loop, on several copies of one database, each with some of the parts of
the transaction taken out:

- ``entries``: the entries' upsert and the lists' row (``next_id``, head), nothing else;
- ``log``: the change log's row per event;
- ``tags``: the ``entry_tags`` triggers (every add here carries one tag);
- ``dates``: the indexes ``entries_by_date`` and ``entries_pending``;
- ``text``: the FTS5 trigram title index (its triggers and the flush before the commit).

The variants are cumulative (``entries``, ``+log``, ``+tags``, ``+dates``,
``+text``: the last is todod as it is) and "all but one" (todod without
each part in turn), so each part's cost is seen alone and in the full
transaction.  A round writes ``--groups`` groups of ``--group`` adds (each
to another of ``--lists`` lists, as 64 connections over 1,000 lists make
them) into every variant in turn, the order rotating from round to round;
``--reps`` rounds give the medians.  Every commit is durable
(``synchronous=FULL``), as in todod.

Per variant it prints the writer thread's CPU per add (``time.thread_time``
around the transaction: user and system time, not the wait for the
fsync), its wall time per add (with the fsync) and the WAL bytes per add
(what each commit's fsync has to write), and their ratios against todod as it
is (``full``) and against ``entries`` alone.  ``find_queries.py --only
writes`` measures the issue's ratio (the whole core, with the query
indexes against without them); this script says where the difference is.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from todod import _log
from todod._model import Change, Entry, Event
from todod._store import DB_NAME, Store, StoreFaults, _close_sync, _open_sync

DAY = datetime.date(2026, 2, 3)
TAGS = [f"tag{n}" for n in range(50)]

#: The schema objects of each removable part (dropped from the variant's copy before it opens).
PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "log": (),  # Store.change_log = False
    "tags": (("TRIGGER", "entry_tags_insert"), ("TRIGGER", "entry_tags_delete"), ("TRIGGER", "entry_tags_update")),
    "dates": (("INDEX", "entries_by_date"), ("INDEX", "entries_pending")),
    "text": (),  # full_text=False: the store drops the text triggers at open
}
ORDER = ("log", "tags", "dates", "text")


@attrs.frozen
class Batch:
    """A list's batch as the writer takes it (see todod._store.Batch)."""

    name: str
    next_id: int
    changes: tuple[Change, ...]

    def valid(self) -> bool:
        return True

    def committed(self, error: object) -> None:
        pass


@attrs.define
class Lists:
    """Each list's next id and seq, so the batches follow on from what is stored."""

    count: int
    next_ids: list[int]
    seqs: list[int]
    turn: int = 0

    def group(self, size: int) -> list[Batch]:
        """``size`` single-add batches, each to the next list round the ring."""
        batches = []
        for _ in range(size):
            n = self.turn % self.count
            self.turn += 1
            entry_id, seq = self.next_ids[n], self.seqs[n] + 1
            self.next_ids[n], self.seqs[n] = entry_id + 1, seq
            entry = Entry(entry_id, DAY, f"benchmark entry {self.turn} with an ordinary title", tags=(TAGS[n % 50],))
            change = Change("add", seq, (Event(seq, entry_id, None, entry),))
            batches.append(Batch(f"list-{n}", entry_id + 1, (change,)))
        return batches


@attrs.define
class Variant:
    name: str
    parts: frozenset[str]
    data_dir: str
    store: Store
    lock_fd: int
    lists: Lists
    cpu: list[float] = attrs.field(factory=list)
    wall: list[float] = attrs.field(factory=list)
    wal: list[float] = attrs.field(factory=list)

    def round(self, groups: int, size: int) -> None:
        """Write ``groups`` groups into this variant and keep its figures per add."""
        conn = self.store._writer_conn
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = self.store.path + "-wal"
        cpu = wall = 0.0
        for _ in range(groups):
            group = self.lists.group(size)
            c0, w0 = time.thread_time(), time.perf_counter()
            error = self.store._write_group(group)  # type: ignore[arg-type]
            cpu += time.thread_time() - c0
            wall += time.perf_counter() - w0
            if error is not None:
                sys.exit(f"{self.name}: {error}")
        adds = groups * size
        self.cpu.append(cpu / adds * 1e6)
        self.wall.append(wall / adds * 1e6)
        self.wal.append(os.path.getsize(wal) / adds)


def build(base: str, lists: int, prefill: int) -> tuple[str, Lists]:
    """A full todod database with ``prefill`` entries in each of ``lists`` lists, written by the store."""
    data = os.path.join(base, "template")
    lock_fd, writer, readers, text_index = _open_sync(data, 0, True)
    store = Store(os.path.join(data, DB_NAME), writer, readers, StoreFaults(), True, 0, text_index=text_index)
    ring = Lists(lists, [1] * lists, [0] * lists)
    writer.execute("PRAGMA synchronous = OFF")  # the template only: its commits need not be durable
    for _ in range(prefill):
        for start in range(0, lists, 500):
            if store._write_group(ring.group(min(500, lists - start))) is not None:  # type: ignore[arg-type]
                sys.exit("could not build the template database")
    _close_sync(writer, readers, lock_fd)
    return os.path.join(data, DB_NAME), ring


def open_variant(base: str, name: str, parts: frozenset[str], template: str, ring: Lists) -> Variant:
    data = os.path.join(base, name.replace("+", "plus-").replace(" ", "-"))
    os.makedirs(data, mode=0o700)
    shutil.copyfile(template, os.path.join(data, DB_NAME))
    conn = sqlite3.connect(os.path.join(data, DB_NAME))
    for part in ORDER:
        if part not in parts:
            for kind, obj in PARTS[part]:
                conn.execute(f"DROP {kind} IF EXISTS {obj}")
    conn.commit()
    conn.close()
    lock_fd, writer, readers, text_index = _open_sync(data, 0, "text" in parts)
    assert text_index == ("text" in parts)
    position = _log.last_position(writer)
    store = Store(
        os.path.join(data, DB_NAME), writer, readers, StoreFaults(), "log" in parts, position, text_index=text_index
    )
    return Variant(name, parts, data, store, lock_fd, Lists(ring.count, list(ring.next_ids), list(ring.seqs)))


def variants() -> list[tuple[str, frozenset[str]]]:
    """The cumulative chain, then todod without each part in turn."""
    chain = [("entries", frozenset[str]())]
    for i, part in enumerate(ORDER):
        chain.append(("+" + part if i < len(ORDER) - 1 else "full", frozenset(ORDER[: i + 1])))
    return chain + [(f"full - {part}", frozenset(ORDER) - {part}) for part in ORDER]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--groups", type=int, default=20, help="groups per variant per round (default 20)")
    parser.add_argument("--group", type=int, default=64, help="adds per group, each to another list (default 64)")
    parser.add_argument("--lists", type=int, default=1000)
    parser.add_argument("--prefill", type=int, default=20, help="entries per list before the run (default 20)")
    parser.add_argument("--dir", default=None, help="where the databases go (default: $TMPDIR)")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="write-cost-", dir=args.dir)
    try:
        template, ring = build(base, args.lists, args.prefill)
        runs = [open_variant(base, name, parts, template, ring) for name, parts in variants()]
        for rep in range(args.reps):
            # Rotate the order, so drift in the machine's load hits every variant alike.
            for variant in runs[rep % len(runs) :] + runs[: rep % len(runs)]:
                variant.round(args.groups, args.group)
        for variant in runs:
            _close_sync(variant.store._writer_conn, [], variant.lock_fd)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    med = {v.name: (statistics.median(v.cpu), statistics.median(v.wall), statistics.median(v.wal)) for v in runs}
    full, bare = med["full"], med["entries"]
    print(
        f"writer transaction per add: {args.reps} interleaved rounds of {args.groups} groups of {args.group} adds "
        f"over {args.lists:,} lists ({args.prefill} entries each before), medians"
    )
    print(f"{'variant':<14}{'CPU us':>8}{'/full':>7}{'/entries':>9}{'wall us':>9}{'/full':>7}{'WAL B':>8}{'/full':>7}")
    for v in runs:
        cpu, wall, wal = med[v.name]
        print(
            f"{v.name:<14}{cpu:>8.1f}{cpu / full[0]:>7.2f}{cpu / bare[0]:>9.2f}"
            f"{wall:>9.1f}{wall / full[1]:>7.2f}{wal:>8.0f}{wal / full[2]:>7.2f}"
        )
    print("\neach part's cost per add (CPU us, wall us, WAL bytes): added to the chain / taken out of full")
    previous = "entries"
    for i, part in enumerate(ORDER):
        name = "+" + part if i < len(ORDER) - 1 else "full"
        added = [a - b for a, b in zip(med[name], med[previous], strict=True)]
        taken = [a - b for a, b in zip(full, med[f"full - {part}"], strict=True)]
        print(
            f"  {part:<6} {added[0]:>6.1f} {added[1]:>7.1f} {added[2]:>6.0f}   /   "
            f"{taken[0]:>6.1f} {taken[1]:>7.1f} {taken[2]:>6.0f}"
        )
        previous = name
    query_parts = med["+log"]
    print(
        f"\nthe query indexes (tags, dates, text) against none, writer thread only: "
        f"CPU {query_parts[0] / full[0]:.2f}x, wall {query_parts[1] / full[1]:.2f}x "
        f"(without / with; the issue's write target is with >= 0.9x without)"
    )
    print(f"\nPython {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
