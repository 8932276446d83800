"""Where an import's time goes, part by part, in one process: the CLI's, each batch's in the daemon, the publish.

Run it from the repository root::

    .venv/bin/python bench/import_parts.py [--lines 200000] [--reps 3]

Each repetition parses a CSV file of ``--lines`` lines (the book's format)
with ``cli._bulk.rows`` and encodes its ``import_rows`` requests as ``todo
import`` does, decodes each line as the daemon does (``parse_request``),
validates it (``check_rows``), stages it in a staging file as the SQLite
store does (todod/_bulk.py), and publishes it in one transaction of a fresh
store's writer connection, the file attached (the entries, the log's
events, the commit), then removes the file,
then runs the checkpoint the writer asks for after it and the search
indexer's steps over the new events (after the acknowledgement, but on the
same CPU).  Every part is timed apart (wall time, and the CPU time of this one
thread, which the machine's load disturbs less) and printed as its share of
the sum of the parts on the acknowledgement path; medians of the repetitions.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli import _bulk as cli_bulk  # noqa: E402
from todod import _bulk, _imports, _search, protocol  # noqa: E402
from todod.store import _sqlite  # noqa: E402

PATH_PARTS = (
    "cli_parse",
    "cli_encode",
    "daemon_decode",
    "validate",
    "stage",
    "publish_entries",
    "publish_events",
    "commit",
    "publish_drop",
)
AFTER_PARTS = ("checkpoint", "index")


def make_csv(lines: int) -> bytes:
    text = (f"2026-{1 + i % 12:02d}-{1 + i % 28:02d},Entry number {i} of the import\n" for i in range(lines))
    return "".join(text).encode()


def one_run(data: bytes, tmp: Path) -> dict[str, float]:
    """One import of ``data``, every part timed; returns seconds per part."""
    spent: dict[str, float] = defaultdict(float)
    data_dir = tmp / "data"
    data_dir.mkdir()
    db = str(data_dir / _sqlite.DB_NAME)
    open(db, "a").close()
    writer = _sqlite._connect(db)
    _sqlite._check_and_migrate(writer, db)
    writer.execute("PRAGMA synchronous = FULL")  # as the store's writer: fsynced, checkpoints apart
    writer.execute("PRAGMA foreign_keys = ON")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    staging_path = str(tmp / "staging.sqlite3")
    staging = _bulk.open_staging(staging_path)  # the store's staging file (todod/_bulk.py)
    index_file = _search.index_path(db)
    open(index_file, "a").close()
    indexer = _sqlite._connect(db)
    _search.open_index(indexer, db, text=True, trusted=True)
    while _search.step(indexer, 0) is None:  # an empty index, built: it follows the log from here
        pass
    list_id = writer.execute("INSERT INTO lists (name, next_id) VALUES ('big', 1) RETURNING id").fetchone()[0]
    import_id = "0123456789abcdef"
    cpu: dict[str, float] = defaultdict(float)
    cpu_mark = [time.thread_time()]

    def clock() -> float:
        cpu_mark[0] = time.thread_time()
        return time.perf_counter()

    def timed(part: str, start: float) -> float:
        now_cpu = time.thread_time()
        cpu[part] += now_cpu - cpu_mark[0]
        now = clock()
        spent[part] += now - start
        return now

    source = cli_bulk.rows(io.BytesIO(data), None)
    count = 0
    while True:
        t = clock()
        batch = []
        for row in source:
            batch.append(row)
            if len(batch) >= protocol.MAX_IMPORT_ROWS:
                break
        if not batch:
            break
        t = timed("cli_parse", t)
        fields = {"import": import_id, "start": count + 1, "rows": batch}
        line = protocol.encode_request("import_rows", count + 1, **fields)
        t = timed("cli_encode", t)
        request = protocol.parse_request(line.rstrip(b"\n"))
        t = timed("daemon_decode", t)
        staged = _imports.check_rows(request.args["rows"], import_id, request.args["start"])
        t = timed("validate", t)
        _bulk.stage_file_rows(staging, staged)
        timed("stage", t)
        count += len(batch)
    t = clock()
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("ATTACH DATABASE ? AS staged", (f"file:{staging_path}?mode=ro",))
    next_id, seq = writer.execute("SELECT next_id, seq FROM lists WHERE id = ?", (list_id,)).fetchone()
    writer.execute(
        "INSERT INTO entries (list_id, id, date, title, done, version, tags) "
        "SELECT ?, ? + n - 1, date, title, done, 1, tags FROM staged.rows ORDER BY n",
        (list_id, next_id),
    )
    t = timed("publish_entries", t)
    writer.execute(
        "INSERT INTO events (position, list_id, seq, change, op, entry, before, after, time, uid, pid, target, prev) "
        "SELECT n, ?, ? + n, ? + 1, 'import', ? + n - 1, NULL, event, ?, NULL, NULL, NULL, n - 1 "
        "FROM staged.rows ORDER BY n",
        (list_id, seq, seq, next_id, time.time()),
    )
    writer.execute(
        "UPDATE lists SET next_id = next_id + ?, seq = seq + ?, head = ? WHERE id = ?", (count, count, count, list_id)
    )
    t = timed("publish_events", t)
    writer.execute("COMMIT")
    writer.execute("DETACH DATABASE staged")
    t = timed("commit", t)
    staging.close()
    os.remove(staging_path)
    t = timed("publish_drop", t)
    writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
    t = timed("checkpoint", t)
    while (mark := _search.step(indexer, count)) is not None and mark < count:
        pass
    timed("index", t)
    for conn in (writer, indexer):
        conn.close()
    shutil.rmtree(data_dir)
    return {**spent, **{part + "_cpu": seconds for part, seconds in cpu.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    data = make_csv(args.lines)
    tmp = Path(tempfile.mkdtemp(prefix="todob-parts-"))
    os.chmod(tmp, 0o700)
    runs: list[dict[str, float]] = []
    try:
        for _ in range(args.reps):
            runs.append(one_run(data, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    parts = PATH_PARTS + AFTER_PARTS
    med = {part: statistics.median(r.get(part, 0.0) for r in runs) for part in parts}
    med_cpu = {part: statistics.median(r.get(part + "_cpu", 0.0) for r in runs) for part in parts}
    total, total_cpu = sum(med[p] for p in PATH_PARTS), sum(med_cpu[p] for p in PATH_PARTS)
    print(f"{args.lines:,} lines, medians of {args.reps} runs, one thread: wall and CPU (this thread's) per part")
    for part in PATH_PARTS:
        print(
            f"  {part:<16} wall {med[part]:6.3f} s {med[part] / total:6.1%}   "
            f"CPU {med_cpu[part]:6.3f} s {med_cpu[part] / total_cpu:6.1%} "
            f"{med_cpu[part] / args.lines * 1e6:5.2f} us/row"
        )
    print(f"  {'path total':<16} wall {total:6.3f} s          CPU {total_cpu:6.3f} s")
    for part in AFTER_PARTS:
        print(f"  {part:<16} wall {med[part]:6.3f} s          CPU {med_cpu[part]:6.3f} s  (after the answer)")


if __name__ == "__main__":
    main()
