"""Memory per running list server, against a bare Trio task waiting on a memory channel.

Run by bench/run.py, or by hand::

    .venv/bin/python bench/list_memory.py --dir DIR [--lists 10000] [--reps 3]

In one interpreter, with ``tracemalloc`` measuring what Python allocates:

* the baseline: ``--lists`` tasks, each waiting on a memory channel of its
  own with the capacity of a list server's mailbox;
* todod: the core (``open_core``) on a store of ``--lists`` lists of one entry
  each, every list loaded by one ``entries`` call, so that as many list
  servers run, each waiting for mail.

Both are measured after ``wait_all_tasks_blocked``, as the growth of traced
memory divided by the number of tasks; repetitions alternate.  Prints JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tracemalloc
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from todod._core import CoreConfig, open_core
from todod._server import ServerConfig
from todod.store._sqlite import _open_sync


def build(data_dir: Path, lists: int) -> None:
    lock_fd, conn, _, _text_index, indexer = _open_sync(str(data_dir), 0, True)
    if indexer is not None:
        indexer.close()  # the search index is built by the daemon, from these entries
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO lists (id, name, next_id) VALUES (?, ?, 2)", ((i, f"m{i}") for i in range(1, lists + 1))
        )
        conn.executemany(
            "INSERT INTO entries (list_id, id, date, title, done) VALUES (?, 1, '2026-02-03', 'one entry', 0)",
            ((i,) for i in range(1, lists + 1)),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
        os.close(lock_fd)


async def bare_tasks(n: int, capacity: int) -> float:
    async def wait(receive: trio.MemoryReceiveChannel[object]) -> None:
        await receive.receive()

    keep = []
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            send, receive = trio.open_memory_channel[object](capacity)
            keep.append(send)
            nursery.start_soon(wait, receive)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        nursery.cancel_scope.cancel()
    return (after - before) / n


async def list_servers(data_dir: Path, n: int) -> float:
    config = CoreConfig(server=ServerConfig(max_servers=2 * n))
    async with open_core(str(data_dir), config) as core:
        await core.entries("m1")  # the first load warms the pool's threads and caches
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2, n + 1):
            await core.entries(f"m{i}")
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        running = core.registry.running()
        assert running == n, running
    return (after - before) / (n - 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--lists", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    data_dir = Path(args.dir)
    build(data_dir, args.lists)
    capacity = ServerConfig().mailbox
    tracemalloc.start()
    tasks: list[float] = []
    servers: list[float] = []
    for _ in range(args.reps):
        tasks.append(trio.run(bare_tasks, args.lists, capacity))
        servers.append(trio.run(list_servers, data_dir, args.lists))
    ratios = [s / t for s, t in zip(servers, tasks, strict=True)]
    print(
        json.dumps(
            {
                "lists": args.lists,
                "task_bytes": statistics.median(tasks),
                "server_bytes": statistics.median(servers),
                "ratio": statistics.median(ratios),
            }
        )
    )


if __name__ == "__main__":
    main()
