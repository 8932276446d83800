"""How fast the PostgreSQL store stages an import's rows: one COPY per batch against an ``executemany`` of an INSERT.

Run it from the repository root::

    .venv/bin/python bench/pg_stage.py [--rows 100000] [--reps 3]

One throwaway cluster with its durable defaults (tests/pg.py), one database
migrated to todod's schema.  Each repetition validates ``--rows`` rows as the
daemon does (``todod._imports.check_rows``, outside the timing) and stages
them in batches of :data:`todod.protocol.MAX_IMPORT_ROWS`, each batch one
transaction with ``synchronous_commit = off`` as the store's staging
connection runs them: once with the statement the store uses now
(``todod.store._pg_sql.STAGE``, a COPY), once with the ``executemany`` of
an INSERT that it used before, interleaved.  Prints the rows a second of
each (medians) and their ratio within each repetition (median).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from tests.pg import Cluster, find_bindir
from todod import _imports, protocol
from todod.store import _pg_sql

INSERT = "INSERT INTO import_rows (import, n, date, title, done, tags, event) VALUES (%s, %s, %s, %s, %s, %s, %s)"


def stage(conn: psycopg.Connection[Any], rows: list[Any], kind: str) -> float:
    start = time.perf_counter()
    for first in range(0, len(rows), protocol.MAX_IMPORT_ROWS):
        batch = rows[first : first + protocol.MAX_IMPORT_ROWS]
        with conn.transaction():
            if kind == "copy":
                with conn.cursor().copy(_pg_sql.STAGE) as copy:
                    for row in batch:
                        copy.write_row(row)
            else:
                conn.cursor().executemany(INSERT, batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL binaries (initdb, pg_ctl): install Debian's postgresql")
    wire = [
        [i, f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}", f"Entry number {i} of the import", False, []]
        for i in range(1, args.rows + 1)
    ]
    cluster = Cluster(bindir, durable=True)
    cluster.start()
    seconds: dict[str, list[float]] = {"copy": [], "executemany": []}
    try:
        uri = cluster.new_database()
        with psycopg.connect(uri) as conn:
            _pg_sql.check_and_migrate(conn, uri)
            conn.commit()
            conn.autocommit = True
            conn.execute("SET synchronous_commit = off")
            for rep in range(args.reps):
                kinds = ("copy", "executemany") if rep % 2 == 0 else ("executemany", "copy")
                for number, kind in enumerate(kinds):
                    import_id = f"{rep:08x}{number:08x}"
                    rows = _imports.check_rows(wire, import_id, 1)
                    seconds[kind].append(stage(conn, rows, kind))
                    conn.execute("TRUNCATE import_rows")  # no dead rows left for the next arm
    finally:
        cluster.stop()
    for kind, spent in seconds.items():
        each = ", ".join(f"{s:.2f}" for s in spent)
        print(f"{kind:<12} {args.rows / statistics.median(spent):>10,.0f} rows/s  ({each} s)")
    ratio = statistics.median(m / c for c, m in zip(seconds["copy"], seconds["executemany"], strict=True))
    print(f"COPY / executemany: {ratio:.2f}x the rows a second (median of {args.reps} repetitions)")


if __name__ == "__main__":
    main()
