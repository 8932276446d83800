"""What each part of a durable add costs the writer's transaction, and the indexer's, in process, in one run.

Run it from the repository root::

    .venv/bin/python bench/write_cost.py [--reps 7] [--groups 20] [--group 64] [--lists 1000] [--prefill 20]

It drives the store's own code directly, with no event loop: the writer's
transaction for a group (``Store._write_group``) and the indexer's steps
(``todod._search.step``, after each group, as the indexer keeping pace
runs them), on several copies of one database, each with some of the parts
taken out:

- ``entries``: the entries' upsert and the lists' row (``next_id``, head), nothing else;
- ``log``: the change log's row per event;
- ``dates``: the date indexes, ``entries_pending`` and ``entries_done`` (``_query.INDEX_OBJECTS``; until
  schema version 7, ``entries_by_date`` and ``entries_pending``);
- ``tags``: the search index without its text table (``entry_tags``; every add here carries one tag);
- ``text``: the search index's FTS5 trigram title table.

The variants are cumulative (``entries``, ``+log``, ``+dates``, ``+tags``,
``full``: the last is todod as it is) and ``full - dates`` (the search
index needs the log, so there is no ``full - log``).  A round writes
``--groups`` groups of ``--group`` adds (each to another of ``--lists``
lists, as 64 connections over 1,000 lists make them) into every variant in
turn, the order rotating from round to round; ``--reps`` rounds give the
medians.  Every commit of the writer is durable (``synchronous=FULL``), as
in todod; the search index's are not (``synchronous=NORMAL``: derived data).

Per variant it prints, for the writer and for the indexer, the thread's CPU
per add (``time.thread_time``: user and system time, not the wait for an
fsync), the wall time per add and the WAL bytes per add (what a commit's
fsync has to write), and the writer's ratios against todod as it is
(``full``).  The writer's figures are what an acknowledgement waits for;
the indexer's run off that path but on the same cores (in todod, in the
indexer's process of its own; here in this one, with no event loop beside it).
``find_queries.py --only writes`` measures the issue's ratio (the whole
core, with the query indexes against without them).

Before the search index had its own file (schema version 4, commit
78688e7 of this script), the same run measured the parts inside the
writer's transaction: see README.md, "Benchmarks".
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
from contextlib import closing
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from todod import _log, _query, _search
from todod._model import Change, Entry, Event
from todod.store._sqlite import DB_NAME, StoreFaults, _close_sync, _open_sync
from todod.store._sqlite import SQLiteStore as Store

DAY = datetime.date(2026, 2, 3)
TAGS = [f"tag{n}" for n in range(50)]

#: The schema objects of each removable part of the store's file (dropped from the variant's copy before it opens).
DATE_INDEXES = _query.INDEX_OBJECTS
ORDER = ("log", "dates", "tags", "text")


@attrs.frozen
class Batch:
    """A list's batch as the writer takes it (see todod.store.Batch)."""

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
    indexer: sqlite3.Connection | None
    #: Per round, per add: writer CPU, wall, WAL bytes; indexer CPU, wall, WAL bytes.
    figures: list[tuple[float, ...]] = attrs.field(factory=list)

    def round(self, groups: int, size: int, index_every: int) -> None:
        """Write ``groups`` groups into this variant, index each, and keep the figures per add."""
        conn = self.store._writer_conn
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if self.indexer is not None:
            self.indexer.execute(f"PRAGMA {_search.SCHEMA}.wal_checkpoint(TRUNCATE)")
        cpu = wall = index_cpu = index_wall = 0.0
        for n in range(groups):
            group = self.lists.group(size)
            c0, w0 = time.thread_time(), time.perf_counter()
            error = self.store._write_group(group)  # type: ignore[arg-type]
            cpu += time.thread_time() - c0
            wall += time.perf_counter() - w0
            if error is not None:
                sys.exit(f"{self.name}: {error}")
            if self.indexer is not None and ((n + 1) % index_every == 0 or n == groups - 1):
                c0, w0 = time.thread_time(), time.perf_counter()
                while (_search.step(self.indexer, self.store._position) or -1) < self.store._position:
                    pass
                index_cpu += time.thread_time() - c0
                index_wall += time.perf_counter() - w0
        adds = groups * size
        index = _search.index_path(self.store.path) + "-wal"
        index_wal = os.path.getsize(index) if self.indexer is not None and os.path.exists(index) else 0
        self.figures.append(
            tuple(
                x / adds
                for x in (
                    cpu * 1e6,
                    wall * 1e6,
                    os.path.getsize(self.store.path + "-wal"),
                    index_cpu * 1e6,
                    index_wall * 1e6,
                    index_wal,
                )
            )
        )


def build(base: str, lists: int, prefill: int) -> tuple[str, Lists]:
    """A todod database with ``prefill`` entries in each of ``lists`` lists, written by the store's writer."""
    data = os.path.join(base, "template")
    lock_fd, writer, readers, text_index, indexer = _open_sync(data, 0, True, False)
    store = Store(os.path.join(data, DB_NAME), writer, readers, StoreFaults(), True, 0, text_index=text_index)
    ring = Lists(lists, [1] * lists, [0] * lists)
    writer.execute("PRAGMA synchronous = OFF")  # the template only: its commits need not be durable
    for _ in range(prefill):
        for start in range(0, lists, 500):
            if store._write_group(ring.group(min(500, lists - start))) is not None:  # type: ignore[arg-type]
                sys.exit("could not build the template database")
    _close_sync(writer, readers, lock_fd, indexer)
    return os.path.join(data, DB_NAME), ring


def open_variant(base: str, name: str, parts: frozenset[str], template: str, ring: Lists) -> Variant:
    data = os.path.join(base, name.replace("+", "plus-").replace(" ", "-"))
    os.makedirs(data, mode=0o700)
    shutil.copyfile(template, os.path.join(data, DB_NAME))
    if "dates" not in parts:
        with closing(sqlite3.connect(os.path.join(data, DB_NAME))) as conn:
            for kind, obj in DATE_INDEXES:
                conn.execute(f"DROP {kind} IF EXISTS {obj}")
            conn.commit()
    lock_fd, writer, readers, text_index, indexer = _open_sync(data, 0, "text" in parts, "tags" in parts)
    assert text_index == ("text" in parts) and (indexer is not None) == ("tags" in parts)
    if indexer is not None:
        # The index built from the prefilled entries before the run, as a running daemon has it.
        while _search.step(indexer, _log.last_position(writer)) is None:
            pass
    position = _log.last_position(writer)
    store = Store(
        os.path.join(data, DB_NAME), writer, readers, StoreFaults(), "log" in parts, position, text_index=text_index
    )
    return Variant(name, parts, data, store, lock_fd, Lists(ring.count, list(ring.next_ids), list(ring.seqs)), indexer)


def variants() -> list[tuple[str, frozenset[str]]]:
    """The cumulative chain, then todod without the date indexes."""
    chain = [("entries", frozenset[str]())]
    for i, part in enumerate(ORDER):
        chain.append(("+" + part if i < len(ORDER) - 1 else "full", frozenset(ORDER[: i + 1])))
    return [*chain, ("full - dates", frozenset(ORDER) - {"dates"})]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--groups", type=int, default=20, help="groups per variant per round (default 20)")
    parser.add_argument("--group", type=int, default=64, help="adds per group, each to another list (default 64)")
    parser.add_argument("--lists", type=int, default=1000)
    parser.add_argument("--prefill", type=int, default=20, help="entries per list before the run (default 20)")
    parser.add_argument(
        "--index-every", type=int, default=1, help="groups per indexer catch-up (default 1: it keeps pace)"
    )
    parser.add_argument("--dir", default=None, help="where the databases go (default: $TMPDIR)")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="write-cost-", dir=args.dir)
    try:
        template, ring = build(base, args.lists, args.prefill)
        runs = [open_variant(base, name, parts, template, ring) for name, parts in variants()]
        for rep in range(args.reps):
            # Rotate the order, so drift in the machine's load hits every variant alike.
            for variant in runs[rep % len(runs) :] + runs[: rep % len(runs)]:
                variant.round(args.groups, args.group, args.index_every)
        for variant in runs:
            _close_sync(variant.store._writer_conn, [], variant.lock_fd, variant.indexer)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    med = {v.name: [statistics.median(f[i] for f in v.figures) for i in range(6)] for v in runs}
    full = med["full"]
    print(
        f"per add: {args.reps} interleaved rounds of {args.groups} groups of {args.group} adds "
        f"over {args.lists:,} lists ({args.prefill} entries each before), medians"
    )
    print(f"{'':<14}{'--- the writer (acknowledgements wait for it) ---':<50}{'--- the indexer ---'}")
    print(
        f"{'variant':<14}{'CPU us':>8}{'/full':>7}{'wall us':>9}{'/full':>7}{'WAL B':>8}{'/full':>7}    "
        f"{'CPU us':>8}{'wall us':>9}{'WAL B':>8}"
    )
    for v in runs:
        cpu, wall, wal, icpu, iwall, iwal = med[v.name]
        print(
            f"{v.name:<14}{cpu:>8.1f}{cpu / full[0]:>7.2f}{wall:>9.1f}{wall / full[1]:>7.2f}"
            f"{wal:>8.0f}{wal / full[2]:>7.2f}    {icpu:>8.1f}{iwall:>9.1f}{iwal:>8.0f}"
        )
    none = med["+log"]
    print(
        f"\nthe writer with the query indexes against without them (+log / full): "
        f"CPU {none[0] / full[0]:.2f}x, wall {none[1] / full[1]:.2f}x, WAL {none[2] / full[2]:.2f}x"
    )
    print(
        f"writer and indexer CPU together, without / with: {none[0] / (full[0] + full[3]):.2f}x "
        f"(the indexer's part: {full[3]:.1f} us an add, tags alone {med['+tags'][3]:.1f})"
    )
    print(f"\nPython {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
