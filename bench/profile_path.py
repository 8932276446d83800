"""Where todod's event loop spends its time on the request path, under bench/run.py's load.

Run it from the repository root (py-spy comes with ``pip install -e '.[bench]'``)::

    .venv/bin/python bench/profile_path.py [--lists 1000] [--seconds 8] [--out bench/results/profile.txt]

It starts todod (and, for the CPU comparison, the durable echo server),
drives each with bench/loadgen.py (64 closed-loop connections), samples
todod with ``py-spy record --threads`` and prints the share of the main
thread's samples per function, inclusive and self, and the CPU per add of
each thread of both servers (from /proc), so the event loop's cost per add
can be set beside the floor's.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/run.py, for its servers and load generator

PY_SPY = Path(sys.executable).parent / "py-spy"


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of a process."""
    out: dict[str, float] = collections.defaultdict(float)
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            seconds = run.stat_cpu_seconds(f"/proc/{pid}/task/{tid}/stat")
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except FileNotFoundError:
            continue
        out["main" if tid == str(pid) else name.split()[0] + " threads"] += seconds
    return out


def cpu_per_add(
    kind: str, work: Path, lists: int, adds: int, extra: Sequence[str] = (), src: Path = run.ROOT
) -> dict[str, float]:
    server = run.Server(kind, work, extra=extra, src=src)
    try:
        run.run_load(server, run.CONNECTIONS, run.warm_up_requests(lists), lists)
        before = thread_cpu(server.proc.pid)
        run.run_load(server, run.CONNECTIONS, adds, lists)
        after = thread_cpu(server.proc.pid)
    finally:
        server.stop()
    return {name: (after[name] - before.get(name, 0.0)) / adds * 1e6 for name in after}


def summarise(raw: Path, top: int) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if "MainThread" not in frames[0]:
            continue
        n = int(count)
        total += n
        names = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].split(":")[0].rstrip(")") for f in frames[1:]]
        for name in set(names):
            inclusive[name] += n
        own[names[-1]] += n
    print(f"\nmain thread: {total} samples; inclusive share per function")
    for name, n in inclusive.most_common(top):
        print(f"  {n / total * 100:5.1f}%  {name}")
    print("self share")
    for name, n in own.most_common(top // 2):
        print(f"  {n / total * 100:5.1f}%  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--adds", type=int, default=8000, help="adds for the CPU-per-add comparison")
    parser.add_argument("--out", default=str(run.BENCH / "results" / "profile.txt"))
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="also the CPU per add of todod with these arguments, repeatable: --variant='--commit-in-loop'",
    )
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU per add, no sampling")
    parser.add_argument(
        "--baseline-src", default=None, help="also the CPU per add of the todod in this source tree (say, main's)"
    )
    parser.add_argument("--reps", type=int, default=1, help="interleaved repetitions of the CPU-per-add runs")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="todop-"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        runs: list[tuple[str, str, tuple[str, ...], Path]] = [
            ("durable", "durable", (), run.ROOT),
            ("todod", "todod", (), run.ROOT),
        ]
        runs += [(f"todod {v}", "todod", tuple(v.split()), run.ROOT) for v in args.variant]
        if args.baseline_src:
            runs.append(("baseline", "todod", (), Path(args.baseline_src)))
        for rep in range(args.reps):
            for i, (label, kind, extra, src) in enumerate(runs):
                cpu = cpu_per_add(kind, tmp / f"cpu-{rep}-{i}", args.lists, args.adds, extra, src)
                print(f"{label}: CPU per add, us: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(cpu.items())))
        if args.cpu_only:
            return
        server = run.Server("todod", tmp / "profile")
        try:
            run.run_load(server, run.CONNECTIONS, run.warm_up_requests(args.lists), args.lists)
            spy = subprocess.Popen(
                [
                    str(PY_SPY),
                    "record",
                    "-p",
                    str(server.proc.pid),
                    "-o",
                    str(out),
                    "-f",
                    "raw",
                    "-r",
                    "500",
                    "-d",
                    str(args.seconds),
                    "--threads",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                run.run_load(server, run.CONNECTIONS, 4000, args.lists)
            spy.wait()
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summarise(out, 40)
    print(f"\nraw samples in {out}")


if __name__ == "__main__":
    main()
