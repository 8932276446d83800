"""``todo import`` and ``todo export``: entries in bulk, streamed, in CSV, JSON lines or JSON.

Import reads its input a line at a time and sends it in batches of
:data:`todod.protocol.MAX_IMPORT_ROWS` rows over one connection, a few
batches in flight at once, so neither this process nor the daemon ever holds
more than a few batches, whatever the file's size.  The daemon stages them and
publishes the whole import in one transaction at the end (docs/PROTOCOL.md,
"Imports").

The formats:

- ``csv`` with a header line naming its columns: ``date`` and ``title``, and
  optionally ``done`` (``true``/``false``, ``yes``/``no``, ``1``/``0``, empty:
  not done) and ``tags`` (separated by spaces); RFC 4180 quoting, so a title
  may hold commas and quotes (a newline in a title is refused, as for ``add``);
- the book's CSV, with no header: ``2026-12-19,Dentist`` per line;
- ``jsonl``: one object per line, ``{"date": ..., "title": ..., "done": ..., "tags": [...]}``
  (``id``, ``version`` and ``list``, as ``export`` writes them, are ignored);
- ``json`` (export, and import of what export wrote): a JSON array with one
  entry object per line.

Without ``--format``, import takes the format from the first line: ``{`` is
JSON lines, ``[`` JSON, a CSV line of column names (``date`` and ``title``
among them) a header, anything else the book's CSV.
"""

from __future__ import annotations

import csv
import gc
import json
import sys
import time

from cli import _client, _render
from todod import protocol

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without the import: see todod/protocol.py
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import IO, Any, Final

FORMATS: Final = ("csv", "jsonl", "json")
#: Batches sent before the first answer is awaited: enough to keep the
#: daemon busy while this process parses the next ones, few enough that both
#: sides hold only a few batches (about 100 KB each).
WINDOW: Final = 4
#: A publish writes every staged row once more, with its indexes and its log
#: events: it is given this long beyond ``--timeout`` per 100,000 rows.
PUBLISH_SECONDS_PER_100K: Final = 10.0
_TRUE: Final = frozenset({"true", "yes", "1", "y"})
_FALSE: Final = frozenset({"false", "no", "0", "n", ""})
_JSON_IGNORED: Final = frozenset({"id", "version", "list"})


class BadInput(protocol.Invalid):
    """A line of the input that is not a row of its format (exit 65, with the line number)."""


if TYPE_CHECKING:
    #: [line, date, title, done, tags]
    Row = list[Any]


def _done(text: str, line: int) -> bool:
    folded = text.strip().lower()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    raise BadInput(f"line {line}: done is true or false (got {text[:40]!r})")


def _lines(stream: IO[bytes], progress: Progress | None) -> Iterator[str]:
    """The input's lines decoded from UTF-8 (a BOM dropped), counting bytes for the progress bar."""
    number = 0
    for raw in stream:
        number += 1
        if progress is not None:
            progress.advance(len(raw))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"line {number}: not UTF-8 ({exc.reason})") from None
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield text


def detect(first: str) -> str:
    """The format of an input whose first non-blank line is ``first``."""
    stripped = first.lstrip()
    if stripped.startswith("{"):
        return "jsonl"
    if stripped.startswith("["):
        return "json"
    names = {field.strip().lower() for field in next(csv.reader([first]), [])}
    return "csv-header" if {"date", "title"} <= names <= {"date", "title", "done", "tags"} else "csv-book"


def rows(stream: IO[bytes], fmt: str | None, progress: Progress | None = None) -> Iterator[Row]:
    """Each row of the input as ``[line, date, title, done, tags]``.

    Raises:
        BadInput: a line that is not a row of the format.
    """
    lines = _lines(stream, progress)
    first: str | None = None
    skipped = 0
    for text in lines:
        if text.strip():
            first = text
            break
        skipped += 1
    if first is None:
        return
    found = detect(first)
    if fmt == "csv" and found.startswith("csv"):
        pass
    elif fmt is not None and fmt != found:
        if not (fmt == "json" and found == "json") and not (fmt == "jsonl" and found == "jsonl"):
            raise BadInput(f"line {skipped + 1}: this does not look like {fmt} (it looks like {found})")

    def chained() -> Iterator[str]:
        yield first
        yield from lines

    if found in ("jsonl", "json"):
        yield from _json_rows(chained(), skipped, found == "json")
    else:
        yield from _csv_rows(chained(), skipped, found == "csv-header")


def _json_rows(lines: Iterable[str], skipped: int, array: bool) -> Iterator[Row]:
    number = skipped
    for text in lines:
        number += 1
        body = text.strip()
        if array:
            if body in ("[", "]", ""):
                continue
            body = body.removesuffix(",")
        elif not body:
            continue
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as exc:
            raise BadInput(f"line {number}: not a JSON object ({exc.msg})") from None
        except ValueError:
            raise BadInput(f"line {number}: not a JSON object") from None
        if not isinstance(obj, dict):
            raise BadInput(f"line {number}: not a JSON object")
        unknown = set(obj) - {"date", "title", "done", "tags"} - _JSON_IGNORED
        if unknown:
            raise BadInput(f"line {number}: unknown field {sorted(unknown)[0]!r}")
        date, title, done, tags = obj.get("date"), obj.get("title"), obj.get("done", False), obj.get("tags", [])
        if not isinstance(date, str) or not isinstance(title, str):
            raise BadInput(f"line {number}: an entry needs a date and a title (strings)")
        if not isinstance(done, bool):
            raise BadInput(f"line {number}: done is true or false")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise BadInput(f"line {number}: tags is an array of strings")
        yield [number, date, title, done, tags]


def _csv_rows(lines: Iterable[str], skipped: int, header: bool) -> Iterator[Row]:
    reader = csv.reader(lines, strict=True)
    columns = {"date": 0, "title": 1}
    done_at = tags_at = None
    width = 2
    start = skipped + 1
    try:
        if header:
            names = [name.strip().lower() for name in next(reader)]
            unknown = [name for name in names if name not in ("date", "title", "done", "tags")]
            if unknown or "title" not in names or len(set(names)) != len(names):
                raise BadInput(f"line {start}: a header names date, title and optionally done and tags")
            columns = {"date": names.index("date"), "title": names.index("title")}
            done_at = names.index("done") if "done" in names else None
            tags_at = names.index("tags") if "tags" in names else None
            width = len(names)
            start = skipped + reader.line_num + 1
        for record in reader:
            line = start
            start = skipped + reader.line_num + 1
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if len(record) != width:
                raise BadInput(f"line {line}: {len(record)} fields, not {width}")
            done = False if done_at is None else _done(record[done_at], line)
            tags = [] if tags_at is None else record[tags_at].split()
            yield [line, record[columns["date"]].strip(), record[columns["title"]], done, tags]
    except csv.Error as exc:
        raise BadInput(f"line {skipped + reader.line_num}: {exc}") from None


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second (only on a terminal)."""

    def __init__(self, total: int | None) -> None:
        self._total = total
        self._done = 0
        self._rows = 0
        self._start = self._drawn = time.monotonic()

    def advance(self, count: int) -> None:
        self._done += count

    def rows(self, count: int) -> None:
        self._rows = count
        now = time.monotonic()
        if now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float, end: str = "") -> None:
        rate = self._rows / max(now - self._start, 1e-6)
        if self._total:
            share = min(self._done / self._total, 1.0)
            bar = "#" * int(share * 30)
            text = f"\r[{bar:<30}] {share:4.0%}  {self._rows:,} entries  {rate:,.0f}/s{end}"
        else:
            text = f"\r{self._rows:,} entries  {rate:,.0f}/s{end}"
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def finish(self, message: str) -> None:
        self._draw(time.monotonic(), f"  {message}\n")


def import_stream(
    list_name: str,
    stream: IO[bytes],
    fmt: str | None,
    *,
    socket_path: str,
    timeout: float,
    data_dir: str | None,
    progress: Progress | None,
) -> dict[str, Any]:
    """Import every row of ``stream`` into ``list_name``, all or nothing; the daemon's ``import_commit`` result.

    ``timeout`` bounds each exchange (and the publish, longer: see
    :data:`PUBLISH_SECONDS_PER_100K`).

    Raises:
        BadInput: a line of the input is not a row (nothing is imported).
        TodoError: the daemon refused a row or the import (nothing is imported).
    """
    with _client.Connection(socket_path, timeout=timeout, data_dir=data_dir) as conn:
        conn.send(protocol.encode_request("import_begin", list=list_name))
        import_id = protocol.parse_response(conn.receive()).result["import"]
        try:
            count = _send_rows(conn, import_id, rows(stream, fmt, progress), progress)
            publish = timeout + PUBLISH_SECONDS_PER_100K * (count / 100_000)
            conn.send(protocol.encode_request("import_commit", **{"import": import_id, "count": count}), publish)
            result: dict[str, Any] = protocol.parse_response(conn.receive()).result
        except BaseException:
            _abort(conn, import_id)
            raise
    if progress is not None:
        progress.finish("done")
    return result


def _send_rows(conn: _client.Connection, import_id: str, source: Iterator[Row], progress: Progress | None) -> int:
    """Send every row in batches, :data:`WINDOW` in flight; how many rows were sent.

    The cyclic collector is off meanwhile (as for cli._paging's streams): a
    batch is some 4,000 lists that hold no cycles and go by reference
    counting once sent, and they set the collector off over and over.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _send_batches(conn, import_id, source, progress)
    finally:
        if collecting:
            gc.enable()


def _send_batches(conn: _client.Connection, import_id: str, source: Iterator[Row], progress: Progress | None) -> int:
    in_flight = 0
    count = 0
    batch: list[Row] = []

    def send(rows: list[Row]) -> None:
        nonlocal in_flight, count
        fields = {"import": import_id, "start": count + 1, "rows": rows}
        line = protocol.encode_request("import_rows", count + 1, **fields)
        if len(line) > protocol.MAX_LINE and len(rows) > 1:
            # Long titles (up to 1,000 characters, six bytes each once
            # escaped) make 2,000 rows more than a request line may hold.
            half = len(rows) // 2
            send(rows[:half])
            send(rows[half:])
            return
        conn.send(line)
        count += len(rows)
        in_flight += 1
        while in_flight >= WINDOW:
            protocol.parse_response(conn.receive())
            in_flight -= 1

    def flush() -> None:
        nonlocal batch
        send(batch)
        batch = []
        if progress is not None:
            progress.rows(count)

    for row in source:
        batch.append(row)
        if len(batch) >= protocol.MAX_IMPORT_ROWS:
            flush()
    if batch:
        flush()
    while in_flight:
        protocol.parse_response(conn.receive())
        in_flight -= 1
    return count


def _abort(conn: _client.Connection, import_id: str) -> None:
    """Best effort: end the import at once (else the daemon drops it when idle)."""
    try:
        conn.send(protocol.encode_request("import_abort", **{"import": import_id}))
    except protocol.TodoError:
        pass


def export_stream(
    list_name: str,
    date: str | None,
    fmt: str,
    *,
    socket_path: str,
    timeout: float,
    data_dir: str | None,
    write: Callable[[str], None],
) -> int:
    """Write every entry of ``list_name`` (of one ``date``) in ``fmt``, page by page from one snapshot; how many."""
    fields: dict[str, Any] = {"list": list_name, "date": date, "limit": protocol.MAX_PAGE_ENTRIES}
    written = 0
    started = False
    deadline = time.monotonic() + timeout
    with _client.Connection(socket_path, timeout=timeout, data_dir=data_dir) as conn:
        conn.send(protocol.encode_request("entries", **fields))
        while True:
            try:
                page = protocol.parse_response(conn.receive()).result
            except protocol.Timeout:
                # A list not in memory is loaded whole on its first read, which for
                # a million entries takes longer than the daemon's call timeout:
                # the load goes on, so ask again while --timeout allows.
                if started or time.monotonic() + 1 > deadline:
                    raise
                conn.send(protocol.encode_request("entries", **fields), deadline - time.monotonic())
                continue
            if not started and fmt in ("csv", "json"):  # once the daemon has answered
                write("date,title,done,tags\n" if fmt == "csv" else "[\n")
            started = True
            cursor = page["next"]
            if cursor is not None:
                conn.send(protocol.encode_request("entries", **fields, after=cursor))
            entries = page["entries"]
            if entries:
                write(_format(entries, fmt, written, last=cursor is None))
            written += len(entries)
            if cursor is None:
                break
    if fmt == "json":
        write("]\n" if not written else "\n]\n")
    return written


class _Out:
    """A file-like sink for :mod:`csv`'s writer: the text of one page."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)


def _format(entries: list[dict[str, Any]], fmt: str, written: int, *, last: bool) -> str:
    if fmt == "csv":
        out = _Out()
        writer = csv.writer(out, lineterminator="\n")
        for e in entries:
            writer.writerow([e["date"], e["title"], "true" if e["done"] else "false", " ".join(e.get("tags", ()))])
        return "".join(out.parts)
    keys = ("id", "date", "title", "done", "tags", "version")  # an older daemon's entries may lack the last two
    lines = [_render.compact_json({k: e[k] for k in keys if k in e}) for e in entries]
    if fmt == "jsonl":
        return "\n".join(lines) + "\n"
    # json: one entry per line, a comma after each but the last
    return (",\n" if written else "") + ",\n".join(lines)


__all__ = ["FORMATS", "BadInput", "Progress", "detect", "export_stream", "import_stream", "rows"]
