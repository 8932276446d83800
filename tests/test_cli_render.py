"""The renderer's fast paths give what the plain definitions give."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli import _render


def reference_table(rows: list[tuple[str, ...]], header: Sequence[str] | None, right: Sequence[int]) -> str:
    """The table by its definition: every cell padded to its column's display width, the last one unpadded."""
    lines = [list(row) for row in rows]
    if header is not None:
        lines.insert(0, list(header))
    if not lines:
        return ""
    widths = [max(_render.width(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for line in lines:
        parts = []
        for i, cell in enumerate(line):
            pad = " " * (widths[i] - _render.width(cell))
            if i in right:
                parts.append(pad + cell)
            elif i == len(line) - 1:
                parts.append(cell)
            else:
                parts.append(cell + pad)
        out.append("  ".join(parts))
    return "\n".join(out) + "\n"


cells = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=8)


@given(
    columns=st.integers(1, 4).flatmap(
        lambda n: st.tuples(
            st.lists(st.tuples(*[cells] * n), max_size=6),
            st.none() | st.tuples(*[cells] * n),
            st.sets(st.integers(0, n - 1)),
        )
    )
)
def test_table_lays_out_as_defined(columns: tuple[list[tuple[str, ...]], tuple[str, ...] | None, set[int]]) -> None:
    """The column-wise table is the same as the cell-by-cell definition, wide and combining characters included."""
    rows, header, right = columns
    assert _render.table(rows, header, right) == reference_table(rows, header, sorted(right))


def test_every_escaped_character_is_unprintable() -> None:
    """clean() may skip translate() for a printable text: every character it escapes is unprintable."""
    assert not any(chr(code).isprintable() for code in _render._ESCAPES)


@given(st.text(max_size=20))
def test_clean_is_translate(text: str) -> None:
    """clean() gives the escaped text, whether or not the text needs escaping."""
    assert _render.clean(text) == text.translate(_render._ESCAPES)


def test_history_and_watch_lines_show_the_entrys_tags() -> None:
    """A history row and a watch line show the tags the entry has after the event, and nothing for none."""
    before = {"id": 2, "date": "2026-12-01", "title": "Pay rent", "done": False, "version": 1, "tags": []}
    after = {**before, "version": 2, "tags": ["bills", "urgent"]}
    event = {
        "position": 5, "list": "home", "seq": 2, "change": 2, "op": "update", "entry": 2,
        "before": before, "after": after, "time": "2026-12-01T07:00:00.000Z", "uid": 0, "pid": 1, "target": None,
    }  # fmt: skip
    assert _render.event(event) == "5  home  #2  update  2  Pay rent (tags bills,urgent)\n"
    assert "Pay rent (tags bills,urgent)" in _render.history({"list": "home", "events": [event]})
    untagged = {**event, "after": before}
    assert _render.event(untagged).endswith("  Pay rent\n")


def _found_item(i: int) -> dict[str, Any]:
    return {
        "list": ["home", "仕事\u202e", "a"][i % 3],
        "id": i * 7,
        "date": f"2026-12-{1 + i % 28:02d}",
        "title": f"entry {i} Café\x1b" if i % 2 else f"entry {i}",
        "done": bool(i % 2),
        "version": 1,
        "tags": ["x"] * (i % 2),
    }


@pytest.mark.parametrize("size", [1, 3, 10])
def test_streamed_find_and_history_pages_print_as_the_whole_answer(size: int) -> None:
    """Pages of a find or history in JSON are the whole answer's dump_json; a table of one page is table()'s."""
    items = [_found_item(i) for i in range(10)]
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    parts, written = [], 0
    for n, chunk in enumerate(chunks):
        parts.append(_render.json_array_part(chunk, written, last=n == len(chunks) - 1))
        written += len(chunk)
    assert "".join(parts) + "\n" == _render.dump_json(items)
    assert _render.json_array_part([], 0, last=True) + "\n" == _render.dump_json([])
    history = {"list": "home ☃", "horizon": 2, "base_entries": 1, "events": items}
    streamed = _render.history_json_head(history)
    written = 0
    for n, chunk in enumerate(chunks):
        streamed += _render.json_array_part(chunk, written, last=n == len(chunks) - 1, indent="  ")
        written += len(chunk)
    assert streamed + "\n}\n" == _render.dump_json(history)
    empty = {**history, "events": []}
    assert _render.history_json_head(empty) + _render.json_array_part([], 0, last=True, indent="  ") + "\n}\n" == (
        _render.dump_json(empty)
    )
    columns = _render.Columns(_render.FOUND_HEADER, _render.FOUND_RIGHT)
    assert columns.page(_render.found_rows(map(_render.found_row_of, items))) == _render.found(items)
    paged = _render.Columns(_render.FOUND_HEADER, _render.FOUND_RIGHT)
    lines = "".join(paged.page(_render.found_rows(map(_render.found_row_of, c))) for c in chunks).splitlines()
    assert len(lines) == 1 + len(items) and lines[0].startswith("DATE")
    widths = [_render.width(line.split("  entry")[0]) for line in lines[1:]]
    assert widths == sorted(widths), "a later page is never narrower than the ones before"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@given(_JSON, st.integers(min_value=0, max_value=3), st.booleans())
def test_indented_is_json_dumps_with_indent(value: object, level: int, ascii_only: bool) -> None:
    """indented() writes what json.dumps(indent=2) writes, at any depth, ASCII-escaped or not."""
    expected = json.dumps(value, indent=2, ensure_ascii=ascii_only).replace("\n", "\n" + "  " * level)
    assert _render.indented(value, level, ascii_only=ascii_only) == expected
