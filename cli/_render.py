"""Output of the ``todo`` commands: aligned plain-text tables, or ``--json``.

Everything the daemon sends that ends up on a terminal (titles, list names,
error messages, stats keys) goes through :func:`clean` first, so a title cannot
carry a terminal escape sequence.  Tables are aligned here rather than with
rich, which would cost about 100 ms of imports at every start.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from json.encoder import encode_basestring_ascii as _encode_string  # type: ignore[attr-defined]
from typing import Any

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
    # Every character escaped is a control (Cc) or a format character (Cf),
    # and str.isprintable() is False for both: a printable text (nearly all)
    # skips the per-character translation, 30 ns a character.
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


def table(
    rows: Iterable[Sequence[str]], header: Sequence[str] | None = None, right: Iterable[int] = ()
) -> str:
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
    lines = [list(row) for row in rows]
    if header is not None:
        lines.insert(0, list(header))
    if not lines:
        return ""
    columns = len(lines[0])
    widths = [max(width(line[i]) for line in lines) for i in range(columns)]
    right_set = frozenset(right)
    last = columns - 1
    out = []
    for line in lines:
        parts = []
        for i, cell in enumerate(line):
            pad = " " * (widths[i] - width(cell))
            if i in right_set:
                parts.append(pad + cell)
            elif i == last:
                parts.append(cell)
            else:
                parts.append(cell + pad)
        out.append(_GAP.join(parts))
    return "\n".join(out) + "\n"


def entries(items: Sequence[Mapping[str, Any]]) -> str:
    """A table of entries (ID, DATE, DONE, TITLE); nothing at all for no entries."""
    if not items:
        return ""
    rows = (
        (str(e["id"]), clean(str(e["date"])), "yes" if e["done"] else "no", clean(str(e["title"])))
        for e in items
    )
    return table(rows, header=("ID", "DATE", "DONE", "TITLE"), right=(0,))


def entries_header(id_width: int) -> str:
    """The header line of a streamed entries table whose ids take at most ``id_width`` columns."""
    return f"{'ID':>{id_width}}  DATE        DONE  TITLE\n"


def entry_rows(items: Sequence[Mapping[str, Any]], id_width: int) -> str:
    """The lines of a streamed entries table, laid out as :func:`entries` lays them out.

    Columns: the id right-aligned in ``id_width``, the date, the done mark,
    the title (last, so never padded).  A page at a time, so the widths
    cannot come from the rows: the id's comes from the list's highest id,
    the others are fixed (a date is ten characters).
    """
    out: list[str] = []
    append = out.append
    for e in items:
        date, title = e["date"], e["title"]
        # What the daemon sends is clean: a ten-character ASCII date, a
        # printable title; only anything else takes the slow, careful way.
        if type(date) is not str or len(date) != 10 or not (date.isascii() and date.isprintable()):
            date = clean(str(date))
            date += " " * (10 - width(date))
        if type(title) is not str or not title.isprintable():
            title = clean(str(title))
        append(f"{str(e['id']).rjust(id_width)}  {date}  {'yes ' if e['done'] else 'no  '}  {title}\n")
    return "".join(out)


_WIRE_KEYS = ("id", "date", "title", "done")


def json_entries(items: Sequence[Mapping[str, Any]], written: int, *, last: bool) -> str:
    """One page's part of a streamed JSON array of entries, as :func:`dump_json` would indent the whole array.

    Args:
        items: the page's entries.
        written: how many entries earlier pages wrote.
        last: whether this is the last page (it closes the array).
    """
    blocks = []
    for e in items:
        if tuple(e) == _WIRE_KEYS and type(e["id"]) is int and type(e["done"]) is bool:
            blocks.append(
                f'  {{\n    "id": {e["id"]},\n    "date": {_string(e["date"])},\n'
                f'    "title": {_string(e["title"])},\n    "done": {"true" if e["done"] else "false"}\n  }}'
            )
        else:  # a shape this fast path does not know: the slow, general way
            blocks.append("  " + json.dumps(e, indent=2).replace("\n", "\n  "))
    out = "[" if written == 0 else ""
    if blocks:
        out += ("\n" if written == 0 else ",\n") + ",\n".join(blocks)
    if last:
        out += "\n]\n" if written or blocks else "]\n"
    return out


def _string(value: object) -> str:
    return json.dumps(value) if type(value) is not str else _encode_string(value)


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
    """The result as indented JSON, ASCII only (non-ASCII and controls as ``\\uXXXX``)."""
    return json.dumps(result, indent=2) + "\n"


def write(text: str) -> None:
    """Write ``text`` to stdout in one call."""
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()
