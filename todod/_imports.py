"""Imports: many entries into one list, staged in bounded batches and published in one transaction.

An import is a session: ``import_begin`` opens it, each ``import_rows``
validates a batch of rows (up to :data:`todod.protocol.MAX_IMPORT_ROWS`) and
stages it in the store (SQLite: a file of the import's own; PostgreSQL: the
``import_rows`` table), and ``import_commit``
publishes every staged row into the list as one change of the log (op
``import``: one undo takes it all back), through the mover, in one
transaction.  Until then no reader sees any of it; after it, every reader
sees all of it.  A bad row fails the session with its line number, and
nothing of it is ever published.  The daemon holds one batch of an import
in memory at a time, whatever its size.
"""

from __future__ import annotations

import bisect
import datetime
import logging
import secrets
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from todod import _bulk
from todod._model import MAX_TITLE, NOBODY, Origin, parse_date, validate_list_name, validate_tags, validate_title
from todod._transfer import Applied, Mover, Work
from todod.protocol import MAX_IMPORT_ROWS, BadRequest, Invalid, NotFound, Timeout, TodoError, Unavailable
from todod.store import Store, WriteContext

log = logging.getLogger("todod.imports")

#: Imports open at once; one more is refused (``unavailable``) until one ends.
MAX_IMPORTS = 16
#: An import with no request for this long is dropped with its staged rows:
#: a client that died mid-import must not leave rows behind for ever.
IDLE_TIMEOUT = 60.0
#: Most entries in one import: ids and seqs stay far from 2^63, and a
#: publish of this many rows is one transaction of about a minute here.
MAX_IMPORT_ENTRIES = 10_000_000
#: Most runs of staged rows with gaps between them in one import: batches may
#: come out of order (pipelined), but a client that leaves more gaps than
#: this is refused rather than make the daemon keep and search them.
MAX_SPANS = 1024


@attrs.define(eq=False)
class _Session:
    id: str
    list_name: str
    origin: Origin
    used: float
    staged: int = 0
    failed: TodoError | None = None
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    #: The places staged so far, as sorted, disjoint, non-adjacent (first,
    #: last) spans: a client that sends its batches in order, or a few at a
    #: time out of order, keeps about as many as it has batches in flight.
    spans: list[tuple[int, int]] = attrs.field(factory=list)

    def check_free(self, first: int, last: int) -> int:
        """Where rows ``first`` to ``last`` go in :attr:`spans`.

        Raises:
            Invalid: some of them were staged already (a batch sent twice),
                or the import has :data:`MAX_SPANS` gaps already.
        """
        spans = self.spans
        at = bisect.bisect_left(spans, (first, last))
        before = spans[at - 1][1] if at > 0 else 0
        after = spans[at][0] if at < len(spans) else MAX_IMPORT_ENTRIES + 2
        if before >= first or after <= last:
            raise Invalid(f"rows {first} to {last} of the import overlap rows it staged already")
        if len(spans) >= MAX_SPANS and before != first - 1 and after != last + 1:  # a new gap, not a filled one
            raise Invalid(f"an import's staged rows may leave at most {MAX_SPANS} gaps; send its batches in order")
        return at

    def claim(self, first: int, last: int) -> None:
        """Note rows ``first`` to ``last`` as staged (free: :meth:`check_free`), merged with the spans they touch."""
        at = self.check_free(first, last)
        if at < len(self.spans) and self.spans[at][0] == last + 1:
            last = self.spans.pop(at)[1]
        if at > 0 and self.spans[at - 1][1] == first - 1:
            self.spans[at - 1] = (self.spans[at - 1][0], last)
        else:
            self.spans.insert(at, (first, last))


def check_row(row: Any, import_id: str, n: int) -> _bulk.StagedRow:
    """One wire row ``[line, date, title, done, tags]`` validated and made a staged row (n is its place).

    Raises:
        Invalid: the row's value is not allowed; the message starts with its line.
    """
    if type(row) is not list or len(row) != 5:
        raise BadRequest("a row is [line, date, title, done, tags]")
    line, date, title, done, tags = row
    if type(line) is not int or type(date) is not str or type(title) is not str or type(done) is not bool:
        raise BadRequest(f"row {line!r}: [line (integer), date, title (strings), done (true or false), tags]")
    if type(tags) is not list or not all(type(t) is str for t in tags):
        raise BadRequest(f"line {line}: tags must be an array of strings")
    try:
        day = parse_date(date).isoformat()
        clean = validate_title(title)
        tagged = tuple(sorted(validate_tags(tags))) if tags else ()
    except Invalid as exc:
        raise Invalid(f"line {line}: {exc.message}") from None
    tag_text = "[]" if not tagged else '["' + '","'.join(tagged) + '"]'  # a tag needs no JSON escape
    return (import_id, n, day, clean, int(done), tag_text, _bulk.event_text(day, clean, done, tagged))


def check_rows(rows: Sequence[Any], import_id: str, start: int) -> list[_bulk.StagedRow]:
    """:func:`check_row` for a batch, row ``start`` first: the same rows, errors and messages, in about half the time.

    The common row (a canonical ``YYYY-MM-DD`` date, a printable ASCII title,
    valid tags) is checked inline, each date and set of tags once per batch;
    any other row goes through :func:`check_row`, which gives the errors.
    """
    staged: list[_bulk.StagedRow] = []
    append = staged.append
    days: dict[str, bool] = {}
    tag_sets: dict[tuple[str, ...], tuple[str, str] | None] = {}
    fromisoformat = datetime.date.fromisoformat
    n = start
    for row in rows:
        if type(row) is list and len(row) == 5:
            line, date, title, done, tags = row
            if (
                type(line) is int
                and type(date) is str
                and type(title) is str
                and type(done) is bool
                and type(tags) is list
            ):
                good = days.get(date)
                if good is None:
                    good = days[date] = (
                        len(date) == 10
                        and date[4] == "-"
                        and date[7] == "-"
                        and date.isascii()
                        and _real(fromisoformat, date)
                    )
                if not tags:
                    tagged: tuple[str, str] | None = _NO_TAGS
                elif all(type(t) is str for t in tags):
                    key = tuple(tags)
                    if key in tag_sets:
                        tagged = tag_sets[key]
                    else:
                        tagged = tag_sets[key] = _tag_forms(key)
                else:
                    tagged = None
                clean = title.strip()
                if (
                    good
                    and tagged is not None
                    and clean
                    and len(clean) <= MAX_TITLE
                    and clean.isascii()
                    and clean.isprintable()
                ):
                    # What check_row makes of it: the date is canonical, the
                    # title clean (ASCII, printable, stripped, not empty), the
                    # tags valid (their column and their mark in the event).
                    tag_text, marks = tagged
                    mark = "1" if done else "0"
                    append((import_id, n, date, clean, int(done), tag_text, f"{date} {mark}{marks} 1 {clean}"))
                    n += 1
                    continue
        append(check_row(row, import_id, n))
        n += 1
    return staged


_NO_TAGS = ("[]", "")


def _tag_forms(tags: tuple[str, ...]) -> tuple[str, str] | None:
    """Valid tags' column text and their mark in the log's event (as check_row makes them); None if invalid."""
    try:
        tagged = tuple(sorted(validate_tags(tags)))
    except Invalid:
        return None
    return '["' + '","'.join(tagged) + '"]', ":" + ",".join(tagged)


def _real(fromisoformat: Any, date: str) -> bool:
    """Whether ``date`` (YYYY-MM-DD in form) is a real date, written as its ISO form."""
    try:
        return bool(fromisoformat(date).isoformat() == date)
    except ValueError:
        return False


@attrs.define(eq=False)
class Imports:
    """The open import sessions of the daemon."""

    store: Store
    mover: Mover
    call_timeout: float
    _sessions: dict[str, _Session] = attrs.field(factory=dict, init=False)
    _publishing: trio.Lock = attrs.field(factory=trio.Lock, init=False)

    def open_count(self) -> int:
        return len(self._sessions)

    async def begin(self, list_name: str, origin: Origin = NOBODY) -> str:
        """Open an import into ``list_name``; returns its id."""
        list_name = validate_list_name(list_name)
        await self._expire()
        if len(self._sessions) >= MAX_IMPORTS:
            raise Unavailable(f"{MAX_IMPORTS} imports are open; try again when one ends")
        session = _Session(secrets.token_hex(8), list_name, origin, trio.current_time())
        self._sessions[session.id] = session
        return session.id

    def _session(self, import_id: str) -> _Session:
        session = self._sessions.get(import_id)
        if session is None:
            raise self._gone(import_id)
        session.used = trio.current_time()
        if session.failed is not None:
            raise session.failed
        return session

    @staticmethod
    def _gone(import_id: str) -> NotFound:
        return NotFound(f"no open import {import_id!r} (it ended, failed, or was idle for {IDLE_TIMEOUT:g} s)")

    async def rows(self, import_id: str, start: int, rows: Sequence[Any]) -> int:
        """Validate and stage ``rows``, the import's rows ``start``, ``start + 1``, ...; returns how many are staged.

        Batches may come in any order (pipelined requests run concurrently):
        ``start`` places each.  A bad row fails the whole import.
        """
        session = self._session(import_id)
        if not 1 <= len(rows) <= MAX_IMPORT_ROWS:
            raise Invalid(f"a batch holds 1 to {MAX_IMPORT_ROWS} rows (got {len(rows)})")
        if start < 1 or start + len(rows) - 1 > MAX_IMPORT_ENTRIES:
            raise Invalid(f"an import holds at most {MAX_IMPORT_ENTRIES} entries")
        try:
            staged = await trio.to_thread.run_sync(check_rows, rows, import_id, start)
            async with session.lock:
                if session.failed is not None:  # another batch failed meanwhile
                    raise session.failed
                if self._sessions.get(import_id) is not session:  # committed, aborted or expired meanwhile
                    raise self._gone(import_id)
                # Before the store sees them: a batch sent twice is the
                # client's error (invalid), not a key's conflict in the
                # store (which said unavailable, as if a retry could help).
                # Claimed once staged: a batch cancelled before can be sent again.
                last = start + len(staged) - 1
                session.check_free(start, last)
                await self.store.stage_import(staged)
                session.claim(start, last)
        except TodoError as exc:
            if session.failed is None:
                await self._fail(session, exc)
            raise
        session.staged += len(staged)
        return session.staged

    async def commit(self, import_id: str, count: int) -> dict[str, Any]:
        """Publish the import's ``count`` rows in one transaction and end it.

        Raises:
            Invalid: the staged rows are not rows 1 to ``count``.
        """
        session = self._session(import_id)
        async with session.lock:
            if session.failed is not None:
                raise session.failed
            staged, highest = await self.store.staged_count(import_id)
            if staged != count or highest != count:
                await self._drop(session)
                raise Invalid(f"the import staged {staged} rows (up to row {highest}), not rows 1 to {count}")
            name, origin = session.list_name, session.origin
            result: dict[str, Any] = {"list": name, "count": count, "first": None, "last": None}
            if count == 0:
                del self._sessions[import_id]
                return result

            def apply(drafts: dict[str, Any]) -> Applied:
                draft = drafts[name]
                first, seq = draft.next_id, draft.seq + 1

                def publish(context: WriteContext) -> None:
                    list_id = context.list_id(name)
                    _first, _seq, last = _bulk.publish_import(
                        context.conn,
                        context.staged(import_id),
                        list_id,
                        count,
                        context.position,
                        context.head(list_id),
                        context.now,
                        origin.uid,
                        origin.pid,
                    )
                    context.position = last
                    context.set_head(list_id, last)

                done = {**result, "first": first, "last": first + count - 1, "seq": seq}
                return Applied(done, hook=publish, reload=(name,), bulk=True)

            # A publish writes every row once more: give it time beyond a call's.
            within = self.call_timeout * 12
            # Whether the publish may be queued for the writer with no answer
            # yet: handed to the mover, and neither answered nor refused.
            in_doubt = False
            try:
                # One publish at a time: each attaches its staging file to the
                # writer's connection, which takes ten at most in one transaction
                # (and the writer runs them one after another anyway).
                with trio.move_on_after(within):
                    async with self._publishing:
                        in_doubt = True
                        try:
                            published: dict[str, Any] = await self.mover.do(Work((name,), apply), within)
                        except TodoError as exc:
                            in_doubt = isinstance(exc, Timeout)
                            raise
                        in_doubt = False
                        return published
                raise Timeout(f"the import was not published within {within:g} s; it may still be")
            finally:
                self._sessions.pop(import_id, None)
                # Shielded, bounded, so that a cancelled commit leaves no file behind.
                with trio.CancelScope(shield=True), trio.move_on_after(self.call_timeout):
                    try:
                        if in_doubt:
                            # A timeout or a cancel while the publish may still be
                            # queued for the writer: removing its rows now would fail
                            # that transaction, and every other list's batch in it.
                            await self.store.release_import(import_id)
                        else:
                            await self.store.drop_import(import_id)
                    except TodoError as exc:
                        log.warning("could not drop import %s: %s", import_id, exc)

    async def abort(self, import_id: str) -> None:
        """End an import and drop what it staged (nothing was published)."""
        session = self._sessions.get(import_id)
        if session is None:
            return
        if session.failed is not None:
            self._sessions.pop(import_id, None)  # dropped already
            return
        async with session.lock:
            await self._drop(session)

    async def _fail(self, session: _Session, exc: TodoError) -> None:
        """Fail the import: drop what it staged, and answer its later requests with the same error until it ends.

        Batches pipelined behind the bad one get its error (with its line),
        not a puzzling "no open import"; the session ends with the client's
        ``import_abort``, or when idle.
        """
        session.failed = exc
        async with session.lock:  # no batch stages after this: each checks ``failed`` under the lock
            try:
                await self.store.drop_import(session.id)
            except TodoError as error:
                log.warning("could not drop import %s: %s", session.id, error)

    async def _drop(self, session: _Session) -> None:
        self._sessions.pop(session.id, None)
        try:
            await self.store.drop_import(session.id)
        except TodoError as exc:
            log.warning("could not drop import %s: %s", session.id, exc)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drop the imports idle for :data:`IDLE_TIMEOUT` (a client killed mid-import); never returns."""
        task_status.started()
        while True:
            await trio.sleep(IDLE_TIMEOUT / 2)
            await self._expire()

    async def _expire(self) -> None:
        now = trio.current_time()
        for session in [s for s in self._sessions.values() if now - s.used > IDLE_TIMEOUT]:
            if session.lock.locked():  # a batch staging or a commit under way (a publish may wait long): not idle
                continue
            async with session.lock:
                if self._sessions.get(session.id) is not session:
                    continue
                log.warning("import %s into %r idle for %g s: dropped", session.id, session.list_name, IDLE_TIMEOUT)
                await self._drop(session)


__all__ = ["MAX_IMPORTS", "Imports", "check_row", "check_rows"]
