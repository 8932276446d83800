"""Queries across lists over a million entries, beside the same SQL in ``sqlite3``; and what the indexes cost writes.

Run it from the repository root::

    .venv/bin/python bench/find_queries.py [-n 15] [--entries 1000000] [--lists 10000] [--keep DIR]

1. **Queries.**  It builds (or reuses, with ``--keep``) a todod database of
   ``--entries`` entries in ``--lists`` lists: titles of three words from a
   vocabulary of 4,000, dates from two years ago to a year ahead, nearly every
   past entry done, a third of the entries tagged.  One title in a thousand
   holds the word searched for.  It starts ``todod`` on it and times, as whole
   processes, round-robin after warm-up: ``todo status`` (the CLI's start and
   one round trip: the "start" below), ``todo find --search WORD``,
   ``todo find --pending --to today`` and ``todo today``, each beside the
   ``sqlite3`` command-line shell running the very SQL the daemon runs
   (``todod._query.build_sql``) on the same file.  The target: each ``todo``
   command within 2 times its SQL plus the CLI's start.  The start is
   measured beside each query in each round, and the figure is the median
   over rounds of (query - start) / SQL, with its quartiles and range: the
   start is most of a query's time, so medians taken apart (as this bench
   did before) made the figure a small difference of two noisy numbers.
2. **Writes.**  Durable adds per second through :func:`todod._core.open_core`
   (64 tasks over 1,000 lists, every add tagged), with the query indexes and
   without them (the bench drops the date indexes and keeps no search index:
   a bench-only switch), interleaved; the target is at least 0.9 times the
   rate without them.  With them, the indexer keeps the search index
   meanwhile, in its process of its own (``--indexer-in-thread``: in a
   worker thread of the daemon, as before; todod/store/_sqlite.py,
   ``IndexerProcess``), whose CPU per add is printed beside the daemon's.

``todo`` runs from a venv without the editable install's import hook, with
byte-code cached, as an installed wheel would (see bench/cli_startup.py).
Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from cli_startup import _plain_venv, _wait_ready  # noqa: E402

from todod import _query, _search  # noqa: E402
from todod._core import open_core  # noqa: E402
from todod.store import _sqlite  # noqa: E402
from todod.store._sqlite import DB_NAME, open_store  # noqa: E402

QUERY_TARGET = 2.0
WRITE_TARGET = 0.9
WARMUP = 2
WORD = "zephyrine"
TAGS = [f"tag{i}" for i in range(50)]


# --- the data -----------------------------------------------------------------


def build(data_dir: str, entries: int, lists: int, today: datetime.date) -> None:
    """Create a todod database of ``entries`` entries in ``lists`` lists, through todod's schema.

    The search index is left to the daemon, which builds it from the entries at its first start.
    """
    trio.run(_create_schema, data_dir)
    rng = random.Random(13)
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "do", "ga", "hu", "ze", "bi"]
    vocabulary = sorted({"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(6000)})[:4000]
    conn = sqlite3.connect(os.path.join(data_dir, DB_NAME), isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO lists (id, name, next_id) VALUES (?, ?, ?)",
        ((i + 1, f"list-{i:05d}", entries // lists + 2) for i in range(lists)),
    )

    def rows() -> object:
        for n in range(entries):
            list_id, entry_id = n % lists + 1, n // lists + 1
            words = rng.choices(vocabulary, k=3)
            if n % 1000 == 7:
                words[rng.randrange(3)] = WORD
            offset = rng.randint(-730, 365)
            done = rng.random() < (0.995 if offset < 0 else 0.05)
            tags = sorted(set(rng.sample(TAGS, rng.randint(1, 2)))) if n % 3 == 0 else []
            tags_text = "[" + ",".join(f'"{t}"' for t in tags) + "]"
            day = (today + datetime.timedelta(days=offset)).isoformat()
            yield (list_id, entry_id, day, " ".join(words).capitalize(), int(done), tags_text)

    conn.executemany("INSERT INTO entries (list_id, id, date, title, done, tags) VALUES (?, ?, ?, ?, ?, ?)", rows())
    # The entries predate the change log, as in a migrated database: they are each list's base state.
    conn.execute(
        "INSERT INTO base_entries (list_id, id, date, title, done, version, tags) "
        "SELECT list_id, id, date, title, done, version, tags FROM entries"
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


async def _create_schema(data_dir: str) -> None:
    async with open_store(data_dir):
        pass


def wait_search_index(data_dir: str, timeout: float = 600.0) -> int:
    """Wait (polling, bounded) until the daemon has built the search index; return its watermark."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with closing(sqlite3.connect(os.path.join(data_dir, _search.INDEX_NAME))) as conn:
                row = conn.execute("SELECT position FROM meta").fetchone()
            if row is not None and row[0] is not None:
                return int(row[0])
        except sqlite3.OperationalError:
            pass  # not created yet, or busy
        time.sleep(0.5)
    sys.exit(f"the daemon did not build the search index within {timeout:g} s")


def sql_literal(query: _query.FindQuery, watermark: int) -> str:
    """The daemon's SQL for ``query`` with its parameters inlined, for the sqlite3 shell.

    The shell has no ``todod_lower``: SQLite's own ``lower`` stands in for it
    in the check of the log's tail (empty here, as nothing is written).
    """
    sql, params = _query.build_sql(query, text_index=True, watermark=watermark)
    sql = sql.replace("todod_lower(", "lower(")
    parts = sql.split("?")
    assert len(parts) == len(params) + 1
    out = [parts[0]]
    for value, rest in zip(params, parts[1:], strict=True):
        out.append(str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'")
        out.append(rest)
    return "".join(out)


# --- part 1: queries ----------------------------------------------------------


def run_queries(args: argparse.Namespace, tmp: str) -> bool:
    today = datetime.date.today()
    data = args.keep or os.path.join(tmp, "data")
    db = os.path.join(data, DB_NAME)
    if not os.path.exists(db):
        os.makedirs(data, mode=0o700, exist_ok=True)
        start = time.perf_counter()
        build(data, args.entries, args.lists, today)
        print(f"built {args.entries:,} entries in {args.lists:,} lists in {time.perf_counter() - start:.0f} s")
    python, todo = _plain_venv(os.path.join(tmp, "plain"), str(Path(sys.executable).parent / "todo"))
    sock = os.path.join(tmp, "todod.sock")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "NO_COLOR")}
    env.update(PYTHONPYCACHEPREFIX=os.path.join(tmp, "pycache"), TODOD_SOCKET=sock, TODOD_NO_START="1")
    log_path = os.path.join(tmp, "daemon.log")
    with open(log_path, "ab") as log:
        daemon = subprocess.Popen(
            [python, "-m", "todod", "--socket", sock, "--data-dir", data],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
        )  # fmt: skip
    try:
        _wait_ready(sock, daemon, log_path)
        mark = wait_search_index(data)
        iso = today.isoformat()
        search_sql = sql_literal(_query.FindQuery(words=(WORD,)), mark)
        pending_sql = sql_literal(_query.FindQuery(done=False, date_to=today), mark)
        index = os.path.join(data, _search.INDEX_NAME)
        sqlite = ["sqlite3", "-readonly", "-cmd", f"ATTACH 'file:{index}?mode=ro' AS search", db]
        start_cmd = [todo, "status"]
        # Each query beside its SQL and beside a start of the CLI of its own,
        # run one after the other in each round, so that each round's
        # difference (the query less the start) pairs times taken under the
        # same load: the start is most of a query's time, and it swings
        # between rounds as much as the SQL takes.
        groups = {
            "todo find --search": ([todo, "find", "--search", WORD], [*sqlite, search_sql]),
            "todo find --pending --to today": ([todo, "find", "--pending", "--to", "today"], [*sqlite, pending_sql]),
            "todo today": ([todo, "today"], [*sqlite, pending_sql]),
        }
        samples, sizes = _measure(groups, start_cmd, args.n, env)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    print(f"\nqueries: {args.entries:,} entries in {args.lists:,} lists, today {iso}, {args.n} rounds, interleaved")
    print(f"{'command':<32}{'start ms':>9}{'query ms':>9}{'SQL ms':>8}{'rows':>6}   (medians)")
    for name, (starts, clis, sqls) in samples.items():
        print(
            f"{name:<32}{statistics.median(starts):>9.1f}{statistics.median(clis):>9.1f}"
            f"{statistics.median(sqls):>8.1f}{sizes[name]:>6}"
        )
    print(f"\n(query - its start) / its SQL, per round: median [quartiles] (min-max); target <= {QUERY_TARGET:g}")
    passed = True
    for name, (starts, clis, sqls) in samples.items():
        ratios = sorted((c - st) / q for st, c, q in zip(starts, clis, sqls, strict=True))
        mid = statistics.median(ratios)
        low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (mid, mid, mid)
        # The figure of earlier versions of this bench: medians taken apart.
        apart = (statistics.median(clis) - statistics.median(starts)) / statistics.median(sqls)
        ok = mid <= QUERY_TARGET
        passed &= ok
        print(
            f"{'PASS' if ok else 'FAIL'}: {name:<31} {mid:.2f} [{low:.2f}-{high:.2f}] "
            f"({ratios[0]:.2f}-{ratios[-1]:.2f}); "
            f"of the medians apart: {apart:.2f}; whole: {statistics.median(clis) / statistics.median(sqls):.2f} x SQL"
        )
    return passed


def _measure(
    groups: dict[str, tuple[list[str], list[str]]], start: list[str], n: int, env: dict[str, str]
) -> tuple[dict[str, tuple[list[float], list[float], list[float]]], dict[str, int]]:
    """Wall ms of each query, its SQL and a start of the CLI beside it, ``n`` rounds after warm-up; its output lines.

    In each round each group runs its three commands back to back, in an
    order that turns from round to round, so that none always runs first
    (after the other group's) or last.
    """
    samples: dict[str, tuple[list[float], list[float], list[float]]] = {name: ([], [], []) for name in groups}
    sizes: dict[str, int] = {}
    for round_ in range(WARMUP + n):
        for name, (cli, sql) in groups.items():
            three = [(0, start), (1, cli), (2, sql)]
            turn = round_ % 3
            for slot, argv in three[turn:] + three[:turn]:
                began = time.perf_counter()
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env)
                elapsed = (time.perf_counter() - began) * 1000
                if done.returncode != 0:
                    sys.exit(f"{argv[:3]} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
                if slot == 1:
                    sizes[name] = done.stdout.count(b"\n")
                if round_ >= WARMUP:
                    samples[name][slot].append(elapsed)
    return samples, sizes


# --- part 2: writes -----------------------------------------------------------

TASKS = 64
LISTS = 1000


def _cpu_ms(pid: int | None) -> float:
    """The user and system CPU a running process has used, in ms (0 for None)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


async def adds_per_second(base: str, seconds: float, indexes: bool) -> tuple[float, float, float]:
    """Durable tagged adds per second through open_core, with or without the query indexes; and CPU us per add.

    The CPU is the whole process's (the event loop, the writer's and the
    readers' threads), then its indexer's process's (0 without the
    indexes): less sensitive than the rate to what else the machine runs.
    """
    workdir = tempfile.mkdtemp(prefix="find-w-", dir=base)
    data = os.path.join(workdir, "data")
    try:
        if not indexes:
            async with open_store(data):
                pass
            conn = sqlite3.connect(os.path.join(data, DB_NAME))
            for kind, name in _query.INDEX_OBJECTS:
                conn.execute(f"DROP {kind} IF EXISTS {name}")
            conn.commit()
            conn.close()
        async with open_core(data, full_text=indexes, search_index=indexes) as core:
            assert core.store.text_index is indexes
            day = datetime.date(2026, 2, 3)
            async with trio.open_nursery() as nursery:
                for n in range(LISTS):
                    nursery.start_soon(core.add, f"list-{n}", "warm-up", day)
            await core.store.wait_indexed()  # the warm-up's indexing is not counted
            child = getattr(core.store, "_child", None)
            pid = None if child is None else child.pid
            child_cpu = _cpu_ms(pid)
            done = 0
            stop = False

            async def worker(i: int) -> None:
                nonlocal done
                n = i * (LISTS // TASKS)
                while not stop:
                    title = f"benchmark entry {n} with an ordinary title"
                    await core.add(f"list-{n % LISTS}", title, day, tags=[TAGS[n % 50]])
                    done += 1
                    n += 1

            start, cpu = trio.current_time(), time.process_time()
            async with trio.open_nursery() as nursery:
                for i in range(TASKS):
                    nursery.start_soon(worker, i)
                await trio.sleep(seconds)
                counted, elapsed = done, trio.current_time() - start
                stop = True
            await core.store.wait_indexed()  # the indexer's work for these adds, counted too
            used = time.process_time() - cpu
            if child is not None and child.pid != pid:
                sys.exit("the indexer's process was started again during the run: its CPU cannot be counted")
            child_used = _cpu_ms(pid) - child_cpu
            return counted / elapsed, used / done * 1e6, child_used / done * 1e3
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_writes(args: argparse.Namespace, tmp: str) -> bool:
    rates: dict[bool, list[float]] = {True: [], False: []}
    cpus: dict[bool, list[float]] = {True: [], False: []}
    child_cpus: list[float] = []
    for rep in range(args.write_reps):
        # Alternate which goes first, so drift in load hits both alike.
        for indexes in (True, False) if rep % 2 == 0 else (False, True):
            rate, cpu, child_cpu = trio.run(adds_per_second, tmp, args.write_seconds, indexes)
            rates[indexes].append(rate)
            cpus[indexes].append(cpu)
            if indexes:
                child_cpus.append(child_cpu)
    with_, without = statistics.median(rates[True]), statistics.median(rates[False])
    ratio = with_ / without
    print(
        f"\nwrites: {TASKS} tasks over {LISTS:,} lists, tagged adds, "
        f"{args.write_reps} interleaved runs of {args.write_seconds:g} s"
    )
    print(f"with the query indexes     {with_:>9.0f} adds/s (runs: {', '.join(f'{r:.0f}' for r in rates[True])})")
    print(f"without them               {without:>9.0f} adds/s (runs: {', '.join(f'{r:.0f}' for r in rates[False])})")
    cpu_with, cpu_without = statistics.median(cpus[True]), statistics.median(cpus[False])
    child = statistics.median(child_cpus)
    print(
        f"CPU of the daemon's process per add: {cpu_with:.0f} us with, {cpu_without:.0f} us without "
        f"(without / with = {cpu_without / cpu_with:.2f} x; it bounds the rate on a busy machine)"
    )
    print(
        f"and of its indexer's process: {child:.0f} us more with (the two together: without / with = "
        f"{cpu_without / (cpu_with + child):.2f} x; they compete for the cores only when both are busy)"
    )
    ok = ratio >= WRITE_TARGET
    print(f"{'PASS' if ok else 'FAIL'}: with = {ratio:.2f} x without (target: >= {WRITE_TARGET:g} x)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=21, help="rounds of the query commands (default 21)")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--lists", type=int, default=10_000)
    parser.add_argument("--keep", metavar="DIR", help="build the database in DIR once and reuse it in later runs")
    parser.add_argument("--write-reps", type=int, default=5, help="runs of each write measurement (default 5)")
    parser.add_argument("--write-seconds", type=float, default=1.5)
    parser.add_argument("--only", choices=("queries", "writes"), help="run one part only")
    parser.add_argument(
        "--indexer-in-thread",
        action="store_true",
        help="writes: the indexer's steps in a worker thread of the daemon, as before its process of its own",
    )
    args = parser.parse_args()
    if args.indexer_in_thread:
        _sqlite.INDEXER_PROCESS = False
    if shutil.which("sqlite3") is None:
        sys.exit("the sqlite3 command-line shell is needed for the SQL baseline")
    tmp = tempfile.mkdtemp(prefix="todo-find-", dir="/tmp")  # short: AF_UNIX paths are capped
    try:
        passed = True
        if args.only != "writes":
            passed &= run_queries(args, tmp)
        if args.only != "queries":
            passed &= run_writes(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nPython {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
