"""The daemon core: store, supervisor and registry, behind one small API.

:func:`open_core` builds the task tree::

    open_core
    ├── Supervisor.run                     (permanent children, restart intensity)
    │   ├── supervise:writer     → Store.run_writer
    │   ├── supervise:checkpointer → Store.run_checkpointer
    │   ├── supervise:indexer    → Store.run_indexer (the search index, behind the log)
    │   ├── supervise:compactor  → Core.run_compactor (with --keep-days only)
    │   └── (the socket listener and watchdog, started by the entry point)
    └── Registry.run
        └── list:<name> → ListServer.run   (one per active list)

Shutdown runs in the opposite order: list servers first (their queued calls
fail cleanly), then the writer once its queue is empty, then the store closes
with a final checkpoint.
"""

from __future__ import annotations

import datetime
import functools
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from todod import _bulk, _log
from todod._imports import Imports
from todod._log import Compaction, HistoryPage
from todod._model import (
    MAX_TAGS,
    MAX_TITLE,
    NOBODY,
    Draft,
    Entry,
    Origin,
    Stale,
    Step,
    TodoList,
    validate_list_name,
    validate_tags,
    validate_title,
)
from todod._query import FindCursor, FindQuery, FoundPage, search_words
from todod._registry import Registry
from todod._saga import Sagas
from todod._server import (
    AddEntry,
    DeleteEntry,
    Flush,
    GetEntries,
    RevertChanges,
    ServerConfig,
    ServerFaults,
    UpdateEntry,
)
from todod._subscription import Hub
from todod._supervisor import ChildSpec, Supervisor
from todod._transfer import Applied, Mover, Work
from todod.protocol import (
    DEFAULT_PAGE_ENTRIES,
    MAX_FIND,
    MAX_PAGE_ENTRIES,
    Compacted,
    Conflict,
    Invalid,
    NotFound,
    Timeout,
)
from todod.store import Store, StoreError, StoreFaults, WriteContext, open_store

#: Most changes one undo or redo request reverts (each is one change of the
#: log, all committed together): a bound on the plan read and held in memory.
MAX_STEPS = 1000
#: What an undo or a redo may take beyond the call timeout, per event it
#: reverts: reverting an import of 100,000 entries (its events read back,
#: 100,000 entries changed in the list server, their rows and log events
#: written) took 2.6 s here on a quiet machine and about twice that under
#: load, so the call timeout alone (5 s) failed it with ``timeout`` while it
#: went on and was applied.  200 us an event gives that undo 25 s in all,
#: and at most :data:`REVERT_EXTRA_MAX` more than a call (the revert runs in
#: the list's server, on the event loop, so a larger one is refused by its
#: timeout rather than hidden behind a longer one).
REVERT_SECONDS_PER_EVENT = 200e-6
REVERT_EXTRA_MAX = 120.0
#: How often the daemon's own compaction (--keep-days) runs.
COMPACT_EVERY = 3600.0

log = logging.getLogger("todod.core")


@attrs.frozen
class CoreConfig:
    server: ServerConfig = attrs.field(factory=ServerConfig)
    #: Restart intensity of the permanent children (writer, checkpointer, listener).
    max_restarts: int = 3
    max_seconds: float = 5.0
    #: How long shutdown waits for the writer to empty its queue.
    drain_timeout: float = 10.0
    #: Compact the change log to this many days, at start and hourly (None: keep it all).
    keep_days: int | None = None
    #: False only in benchmarks: no change log (see Store.change_log).
    change_log: bool = True
    #: Commit in the event loop instead of a worker thread (Store.inline_commits).
    inline_commits: bool = False


@attrs.frozen
class CoreStatistics:
    """A snapshot of the core for ``status``."""

    lists_loaded: int
    servers_running: int
    evictions: int
    restarts: int
    quarantined: int
    quarantines: int
    mailbox_peak: int
    mailbox_queued: int
    dropped_calls: int
    commits: int
    failed_commits: int
    batches: int
    mean_batch: float
    max_batch: int
    max_group: int
    checkpoints: int
    writer_queue: int
    child_restarts: int
    log_position: int
    watchers: int
    watch_catchups: int
    mover_rounds: int
    mover_works: int
    imports_open: int
    sagas_open: int
    #: On a shared store (PostgreSQL): batches refused because another daemon
    #: had changed their list, and the times a list server caught up after one.
    stale_batches: int
    list_reloads: int
    #: On a shared store: mover rounds (moves, imports, saga steps) applied
    #: again because another daemon wrote one of their lists first.
    mover_stale_rounds: int = 0

    def to_wire(self) -> dict[str, Any]:
        return attrs.asdict(self)


def add_op(title: str, date: datetime.date, origin: Origin = NOBODY, tags: Iterable[str] = ()) -> AddEntry:
    """The message of an add, its title and tags validated (raises Invalid)."""
    return AddEntry(date, validate_title(title), validate_tags(tags), origin)


def update_op(
    entry_id: int,
    *,
    title: str | None = None,
    date: datetime.date | None = None,
    done: bool | None = None,
    tag: Iterable[str] = (),
    untag: Iterable[str] = (),
    if_version: int | None = None,
    origin: Origin = NOBODY,
) -> UpdateEntry:
    """The message of an update, its title (if given) and tags validated (raises Invalid)."""
    title = None if title is None else validate_title(title)
    return UpdateEntry(entry_id, title, date, done, validate_tags(tag), validate_tags(untag), if_version, origin)


@attrs.define(eq=False)
class Core:
    """The operations of todod; every method is safe to call from any task."""

    store: Store
    registry: Registry
    supervisor: Supervisor
    hub: Hub
    mover: Mover
    imports: Imports
    sagas: Sagas

    # List names are stripped here, where titles are: the registry then sees
    # the one name a list is stored under (it validates names again itself).

    async def add(
        self,
        list_name: str,
        title: str,
        date: datetime.date,
        origin: Origin = NOBODY,
        tags: Iterable[str] = (),
    ) -> Entry:
        list_name = validate_list_name(list_name)
        result: Entry = await self.registry.call(list_name, add_op(title, date, origin, tags))
        return result

    async def entries(self, list_name: str, date: datetime.date | None = None) -> tuple[Entry, ...]:
        result: tuple[Entry, ...] = await self.registry.call(validate_list_name(list_name), GetEntries(date))
        return result

    async def update(
        self,
        list_name: str,
        entry_id: int,
        *,
        title: str | None = None,
        date: datetime.date | None = None,
        done: bool | None = None,
        tag: Iterable[str] = (),
        untag: Iterable[str] = (),
        if_version: int | None = None,
        origin: Origin = NOBODY,
    ) -> Entry:
        list_name = validate_list_name(list_name)
        op = update_op(
            entry_id, title=title, date=date, done=done, tag=tag, untag=untag, if_version=if_version, origin=origin
        )
        result: Entry = await self.registry.call(list_name, op)
        return result

    async def delete(
        self, list_name: str, entry_id: int, if_version: int | None = None, origin: Origin = NOBODY
    ) -> Entry:
        list_name = validate_list_name(list_name)
        result: Entry = await self.registry.call(list_name, DeleteEntry(entry_id, if_version, origin))
        return result

    async def undo(
        self, list_name: str, steps: int = 1, origin: Origin = NOBODY, if_seq: int | None = None
    ) -> tuple[Entry, ...]:
        """Revert the last ``steps`` changes of a list, newest first; each undo is a change of its own.

        Args:
            if_seq: refuse unless the list's last event still has this seq
                (what the client saw in its history).

        Returns:
            The entries as the undo leaves them (a removed one as it was).

        Raises:
            NotFound: the list has fewer changes to undo (nothing is undone).
            Compacted: the same, because older changes were compacted.
            Conflict: the list changed since ``if_seq``, or while the undo was
                prepared, or an entry no longer has the values the change
                left; nothing is undone.
        """
        return await self._revert("undo", list_name, steps, origin, if_seq)

    async def redo(
        self, list_name: str, steps: int = 1, origin: Origin = NOBODY, if_seq: int | None = None
    ) -> tuple[Entry, ...]:
        """Re-apply the last ``steps`` undone changes, until a new change is made.

        Raises:
            NotFound: fewer changes can be redone (nothing is redone).
            Conflict: as for :meth:`undo`.
        """
        return await self._revert("redo", list_name, steps, origin, if_seq)

    async def move(
        self, src: str, entry_id: int, dst: str, if_version: int | None = None, origin: Origin = NOBODY
    ) -> dict[str, Any]:
        """Move entry ``entry_id`` of ``src`` to ``dst`` in one transaction; it gets the next id of ``dst``.

        Both lists log a change of op ``move`` (each naming the other in the
        ``moves`` table), so an undo on either list takes the whole move back.

        Returns:
            ``{"from": {"list", "id"}, "to": {"list", "id"}, "entry": ...}`` (the entry as it is in ``dst``).

        Raises:
            NotFound: no such entry in ``src``.
            Conflict: ``if_version`` does not hold.
            Invalid: ``src`` and ``dst`` are one list.
        """
        src, dst = validate_list_name(src), validate_list_name(dst)
        if src == dst:
            raise Invalid(f"an entry is moved to another list (both are {src!r})")

        def apply(drafts: dict[str, Draft]) -> Applied:
            try:
                old, out = drafts[src].remove(entry_id, "move", if_version, origin)
            except NotFound:
                raise NotFound(f"no entry {entry_id} in list {src!r}") from None
            new, into = drafts[dst].insert(old, "move", origin)

            def hook(context: WriteContext) -> None:
                a, b = context.list_id(src), context.list_id(dst)
                _bulk.record_move(context.conn, [(a, out.seq, b, into.seq), (b, into.seq, a, out.seq)])

            result = {"from": {"list": src, "id": old.id}, "to": {"list": dst, "id": new.id}, "entry": new.to_wire()}
            return Applied(result, {src: (out,), dst: (into,)}, hook)

        result: dict[str, Any] = await self.mover.do(Work((src, dst), apply), self.registry.call_timeout)
        return result

    async def _revert_move(
        self, list_name: str, plan: _log.Plan, peer: tuple[str | None, int], origin: Origin
    ) -> tuple[Entry, ...]:
        """Undo a move: revert its change in this list and its other half in the peer list, in one transaction."""
        peer_name, peer_seq = peer
        if peer_name is None:
            raise Conflict(
                f"change {plan.steps[0].target} of list {list_name!r} is a move to or from another daemon; "
                "move the entry back with todo move --to"
            )
        found: tuple[Step | None, bool] = await self.store.bulk_read(
            lambda c: _bulk.read_change(c, peer_name, peer_seq), "could not read the change log"
        )
        peer_step, undone = found
        if peer_step is None or undone:
            raise Conflict(f"the other half of this move, in list {peer_name!r}, is gone or undone")

        def apply(drafts: dict[str, Draft]) -> Applied:
            here, there = drafts[list_name], drafts[peer_name]
            # Tried first on copies: a refusal must leave both drafts untouched.
            for draft, head, steps in ((here, plan.head, plan.steps), (there, there.seq, (peer_step,))):
                Draft(TodoList(draft.current(), draft.next_id, draft.seq)).revert("undo", head, steps, origin)
            touched, mine = here.revert("undo", plan.head, plan.steps, origin)
            _other, theirs = there.revert("undo", there.seq, (peer_step,), origin)
            return Applied(touched, {list_name: mine, peer_name: theirs})

        try:
            result: tuple[Entry, ...] = await self.mover.do(
                Work((list_name, peer_name), apply), self.registry.call_timeout
            )
        except Stale:
            raise Conflict(
                f"list {list_name!r} changed while the undo was prepared; nothing was undone, see its history"
            ) from None
        return result

    async def _moves_in(self, list_name: str, plan: _log.Plan) -> list[tuple[str | None, int]]:
        """The other halves of the plan's changes that are moves."""

        def read(conn: Any) -> list[tuple[str | None, int]]:
            found = [_bulk.move_peer(conn, list_name, step.target) for step in plan.steps]
            return [peer for peer in found if peer is not None]

        result: list[tuple[str | None, int]] = await self.store.bulk_read(read, "could not read the change log")
        return result

    async def _revert(
        self, op: str, list_name: str, steps: int, origin: Origin, if_seq: int | None
    ) -> tuple[Entry, ...]:
        list_name = validate_list_name(list_name)
        if not 1 <= steps <= MAX_STEPS:
            raise Invalid(f"steps is 1 to {MAX_STEPS} (got {steps})")
        await self._flush(list_name)
        read = self.store.undo_plan if op == "undo" else self.store.redo_plan
        plan = await read(list_name, steps)
        if if_seq is not None and plan.head != if_seq:
            raise Conflict(f"list {list_name!r} is at seq {plan.head}, not {if_seq}; nothing was {op}ne")
        if len(plan.steps) < steps:
            what = "nothing" if not plan.steps else f"only {len(plan.steps)} change(s)"
            message = f"{what} to {op} in list {list_name!r}"
            if plan.at_horizon:
                raise Compacted(
                    f"{message}: its log starts at the compacted horizon "
                    "(older changes were compacted, or predate the change log)"
                )
            raise NotFound(message)
        moves = await self._moves_in(list_name, plan)
        if moves:
            if op == "redo":
                raise Conflict(f"a move is not redone: move the entry again (list {list_name!r})")
            if len(plan.steps) > 1:
                raise Conflict(f"a move is undone on its own: undo list {list_name!r} one step at a time")
            return await self._revert_move(list_name, plan, moves[0], origin)
        # A large change (an import) takes time to revert: the call's bound grows with it, up to a cap.
        events = sum(len(step.events) for step in plan.steps)
        within = self.registry.call_timeout + min(events * REVERT_SECONDS_PER_EVENT, REVERT_EXTRA_MAX)
        try:
            result: tuple[Entry, ...] = await self.registry.call(
                list_name, RevertChanges(op, plan.head, plan.steps, origin), within
            )
        except Stale:
            # Another change came in between the read and the revert: undoing
            # the new last change instead would be a guess.
            raise Conflict(
                f"list {list_name!r} changed while the {op} was prepared; nothing was {op}ne, see its history"
            ) from None
        return result

    async def history(self, list_name: str, limit: int | None = None) -> dict[str, Any]:
        """A list's changes from its log, oldest first (the last ``limit``)."""
        list_name = validate_list_name(list_name)
        if limit is not None and limit < 1:
            raise Invalid(f"limit is at least 1 (got {limit})")
        await self._flush(list_name)
        return await self.store.history(list_name, limit)

    async def _flush(self, list_name: str) -> None:
        """Wait until every call queued to the list so far is durable (or failed).

        A read of the log goes past the list server: without this, a change
        pipelined just before it on the same connection (queued, or with the
        store's writer) would not be in the log yet, and an undo would then
        miss it or be refused as stale.  A list with no server running has
        nothing queued (its batches still with the writer are waited for by
        the store's log reads), so it is not started for this: a history of
        a cold list loads nothing, and a quarantined list's history is readable.
        """
        if self.registry.lookup(list_name) is not None:
            await self.registry.call(list_name, Flush())

    async def compact(self, keep_days: int) -> Compaction:
        """Drop the changes older than ``keep_days`` days from the log; the lists keep their state."""
        if keep_days < 0:
            raise Invalid(f"keep_days is 0 or more (got {keep_days})")
        result = await self.store.compact(time.time() - keep_days * 86400.0)
        if result.dropped:
            log.info("compacted %d event(s) from the change log; horizon %d", result.dropped, result.horizon)
        return result

    async def run_compactor(
        self, keep_days: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Compact the log to ``keep_days`` days now (before reporting started) and every hour; never returns."""
        while True:
            try:
                await self.compact(keep_days)
            except StoreError as exc:
                # A full or failing disk is the writer's to report; compaction tries again later.
                log.warning("%s", exc)
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            await trio.sleep(COMPACT_EVERY)

    async def lists(self) -> list[tuple[str, int]]:
        """Every list ever written, with its durable entry count, by name.

        Raises:
            Timeout: the read pool did not answer within the call timeout.
        """
        limit = self.registry.call_timeout
        with trio.move_on_after(limit):
            return await self.store.lists()
        raise Timeout(f"the lists could not be read within {limit:g} s")

    async def find(
        self,
        *,
        lists: Iterable[str] | None = None,
        date_from: datetime.date | None = None,
        date_to: datetime.date | None = None,
        done: bool | None = None,
        tags: Iterable[str] = (),
        search: str | None = None,
        limit: int = MAX_FIND,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Entries of all lists (or of ``lists``) matching every filter, from the committed state.

        It asks no list server: the store holds exactly what the servers have
        acknowledged, so the answer holds every change acknowledged before
        this call (docs/ARCHITECTURE.md, "Queries across lists").
        For in-process callers; the socket reads in pages (:meth:`find_page`).

        Returns:
            The entries' wire forms, each with its ``"list"``, in date, list,
            id order, at most ``limit``; and whether more entries matched.

        Raises:
            Invalid: a bad list name, tag, search text, range or limit.
            Timeout: the query did not finish within the call timeout.
        """
        query = _find_query(lists, date_from, date_to, done, tags, search, limit, None)
        return await self.store.find(query, self.registry.call_timeout)

    async def find_page(
        self,
        *,
        lists: Iterable[str] | None = None,
        date_from: datetime.date | None = None,
        date_to: datetime.date | None = None,
        done: bool | None = None,
        tags: Iterable[str] = (),
        search: str | None = None,
        limit: int = MAX_FIND,
        after: str | None = None,
        rows: bool = False,
    ) -> FoundPage:
        """One page of :meth:`find`: at most ``limit`` entries and a page's bytes, after the cursor ``after``.

        ``rows``: the entries as arrays (``"form": "rows"``) rather than objects.

        Raises:
            Invalid: as :meth:`find`, or a cursor that is not one.
            Compacted: the log was compacted past the paged read's start.
            Timeout: the page did not finish within the call timeout.
        """
        cursor = None if after is None else FindCursor.from_wire(after)
        query = _find_query(lists, date_from, date_to, done, tags, search, limit, cursor)
        return await self.store.find_page(query, self.registry.call_timeout, rows)

    async def history_page(self, list_name: str, after: int | None, limit: int | None) -> HistoryPage:
        """One page of a list's history (docs/PROTOCOL.md, ``history``).

        Without ``after``, the read starts at the last ``limit`` events (all
        of them when ``limit`` is None); with it, the page holds at most
        ``limit`` events (1,000 when None) after that position.

        Raises:
            Invalid: a bad list name or limit.
            Compacted: ``after`` is below the compacted horizon.
        """
        list_name = validate_list_name(list_name)
        if after is None:
            if limit is not None and limit < 1:
                raise Invalid(f"limit is at least 1 (got {limit})")
            page = MAX_PAGE_ENTRIES if limit is None else min(limit, MAX_PAGE_ENTRIES)
        else:
            page = DEFAULT_PAGE_ENTRIES if limit is None else limit
            if not 1 <= page <= MAX_PAGE_ENTRIES:
                raise Invalid(f"a page's limit is 1 to {MAX_PAGE_ENTRIES} (got {page})")
        await self._flush(list_name)
        return await self.store.history_page(list_name, after, limit if after is None else None, page)

    def statistics(self) -> CoreStatistics:
        ev = self.registry.events
        st = self.store.statistics()
        return CoreStatistics(
            lists_loaded=ev.loads,
            servers_running=self.registry.running(),
            evictions=ev.evictions,
            restarts=ev.restarts,
            quarantined=self.registry.quarantined(),
            quarantines=ev.quarantines,
            mailbox_peak=ev.mailbox_peak,
            mailbox_queued=self.registry.mailbox_depth(),
            dropped_calls=ev.dropped_calls,
            commits=st.commits,
            failed_commits=st.failed_commits,
            batches=ev.batches,
            mean_batch=round(ev.batched_requests / ev.batches, 2) if ev.batches else 0.0,
            max_batch=ev.max_batch,
            max_group=st.max_group,
            checkpoints=st.checkpoints,
            writer_queue=st.queued,
            child_restarts=self.supervisor.statistics().restarts,
            log_position=self.store.last_position(),
            watchers=self.hub.statistics().watchers,
            watch_catchups=self.hub.statistics().watch_catchups,
            mover_rounds=self.mover.rounds,
            mover_works=self.mover.works,
            imports_open=self.imports.open_count(),
            sagas_open=self.sagas.open_count(),
            stale_batches=st.stale_batches,
            list_reloads=ev.reloads,
            mover_stale_rounds=self.mover.stale_rounds,
        )


#: More lists than this in one query is a mistake, not a filter.
MAX_QUERY_LISTS = 1000


def _check_lists(lists: Iterable[str]) -> frozenset[str]:
    names = frozenset(validate_list_name(name) for name in lists)
    if not names:
        raise Invalid("'lists' must name at least one list")
    if len(names) > MAX_QUERY_LISTS:
        raise Invalid(f"a query names at most {MAX_QUERY_LISTS} lists (got {len(names)})")
    return names


def _check_query_tags(tags: Iterable[str]) -> frozenset[str]:
    try:
        return validate_tags(tags)
    except Invalid as exc:
        if "at most" in exc.message:
            raise Invalid(f"a query asks for at most {MAX_TAGS} tags: no entry has more") from None
        raise


def _check_search(search: str) -> tuple[str, ...]:
    if len(search) > MAX_TITLE:
        raise Invalid(f"a search text is at most {MAX_TITLE} characters (got {len(search)})")
    words = search_words(search)
    if not words:
        raise Invalid("a search text must hold a word")
    return words


def _find_query(
    lists: Iterable[str] | None,
    date_from: datetime.date | None,
    date_to: datetime.date | None,
    done: bool | None,
    tags: Iterable[str],
    search: str | None,
    limit: int,
    after: FindCursor | None,
) -> FindQuery:
    query = FindQuery(
        lists=None if lists is None else _check_lists(lists),
        date_from=date_from,
        date_to=date_to,
        done=done,
        tags=_check_query_tags(tags),
        words=() if search is None else _check_search(search),
        limit=_check_limit(limit),
        after=after,
    )
    if date_from is not None and date_to is not None and date_from > date_to:
        raise Invalid(f"the range is empty: from {date_from.isoformat()} is after to {date_to.isoformat()}")
    return query


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_FIND:
        raise Invalid(f"a limit is 1 to {MAX_FIND} (got {limit})")
    return limit


@asynccontextmanager
async def open_core(
    data_dir: str,
    config: CoreConfig | None = None,
    *,
    store_faults: StoreFaults | None = None,
    server_faults: ServerFaults | None = None,
    full_text: bool = True,
    search_index: bool = True,
    store_uri: str | None = None,
) -> AsyncIterator[Core]:
    """Open the store and run the core's task tree for the body's duration.

    ``full_text=False`` leaves out the FTS5 title index (searches scan);
    ``search_index=False`` (benchmarks only) keeps no search index (searches and tags scan).
    ``store_uri`` selects the store's backend (see :func:`todod.store.open_store`;
    None: SQLite in ``data_dir``).

    Raises:
        StoreError: the store cannot be opened.
        SupervisorEscalation (in an exception group): a permanent child crashed
            too often; the body is cancelled.
    """
    config = config or CoreConfig()
    async with (
        open_store(
            data_dir,
            uri=store_uri,
            faults=store_faults,
            full_text=full_text,
            change_log=config.change_log,
            search_index=search_index,
        ) as store,
        trio.open_nursery() as nursery,
    ):
        store.inline_commits = config.inline_commits
        hub = Hub(store)
        if store.shared:
            store.feed = hub  # every daemon's commits, read from the log by the store's follower
        else:
            store.on_commit = hub.publish
        store.on_bulk = hub.fall_behind
        await store.drop_import()  # an import of an earlier run cannot go on: its client got an error
        supervisor = Supervisor(config.max_restarts, config.max_seconds)
        await nursery.start(supervisor.run)
        await supervisor.start_child(ChildSpec("writer", store.run_writer))
        # SQLite's WAL checkpoints; on a shared store, the follower of the change log.
        await supervisor.start_child(ChildSpec("follower" if store.shared else "checkpointer", store.run_checkpointer))
        # SQLite's search index (todod/_search.py); PostgreSQL's indexes are its own.
        await supervisor.start_child(ChildSpec("indexer", store.run_indexer))
        registry = Registry(store, config.server, server_faults or ServerFaults())
        await nursery.start(registry.run)
        mover = Mover(store, registry)
        await supervisor.start_child(ChildSpec("mover", mover.run))
        timeout = config.server.call_timeout
        sagas = Sagas(store, mover, timeout)
        imports = Imports(store, mover, timeout)
        core = Core(store, registry, supervisor, hub, mover, imports, sagas)
        await supervisor.start_child(ChildSpec("sagas", sagas.run))
        await supervisor.start_child(ChildSpec("imports", imports.run))
        if config.keep_days is not None:
            compactor = functools.partial(core.run_compactor, config.keep_days)
            await supervisor.start_child(ChildSpec("compactor", compactor))
        try:
            yield core
        finally:
            # Shutdown order: list servers, then the writer's queue, then the rest.
            registry.close()
            with trio.CancelScope(shield=True), trio.move_on_after(config.drain_timeout) as drain:
                await _wait_writer_idle(store, nursery.cancel_scope)
            if drain.cancelled_caught:
                log.error("the store's writer did not drain within %g s", config.drain_timeout)
            nursery.cancel_scope.cancel()


async def _wait_writer_idle(store: Store, core_scope: trio.CancelScope) -> None:
    # When the core is already torn down (a permanent child escalated), the
    # writer is gone and nothing will drain its queue: do not wait for it.
    if core_scope.cancel_called:
        return
    await store.wait_idle()
