"""Big-list reads (issue 11): `todo entries` of a big list against sqlite3, its memory, and others' latency.

Run by hand::

    .venv/bin/python bench/big_read.py [--entries 200000] [--reps 5] [--readers 16]

Starts a todod on a temporary socket and data directory, fills one list
with ``--entries`` entries through pipelined ``add`` requests, then, in
interleaved repetitions:

* ``todo entries big`` (the whole process, output to /dev/null) and its
  peak RSS (``wait4``'s ru_maxrss);
* the baseline: a Python process that reads the same rows from the
  daemon's database with ``sqlite3`` and prints them (to /dev/null).

Both run in a plain venv (bench/cli_startup.py's: this venv's packages and
the source tree on its path, no editable-install hook), with byte-code
caching on in a private cache, after one warm-up run each: as an installed
``todo`` runs.

Then ``--readers`` connections (in one process of their own) page through
the whole list at once, each sending its next request as soon as a page
arrives (the cursor read off the line's start, as ``todo entries`` does),
while another client sends a ``hello`` and an ``add`` to an unrelated list
in turn: their latencies' p50 and p99 (an ``add`` is durable, so it pays a
commit).  Prints JSON: medians and the ratio against the baseline measured
in this run.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli_startup import _plain_venv
from tests.daemon import Daemon, LineReader, connect, short_tempdir
from todod.protocol import encode_request

SQLITE_READ = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
out = sys.stdout
for row in db.execute(
    "SELECT e.id, e.date, e.done, e.title FROM entries e JOIN lists l ON l.id = e.list_id"
    " WHERE l.name = ? ORDER BY e.id", ("big",)
):
    out.write(f"{row[0]}  {row[1]}  {'yes' if row[2] else 'no '}  {row[3]}\\n")
"""


def fill(daemon: Daemon, count: int) -> None:
    with connect(daemon.socket, timeout=60) as sock:
        reader = LineReader(sock)
        for start in range(0, count, 1000):
            n = min(1000, count - start)
            sock.sendall(
                b"".join(encode_request("add", list="big", title=f"entry number {i} of the big list") for i in range(n))
            )
            for _ in range(n):
                assert reader.response()["ok"]


#: GNU time, to read a process's peak RSS: ``wait4``'s ru_maxrss of a child
#: of this process is at least this process's own RSS (the high-water mark
#: of the memory it forked from is kept across exec), some 21 MB here, while
#: a child of the small ``time`` process starts from ``time``'s.
GNU_TIME = shutil.which("time")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one process, its output thrown away.

    Without GNU time the RSS is ``wait4``'s, a floor of this process's own.
    """
    started = time.perf_counter()
    with open(os.devnull, "wb") as null, tempfile.NamedTemporaryFile("r") as rss:
        command = argv if GNU_TIME is None else [GNU_TIME, "-f", "%M", "-o", rss.name, *argv]
        proc = subprocess.Popen(command, stdout=null, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - started
        peak = usage.ru_maxrss if GNU_TIME is None else int(rss.read().split()[-1])
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, argv
    return took, peak


def page_through(path: str) -> None:
    """Read the whole list in pages without decoding them (the cursor is read off the line's start)."""
    with connect(path, timeout=60) as sock:
        buffer = bytearray()
        cursor: str | None = None
        while True:
            sock.sendall(encode_request("entries", list="big", limit=10_000, after=cursor))
            scanned = 0
            while (end := buffer.find(b"\n", scanned)) < 0:
                scanned = len(buffer)
                chunk = sock.recv(1 << 18)
                assert chunk, "the daemon hung up"
                buffer += chunk
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            assert line.startswith(b'{"ok":true,"result":{"next":'), line[:300]
            start = len(b'{"ok":true,"result":{"next":')
            if line.startswith(b"null", start):
                return
            cursor = line[start + 1 : line.index(b'"', start + 1)].decode()


def readers_main(path: str, readers: int) -> None:
    threads = [threading.Thread(target=page_through, args=(path,)) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def latency_during_reads(daemon: Daemon, readers: int) -> tuple[list[float], list[float]]:
    here = str(Path(__file__).parent)
    code = f"import sys; sys.path.insert(0, {here!r}); import big_read; big_read.readers_main(sys.argv[1], {readers})"
    hellos: list[float] = []
    adds: list[float] = []
    hello, add = encode_request("hello"), encode_request("add", list="other", title="x")
    with connect(daemon.socket, timeout=60) as sock:
        reader = LineReader(sock)
        proc = subprocess.Popen([sys.executable, "-c", code, str(daemon.socket)])
        while proc.poll() is None:
            for line, samples in ((hello, hellos), (add, adds)):
                started = time.perf_counter()
                sock.sendall(line)
                assert reader.response()["ok"]
                samples.append(time.perf_counter() - started)
            time.sleep(0.002)
        assert proc.returncode == 0, "a reader failed"
    return hellos, adds


def latency_report(daemon: Daemon, readers: int) -> dict[str, object]:
    """Other clients' latency during ``readers`` paged reads of the whole list: p50, p99 and max."""
    hellos, adds = (sorted(samples) for samples in latency_during_reads(daemon, readers))
    return {
        "hello_samples": len(hellos),
        "hello_p50_ms": round(statistics.median(hellos) * 1000, 2),
        "hello_p99_ms": round(_p99(hellos) * 1000, 2),
        "hello_max_ms": round(hellos[-1] * 1000, 2),
        "unrelated_add_p50_ms": round(statistics.median(adds) * 1000, 2),
        "unrelated_add_p99_ms": round(_p99(adds) * 1000, 2),
        "unrelated_add_max_ms": round(adds[-1] * 1000, 2),
    }


def compare_latency(daemon: Daemon, reps: int, readers: int, other_args: list[str]) -> dict[str, object]:
    """Other clients' latency during big reads, the daemon restarted on the same data with each argument set in turn."""
    arms = {"A": list(daemon.extra_args), "B": list(daemon.extra_args) + other_args}
    runs: dict[str, list[dict[str, object]]] = {"A": [], "B": []}
    for _ in range(reps):
        for arm, extra in arms.items():
            daemon.stop()
            daemon.extra_args = extra
            daemon.start(timeout=60)
            runs[arm].append(latency_report(daemon, readers))
    keys = ("hello_p99_ms", "unrelated_add_p50_ms", "unrelated_add_p99_ms", "unrelated_add_max_ms")
    report: dict[str, object] = {"reps": reps, "readers": readers, "A_args": arms["A"], "B_args": arms["B"]}
    for key in keys:
        a = [float(run[key]) for run in runs["A"]]  # type: ignore[arg-type]
        b = [float(run[key]) for run in runs["B"]]  # type: ignore[arg-type]
        report[key] = {"A": a, "B": b, "median_A": statistics.median(a), "median_B": statistics.median(b)}
    return report


def _p99(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument(
        "--latency-only", action="store_true", help="only the latency of other clients during the paged reads"
    )
    parser.add_argument(
        "--daemon-arg", action="append", default=[], help="an argument for todod (repeatable), e.g. --commit-in-loop"
    )
    parser.add_argument(
        "--compare",
        metavar="ARGS",
        help="with --latency-only: restart the daemon on the same data, in turn with --daemon-arg's and with these "
        "space-separated todod arguments, --reps times each (a same-run A/B), e.g. '--switch-interval 5'",
    )
    args = parser.parse_args()
    root = short_tempdir()
    daemon = Daemon(root, args.daemon_arg)
    try:
        daemon.start()
        fill(daemon, args.entries)
        if args.latency_only and args.compare is not None:
            print(json.dumps(compare_latency(daemon, args.reps, args.readers, args.compare.split()), indent=2))
            return
        if args.latency_only:
            print(
                json.dumps(
                    {"readers": args.readers, "daemon_args": args.daemon_arg, **latency_report(daemon, args.readers)},
                    indent=2,
                )
            )
            return
        env = {k: v for k, v in daemon.cli_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        python, todo = _plain_venv(str(root / "plain"), str(Path(sys.executable).parent / "todo"))
        db = str(daemon.data_dir / "todod.sqlite3")
        todo_times, todo_rss, base_times, base_rss = [], [], [], []
        timed([todo, "entries", "big"], env)  # warm-up: byte-code caches
        timed([python, "-c", SQLITE_READ, db], env)
        for _ in range(args.reps):
            took, rss = timed([todo, "entries", "big"], env)
            todo_times.append(took)
            todo_rss.append(rss)
            took, rss = timed([python, "-c", SQLITE_READ, db], env)
            base_times.append(took)
            base_rss.append(rss)
        report = {
            "entries": args.entries,
            "reps": args.reps,
            "todo_entries_s_median": round(statistics.median(todo_times), 3),
            "sqlite3_print_s_median": round(statistics.median(base_times), 3),
            "ratio_todo_over_sqlite3": round(statistics.median(map(operator.truediv, todo_times, base_times)), 2),
            "todo_peak_rss_mb_max": round(max(todo_rss) / 1024, 1),
            "sqlite3_peak_rss_mb_max": round(max(base_rss) / 1024, 1),
            "readers": args.readers,
            **latency_report(daemon, args.readers),
        }
        print(json.dumps(report, indent=2))
    finally:
        daemon.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    main()
