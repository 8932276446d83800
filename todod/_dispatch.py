"""Request dispatch: one ``match`` from a parsed wire request to the core.

The list ops (add, entries, update, delete) also have a path without a task
per request: :meth:`Dispatcher.submit` builds the list server's message, with
the peer as the change's origin, and queues it; its answer is handed,
converted to wire values, to the connection's callback.  The other ops
(history, undo, redo, watch, ...) go through :meth:`Dispatcher.__call__`, in
a task of the connection, where the peer is the connection's context variable.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import attrs
import outcome
import trio

from todod import __version__
from todod._core import Core, add_op, update_op
from todod._model import NOBODY, Origin, parse_date, validate_list_name
from todod._pages import PageRequest, parse_cursor
from todod._server import DeleteEntry, Op, ReadPage
from todod._subscription import CONNECTION, NO_REPLY, current_origin
from todod.protocol import (
    DEFAULT_PAGE_ENTRIES,
    MAX_FIND,
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

    ``extra_status`` adds the socket server's own figures to ``status``;
    ``paths`` (the socket, the data directory, the database file) are shown
    there too.  ``on_stop`` is called by the ``stop`` op after its answer is
    ready: the entry point then shuts down cleanly, and the answer is sent
    first, like every response in flight.  Only peers with the daemon's own
    uid or root reach the dispatcher at all (the socket server refuses the
    rest), so ``stop`` needs no check of its own.
    """

    core: Core
    extra_status: Callable[[], dict[str, Any]] = attrs.field(default=dict)
    paths: Mapping[str, str] = attrs.field(factory=dict)
    on_stop: Callable[[], None] = attrs.field(default=lambda: None)
    started_at: float = attrs.field(factory=trio.current_time)

    async def submit(self, request: Request, reply: Reply, origin: Origin = NOBODY) -> bool:
        """Queue a list op with no task of its own; ``reply`` gets its wire result (or error) later.

        Returns False, queueing nothing, for an op that is not a list op
        (use :meth:`__call__`).  Waits only while the list's mailbox is full.
        ``origin`` is the peer (uid and pid) the change log records: passed
        here, since no task of the connection runs the op, and the
        connection's context variable is not where the op is applied.

        Raises:
            TodoError: the request is invalid, or the list quarantined;
                ``reply`` is then never called.
        """
        op = _list_op(request, origin)
        if op is None:
            return False

        def wire(result: outcome.Outcome[Any]) -> None:
            if type(result) is outcome.Value:
                value = result.value
                if type(value) is not RawResult:
                    result = outcome.Value(
                        [e.to_wire() for e in value] if isinstance(value, tuple) else value.to_wire()
                    )
            reply(result)

        # Straight to the registry, not through Core.submit: one coroutine
        # frame less on every list request.
        # The name stripped, as Core does: the one name the list is stored under.
        await self.core.registry.submit(validate_list_name(request.args["list"]), op, wire)
        return True

    async def __call__(self, request: Request) -> Any:
        args = request.args
        match request.op:
            case "hello":
                return {"protocol": PROTOCOL_VERSION, "version": __version__, "pid": os.getpid()}
            case "add":
                date = _date(args.get("date")) or datetime.date.today()
                entry = await self.core.add(args["list"], args["title"], date, current_origin(), args.get("tags", ()))
                return entry.to_wire()
            case "lists":
                return [{"name": name, "entries": count} for name, count in await self.core.lists()]
            case "update":
                if not {"title", "date", "done", "tag", "untag"} & args.keys():
                    raise BadRequest("op 'update' needs at least one of 'title', 'date', 'done', 'tag', 'untag'")
                entry = await self.core.update(
                    args["list"],
                    args["entry"],
                    title=args.get("title"),
                    date=_date(args.get("date")),
                    done=args.get("done"),
                    tag=args.get("tag", ()),
                    untag=args.get("untag", ()),
                    if_version=args.get("if_version"),
                    origin=current_origin(),
                )
                return entry.to_wire()
            case "delete":
                entry = await self.core.delete(args["list"], args["entry"], args.get("if_version"), current_origin())
                return entry.to_wire()
            case "find":
                found = await self.core.find_page(
                    lists=args.get("lists"),
                    date_from=_date(args.get("from")),
                    date_to=_date(args.get("to")),
                    done=args.get("done"),
                    tags=args.get("tags", ()),
                    search=args.get("search"),
                    limit=args.get("limit", MAX_FIND),
                    after=args.get("after"),
                    rows=_rows(args),
                )
                # next first, so a client can ask for the next page before it decodes this one.
                cursor = "null" if found.next is None else encode_basestring_ascii(found.next.to_wire())
                more = "false" if found.next is None else "true"
                return RawResult(f'{{"next":{cursor},"entries":[{",".join(found.entries)}],"more":{more}}}')
            case "history":
                page = await self.core.history_page(args["list"], args.get("after"), args.get("limit"))
                return RawResult(page.to_json())
            case "undo" | "redo":
                revert = self.core.undo if request.op == "undo" else self.core.redo
                entries = await revert(args["list"], args.get("steps", 1), current_origin(), args.get("if_seq"))
                return [e.to_wire() for e in entries]
            case "watch":
                connection = CONNECTION.get()
                if connection is None:
                    raise BadRequest("'watch' needs a connection of its own")
                name = args.get("list")
                await self.core.hub.serve(
                    connection, request.id, None if name is None else validate_list_name(name), args.get("since")
                )
                return NO_REPLY
            case "move":
                if args.get("to_socket") is None:
                    return await self.core.move(
                        args["list"], args["entry"], args["to_list"], args.get("if_version"), current_origin()
                    )
                if args.get("if_version") is not None:
                    raise BadRequest("'if_version' is for moves within a daemon")
                return await self.core.sagas.start(
                    args["list"], args["entry"], args["to_socket"], args["to_list"], current_origin()
                )
            case "move_in":
                return await self.core.sagas.move_in(
                    args["list"], args["key"], args["date"], args["title"], args["done"], args["tags"], current_origin()
                )
            case "move_cancel":
                return await self.core.sagas.move_cancel(args["key"], current_origin())
            case "import_begin":
                return {"import": await self.core.imports.begin(args["list"], current_origin())}
            case "import_rows":
                staged = await self.core.imports.rows(args["import"], args["start"], args["rows"])
                return {"staged": staged}
            case "import_commit":
                return await self.core.imports.commit(args["import"], args["count"])
            case "import_abort":
                await self.core.imports.abort(args["import"])
                return {"import": args["import"]}
            case "compact":
                done = await self.core.compact(args.get("keep_days", 30))
                return {"dropped": done.dropped, "horizon": done.horizon}
            case "status":
                return {
                    "version": __version__,
                    "protocol": PROTOCOL_VERSION,
                    "pid": os.getpid(),
                    "uptime": round(trio.current_time() - self.started_at, 3),
                    **self.paths,
                    "stats": {**self.core.statistics().to_wire(), **self.extra_status()},
                }
            case "stop":
                self.on_stop()
                return {"pid": os.getpid()}
        raise BadRequest(f"unknown op {request.op!r}")  # parse_request lets only known ops through


def _list_op(request: Request, origin: Origin) -> Op | None:
    """The list server's message for a list op (validated), or None for another op."""
    args = request.args
    match request.op:
        case "add":
            return add_op(args["title"], _date(args.get("date")) or datetime.date.today(), origin, args.get("tags", ()))
        case "entries":
            return ReadPage(_page(args))
        case "update":
            if not {"title", "date", "done", "tag", "untag"} & args.keys():
                raise BadRequest("op 'update' needs at least one of 'title', 'date', 'done', 'tag', 'untag'")
            return update_op(
                args["entry"],
                title=args.get("title"),
                date=_date(args.get("date")),
                done=args.get("done"),
                tag=args.get("tag", ()),
                untag=args.get("untag", ()),
                if_version=args.get("if_version"),
                origin=origin,
            )
        case "delete":
            return DeleteEntry(args["entry"], args.get("if_version"), origin)
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
    return PageRequest(_date(args.get("date")), limit, snapshot, after, _rows(args))


def _rows(args: dict[str, Any]) -> bool:
    """Whether a page is asked for in rows (``"form": "rows"``) rather than objects (the default)."""
    form = args.get("form", "objects")
    if form not in ("objects", "rows"):
        raise Invalid(f"'form' is 'objects' or 'rows' (got {form[:40]!r})")
    return bool(form == "rows")


def _date(text: str | None) -> datetime.date | None:
    return None if text is None else parse_date(text)
