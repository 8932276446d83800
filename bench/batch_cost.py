"""What a list batch of one add costs the event loop: the list servers' path alone, many lists against one.

Run it from the repository root::

    .venv/bin/python bench/batch_cost.py [--reps 3] [--adds 20000] [--baseline-src DIR]

64 tasks in one process add through ``Registry.submit`` with a callback
(the socket's path without the socket: no parsing, no encoding), into
list servers whose store is a stand-in that answers every batch at once
(no SQL, no thread, no fsync).  So the figure is the loop's CPU per add of
the registry, the mailboxes, the list servers and the answer path only.
Over 1,000 lists nearly every batch is one add; into one list a batch
holds many, so the difference between the two is the cost of a list batch
of one add on top of an add in a shared batch.

Each build runs in a process of its own (``--baseline-src``: another
source tree, say main's from ``git archive``, run with this interpreter),
the builds interleaved, ``--reps`` times; each process times five rounds
and reports the least and the median CPU per add of its main thread (the
least is the steadiest figure on a shared machine).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAY = datetime.date(2026, 2, 3)
TITLE = "benchmark entry with a title of ordinary length"
TASKS = 64
ROUNDS = 5


class InstantStore:
    """A store that loads every list empty and answers each batch as soon as its writer task runs."""

    shared = False

    def __init__(self) -> None:
        from todod._reply import Wakeup

        self.queue: list[Any] = []
        self.wake = Wakeup()

    async def load(self, name: str) -> Any:
        import trio

        from todod._model import TodoList

        await trio.lowlevel.checkpoint()
        return TodoList()

    async def submit(self, item: Any) -> None:
        self.queue.append(item)
        self.wake.set()

    async def run_writer(self) -> None:
        while True:
            await self.wake.wait()
            group, self.queue = self.queue, []
            for item in group:
                item.committed(None)


async def measure(lists: int, adds: int) -> list[float]:
    """The main thread's CPU per add, in microseconds, of each of ROUNDS rounds."""
    import trio

    from todod._core import add_op
    from todod._registry import Registry
    from todod._reply import Wakeup
    from todod._server import ServerConfig

    store = InstantStore()
    registry = Registry(store, ServerConfig())  # type: ignore[arg-type]
    per_task = adds // TASKS
    rounds: list[float] = []

    async def caller(i: int, count: int) -> None:
        wakeup = Wakeup()
        box: list[Any] = []

        def answered(result: Any) -> None:
            box.append(result)
            wakeup.set()

        for n in range(count):
            await registry.submit(f"l{(i + n * TASKS) % lists}", add_op(TITLE, DAY), answered)
            await wakeup.wait()
            box.pop().unwrap()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.run_writer)
        await nursery.start(registry.run)
        async with trio.open_nursery() as warm:  # every list's server started and written once
            for i in range(TASKS):
                warm.start_soon(caller, i, lists // TASKS + 2)
        for _ in range(ROUNDS):
            start = time.thread_time()
            async with trio.open_nursery() as callers:
                for i in range(TASKS):
                    callers.start_soon(caller, i, per_task)
            rounds.append((time.thread_time() - start) / (per_task * TASKS) * 1e6)
        nursery.cancel_scope.cancel()
    return rounds


def child(lists: int, adds: int) -> None:
    import trio

    sys.path.insert(0, os.getcwd())  # the build under test: the source tree we were started in
    gc.set_threshold(20_000, 50, 100)  # as todod._main sets it
    rounds = trio.run(measure, lists, adds)
    print(f"{min(rounds)} {statistics.median(rounds)}")


def run_build(src: Path, lists: int, adds: int) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(lists), str(adds)],
        cwd=src,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--adds", type=int, default=20_000)
    parser.add_argument("--lists", type=int, default=1000)
    parser.add_argument("--baseline-src", default=None, help="another build's source tree, run interleaved")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    builds = {"this build": ROOT}
    if args.baseline_src:
        builds["baseline"] = Path(args.baseline_src)
    figures: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(args.reps):
        for lists in (args.lists, 1):
            for name, src in builds.items():
                figures.setdefault((name, lists), []).append(run_build(src, lists, args.adds))
    print(f"event loop CPU per add, us (least and median of {ROUNDS} rounds; {args.reps} interleaved runs)")
    for (name, lists), runs in figures.items():
        shown = ", ".join(f"{low:.1f} ({mid:.1f})" for low, mid in runs)
        print(f"  {name:<10} {lists:>5} list(s): {shown}")
    for name in builds:
        many = statistics.median(low for low, _ in figures[(name, args.lists)])
        one = statistics.median(low for low, _ in figures[(name, 1)])
        print(f"  {name}: a batch of one add costs {many - one:.1f} us more than an add in a shared batch")


if __name__ == "__main__":
    main()
