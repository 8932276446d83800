"""Output of the ``todo`` commands: aligned plain-text tables, or ``--json``.

Everything the daemon sends that ends up on a terminal (titles, list names,
error messages, stats keys) goes through :func:`clean` first, so a title cannot
carry a terminal escape sequence.  Tables are aligned here rather than with
rich, which would cost about 100 ms of imports at every start.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import groupby
from json.encoder import encode_basestring as _encode_utf8  # type: ignore[attr-defined]
from json.encoder import encode_basestring_ascii as _encode_string  # type: ignore[attr-defined]

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the import: see todod/protocol.py
if TYPE_CHECKING:
    from typing import Any, Final

# Every C0 and C1 control character (Unicode category Cc), plus the bidi
# embedding, override and isolate characters, which can make a line display in
# an order other than the one it was typed in.
_ESCAPES: dict[int, str] = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
    **{c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))},
}

_GAP = "  "


def clean(text: str) -> str:
    """``text`` with control characters replaced by visible escapes such as ``\\x1b``."""
    # Every character of _ESCAPES is non-printable (Cc or Cf), so a printable
    # text has none: isprintable() is 30 times cheaper than translate(), which
    # was most of the time of a table of thousands of entries.
    return text if text.isprintable() else text.translate(_ESCAPES)


def width(text: str) -> int:
    """The number of terminal columns ``text`` takes (wide East Asian characters take two)."""
    if text.isascii():
        return len(text)
    import unicodedata  # only for non-ASCII text

    total = 0
    for char in text:
        if unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


def table(rows: Iterable[Sequence[str]], header: Sequence[str] | None = None, right: Iterable[int] = ()) -> str:
    """Lay out cells in columns separated by two spaces, one line per row.

    Args:
        rows: the cells, already passed through :func:`clean`; all rows have
            the same number of cells.
        header: the column titles, if any.
        right: the indexes of the columns to align right (numbers).

    Returns:
        The lines, each ending in a newline (an empty string for no rows); the
        last column is not padded, so no line ends in spaces.
    """
    lines = [tuple(row) for row in rows]
    if header is not None:
        lines.insert(0, tuple(header))
    if not lines:
        return ""
    right_set = frozenset(right)
    last = len(lines[0]) - 1
    # Column by column, with str.ljust/rjust where a column is all ASCII (one
    # character, one terminal column): a table of thousands of entries (a
    # `todo find`) took longer to lay out cell by cell than to query.
    padded: list[Sequence[str]] = []
    for i, column in enumerate(zip(*lines, strict=True)):
        if i == last and i not in right_set:
            padded.append(column)
        elif "".join(column).isascii():
            size = max(map(len, column))
            if i in right_set:
                padded.append([cell.rjust(size) for cell in column])
            else:
                padded.append([cell.ljust(size) for cell in column])
        else:
            widths = [width(cell) for cell in column]
            size = max(widths)
            if i in right_set:
                padded.append([" " * (size - w) + cell for cell, w in zip(column, widths, strict=True)])
            else:
                padded.append([cell + " " * (size - w) for cell, w in zip(column, widths, strict=True)])
    return "\n".join(map(_GAP.join, zip(*padded, strict=True))) + "\n"


def entries(items: Sequence[Mapping[str, Any]]) -> str:
    """A table of entries (ID, DATE, DONE, [TAGS,] TITLE); nothing at all for no entries.

    The TAGS column is there when an entry shown has a tag.
    """
    if not items:
        return ""
    if not any(e.get("tags") for e in items):
        rows: Iterable[Sequence[str]] = (
            (str(e["id"]), clean(str(e["date"])), "yes" if e["done"] else "no", clean(str(e["title"]))) for e in items
        )
        return table(rows, header=("ID", "DATE", "DONE", "TITLE"), right=(0,))
    rows = (
        (str(e["id"]), clean(str(e["date"])), "yes" if e["done"] else "no", tags(e), clean(str(e["title"])))
        for e in items
    )
    return table(rows, header=("ID", "DATE", "DONE", "TAGS", "TITLE"), right=(0,))


def tags(entry: Mapping[str, Any]) -> str:
    """An entry's tags as one cell, ``work,urgent``; ``-`` for none."""
    found = entry.get("tags")
    return clean(",".join(map(str, found))) if found else "-"


def found(items: Sequence[Mapping[str, Any]]) -> str:
    """A table of entries of several lists (DATE, LIST, ID, DONE, TAGS, TITLE) in the order given."""
    if not items:
        return ""
    return table(found_rows(map(found_row_of, items)), header=FOUND_HEADER, right=FOUND_RIGHT)


#: The fields of a ``find`` entry as a row (``"form": "rows"``), as the daemon's FIND_ROW_COLUMNS.
FOUND_KEYS: Final = ("list", "id", "date", "title", "done", "version", "tags")


def found_row_of(entry: Mapping[str, Any]) -> list[Any]:
    """A ``find`` entry object as a row of :data:`FOUND_KEYS` (the pages of a daemon that sends objects)."""
    return [entry.get(key) for key in FOUND_KEYS]


def found_object(row: Sequence[Any]) -> dict[str, Any]:
    """A ``find`` row as the entry object it stands for (keys in the wire's order), for ``--json``."""
    return dict(zip(FOUND_KEYS, row, strict=True))


#: Bold red, for overdue entries on a terminal.
_OVERDUE_ON, _OVERDUE_OFF = "\x1b[1;31m", "\x1b[0m"


def agenda(items: Sequence[Mapping[str, Any]], today: str, color: bool) -> str:
    """Entries grouped by date under a heading per date, overdue dates marked.

    Args:
        items: pending entries in date order, with their ``list``.
        today: the local date, ``YYYY-MM-DD``; earlier dates are overdue.
        color: mark overdue groups in bold red as well as in words.

    Returns:
        A heading line per date (``2026-11-28  overdue``), then that date's
        entries as aligned rows (LIST, ID, TAGS, TITLE) indented by two
        spaces; the columns line up across all groups.
    """
    return Agenda(today, color).page([found_row_of(e) for e in items])


class Agenda:
    """:func:`agenda` page by page: a heading at each new date, the columns never narrower than on an earlier page."""

    def __init__(self, today: str, color: bool) -> None:
        self._today, self._color = today, color
        # LIST, ID, TAGS; TITLE is last and never padded.
        self._widths = [0, 0, 0]
        self._current: str | None = None

    def page(self, items: Sequence[Sequence[Any]]) -> str:
        """The lines of these entries (pending, in date order, rows of :data:`FOUND_KEYS`), headings included."""
        if not items:
            return ""
        # A column at a time, each checked in one call where its cells allow
        # (a page of printable ASCII strings, as nearly every page is): at
        # 4,000 entries, a test and a call per cell were most of todo today's
        # time in the CLI.
        names = _cells([e[0] for e in items])
        ids = [str(e[1]) for e in items]
        tags = [_tags_cell(t) if t else "-" for t in [e[6] for e in items]]
        titles = _cells([e[3] for e in items])
        widths = self._widths
        padded: list[list[str]] = []
        for i, column in enumerate((names, ids, tags)):
            if "".join(column).isascii():
                size = widths[i] = max(widths[i], *map(len, column))
                padded.append([c.rjust(size) for c in column] if i == 1 else [c.ljust(size) for c in column])
                continue
            cell_widths = [width(c) for c in column]
            size = widths[i] = max(widths[i], *cell_widths)
            pads = [" " * (size - w) for w in cell_widths]
            if i == 1:
                padded.append([p + c for c, p in zip(column, pads, strict=True)])
            else:
                padded.append([c + p for c, p in zip(column, pads, strict=True)])
        on, off = (_OVERDUE_ON, _OVERDUE_OFF) if self._color else ("", "")
        lines = [f"  {a}{_GAP}{b}{_GAP}{c}{_GAP}{d}" for a, b, c, d in zip(*padded, titles, strict=True)]
        dates = _cells([e[2] for e in items])
        out: list[str] = []
        today = self._today
        # A date's entries come one after the other: one heading and one
        # prefix for each run of them, rather than a test per line.
        runs = Counter(dates).items() if dates == sorted(dates) else ((d, len(list(g))) for d, g in groupby(dates))
        start = 0
        for date, count in runs:
            end = start + count
            overdue = date < today
            if date != self._current:
                self._current = date
                label = "overdue" if overdue else "today" if date == today else ""
                heading = f"{date}  {label}".rstrip()
                out.append(f"{on}{heading}{off}" if overdue else heading)
            if overdue and on:
                out.extend(f"  {on}{line[2:]}{off}" for line in lines[start:end])
            else:
                out.extend(lines[start:end])
            start = end
        return "\n".join(out) + "\n"


def _cells(values: list[Any]) -> list[str]:
    """Each value as a cell of a table, :func:`clean`; in one test for a column of printable strings."""
    try:
        if "".join(values).isprintable():
            return values
    except TypeError:  # not all strings: from a daemon that is not todod
        pass
    return [v if type(v) is str and v.isprintable() else clean(str(v)) for v in values]


def use_color(stream: Any) -> bool:
    """Whether to colour ``stream``: a terminal, and ``NO_COLOR`` unset or empty (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _what(event: Mapping[str, Any]) -> str:
    """The entry's title and tags after an event (before it, for a removal), and what an undo or redo reverted."""
    entry = event.get("after") or event.get("before") or {}
    text = clean(str(entry.get("title", "")))
    if entry.get("tags"):  # a change of tags alone would otherwise show nothing changed
        text += f" (tags {tags(entry)})"
    if event.get("after") is None:
        text += " (removed)"
    if event.get("target") is not None:
        text += f" [{clean(str(event['op']))} of {event['target']}]"
    return text


def history(result: Mapping[str, Any], *, limited: bool = False) -> str:
    """A table of a list's events (SEQ, POSITION, TIME, OP, ID, VERSION, ENTRY), with a note at the horizon."""
    items: Sequence[Mapping[str, Any]] = result.get("events", [])
    note = history_note(result, limited=limited)
    if not items:
        return note
    return note + table(history_rows(items), header=HISTORY_HEADER, right=HISTORY_RIGHT)


HISTORY_HEADER: Final = ("SEQ", "POS", "TIME", "OP", "ID", "VER", "ENTRY")
HISTORY_RIGHT: Final = (0, 1, 4, 5)


def history_note(result: Mapping[str, Any], *, limited: bool) -> str:
    """The line that says where a list's log starts, when it starts after compacted (or older) changes.

    ``result`` is the history, or its first page: the note is there when
    the events shown reach back to the log's start.
    """
    items: Sequence[Mapping[str, Any]] = result.get("events", [])
    reached_start = not limited or not items or items[0].get("seq") == result.get("horizon", 0) + 1
    if reached_start and (result.get("horizon") or result.get("base_entries")):
        return (
            f"(the log starts after seq {result.get('horizon', 0)}: older changes were compacted or predate the log; "
            f"{result.get('base_entries', 0)} entries come from before it)\n"
        )
    return ""


def history_rows(items: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, ...]]:
    """The cells of :func:`history`'s table, one row per event."""
    for e in items:
        yield (
            str(e["seq"]),
            str(e["position"]),
            clean(str(e["time"])),
            clean(str(e["op"])),
            str(e["entry"]),
            str((e.get("after") or {}).get("version", "-")),
            _what(e),
        )


FOUND_HEADER: Final = ("DATE", "LIST", "ID", "DONE", "TAGS", "TITLE")
FOUND_RIGHT: Final = (2,)


def found_rows(items: Iterable[Sequence[Any]]) -> Iterator[tuple[str, ...]]:
    """The cells of :func:`found`'s table, one row per entry (a row of :data:`FOUND_KEYS`)."""
    for name, entry_id, date, title, done, _version, found in items:
        yield (_text(date), _text(name), str(entry_id), "yes" if done else "no", _tags_cell(found), _text(title))


def _text(value: object) -> str:
    # clean(str(value)), without the call for the usual printable string.
    return value if type(value) is str and value.isprintable() else clean(str(value))


class Columns:
    """A table printed page by page: :func:`table`'s layout, each page as wide as it needs, never narrower than before.

    A table of one page is exactly :func:`table`'s; a later page with a wider
    cell widens that column from there on (the lines already printed stay).
    """

    def __init__(self, header: Sequence[str] | None, right: Iterable[int] = (), count: int = 0) -> None:
        self._header: tuple[str, ...] | None = None if header is None else tuple(header)
        self._right = frozenset(right)
        self._widths = [0] * (count if header is None else len(header))

    def page(self, rows: Iterable[Sequence[str]]) -> str:
        """The lines of these rows (and of the header, if any, before the first row); an empty string for none."""
        lines = list(rows)
        if not lines:
            return ""
        if self._header is not None:
            lines.insert(0, self._header)
            self._header = None
        right, widths = self._right, self._widths
        last = len(widths) - 1
        columns: list[Sequence[str]] = []
        for i, column in enumerate(zip(*lines, strict=True)):
            if i == last and i not in right:
                columns.append(column)
                continue
            if "".join(column).isascii():
                # One character, one column: str's own padding (a third of the time of the general way).
                size = widths[i] = max(widths[i], *map(len, column))
                columns.append([cell.rjust(size) for cell in column] if i in right else [c.ljust(size) for c in column])
                continue
            cell_widths = [width(cell) for cell in column]
            size = widths[i] = max(widths[i], *cell_widths)
            if i in right:
                columns.append([" " * (size - w) + cell for cell, w in zip(column, cell_widths, strict=True)])
            else:
                columns.append([cell + " " * (size - w) for cell, w in zip(column, cell_widths, strict=True)])
        return "\n".join(map(_GAP.join, zip(*columns, strict=True))) + "\n"


def history_json_head(result: Mapping[str, Any]) -> str:
    """The start of a streamed history in JSON, up to its events array, as :func:`dump_json` lays it out."""
    fields = "".join(
        f"  {json.dumps(key)}: {json.dumps(result.get(key), ensure_ascii=False)},\n"
        for key in ("list", "horizon", "base_entries")
    )
    return _json_safe("{\n" + fields + '  "events": ')


def indented(value: object, level: int = 0, *, ascii_only: bool = True) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=ascii_only)`` for a value nested ``level`` deep, without its cost.

    json's indenting encoder is written in Python with nested closures: a
    reference cycle per call, which the page streams (that turn the cyclic
    collector off) would keep until the end, some 3 KB an entry.  This one
    makes no cycle and gives the same text for JSON values (a test checks).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _encode_string(value) if ascii_only else _encode_utf8(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, (dict, list)):
        if not value:
            return "{}" if isinstance(value, dict) else "[]"
        inner = "\n" + "  " * (level + 1)
        if isinstance(value, dict):
            items = [
                f"{indented(str(k), ascii_only=ascii_only)}: {indented(v, level + 1, ascii_only=ascii_only)}"
                for k, v in value.items()
            ]
            opening, closing = "{", "}"
        else:
            items = [indented(v, level + 1, ascii_only=ascii_only) for v in value]
            opening, closing = "[", "]"
        return opening + inner + ("," + inner).join(items) + "\n" + "  " * level + closing
    return json.dumps(value, ensure_ascii=ascii_only)  # a float or another scalar


def json_array_part(items: Sequence[object], written: int, *, last: bool, indent: str = "") -> str:
    """One page's part of a streamed JSON array, as :func:`dump_json` would lay out the whole array.

    ``indent`` is the array's own indentation (its items are two spaces
    deeper); ``written`` counts the items of the pages before.
    """
    deeper = indent + "  "
    level = len(deeper) // 2
    blocks = [deeper + indented(item, level, ascii_only=False) for item in items]
    if written == 0 and not blocks and not last:
        return ""  # an empty page before any item (a page can be empty): the array opens with its first item
    out = "[" if written == 0 else ""
    if blocks:
        out += ("\n" if written == 0 else ",\n") + ",\n".join(blocks)
    if last:
        out += f"\n{indent}]" if written or blocks else "]"
    return _json_safe(out)


def event(item: Mapping[str, Any]) -> str:
    """One line for one watched event: position, list, seq, op, entry id and title."""
    return (
        f"{item['position']}  {clean(str(item['list']))}  #{item['seq']}  {clean(str(item['op']))}  "
        f"{item['entry']}  {_what(item)}\n"
    )


def dump_line(result: object) -> str:
    """The result as one line of JSON, ASCII only (for streams: one object per line)."""
    return json.dumps(result, separators=(",", ":")) + "\n"


def entries_header(id_width: int, tags_width: int | None = None) -> str:
    """The header line of a streamed entries table (with a TAGS column ``tags_width`` wide, if given)."""
    tags_cell = "" if tags_width is None else "TAGS".ljust(tags_width) + "  "
    return f"{'ID':>{id_width}}  DATE        DONE  {tags_cell}TITLE\n"


#: The fields of an entry as a row (``"form": "rows"``), as the daemon's ROW_COLUMNS.
ROW_KEYS: Final = ("id", "date", "title", "done", "version", "tags")


def row_of(entry: Mapping[str, Any]) -> list[Any]:
    """An entry object as a row of :data:`ROW_KEYS` (the pages of a daemon that sends objects)."""
    return [entry.get(key) for key in ROW_KEYS]


def tags_width(rows: Sequence[Sequence[Any]]) -> int | None:
    """The TAGS column's width for these rows, or None when none has a tag (no column)."""
    for r in rows:
        if r[5]:
            break
    else:
        return None
    return max(len("TAGS"), *(width(_tags_cell(r[5])) for r in rows))


def _tags_cell(found: Any) -> str:
    return clean(",".join(map(str, found))) if found else "-"


def entry_rows(rows: Sequence[Sequence[Any]], id_width: int, tag_width: int | None = None) -> str:
    """The lines of a streamed entries table, laid out as :func:`entries` lays them out.

    ``rows`` are entries as rows of :data:`ROW_KEYS`.
    Columns: the id right-aligned in ``id_width``, the date, the done mark,
    the tags if ``tag_width`` is given, the title (last, so never padded).
    A page at a time, so the widths cannot come from all the rows: the id's
    comes from the list's highest id, the TAGS column's from the page, the
    others are fixed (a date is ten characters).
    """
    out: list[str] = []
    append = out.append
    for entry_id, date, title, done, _version, found in rows:
        # What the daemon sends is clean: a ten-character ASCII date, a
        # printable title; only anything else takes the slow, careful way.
        if type(date) is not str or len(date) != 10 or not (date.isascii() and date.isprintable()):
            date = clean(str(date))
            date += " " * (10 - width(date))
        if type(title) is not str or not title.isprintable():
            title = clean(str(title))
        if tag_width is not None:
            cell = _tags_cell(found)
            title = cell + " " * (tag_width - width(cell)) + "  " + title
        append(f"{str(entry_id).rjust(id_width)}  {date}  {'yes ' if done else 'no  '}  {title}\n")
    return "".join(out)


def json_entries(rows: Sequence[Any], written: int, *, last: bool) -> str:
    """One page's part of a streamed JSON array of entries, as :func:`dump_json` would indent the whole array.

    Args:
        rows: the page's entries, as rows of :data:`ROW_KEYS` (or as objects).
        written: how many entries earlier pages wrote.
        last: whether this is the last page (it closes the array).
    """
    blocks = []
    for r in rows:
        if type(r) is dict:  # an object, from a daemon that sends them: as it is
            blocks.append("  " + indented(r, 1, ascii_only=False))
            continue
        entry_id, date, title, done, version, found = r
        if type(entry_id) is int and type(done) is bool and type(version) is int and found == []:
            blocks.append(
                f'  {{\n    "id": {entry_id},\n    "date": {_string(date)},\n'
                f'    "title": {_string(title)},\n    "done": {"true" if done else "false"},\n'
                f'    "version": {version},\n    "tags": []\n  }}'
            )
        else:  # tags, or a shape this fast path does not know: the general way
            blocks.append("  " + indented(dict(zip(ROW_KEYS, r, strict=True)), 1, ascii_only=False))
    if written == 0 and not blocks and not last:
        return ""  # an empty page before any entry (deleted ids can make one): the array opens with its first entry
    out = "[" if written == 0 else ""
    if blocks:
        out += ("\n" if written == 0 else ",\n") + ",\n".join(blocks)
    if last:
        out += "\n]\n" if written or blocks else "]\n"
    return _json_safe(out)


def _string(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) if type(value) is not str else _encode_utf8(value)


def lists(items: Sequence[Mapping[str, Any]]) -> str:
    """A table of list names and their entry counts; nothing at all for no lists."""
    if not items:
        return ""
    rows = ((clean(str(item["name"])), str(item["entries"])) for item in items)
    return table(rows, header=("LIST", "ENTRIES"), right=(1,))


def status(result: Mapping[str, Any]) -> str:
    """Two aligned columns: the daemon's version, protocol, pid and uptime, then its stats."""
    rows: list[tuple[str, str]] = []
    for key, value in result.items():
        if key == "stats" and isinstance(value, Mapping):
            rows.extend((clean(str(k)), _scalar(v)) for k, v in value.items())
        elif key == "uptime" and isinstance(value, int | float):
            rows.append(("uptime", duration(value)))
        else:
            rows.append((clean(str(key)), _scalar(value)))
    return table(rows)


def duration(seconds: float) -> str:
    """A short human duration: ``42.3s``, ``5m 03s``, ``2h 05m``, ``3d 04h``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def _scalar(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return clean(value)
    if value is None or isinstance(value, bool | int):
        return json.dumps(value)
    return clean(json.dumps(value))


def dump_json(result: object) -> str:
    """The result as indented UTF-8 JSON (``grep Café`` finds it), terminal-safe.

    Characters that :func:`clean` escapes in tables (C1 controls, bidi
    overrides), line separators and lone surrogates are written as ``\\uXXXX``
    escapes, which mean the same to a JSON reader; C0 controls json escapes itself.
    """
    return _json_safe(json.dumps(result, indent=2, ensure_ascii=False)) + "\n"


def compact_json(result: object) -> str:
    """The result as compact UTF-8 JSON on one line, without a newline, terminal-safe as :func:`dump_json`."""
    return _json_safe(json.dumps(result, ensure_ascii=False, separators=(",", ":")))


def json_line(result: object) -> str:
    """Like :func:`dump_json` but on one line: an error object on stderr."""
    return _json_safe(json.dumps(result, ensure_ascii=False)) + "\n"


_JSON_ESCAPES: dict[int, str] = {}


def _json_safe(text: str) -> str:
    if text.isascii():
        return text
    if not _JSON_ESCAPES:  # built on the first non-ASCII output only
        unsafe = (*range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
        _JSON_ESCAPES.update({c: f"\\u{c:04x}" for c in (*unsafe, *range(0xD800, 0xE000))})
    return text.translate(_JSON_ESCAPES)


class OutputError(Exception):
    """The output could not be written (a full disk, a closed stdout).

    ``quiet`` is set for a reader that went away (``| head``): nothing to report.
    """

    def __init__(self, message: str, *, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


def write(text: str) -> None:
    """Write ``text`` to stdout in one call and flush it.

    Raises:
        OutputError: stdout is closed or the write failed.  stdout is then
            pointed at /dev/null, so that the interpreter's own flush at exit
            fails no second time.
    """
    if not text:
        return
    stream = sys.stdout
    if stream is None:  # started with fd 1 closed
        raise OutputError("cannot write the output: stdout is closed")
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        _silence(stream)
        raise OutputError("cannot write the output: the reader closed the pipe", quiet=True) from None
    except (OSError, ValueError) as exc:
        _silence(stream)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OutputError(f"cannot write the output: {reason}") from None


def write_error(code: str, message: str, as_json: bool) -> None:
    """Write one error to stderr: ``todo: <code>: <message>``, or with ``as_json`` a JSON error object.

    A stderr that fails too is ignored: the exit code is all that is left.
    """
    if as_json:
        line = json_line({"error": {"code": code, "message": message}})
    else:
        line = f"todo: {code.replace('_', ' ')}: {clean(message)}\n"
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _silence(stream: object) -> None:
    import os

    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass
