"""The renderer's fast paths give what the plain definitions give."""

from __future__ import annotations

from collections.abc import Sequence

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
