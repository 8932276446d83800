"""Durable adds per second through the daemon core, against the raw limit of SQLite on the same disk.

Run it from the repository root::

    .venv/bin/python bench/core_throughput.py [--dir DIR] [--reps 5] [--seconds 1.5]

It measures, on one file system (a temporary directory under ``--dir``,
by default ``$TMPDIR`` or else the current directory):

1. the raw limit: plain ``sqlite3`` inserts into a table like todod's
   ``entries`` (WAL, ``synchronous=FULL``), one ``executemany`` transaction
   per group of K rows, for K = the rows per transaction the daemon reached
   in each scenario (read from the store's statistics: changes / commits),
   and for K = 1 and K = 64 as reference lines;
2. durable adds per second through :func:`todod._core.open_core` with 64
   concurrent tasks spread over 1,000 lists, then 64 tasks all on one list.

3. the cost of the change log: the same durable adds with the log and
   without it (``CoreConfig(change_log=False)``, a bench-only switch), in
   interleaved repetitions, in both scenarios.  The target is a ratio of at
   least 0.8.  ``--change-log-only`` runs this part alone.

Each figure is the median of ``--reps`` runs of ``--seconds`` each.  The
target is that the daemon reaches at least half of the raw batched limit at
its own group size.  The whole run takes well under a minute by default.
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
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import attrs
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from todod._core import Core, CoreConfig, CoreStatistics, open_core

T = TypeVar("T")

TASKS = 64
LISTS = 1000
#: Task i starts on list i * STRIDE and walks through the lists one by one,
#: so the 64 tasks are on 64 different lists at any moment and every one of
#: the 1,000 lists is written.
STRIDE = LISTS // TASKS
DAY = datetime.date(2026, 2, 3)
TITLE = "benchmark entry with a title of ordinary length"


@attrs.frozen
class DaemonRun:
    adds_per_second: float
    rows_per_commit: float
    mean_batch: float
    #: CPU time of the event loop's thread per add (the SQLite work runs in
    #: worker threads and is not counted): what bounds a closed loop of callers.
    loop_cpu_per_add: float
    stats: CoreStatistics


# --- the raw limit ------------------------------------------------------------------


RAW_INSERT = "INSERT INTO entries (list_id, id, date, title, done) VALUES (?, ?, ?, ?, ?)"


def raw_connection(workdir: str) -> sqlite3.Connection:
    """A database like todod's, WAL and ``synchronous=FULL``, with no automatic checkpoint."""
    conn = sqlite3.connect(os.path.join(workdir, "raw.sqlite3"), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    # No checkpoint at all in the timed loop: the strictest upper bound.
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute(
        "CREATE TABLE entries (list_id INTEGER NOT NULL, id INTEGER NOT NULL, date TEXT NOT NULL, "
        "title TEXT NOT NULL, done INTEGER NOT NULL, PRIMARY KEY (list_id, id)) WITHOUT ROWID"
    )
    return conn


def raw_commit(conn: sqlite3.Connection, rows: list[tuple[int, int, str, str, int]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(RAW_INSERT, rows)
    conn.execute("COMMIT")


def raw_inserts(base: str, group: int, seconds: float, lists: int) -> float:
    """Rows per second of plain sqlite3, one transaction per ``group`` rows."""
    workdir = tempfile.mkdtemp(prefix="raw-", dir=base)
    try:
        conn = raw_connection(workdir)
        next_ids = [1] * lists
        date = DAY.isoformat()
        rows = 0
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            batch = []
            for _ in range(group):
                list_id = n % lists
                batch.append((list_id, next_ids[list_id], date, TITLE, 0))
                next_ids[list_id] += 1
                n += 1
            raw_commit(conn, batch)
            rows += group
            now = time.perf_counter()
            if now >= deadline:
                break
        conn.close()
        return rows / (now - start)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- the design's ceiling ------------------------------------------------------------


async def drain(channel: trio.MemoryReceiveChannel[T]) -> list[T]:
    """Wait for one item, then take every other one already queued."""
    items = [await channel.receive()]
    while True:
        try:
            items.append(channel.receive_nowait())
        except trio.WouldBlock:
            return items


async def skeleton_adds(base: str, seconds: float, list_of: Callable[[int, int], str]) -> float:
    """Adds per second of the daemon's task structure with all of its work taken out.

    The same hand-offs as the daemon, and nothing else: each of TASKS callers
    sends a reply slot to its list's task through a bounded memory channel
    (the mailbox) and waits; a list task drains its mailbox and sends one
    slot for the batch to a writer task, waits for it, then answers the
    batch; the writer drains what is queued and commits one row per add with
    :func:`raw_commit` in a worker thread.  No validation, no model, no
    entries, no error handling: what the daemon cannot beat however lean
    its own code, on this machine, in this run.
    """
    import outcome

    from todod._reply import ReplySlot

    workdir = tempfile.mkdtemp(prefix="skeleton-", dir=base)
    names = sorted({list_of(i, n) for i in range(TASKS) for n in range(LISTS)})
    list_ids = {name: i for i, name in enumerate(names)}
    date = DAY.isoformat()
    done = 0
    try:
        conn = raw_connection(workdir)
        to_writer, writer_inbox = trio.open_memory_channel[tuple[ReplySlot, int, int, int]](1024)
        mailboxes: dict[str, trio.MemorySendChannel[ReplySlot]] = {}

        async def writer() -> None:
            while True:
                group = await drain(writer_inbox)
                rows = [
                    (list_id, first + k, date, TITLE, 0) for _slot, list_id, first, count in group for k in range(count)
                ]
                await trio.to_thread.run_sync(raw_commit, conn, rows)
                for slot, *_ in group:
                    slot.reply(outcome.Value(None))

        async def list_task(name: str, mailbox: trio.MemoryReceiveChannel[ReplySlot]) -> None:
            next_id = 1
            while True:
                batch = await drain(mailbox)
                commit = ReplySlot()
                to_writer.send_nowait((commit, list_ids[name], next_id, len(batch)))
                await commit.wait()
                next_id += len(batch)
                for slot in batch:
                    slot.reply(outcome.Value(None))

        stop = False

        async def caller(i: int) -> None:
            nonlocal done
            n = 0
            while not stop:
                slot = ReplySlot()
                mailboxes[list_of(i, n)].send_nowait(slot)
                await slot.wait()
                done += 1
                n += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            for name in names:
                send, receive = trio.open_memory_channel[ReplySlot](256)
                mailboxes[name] = send
                nursery.start_soon(list_task, name, receive)
            async with trio.open_nursery() as callers:
                start = trio.current_time()
                for i in range(TASKS):
                    callers.start_soon(caller, i)
                await trio.sleep(seconds)
                counted, elapsed = done, trio.current_time() - start
                stop = True
            nursery.cancel_scope.cancel()
        conn.close()
        return counted / elapsed
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- the daemon -----------------------------------------------------------------------


async def daemon_adds(
    base: str, seconds: float, list_of: Callable[[int, int], str], change_log: bool = True
) -> DaemonRun:
    """Durable adds per second through open_core, TASKS tasks, after a warm-up that writes every list once."""
    workdir = tempfile.mkdtemp(prefix="core-", dir=base)
    names = {list_of(i, n) for i in range(TASKS) for n in range(LISTS)}
    try:
        async with open_core(os.path.join(workdir, "data"), CoreConfig(change_log=change_log)) as core:
            # One add per list, so every list exists and its server is
            # running before the clock starts (a never-written list keeps no
            # server, so a mere read would not warm it up).
            async with trio.open_nursery() as nursery:
                for name in names:
                    nursery.start_soon(core.add, name, "warm-up", datetime.date(2026, 1, 1))
            before = core.store.statistics()
            ev_before = (core.registry.events.batches, core.registry.events.batched_requests)
            done = 0
            stop = False

            async def worker(i: int, core: Core) -> None:
                nonlocal done
                n = 0
                while not stop:
                    await core.add(list_of(i, n), TITLE, DAY)
                    done += 1
                    n += 1

            start, cpu_start = trio.current_time(), time.thread_time()
            async with trio.open_nursery() as nursery:
                for i in range(TASKS):
                    nursery.start_soon(worker, i, core)
                await trio.sleep(seconds)
                counted, elapsed = done, trio.current_time() - start
                cpu = time.thread_time() - cpu_start
                stop = True
            after = core.store.statistics()
            batches = core.registry.events.batches - ev_before[0]
            requests = core.registry.events.batched_requests - ev_before[1]
            commits = after.commits - before.commits
            return DaemonRun(
                adds_per_second=counted / elapsed,
                rows_per_commit=(after.changes - before.changes) / commits if commits else 0.0,
                mean_batch=requests / batches if batches else 0.0,
                loop_cpu_per_add=cpu / counted,
                stats=core.statistics(),
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def many_lists(i: int, n: int) -> str:
    return f"list-{(i * STRIDE + n) % LISTS}"


def one_list(i: int, n: int) -> str:
    return "shared"


# --- reporting ---------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    return f"(min {min(values):,.0f}, max {max(values):,.0f})"


def change_log_cost(
    base: str, seconds: float, reps: int, scenarios: list[tuple[str, Callable[[int, int], str], int]]
) -> bool:
    """Print durable adds with the change log against the same without it, interleaved; True if >= 0.8x."""
    ok = True
    for label, list_of, _lists in scenarios:
        with_log: list[float] = []
        without: list[float] = []
        for _ in range(reps):
            # Interleaved, so that the machine's drift (other users, fsync
            # times) hits both sides alike.
            without.append(trio.run(daemon_adds, base, seconds, list_of, False).adds_per_second)
            with_log.append(trio.run(daemon_adds, base, seconds, list_of, True).adds_per_second)
        ratio = median(with_log) / median(without)
        ratios = sorted(w / o for w, o in zip(with_log, without, strict=True))
        ok = ok and ratio >= 0.8
        print(f"\nchange log, {label}:")
        print(f"  without the log:  {median(without):>10,.0f} adds/s {spread(without)}")
        print(f"  with the log:     {median(with_log):>10,.0f} adds/s {spread(with_log)}")
        print(
            f"  with / without = {ratio:.2f} (pairwise ratios {', '.join(f'{r:.2f}' for r in ratios)})   "
            f"target >= 0.8: {'PASS' if ratio >= 0.8 else 'FAIL'}"
        )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=os.environ.get("TMPDIR") or ".", help="where to create temp dirs")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each measurement")
    parser.add_argument("--seconds", type=float, default=1.5, help="length of one daemon run")
    parser.add_argument("--raw-seconds", type=float, default=1.0, help="length of one raw SQLite run")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of one many-lists daemon run")
    parser.add_argument("--change-log-only", action="store_true", help="only compare adds with and without the log")
    args = parser.parse_args()

    base = tempfile.mkdtemp(prefix="todod-bench-", dir=os.path.abspath(args.dir))
    os.chmod(base, 0o700)
    try:
        dev = os.stat(base).st_dev
        print(
            f"todod core throughput: {base} (device {os.major(dev)}:{os.minor(dev)}), SQLite {sqlite3.sqlite_version}"
        )
        print(f"{args.reps} repetitions; daemon runs of {args.seconds:g} s, raw runs of {args.raw_seconds:g} s\n")

        if args.profile:
            import cProfile

            with cProfile.Profile() as profile:
                trio.run(daemon_adds, base, args.seconds, many_lists)
            profile.dump_stats(args.profile)
            print(f"profile written to {args.profile}")
            return 0

        scenarios = [
            (f"{TASKS} tasks over {LISTS:,} lists", many_lists, LISTS),
            (f"{TASKS} tasks on one list", one_list, 1),
        ]
        if args.change_log_only:
            return 0 if change_log_cost(base, args.seconds, args.reps, scenarios) else 1
        results: dict[str, list[DaemonRun]] = {}
        ceilings: dict[str, list[float]] = {}
        for label, list_of, _lists in scenarios:
            results[label] = [trio.run(daemon_adds, base, args.seconds, list_of) for _ in range(args.reps)]
            ceilings[label] = [trio.run(skeleton_adds, base, args.seconds, list_of) for _ in range(args.reps)]

        # Reference lines only; each scenario's verdict compares the daemon
        # with raw SQLite at the rows per transaction the daemon reached.
        raw_one = [raw_inserts(base, 1, args.raw_seconds, LISTS) for _ in range(args.reps)]
        raw_64 = [raw_inserts(base, 64, args.raw_seconds, LISTS) for _ in range(args.reps)]
        print(f"raw SQLite, K = 1 row per transaction:        {median(raw_one):>10,.0f} rows/s {spread(raw_one)}")
        print(f"raw SQLite, K = 64 rows per transaction:      {median(raw_64):>10,.0f} rows/s {spread(raw_64)}")

        verdicts = []
        for label, _list_of, lists in scenarios:
            runs = results[label]
            k = max(1, round(median([r.rows_per_commit for r in runs])))
            raw = [raw_inserts(base, k, args.raw_seconds, lists) for _ in range(args.reps)]
            adds = [r.adds_per_second for r in runs]
            ratio = median(adds) / median(raw)
            verdicts.append(ratio >= 0.5)
            last = runs[-1].stats
            print(f"\n{label}:")
            print(f"  daemon's rows per transaction (store changes / commits): K = {k}")
            print(f"  raw SQLite, K = {k} rows per transaction: {median(raw):>10,.0f} rows/s {spread(raw)}")
            print(f"  daemon core, durable adds:            {median(adds):>10,.0f} adds/s {spread(adds)}")
            print(f"  daemon / raw batched = {ratio:.2f}   daemon / raw K=1 = {median(adds) / median(raw_one):.2f}")
            ceiling = ceilings[label]
            print(f"  design ceiling (its tasks, no work):  {median(ceiling):>10,.0f} adds/s {spread(ceiling)}")
            print(
                f"  ceiling / raw batched = {median(ceiling) / median(raw):.2f}   "
                f"daemon / ceiling = {median(adds) / median(ceiling):.2f}"
            )
            print(
                f"  rows per commit {median([r.rows_per_commit for r in runs]):.1f}, "
                f"requests per list batch {median([r.mean_batch for r in runs]):.1f}"
            )
            print(
                f"  event-loop CPU per add {median([r.loop_cpu_per_add for r in runs]) * 1e6:.0f} us "
                f"(half the raw batched limit leaves {2e6 / median(raw):.0f} us)"
            )
            print(
                f"  last run's core statistics: commits {last.commits:,}, mean_batch {last.mean_batch}, "
                f"max_batch {last.max_batch}, max_group {last.max_group}, lists_loaded {last.lists_loaded:,}, "
                f"checkpoints {last.checkpoints}, failed_commits {last.failed_commits}"
            )
            print(f"  target (daemon >= 1/2 of raw batched): {'PASS' if ratio >= 0.5 else 'FAIL'}")
        verdicts.append(change_log_cost(base, args.seconds, args.reps, scenarios))
        print(f"\noverall: {'PASS' if all(verdicts) else 'FAIL'}")
        return 0 if all(verdicts) else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
