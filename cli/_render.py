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

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the import: see todod/protocol.py
if TYPE_CHECKING:
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
    # Every character escaped is of category Cc or Cf, which isprintable()
    # refuses: a printable text (the usual one) needs no translate().
    return text if text.isprintable() else text.translate(_ESCAPES)


def clean_all(texts: list[str]) -> list[str]:
    """:func:`clean` of each text, with one check over them all when none needs it (the usual case)."""
    if " ".join(texts).isprintable():
        return texts
    return [clean(text) for text in texts]


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
    lines = [tuple(row) for row in rows]
    if header is not None:
        lines.insert(0, tuple(header))
    if not lines:
        return ""
    # Column by column, so that a table of thousands of rows costs a few
    # C-level passes per column rather than Python work per cell.
    columns = list(zip(*lines, strict=True))
    right_set = frozenset(right)
    last = len(columns) - 1
    laid: list[Sequence[str]] = []
    for i, column in enumerate(columns):
        if i == last and i not in right_set:
            laid.append(column)
        elif "".join(column).isascii():
            size = max(map(len, column))
            if i in right_set:
                laid.append([cell.rjust(size) for cell in column])
            else:
                laid.append([cell.ljust(size) for cell in column])
        else:
            widths = [width(cell) for cell in column]
            size = max(widths)
            pads = [" " * (size - w) for w in widths]
            if i in right_set:
                laid.append([pad + cell for pad, cell in zip(pads, column, strict=True)])
            else:
                laid.append([cell + pad for pad, cell in zip(pads, column, strict=True)])
    return "\n".join(map(_GAP.join, zip(*laid, strict=True))) + "\n"


def entries(items: Sequence[Mapping[str, Any]]) -> str:
    """A table of entries (ID, DATE, DONE, TITLE); nothing at all for no entries."""
    if not items:
        return ""
    ids = [str(e["id"]) for e in items]
    dates = clean_all([str(e["date"]) for e in items])
    done = ["yes" if e["done"] else "no" for e in items]
    titles = clean_all([str(e["title"]) for e in items])
    return table(zip(ids, dates, done, titles, strict=True), header=("ID", "DATE", "DONE", "TITLE"), right=(0,))


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
