"""``todo entries``: page through a list of any size and stream it out.

One connection carries the whole read.  Each page's response starts with
the cursor of the next one, so the next request goes out before this page is
decoded and printed: the daemon builds page N+1 while we print page N.  At
most two pages are in memory at once (the one printed, the one arriving),
whatever the list's size.
"""

from __future__ import annotations

import gc

from cli import _client, _render
from todod import protocol

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the import: see todod/protocol.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Final

#: Entries asked for per page: the daemon's most.  Fewer round trips; a page
#: is at most a MiB of JSON either way.
PAGE_ENTRIES: Final = protocol.MAX_PAGE_ENTRIES

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
    # A page decodes to some 60,000 dicts and lists, which set off the cyclic
    # collector over and over: a fifth to a third of the read's time on
    # 200,000 entries.  They hold no cycles and go by reference counting
    # page after page, so memory stays bounded by a page without it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _stream(list_name, date, as_json, socket_path, timeout, data_dir, write)
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
    fields: dict[str, Any] = {"list": list_name, "date": date, "limit": PAGE_ENTRIES}
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
            result = protocol.parse_response(line).result
            if isinstance(result, list):  # a whole read's answer (an older daemon)
                result = {"next": None, "last_id": max((e["id"] for e in result), default=0), "entries": result}
            if not found:
                cursor = result["next"]
                if cursor is not None:
                    conn.send(protocol.encode_request("entries", **fields, after=cursor))
            entries = result["entries"]
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
