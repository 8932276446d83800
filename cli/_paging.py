"""``todo entries``: page through a list of any size and stream it out.

One connection carries the whole read.  Each page's response starts with
the cursor of the next one, so the next request goes out before this page is
decoded and printed: the daemon builds page N+1 while we print page N.  At
most two pages are in memory at once (the one printed, the one arriving),
whatever the list's size.
"""

from __future__ import annotations

import gc
import itertools
from json.decoder import scanstring  # type: ignore[attr-defined]

from cli import _client, _render
from todod import protocol

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the import: see todod/protocol.py
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, Final, TypeVar

    _T = TypeVar("_T")

#: Entries asked for per page: the daemon's most.  Fewer round trips; a page
#: is at most a MiB of JSON either way.
PAGE_ENTRIES: Final = protocol.MAX_PAGE_ENTRIES

#: The first page of a ``find`` over dates alone (no search, no tag: each
#: page then costs the daemon what its own entries cost), and ``todo today``;
#: each later page asks twice as many, up to :data:`PAGE_ENTRIES`.  This
#: process decodes and prints a page while the daemon reads the next (asked
#: for ahead, see :func:`pages`), on the other core: ``todo today`` of 4,206
#: entries over a million spent some 25 ms in the daemon and 15 ms here, one
#: after the other, in a single page.  A search or a tag filter is matched
#: whole again for every page, so those ask for the most at once.
FIND_FIRST_PAGE: Final = 1000

_NEXT: Final = b'"result":{"next":'


def _next_cursor(line: bytes) -> tuple[bool, str | None]:
    """The ``next`` cursor read off a page's first bytes: (found, cursor); (False, None) when not a page."""
    start = line.find(_NEXT, 0, 400)
    if start < 0:
        return False, None
    start += len(_NEXT)
    if line.startswith(b"null", start):
        return True, None
    end = line.find(b'"', start + 1)
    if line[start : start + 1] != b'"' or end < 0:
        return False, None
    return True, line[start + 1 : end].decode("ascii")


def stream_entries(
    list_name: str,
    date: str | None,
    *,
    as_json: bool,
    socket_path: str,
    timeout: float,
    data_dir: str | None,
    write: Callable[[str], None] = _render.write,
) -> int:
    """Read every entry of ``list_name`` (of one ``date``, if given) page by page and write them out as they come.

    The human table's ID column is as wide as the highest id the list's
    version may hold (its ``last_id``), so every page lines up with the
    first.  The TAGS column (there when an entry has a tag) is as wide as
    each page needs; it starts at the first page with a tag, under a header
    line of its own.
    ``timeout`` bounds each page's exchange, not the whole read.  All pages
    come from one snapshot of the list (docs/PROTOCOL.md, "Paging").

    Returns:
        How many entries were written.

    Raises:
        TodoError: as :func:`cli._client.request`; what was written before
            the error stays written.
    """
    return _without_cyclic_gc(_stream, list_name, date, as_json, socket_path, timeout, data_dir, write)


def _without_cyclic_gc(stream: Callable[..., _T], *args: Any) -> _T:
    """``stream(*args)`` with the cyclic collector off, as it was before if it was on.

    A page decodes to some 60,000 dicts and lists, which set off the cyclic
    collector over and over: a fifth to a third of the read's time on
    200,000 entries.  They hold no cycles and go by reference counting
    page after page, so memory stays bounded by a page without it.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return stream(*args)
    finally:
        if collecting:
            gc.enable()


def _stream(
    list_name: str,
    date: str | None,
    as_json: bool,
    socket_path: str,
    timeout: float,
    data_dir: str | None,
    write: Callable[[str], None],
) -> int:
    # Rows, not objects: a third of the decoding time (see ROW_COLUMNS in todod/_pages.py).
    fields: dict[str, Any] = {"list": list_name, "date": date, "limit": PAGE_ENTRIES, "form": "rows"}
    id_width = 0
    tag_width: int | None = None
    wrote_any = False
    written = 0  # entries written so far
    with _client.Connection(socket_path, timeout=timeout, data_dir=data_dir) as conn:
        conn.send(protocol.encode_request("entries", **fields))
        while True:
            line = conn.receive()
            found, cursor = _next_cursor(line)
            if found and cursor is not None:
                # Ask for the next page now: the daemon builds it meanwhile.
                conn.send(protocol.encode_request("entries", **fields, after=cursor))
            try:
                result = protocol.parse_response(line).result
            except protocol.BadRequest as exc:
                if written or "'form'" not in exc.message or "form" not in fields:
                    raise
                del fields["form"]  # a daemon older than rows: its objects, then
                conn.send(protocol.encode_request("entries", **fields))
                continue
            if isinstance(result, list):  # a whole read's answer (an older daemon)
                result = {"next": None, "last_id": max((e["id"] for e in result), default=0), "entries": result}
            if not found:
                cursor = result["next"]
                if cursor is not None:
                    conn.send(protocol.encode_request("entries", **fields, after=cursor))
            entries = result["entries"]
            if entries and type(entries[0]) is dict and not as_json:  # a daemon that sends objects
                entries = [_render.row_of(e) for e in entries]
            if as_json:
                write(_render.json_entries(entries, written, last=cursor is None))
            elif entries:
                page_tags = _render.tags_width(entries)
                if not wrote_any or (tag_width is None and page_tags is not None):
                    # The header, and again when a TAGS column first shows.
                    id_width = id_width or max(len("ID"), len(str(result["last_id"])))
                    tag_width = page_tags
                    write(_render.entries_header(id_width, tag_width))
                    wrote_any = True
                elif tag_width is not None:
                    tag_width = page_tags or len("TAGS")
                write(_render.entry_rows(entries, id_width, tag_width))
            written += len(entries)
            if cursor is None:
                return written
            del line, result, entries


__all__ = ["PAGE_ENTRIES", "stream_entries"]


# --- find and history -------------------------------------------------------


def _next_value(line: bytes) -> tuple[bool, Any]:
    """A page's ``next`` (a string or an integer) read off its first bytes: (found, value).

    (False, None) when it cannot be read so: the page is then decoded first.
    """
    start = line.find(_NEXT, 0, 400)
    if start < 0:
        return False, None
    start += len(_NEXT)
    if line.startswith(b"null", start):
        return True, None
    if line.startswith(b'"', start):
        # A cursor of at most some 1,300 characters (a list name of 200, escaped).
        head = line[start : start + 4096].decode("ascii", "replace")
        try:
            value, _end = scanstring(head, 1)
        except ValueError:
            return False, None
        return True, value
    end = start
    while line[end : end + 1].isdigit():
        end += 1
    if end == start or line[end : end + 1] != b",":
        return False, None
    return True, int(line[start:end])


def pages(
    conn: _client.Connection,
    op: str,
    first: dict[str, Any],
    total: int | None,
    rest: dict[str, Any],
    grow: bool = False,
) -> Iterator[dict[str, Any]]:
    """Every page of a paged read on ``conn``, decoded, until ``next`` is null or ``total`` items came.

    The first request has the fields ``first``; each later one has
    ``rest``, the cursor as ``after`` and a ``limit`` of a page (or of what is
    left of ``total``): of :data:`PAGE_ENTRIES`, or with ``grow`` twice the
    page before, up to that.  A later request is sent before the page that names
    its cursor is decoded, unless that page may already reach ``total``.
    A page may hold more than ``total`` leaves: the caller cuts it.
    """
    written = 0
    size = min(PAGE_ENTRIES, 2 * first.get("limit", PAGE_ENTRIES)) if grow else PAGE_ENTRIES

    def ask(cursor: Any) -> None:
        limit = size if total is None else max(1, min(size, total - written))
        conn.send(protocol.encode_request(op, **rest, after=cursor, limit=limit))

    asked = first.get("limit")
    conn.send(protocol.encode_request(op, **first))
    while True:
        line = conn.receive()
        found, cursor = _next_value(line)
        early = found and cursor is not None and (total is None or written + (asked or size) < total)
        if early:
            ask(cursor)
        result = protocol.parse_response(line).result
        del line
        yield result
        written += len(result.get("entries", result.get("events", ())))
        cursor = result.get("next")
        if cursor is None or (total is not None and written >= total):
            return
        if not early:
            ask(cursor)
        asked = size if total is None else min(size, total - written)
        if grow:
            size = min(PAGE_ENTRIES, 2 * size)


def stream_found(
    fields: dict[str, Any],
    total: int | None,
    *,
    as_json: bool,
    socket_path: str,
    timeout: float,
    data_dir: str | None,
    write: Callable[[str], None] = _render.write,
    render: Callable[[list[list[Any]]], str] | None = None,
) -> tuple[int, bool]:
    """Every entry a ``find`` matches (the first ``total``), page by page, written out as they come.

    The human table is laid out a page at a time (:class:`cli._render.Columns`),
    or by ``render``, called with each page's entries as rows of :data:`cli._render.FOUND_KEYS`.

    Returns:
        How many entries were written, and whether more matched beyond ``total``.

    Raises:
        TodoError: as :func:`cli._client.request`; what was written stays written.
    """
    return _without_cyclic_gc(_stream_found, fields, total, as_json, socket_path, timeout, data_dir, write, render)


def _stream_found(
    fields: dict[str, Any],
    total: int | None,
    as_json: bool,
    socket_path: str,
    timeout: float,
    data_dir: str | None,
    write: Callable[[str], None],
    render: Callable[[list[list[Any]]], str] | None,
) -> tuple[int, bool]:
    columns = _render.Columns(_render.FOUND_HEADER, _render.FOUND_RIGHT)
    written = 0
    more = False
    # Rows, not objects: less to decode (see FIND_ROW_COLUMNS in todod/_query.py).
    fields = {**fields, "form": "rows"}
    # Over dates alone a page costs the daemon its own entries: small pages first (see FIND_FIRST_PAGE).
    grow = not fields.get("search") and not fields.get("tags")
    size = FIND_FIRST_PAGE if grow else PAGE_ENTRIES
    first = {**fields, "limit": size if total is None else min(size, total)}
    with _client.Connection(socket_path, timeout=timeout, data_dir=data_dir) as conn:
        try:
            first_page = next(found := pages(conn, "find", first, total, fields, grow))
        except protocol.BadRequest as exc:
            if "'form'" not in exc.message:
                raise
            # A daemon older than rows refuses the field: its objects, then.
            del fields["form"], first["form"]
            first_page = next(found := pages(conn, "find", first, total, fields, grow))
        for page in itertools.chain((first_page,), found):
            entries = page["entries"]
            if entries and type(entries[0]) is dict and not as_json:  # a daemon that sends objects
                entries = [_render.found_row_of(e) for e in entries]
            if total is not None and written + len(entries) >= total:
                more = page.get("next") is not None or bool(page.get("more")) or written + len(entries) > total
                del entries[total - written :]
            last = page.get("next") is None or (total is not None and written + len(entries) >= total)
            if as_json:
                objects = [e if type(e) is dict else _render.found_object(e) for e in entries]
                write(_render.json_array_part(objects, written, last=last) + ("\n" if last else ""))
            else:
                write(columns.page(_render.found_rows(entries)) if render is None else render(entries))
            written += len(entries)
    return written, more


def stream_history(
    list_name: str,
    total: int | None,
    *,
    as_json: bool,
    socket_path: str,
    timeout: float,
    data_dir: str | None,
    write: Callable[[str], None] = _render.write,
) -> int:
    """A list's history (its last ``total`` events), oldest first, page by page, written out as they come.

    Returns:
        How many events were written.

    Raises:
        TodoError: as :func:`cli._client.request`; what was written stays written.
    """
    return _without_cyclic_gc(_stream_history, list_name, total, as_json, socket_path, timeout, data_dir, write)


def _stream_history(
    list_name: str,
    total: int | None,
    as_json: bool,
    socket_path: str,
    timeout: float,
    data_dir: str | None,
    write: Callable[[str], None],
) -> int:
    columns = _render.Columns(_render.HISTORY_HEADER, _render.HISTORY_RIGHT)
    written = 0
    first = {"list": list_name, "limit": total}
    with _client.Connection(socket_path, timeout=timeout, data_dir=data_dir) as conn:
        for page in pages(conn, "history", first, total, {"list": list_name}):
            events = page["events"]
            if total is not None:
                del events[total - written :]
            last = page.get("next") is None or (total is not None and written + len(events) >= total)
            # The head, once, with the first page that writes anything: a page can be empty.
            opening = written == 0 and (events or last)
            if as_json:
                text = _render.history_json_head(page) if opening else ""
                text += _render.json_array_part(events, written, last=last, indent="  ")
                write(text + ("\n}\n" if last else ""))
            else:
                text = _render.history_note(page, limited=total is not None) if opening else ""
                write(text + columns.page(_render.history_rows(events)))
            written += len(events)
    return written


__all__ += ["pages", "stream_found", "stream_history"]
