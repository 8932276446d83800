"""Moves to another daemon: a saga journaled in the source's store, and its destination's side.

No transaction spans two daemons, so a move to another daemon is a saga of
two local transactions, driven by the source daemon (never by the CLI,
which may die at any point):

1. ``started``: the source journals the saga (the entry's values and
   version, the destination) in its store.  Nothing else changes yet.
2. The source sends the destination ``move_in`` with the saga's id as an
   idempotency key.  The destination adds the entry and records the key in
   one transaction; a repeated key gets the first answer, never a second entry.
3. ``done``: the source removes the entry (if it is still at the journaled
   version) and marks the saga done, in one transaction.
   If the entry was changed or deleted in the source meanwhile, the saga
   turns ``compensating`` instead, and the source sends ``move_cancel``,
   which removes the destination's copy (recording the key as cancelled),
   then marks it ``cancelled``.

Every step is retried until it succeeds (the destination down, a timeout)
by the source's saga task, which also resumes every saga not over when the
daemon starts.  Steps 2 and 3 are idempotent, so a crash of either daemon
or of the CLI at any point ends, once both are up, with the entry in
exactly one list.

Test-only fault points: with ``TODOD_FAULT=<step>`` in its environment, a
daemon kills itself with SIGKILL when it reaches that step (the steps are in
:data:`FAULT_POINTS`).  Nothing else reads the variable.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import secrets
import signal
import socket
import struct
from typing import Any

import attrs
import trio

from todod import _bulk
from todod._model import NOBODY, Change, Entry, Origin, parse_date, validate_list_name, validate_tags, validate_title
from todod._transfer import Applied, Mover, Work
from todod.protocol import (
    MAX_LINE,
    Conflict,
    Invalid,
    NotFound,
    Timeout,
    TodoError,
    Unavailable,
    encode_request,
    parse_response,
)
from todod.store import Store, WriteContext

log = logging.getLogger("todod.saga")

FAULT_ENV = "TODOD_FAULT"
FAULT_POINTS = (
    "saga:after-start",  # the source: the saga is journaled, nothing sent yet
    "saga:after-remote",  # the source: the destination has answered move_in
    "saga:after-finish",  # the source: the entry is removed and the saga done, not yet answered
    "move_in:before-commit",  # the destination: move_in received, nothing written
    "move_in:after-commit",  # the destination: the entry added, not yet answered
)
#: Retries of a step wait this long at first, doubling up to RETRY_MAX: a
#: destination that restarts is found again within seconds, and one that
#: is gone for a day costs one connection attempt per RETRY_MAX.
RETRY_FIRST = 0.2
RETRY_MAX = 5.0
#: How often the journal is read for open sagas that have no task.
RESCAN_EVERY = 30.0


def fault(point: str) -> None:
    """Die here (SIGKILL) if the test-only fault variable names this step."""
    if os.environ.get(FAULT_ENV) == point:
        log.warning("fault point %s: killing myself", point)
        os.kill(os.getpid(), signal.SIGKILL)


async def remote(socket_path: str, op: str, fields: dict[str, Any], timeout: float) -> Any:  # noqa: ASYNC109
    """One request to another todod on ``socket_path``: its result.

    The peer must run as our uid or root (``SO_PEERCRED``), as the CLI requires.

    Raises:
        Unavailable: it cannot be reached, or hung up.
        Timeout: no answer within ``timeout``.
        TodoError: its own error for the request.
    """
    try:
        with trio.fail_after(timeout):
            stream = await trio.open_unix_socket(socket_path)
            async with stream:
                creds = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                _pid, uid, _gid = struct.unpack("3i", creds)
                if uid not in (os.getuid(), 0):
                    raise Unavailable(f"the daemon at {socket_path} runs as uid {uid}, not ours")
                await stream.send_all(encode_request(op, **fields))
                buffer = bytearray()
                while b"\n" not in buffer:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        raise Unavailable(f"the daemon at {socket_path} hung up")
                    buffer += chunk
                    if len(buffer) > MAX_LINE:
                        raise Unavailable(f"the daemon at {socket_path} sent an over-long line")
    except trio.TooSlowError:
        raise Timeout(f"the daemon at {socket_path} did not answer within {timeout:g} s") from None
    except (OSError, trio.BrokenResourceError) as exc:
        raise Unavailable(f"cannot reach the daemon at {socket_path}: {exc}") from None
    return parse_response(bytes(buffer[: buffer.index(b"\n") + 1])).result


def _entry(value: str) -> Entry:
    data = json.loads(value)
    return Entry(0, datetime.date.fromisoformat(data["date"]), data["title"], data["done"], 1, data["tags"])


@attrs.define(eq=False)
class Sagas:
    """The source's running sagas and the destination's keys in flight; :meth:`run` is a supervisor child."""

    store: Store
    mover: Mover
    call_timeout: float
    #: The saga of each (list, entry) under way: one move of an entry at a time.
    _busy: dict[tuple[str, int], str] = attrs.field(factory=dict, init=False)
    _finished: dict[str, trio.Event] = attrs.field(factory=dict, init=False)
    _results: dict[str, dict[str, Any]] = attrs.field(factory=dict, init=False)
    _receiving: set[str] = attrs.field(factory=set, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)

    def open_count(self) -> int:
        return len(self._busy)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Resume every saga not over, then drive new ones; never returns."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._resume()
                task_status.started()
                while True:
                    # A saga journaled by a start whose caller timed out (the
                    # journal's commit was late, not lost) has no task yet.
                    await trio.sleep(RESCAN_EVERY)
                    try:
                        await self._resume()
                    except Unavailable as exc:  # a failing store: the writer reports it; try again later
                        log.warning("could not read the sagas: %s", exc.message)
            finally:
                self._nursery = None

    async def _resume(self) -> None:
        """Launch a task for every saga of the journal not over and not running."""
        sagas: list[dict[str, Any]] = await self.store.bulk_read(_bulk.open_sagas, "could not read the sagas")
        for saga in sagas:
            if saga["id"] not in self._finished and (saga["list"], saga["entry"]) not in self._busy:
                log.info("resuming saga %s (%s)", saga["id"], saga["state"])
                self._launch(saga)

    def _launch(self, saga: dict[str, Any]) -> None:
        assert self._nursery is not None
        self._busy[(saga["list"], saga["entry"])] = saga["id"]
        self._finished[saga["id"]] = trio.Event()
        self._nursery.start_soon(self._drive, saga, name=f"saga:{saga['id']}")

    # --- the source -----------------------------------------------------------------

    async def start(
        self, src: str, entry_id: int, to_socket: str, to_list: str, origin: Origin = NOBODY
    ) -> dict[str, Any]:
        """Journal a move of entry ``entry_id`` of ``src`` to ``to_list`` of the daemon at ``to_socket``; drive it.

        Returns the saga's result once it is over (``done``, or ``cancelled``
        with the reason).

        Raises:
            Timeout: it is not over within twice the call timeout; it goes on,
                and ends as the module docstring says.
        """
        src, to_list = validate_list_name(src), validate_list_name(to_list)
        if not os.path.isabs(to_socket) or len(to_socket.encode()) > 107:
            raise Invalid(f"--to names a daemon's socket by its absolute path (got {to_socket[:80]!r})")
        if self._nursery is None:
            raise Unavailable("the daemon is shutting down")
        if (src, entry_id) in self._busy:
            raise Conflict(f"entry {entry_id} of list {src!r} is being moved (saga {self._busy[(src, entry_id)]})")
        saga_id = secrets.token_hex(16)
        self._busy[(src, entry_id)] = saga_id
        launched = False
        try:

            def apply(drafts: dict[str, Any]) -> Applied:
                try:
                    entry = drafts[src].get(entry_id)
                except NotFound:
                    raise NotFound(f"no entry {entry_id} in list {src!r}") from None
                saga = {
                    "id": saga_id,
                    "list": src,
                    "entry": entry_id,
                    "version": entry.version,
                    "value": _bulk.saga_value(entry),
                    "to_socket": to_socket,
                    "to_list": to_list,
                    "state": "started",
                    "to_entry": None,
                    "message": None,
                }
                return Applied(saga, hook=lambda c: _bulk.start_saga(c.conn, saga, c.now))

            saga: dict[str, Any] = await self.mover.do(Work((src,), apply), self.call_timeout)
            fault("saga:after-start")
            self._launch(saga)
            launched = True
        finally:
            if not launched:
                self._busy.pop((src, entry_id), None)
        finished = self._finished[saga_id]
        with trio.move_on_after(self.call_timeout * 2):
            await finished.wait()
            return self._results.pop(saga_id)
        raise Timeout(f"the move goes on as saga {saga_id} (the destination may be down); it will end in one list")

    async def _drive(self, saga: dict[str, Any]) -> None:
        wait = RETRY_FIRST
        try:
            while saga["state"] in _bulk.OPEN_STATES:
                try:
                    await self._step(saga)
                    wait = RETRY_FIRST
                except (Unavailable, Timeout) as exc:
                    log.info("saga %s (%s): %s; retrying in %g s", saga["id"], saga["state"], exc.message, wait)
                    await trio.sleep(wait)
                    wait = min(wait * 2, RETRY_MAX)
        finally:
            self._busy.pop((saga["list"], saga["entry"]), None)
            finished = self._finished.pop(saga["id"], None)
            if finished is not None and saga["state"] not in _bulk.OPEN_STATES:
                self._results[saga["id"]] = _result(saga)
                if len(self._results) > 1024:  # nobody waits for the oldest: bound the memory
                    self._results.pop(next(iter(self._results)))
                finished.set()

    async def _step(self, saga: dict[str, Any]) -> None:
        if saga["state"] == "started":
            value = json.loads(saga["value"])
            fields = {"list": saga["to_list"], "key": saga["id"], **value}
            try:
                answer = await remote(saga["to_socket"], "move_in", fields, self.call_timeout)
            except (Unavailable, Timeout):
                raise
            except TodoError as exc:
                # Refused (a bad list name there, say): nothing was added there.
                await self._journal(saga, "cancelled", message=f"the destination refused it: {exc.message}")
                return
            fault("saga:after-remote")
            if answer.get("state") == "cancelled":
                await self._journal(saga, "cancelled", message="the destination had cancelled it")
                return
            await self._finish(saga, int(answer["id"]))
            fault("saga:after-finish")
        elif saga["state"] == "compensating":
            await remote(saga["to_socket"], "move_cancel", {"key": saga["id"]}, self.call_timeout)
            await self._journal(saga, "cancelled")

    async def _finish(self, saga: dict[str, Any], to_entry: int) -> None:
        """Remove the entry from the source and mark the saga done, in one transaction (or turn to compensating)."""
        src, entry_id = saga["list"], saga["entry"]

        def apply(drafts: dict[str, Any]) -> Applied:
            draft = drafts[src]
            try:
                current = draft.get(entry_id)
            except NotFound:
                current = None
            if current is None or current.version != saga["version"]:
                why = "deleted" if current is None else "changed"
                message = f"the entry was {why} in list {src!r} during the move; the move was taken back"
                return Applied(
                    ("compensating", message),
                    hook=lambda c: _bulk.set_saga(c.conn, saga["id"], "compensating", c.now, to_entry, message),
                )
            _old, change = draft.remove(entry_id, "move")

            def hook(context: WriteContext) -> None:
                _bulk.set_saga(context.conn, saga["id"], "done", context.now, to_entry)
                _bulk.record_move(context.conn, [(context.list_id(src), change.seq, 0, to_entry)])

            return Applied(("done", None), {src: (change,)}, hook)

        state, message = await self.mover.do(Work((src,), apply), self.call_timeout)
        saga.update(state=state, to_entry=to_entry, message=message)

    async def _journal(self, saga: dict[str, Any], state: str, message: str | None = None) -> None:
        def apply(_drafts: dict[str, Any]) -> Applied:
            return Applied(None, hook=lambda c: _bulk.set_saga(c.conn, saga["id"], state, c.now, None, message))

        await self.mover.do(Work((saga["list"],), apply), self.call_timeout)
        saga.update(state=state, message=message or saga.get("message"))

    # --- the destination ------------------------------------------------------------

    async def move_in(
        self, name: str, key: str, date: str, title: str, done: bool, tags: list[str], origin: Origin = NOBODY
    ) -> dict[str, Any]:
        """Add a moved entry under idempotency ``key``: a repeated key gets the first answer and adds nothing."""
        name = validate_list_name(name)
        values = Entry(0, parse_date(date), validate_title(title), done, 1, tuple(validate_tags(tags)))
        async with self._receiving_key(key):
            found = await self._received(key)
            if found is not None:
                return {"list": found[0], "id": found[1], "state": found[2]}
            fault("move_in:before-commit")

            def apply(drafts: dict[str, Any]) -> Applied:
                entry, change = drafts[name].insert(values, "move", origin)

                def hook(context: WriteContext) -> None:
                    _bulk.write_received(context.conn, key, name, entry.id, "added", context.now)
                    _bulk.record_move(context.conn, [(context.list_id(name), change.seq, 0, 0)])

                return Applied({"list": name, "id": entry.id, "state": "added"}, {name: (change,)}, hook)

            result: dict[str, Any] = await self.mover.do(Work((name,), apply), self.call_timeout)
            fault("move_in:after-commit")
            return result

    async def move_cancel(self, key: str, origin: Origin = NOBODY) -> dict[str, Any]:
        """Take back the entry a ``move_in`` with ``key`` added (the source's compensation); idempotent."""
        async with self._receiving_key(key):
            found = await self._received(key)
            if found is None:
                # Never came: a tombstone, so that a late move_in adds nothing.
                found = ("", 0, "missing")
            name, entry_id, state = found
            if state == "cancelled":
                return {"list": name or None, "id": entry_id or None, "state": "cancelled"}
            lists = (name,) if name else ()

            def apply(drafts: dict[str, Any]) -> Applied:
                changes: dict[str, tuple[Change, ...]] = {}
                if name:
                    try:
                        _old, change = drafts[name].remove(entry_id, "move", origin=origin)
                        changes[name] = (change,)
                    except NotFound:
                        pass  # deleted there meanwhile: nothing to take back
                return Applied(
                    {"list": name or None, "id": entry_id or None, "state": "cancelled"},
                    changes,
                    lambda c: _bulk.write_received(c.conn, key, name, entry_id, "cancelled", c.now),
                )

            result: dict[str, Any] = await self.mover.do(Work(lists, apply), self.call_timeout)
            return result

    async def _received(self, key: str) -> tuple[str, int, str] | None:
        found: tuple[str, int, str] | None = await self.store.bulk_read(
            lambda c: _bulk.read_received(c, key), "could not read the received moves"
        )
        return found

    def _receiving_key(self, key: str) -> _KeyGuard:
        if not 1 <= len(key) <= 64:
            raise Invalid("a move's key is 1 to 64 characters")
        return _KeyGuard(self._receiving, key)


class _KeyGuard:
    """One request per key at a time: a retry while the first is still in flight is told to retry."""

    def __init__(self, keys: set[str], key: str) -> None:
        self._keys, self._key = keys, key

    async def __aenter__(self) -> None:
        if self._key in self._keys:
            raise Unavailable(f"the move {self._key} is being received; retry")
        self._keys.add(self._key)

    async def __aexit__(self, *_exc: object) -> None:
        self._keys.discard(self._key)


def _result(saga: dict[str, Any]) -> dict[str, Any]:
    return {
        "saga": saga["id"],
        "state": saga["state"],
        "from": {"list": saga["list"], "id": saga["entry"]},
        "to": {"socket": saga["to_socket"], "list": saga["to_list"], "id": saga.get("to_entry")},
        "message": saga.get("message"),
    }


__all__ = ["FAULT_ENV", "FAULT_POINTS", "Sagas", "fault", "remote"]
