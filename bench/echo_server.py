"""The floors for bench/run.py: an echo server with todod's framing, plain or durable.

Run by bench/run.py, or by hand::

    .venv/bin/python bench/echo_server.py --socket PATH [--durable DIR] [--inline]

It reads newline-delimited JSON requests as todod does (one line, parsed
with ``json.loads``) and answers each with a JSON line shaped like todod's
``add`` response.  There are no list tasks, no validation and no model.

* Plain: the connection's task answers each line at once (no storage): the
  scale of what Trio and the socket cost.
* ``--durable DIR``: every ``add`` is inserted into an ``entries`` table like
  todod's (WAL, ``synchronous=FULL``) and answered only once its transaction
  is committed.  Commits are grouped: the adds that arrive while a commit
  runs form the next group, one transaction and one fsync for the group.
  The commit runs in a worker thread (``--inline``: in the event loop).
  This is what a durable Python daemon on this disk can at best do, with
  the same framing: the floor todod is measured against.
* ``--durable DIR --list-tasks``: the design's ceiling.  As ``--durable``,
  but each add goes through a task per list, reached over a bounded memory
  channel, which hands it to the committer and goes on; the committer
  answers the connection.  That is todod's request path (per-list tasks,
  mailboxes, pipelined commits, the commit answering the caller) with all
  of todod's own work taken out: no validation, no model, no timers.

It prints ``ready`` on stdout once it listens, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import socket
import sqlite3
from typing import Any

import outcome
import trio

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (list TEXT NOT NULL, id INTEGER NOT NULL, date TEXT NOT NULL, "
    "title TEXT NOT NULL, done INTEGER NOT NULL, PRIMARY KEY (list, id)) WITHOUT ROWID"
)
INSERT = "INSERT INTO entries (list, id, date, title, done) VALUES (?, ?, ?, ?, 0)"


class Committer:
    """Group commit: adds queue here; one task commits what queued while the last commit ran."""

    def __init__(self, path: str, inline: bool) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute(SCHEMA)
        self.inline = inline
        self.pending: list[tuple[tuple[str, int, str, str], trio.lowlevel.Task]] = []
        self.wake: trio.lowlevel.Task | None = None
        self.next_id: dict[str, int] = {}

    def _abort(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self.wake = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _write(self, rows: list[tuple[str, int, str, str]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(INSERT, rows)
        self.conn.execute("COMMIT")

    async def add(self, list_name: str, date: str, title: str) -> int:
        entry_id = self.next_id.get(list_name, 1)
        self.next_id[list_name] = entry_id + 1
        self.queue((list_name, entry_id, date, title), trio.lowlevel.current_task())
        await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.SUCCEEDED)
        return entry_id

    def queue(self, row: tuple[str, int, str, str], task: trio.lowlevel.Task) -> None:
        self.pending.append((row, task))
        if self.wake is not None:
            waker, self.wake = self.wake, None
            trio.lowlevel.reschedule(waker)

    async def run(self) -> None:
        while True:
            if not self.pending:
                self.wake = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(self._abort)
            group, self.pending = self.pending, []
            rows = [row for row, _task in group]
            if self.inline:
                self._write(rows)
                await trio.lowlevel.checkpoint()
            else:
                await trio.to_thread.run_sync(self._write, rows)
            for row, task in group:
                trio.lowlevel.reschedule(task, outcome.Value(row[1]))


class ListTasks:
    """One task per list, reached over a bounded memory channel (the design's skeleton)."""

    def __init__(self, committer: Committer, nursery: trio.Nursery) -> None:
        self.committer = committer
        self.nursery = nursery
        self.mailboxes: dict[str, trio.MemorySendChannel[tuple[str, str, trio.lowlevel.Task]]] = {}

    async def add(self, list_name: str, date: str, title: str) -> int:
        mailbox = self.mailboxes.get(list_name)
        if mailbox is None:
            mailbox, receive = trio.open_memory_channel[tuple[str, str, trio.lowlevel.Task]](256)
            self.mailboxes[list_name] = mailbox
            self.nursery.start_soon(self._serve, list_name, receive)
        mailbox.send_nowait((date, title, trio.lowlevel.current_task()))
        return int(await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.SUCCEEDED))

    async def _serve(
        self, list_name: str, receive: trio.MemoryReceiveChannel[tuple[str, str, trio.lowlevel.Task]]
    ) -> None:
        next_id = 1
        async for date, title, task in receive:
            # Hand the add to the committer and go on: it answers the caller.
            self.committer.queue((list_name, next_id, date, title), task)
            next_id += 1


def _response(request: dict[str, Any], entry_id: int) -> bytes:
    result = {"id": entry_id, "date": request.get("date"), "title": request.get("title"), "done": False}
    obj: dict[str, Any] = {"ok": True, "result": result}
    if request.get("id") is not None:
        obj = {"id": request["id"], **obj}
    return json.dumps(obj, separators=(",", ":")).encode("ascii") + b"\n"


async def _serve(stream: trio.SocketStream, committer: Committer | ListTasks | None) -> None:
    buffer = bytearray()
    async with stream:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            buffer += data
            out = []
            while (newline := buffer.find(b"\n")) >= 0:
                request = json.loads(bytes(buffer[:newline]))
                del buffer[: newline + 1]
                if committer is None:
                    entry_id = 1
                else:
                    entry_id = await committer.add(request.get("list", ""), request.get("date", ""), request["title"])
                out.append(_response(request, entry_id))
            if out:
                try:
                    await stream.send_all(b"".join(out))
                except trio.BrokenResourceError:
                    return


async def _main(args: argparse.Namespace) -> None:
    committer: Committer | None = None
    if args.durable:
        os.makedirs(args.durable, exist_ok=True)
        committer = Committer(os.path.join(args.durable, "echo.sqlite3"), args.inline)
    front: Committer | ListTasks | None = committer
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(args.socket)
    sock.listen(4096)
    listener = trio.SocketListener(sock)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            if committer is not None:
                nursery.start_soon(committer.run)
                if args.list_tasks:
                    front = ListTasks(committer, nursery)

            async def accept() -> None:
                while True:
                    stream = await listener.accept()
                    nursery.start_soon(_serve, stream, front)

            nursery.start_soon(accept)
            print("ready", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--durable", metavar="DIR", help="commit every add to SQLite in DIR before replying")
    parser.add_argument("--inline", action="store_true", help="commit in the event loop, not a worker thread")
    parser.add_argument("--list-tasks", action="store_true", help="with --durable: a task per list in front")
    args = parser.parse_args()
    # The cyclic collector tuned as todod tunes it (todod._main.GC_THRESHOLDS),
    # so that the floors are not handicapped by what todod is spared.
    gc.set_threshold(20_000, 50, 100)
    trio.run(_main, args)


if __name__ == "__main__":
    main()
