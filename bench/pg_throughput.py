"""Durable adds per second on PostgreSQL with 1, 2 and 3 daemons, beside the SQLite daemon and raw psycopg inserts.

Run it from the repository root::

    .venv/bin/python bench/pg_throughput.py [--reps 3] [--adds 6000] [--json PATH]

One throwaway PostgreSQL cluster with its durable defaults (``fsync=on``,
``synchronous_commit=on``, on a Unix socket in a temporary directory; see
tests/pg.py) serves every PostgreSQL run, each on a fresh database.  Each
repetition runs, interleaved (the order rotates):

- the SQLite daemon (the default store), for scale;
- 1, 2 and 3 todod daemons on one PostgreSQL database, the 64 closed-loop
  connections of bench/loadgen.py spread evenly over them (one generator
  process per daemon);
- raw psycopg: one connection inserting rows into a table shaped like the
  entries table, committed in transactions of the group size the 1-daemon
  run reached (its adds over its commits, from ``status``): the floor of one
  writer at that group size, with nothing of todod in it;

each with the adds spread over 1,000 lists and with every add into one hot
list; and 2 and 3 daemons whose clients each write 1,000 lists of their own
daemon's (``own lists``: no list is written through two daemons).  Every
figure is the median of ``--reps`` repetitions (at least 3), and the ratios
are taken within each repetition, then their median.  The machine has 2
cores shared by the daemons, PostgreSQL and the generators, so read the
ratios, not the absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import BENCH, PY, Server, cpu_seconds, median  # noqa: E402
from tests.pg import Cluster, find_bindir  # noqa: E402

CONNECTIONS = 64
LISTS = 1000
KINDS = ("sqlite", "pg1", "pg2", "pg3")
#: 2 and 3 daemons, each daemon's clients on lists of their own.
OWN = ("pg2own", "pg3own")


def status(socket_path: str) -> dict[str, Any]:
    from tests.daemon import request

    result: dict[str, Any] = request(socket_path, "status")
    return result


def run_load(servers: list[Server], requests: int, lists: int, own: bool = False) -> dict[str, Any]:
    """64 closed-loop connections spread over ``servers``, one generator process per server."""
    count = len(servers)
    per = [CONNECTIONS // count + (1 if i < CONNECTIONS % count else 0) for i in range(count)]
    gens = []
    first = 0
    for number, (server, conns) in enumerate(zip(servers, per, strict=True)):
        argv = [PY, str(BENCH / "loadgen.py"), "--socket", server.socket, "--connections", str(conns)]
        if own:
            argv += ["--prefix", f"d{number}-"]
        argv += ["--requests", str(requests * conns // CONNECTIONS), "--lists", str(lists), "--first", str(first)]
        first += conns
        gens.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    for gen in gens:
        assert gen.stdout is not None
        if gen.stdout.readline().strip() != b"connected":
            raise SystemExit("a load generator failed to connect")
    cpu_before = sum(cpu_seconds(s.proc.pid) for s in servers)
    for gen in gens:
        assert gen.stdin is not None
        gen.stdin.write(b"go\n")
        gen.stdin.flush()
    results = []
    for gen in gens:
        assert gen.stdout is not None
        results.append(json.loads(gen.stdout.readline()))
        gen.wait()
    cpu = sum(cpu_seconds(s.proc.pid) for s in servers) - cpu_before
    errors = sum(r["errors"] for r in results)
    if errors:
        raise SystemExit(f"{errors} error responses; see the daemons' logs")
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {"per_second": sum(r["requests"] for r in results) / wall, "daemon_cpu": cpu / wall}


def daemons_run(tmp: Path, kind: str, uri: str | None, adds: int, lists: int) -> dict[str, Any]:
    count = 1 if kind == "sqlite" else int(kind[2])
    own = kind.endswith("own")
    extra = [] if uri is None else ["--store", uri]
    servers = [Server("todod", tmp / f"{kind}-{lists}-{n}-{time.monotonic_ns()}", extra=extra) for n in range(count)]
    try:
        # Warm up: every list written once, so loading is not in the figure.
        run_load(servers, max(lists * (count if own else 1), CONNECTIONS), lists, own)
        before = [status(s.socket) for s in servers]
        result = run_load(servers, adds, lists, own)
        after = [status(s.socket) for s in servers]
    finally:
        for server in servers:
            server.stop()
    commits = sum(a["stats"]["commits"] - b["stats"]["commits"] for a, b in zip(after, before, strict=True))
    result["group"] = adds / max(commits, 1)
    return result


def raw_inserts(uri: str, rows: int, group: int) -> float:
    """Rows per second inserted by one psycopg connection, ``group`` rows per committed transaction."""
    import psycopg

    with psycopg.connect(uri) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute(
            "CREATE TABLE raw (list_id BIGINT, id BIGINT, date TEXT, title TEXT, done INTEGER, version INTEGER, "
            "tags TEXT, PRIMARY KEY (list_id, id))"
        )
        conn.commit()
        next_id = [0] * LISTS
        start = time.perf_counter()
        done = 0
        with conn.cursor() as cur:
            while done < rows:
                batch = []
                for i in range(min(group, rows - done)):
                    list_id = (done + i) % LISTS
                    next_id[list_id] += 1
                    batch.append((list_id, next_id[list_id], "2026-02-03", "benchmark entry", 0, 1, "[]"))
                cur.executemany("INSERT INTO raw VALUES (%s, %s, %s, %s, %s, %s, %s)", batch)
                conn.commit()
                done += len(batch)
        return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--adds", type=int, default=6000, help="adds per measured run")
    parser.add_argument("--json", default=str(BENCH / "results" / "pg_throughput.json"))
    args = parser.parse_args()
    table = measure(max(3, args.reps), args.adds)
    print_table(table)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(table, indent=2) + "\n")
    print(f"\nwritten to {args.json}")


def measure(reps: int, adds: int) -> dict[str, Any]:
    """The whole comparison (see the module's docstring); the table as a dict."""
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL binaries (initdb, pg_ctl): install Debian's postgresql")
    cluster = Cluster(bindir, durable=True)
    cluster.start()
    tmp = Path(tempfile.mkdtemp(prefix="todob-pg-"))
    runs: dict[str, list[dict[str, Any]]] = {f"{k}_{w}": [] for k in (*KINDS, "raw") for w in ("1000", "hot")}
    runs.update({f"{k}_1000": [] for k in OWN})
    started = time.monotonic()
    try:
        for rep in range(reps):
            order = KINDS[rep % len(KINDS) :] + KINDS[: rep % len(KINDS)]
            for kind in order:
                for lists, which in ((LISTS, "1000"), (1, "hot")):
                    uri = None if kind == "sqlite" else cluster.new_database()
                    runs[f"{kind}_{which}"].append(daemons_run(tmp, kind, uri, adds, lists))
            for kind in OWN:
                runs[f"{kind}_1000"].append(daemons_run(tmp, kind, cluster.new_database(), adds, LISTS))
            for which in ("1000", "hot"):
                group = max(1, round(runs[f"pg1_{which}"][-1]["group"]))
                rate = raw_inserts(cluster.new_database(), adds, group)
                runs[f"raw_{which}"].append({"per_second": rate, "group": group})
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out: dict[str, Any] = {"reps": reps, "adds": adds, "cpus": os.cpu_count()}
    for key, rs in runs.items():
        out[key] = {
            "per_second": median([r["per_second"] for r in rs]),
            "all": [round(r["per_second"]) for r in rs],
            "group": median([r["group"] for r in rs]),
        }
    for which in ("1000", "hot"):
        for kind in ("pg1", "pg2", "pg3", *(OWN if which == "1000" else ())):
            pairs = zip(runs[f"{kind}_{which}"], runs[f"sqlite_{which}"], runs[f"raw_{which}"], strict=True)
            ratios = [(p["per_second"] / s["per_second"], p["per_second"] / r["per_second"]) for p, s, r in pairs]
            out[f"{kind}_{which}"]["over_sqlite"] = median([a for a, _ in ratios])
            out[f"{kind}_{which}"]["over_raw"] = median([b for _, b in ratios])
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def print_table(t: dict[str, Any]) -> None:
    print(f"durable adds/s, 64 connections, median of {t['reps']} interleaved runs of {t['adds']} adds")
    print(f"{'':28} {'1,000 lists':>12} {'group':>6} {'/ SQLite':>9} {'/ raw':>7}   {'one list':>9} {'group':>6}"
          f" {'/ SQLite':>9} {'/ raw':>7}")  # fmt: skip
    labels = {"sqlite": "SQLite daemon", "pg1": "PostgreSQL, 1 daemon", "pg2": "PostgreSQL, 2 daemons",
              "pg3": "PostgreSQL, 3 daemons", "pg2own": "  2 daemons, own lists", "pg3own": "  3 daemons, own lists",
              "raw": "raw psycopg, same group"}  # fmt: skip
    for kind, label in labels.items():
        cells = []
        for which in ("1000", "hot"):
            row = t.get(f"{kind}_{which}")
            if row is None:
                cells.append("")
                continue
            ratio = f"{row['over_sqlite']:.2f}x" if "over_sqlite" in row else ""
            raw = f"{row['over_raw']:.2f}x" if "over_raw" in row else ""
            cells.append(f"{row['per_second']:>12.0f} {row['group']:>6.1f} {ratio:>9} {raw:>7}")
        print(f"{label:28} {cells[0]}   {cells[1]}")


if __name__ == "__main__":
    main()
