"""Where one connection's sequential add spends its time: the commit's thread hop, and what each commit writes.

Run it from the repository root::

    .venv/bin/python bench/sequential_parts.py [--reps 5] [--adds 400]

Four servers, each started afresh per repetition, in an order that rotates:
the durable echo server (bench/echo_server.py) with its commit in a worker
thread and with ``--inline`` (in the event loop), and todod likewise (the
default, and ``--commit-in-loop``).  Each is warmed up as bench/run.py
does (64 connections, every one of 1,000 lists written once), then driven
by one connection of bench/loadgen.py with
``--adds`` sequential adds over 1,000 lists.  Printed per server: the p50
latency (median over the repetitions) and its ratio to the durable echo's
in the same repetition (median), and, per add, the server process's write
system calls and bytes written (``syscw`` and ``wchar`` of /proc/PID/io),
which estimate how much each commit writes before its fsync.  They count
``write`` and ``pwrite``, not ``send``: the WAL's frames (a header and a
page each, two calls), todod's response (it writes with ``os.write``; the
echo's ``send`` is not counted), and todod's passive checkpoint every 256
commits; the search indexer's process is not counted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/run.py, for its servers and load generator

SERVERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("durable echo, thread", "durable", ()),
    ("durable echo, inline", "durable", ("--inline",)),
    ("todod, thread", "todod", ()),
    ("todod, --commit-in-loop", "todod", ("--commit-in-loop",)),
)


def io_counters(pid: int) -> dict[str, int]:
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {key: int(fields[key]) for key in ("syscw", "wchar")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--adds", type=int, default=400)
    args = parser.parse_args()
    p50: dict[str, list[float]] = {name: [] for name, _, _ in SERVERS}
    writes: dict[str, list[float]] = {name: [] for name, _, _ in SERVERS}
    written: dict[str, list[float]] = {name: [] for name, _, _ in SERVERS}
    tmp = Path(tempfile.mkdtemp(prefix="todob-seq-"))
    try:
        for rep in range(args.reps):
            order = SERVERS[rep % len(SERVERS) :] + SERVERS[: rep % len(SERVERS)]
            for name, kind, extra in order:
                work = tmp / f"{rep}-{kind}-{len(extra)}"
                server = run.Server(kind, work, extra=extra)
                try:
                    # Every list written once first, as bench/run.py does: no load of a cold list in the figure.
                    run.run_load(server, run.CONNECTIONS, run.warm_up_requests(run.LISTS), run.LISTS)
                    before = io_counters(server.proc.pid)
                    p50[name].append(run.run_load(server, 1, args.adds, run.LISTS, processes=1)["p50"])
                    after = io_counters(server.proc.pid)
                finally:
                    server.stop()
                    shutil.rmtree(work, ignore_errors=True)
                writes[name].append((after["syscw"] - before["syscw"]) / args.adds)
                written[name].append((after["wchar"] - before["wchar"]) / args.adds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = p50[SERVERS[0][0]]
    print(f"one connection, {args.adds} sequential adds over {run.LISTS:,} lists, medians of {args.reps} repetitions")
    for name, _, _ in SERVERS:
        ratio = statistics.median(t / d for t, d in zip(p50[name], base, strict=True))
        kib = statistics.median(written[name]) / 1024
        print(
            f"  {name:<24} p50 {statistics.median(p50[name]) * 1e6:6.0f} us  {ratio:4.2f}x the echo's   "
            f"per add: {statistics.median(writes[name]):4.1f} writes, {kib:5.1f} KiB"
        )


if __name__ == "__main__":
    main()
