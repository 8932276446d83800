"""Request dispatch: one ``match`` from a parsed wire request to the core.

The list ops (add, entries, update, delete) also have a path without a task
per request: :meth:`Dispatcher.submit` builds the list server's message and
queues it, and its answer is handed, converted to wire values, to the
connection's callback.  The other ops go through :meth:`Dispatcher.__call__`.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import Any

import attrs
import outcome
import trio

from todod import __version__
from todod._core import Core, add_op, update_op
from todod._model import parse_date
from todod._pages import PageRequest, parse_cursor
from todod._server import DeleteEntry, Op, ReadPage
from todod.protocol import (
    DEFAULT_PAGE_ENTRIES,
    MAX_PAGE_ENTRIES,
    PROTOCOL_VERSION,
    BadRequest,
    Invalid,
    RawResult,
    Request,
)

Reply = Callable[[outcome.Outcome[Any]], None]


@attrs.define(eq=False)
class Dispatcher:
    """Turns requests into core calls and results into wire values.

    ``extra_status`` adds the socket server's own figures to ``status``.
    """

    core: Core
    extra_status: Callable[[], dict[str, Any]] = attrs.field(default=dict)
    started_at: float = attrs.field(factory=trio.current_time)

    async def submit(self, request: Request, reply: Reply) -> bool:
        """Queue a list op with no task of its own; ``reply`` gets its wire result (or error) later.

        Returns False, queueing nothing, for an op that is not a list op
        (use :meth:`__call__`).  Waits only while the list's mailbox is full.

        Raises:
            TodoError: the request is invalid, or the list quarantined;
                ``reply`` is then never called.
        """
        op = _list_op(request)
        if op is None:
            return False

        def wire(result: outcome.Outcome[Any]) -> None:
            if type(result) is outcome.Value:
                value = result.value
                if type(value) is not RawResult:
                    result = outcome.Value(value.to_wire())
            reply(result)

        # Straight to the registry, not through Core.submit: one coroutine
        # frame less on every list request.
        await self.core.registry.submit(request.args["list"], op, wire)
        return True

    async def __call__(self, request: Request) -> Any:
        args = request.args
        match request.op:
            case "hello":
                return {"protocol": PROTOCOL_VERSION, "version": __version__, "pid": os.getpid()}
            case "add":
                date = _date(args.get("date")) or datetime.date.today()
                entry = await self.core.add(args["list"], args["title"], date)
                return entry.to_wire()
            case "lists":
                return [{"name": name, "entries": count} for name, count in await self.core.lists()]
            case "update":
                if not {"title", "date", "done"} & args.keys():
                    raise BadRequest("op 'update' needs at least one of 'title', 'date', 'done'")
                entry = await self.core.update(
                    args["list"],
                    args["entry"],
                    title=args.get("title"),
                    date=_date(args.get("date")),
                    done=args.get("done"),
                )
                return entry.to_wire()
            case "delete":
                return (await self.core.delete(args["list"], args["entry"])).to_wire()
            case "status":
                return {
                    "version": __version__,
                    "protocol": PROTOCOL_VERSION,
                    "pid": os.getpid(),
                    "uptime": round(trio.current_time() - self.started_at, 3),
                    "stats": {**self.core.statistics().to_wire(), **self.extra_status()},
                }
        raise BadRequest(f"unknown op {request.op!r}")  # parse_request lets only known ops through


def _list_op(request: Request) -> Op | None:
    """The list server's message for a list op (validated), or None for another op."""
    args = request.args
    match request.op:
        case "add":
            return add_op(args["title"], _date(args.get("date")) or datetime.date.today())
        case "entries":
            return ReadPage(_page(args))
        case "update":
            if not {"title", "date", "done"} & args.keys():
                raise BadRequest("op 'update' needs at least one of 'title', 'date', 'done'")
            return update_op(
                args["entry"], title=args.get("title"), date=_date(args.get("date")), done=args.get("done")
            )
        case "delete":
            return DeleteEntry(args["entry"])
    return None


def _page(args: dict[str, Any]) -> PageRequest:
    """The page an ``entries`` request asks for: a whole read unless it names a ``limit`` or a cursor."""
    limit = args.get("limit")
    cursor = args.get("after")
    if limit is not None and not 1 <= limit <= MAX_PAGE_ENTRIES:
        raise Invalid(f"'limit' is 1 to {MAX_PAGE_ENTRIES} (got {limit})")
    snapshot, after = (None, 0) if cursor is None else parse_cursor(cursor)
    if limit is None and cursor is not None:
        limit = DEFAULT_PAGE_ENTRIES
    return PageRequest(_date(args.get("date")), limit, snapshot, after)


def _date(text: str | None) -> datetime.date | None:
    return None if text is None else parse_date(text)
