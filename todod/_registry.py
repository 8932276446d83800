"""The registry: list name → running server (the book's ``Todo.Cache``).

Lookups are plain dict reads in the caller's task, never a round trip through
another task (like the ETS-backed registry of the Mix/OTP guide).  Lookup and
creation happen with no checkpoint in between, so two requests that reach a
new list at once start exactly one server; requests that arrive while it
loads wait in its mailbox.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import attrs
import outcome
import trio

from todod._model import validate_list_name
from todod._server import Call, Gone, ListServer, Op, ServerConfig, ServerEvents, ServerFaults
from todod._timers import CallTimer, call_timed_out
from todod.protocol import Unavailable
from todod.store import Store

log = logging.getLogger("todod.registry")

#: The reaper's shortest sleep, so that a tiny idle timeout cannot make it spin.
REAP_TICK = 0.01


@attrs.define(eq=False)
class Registry:
    """Starts list servers on first use and forgets them when they stop.

    :meth:`run` hosts the servers' nursery; :meth:`call` is usable once it
    has started.
    """

    _store: Store
    _config: ServerConfig = attrs.field(factory=ServerConfig)
    faults: ServerFaults = attrs.field(factory=ServerFaults)
    events: ServerEvents = attrs.field(factory=ServerEvents, init=False)
    _servers: dict[str, ListServer] = attrs.field(factory=dict, init=False)
    _quarantine: dict[str, tuple[float, str]] = attrs.field(factory=dict, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _timer: CallTimer = attrs.field(factory=CallTimer, init=False)
    _reap_sleep: trio.CancelScope | None = attrs.field(default=None, init=False)
    _trim_wanted: bool = attrs.field(default=False, init=False)
    #: ``self._forget`` bound once: every server holds it, and a bound
    #: method made per server would be one more object in each.
    _on_stop: Callable[[ListServer, str | None], None] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._on_stop = self._forget

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the list servers until :meth:`close` or cancellation.

        Either way every server stops and answers what is still queued.  The
        call timer outlives the servers, so a caller whose server is slow to
        stop (a load in a worker thread cannot be interrupted) still gets its
        Timeout on time.
        """
        timer_scope = trio.CancelScope(shield=True)

        async def run_timer(*, task_status: trio.TaskStatus[None]) -> None:
            with timer_scope:
                await self._timer.run(task_status=task_status)

        try:
            async with trio.open_nursery() as outer:
                await outer.start(run_timer)
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._reap_idle)
                        self._nursery = nursery
                        task_status.started()
                        await trio.sleep_forever()
                finally:
                    timer_scope.cancel()
        finally:
            self._nursery = None

    def close(self) -> None:
        """Start no more servers and stop the running ones.

        Synchronous, so no start can slip in between; each server answers
        what is queued for it as it stops, and :meth:`run` then returns.
        """
        nursery, self._nursery = self._nursery, None
        if nursery is not None:
            nursery.cancel_scope.cancel()

    async def _reap_idle(self) -> None:
        """Stop the servers that have waited for mail for ``idle_timeout``,
        and the longest-waiting ones while more than ``max_servers`` run.

        One task for all servers: re-arming a timer in every server around
        every wait cost two deadline changes per batch, a tenth of the
        event loop's CPU per add with many lists.  A server is stopped at
        most ``idle_timeout / 64`` (and at least 10 ms) late.  Never returns
        unless cancelled.
        """
        timeout = self._config.idle_timeout
        # Idle expiry is checked at most 64 times per timeout; trims, which
        # wake the reaper early, at most once per REAP_TICK.
        granularity = max(timeout / 64, REAP_TICK) if timeout < math.inf else math.inf
        while True:
            now = trio.current_time()
            self._trim_wanted = False
            # A server that starts to wait after this scan is due no sooner
            # than now + timeout, so that bounds the sleep.
            wake = now + timeout
            if timeout < math.inf:
                for server in list(self._servers.values()):
                    wake = min(wake, server.expire_if_idle(now, timeout))
            over = len(self._servers) - self._config.max_servers
            if over > 0:
                self._evict(over)
            with trio.CancelScope(deadline=max(wake, now + granularity)) as self._reap_sleep:
                await trio.sleep_forever()
            self._reap_sleep = None
            if self._trim_wanted:
                # Woken to trim: still no sooner than a tick after the last scan.
                await trio.sleep_until(now + REAP_TICK)

    def _evict(self, over: int) -> None:
        """Stop the ``over`` servers that have waited longest for mail, and a tenth of the cap more.

        The margin makes the scan (O(n log n)) rare under a stream of new
        lists.  Busy servers are never stopped: they can only be as many as
        the calls in flight, which are bounded.
        """
        waiting = sorted(
            (since, i, server)
            for i, server in enumerate(self._servers.values())
            if (since := server.waiting_since()) is not None
        )
        stopped = 0
        for _since, _i, server in waiting[: over + self._config.max_servers // 10]:
            if server.evict():
                stopped += 1
        self.events.evicted(stopped)

    def lookup(self, name: str) -> ListServer | None:
        """The running server of ``name``, if any (no round trip)."""
        return self._servers.get(name)

    def _get_or_start(self, name: str) -> ListServer:
        # Synchronous from the dict read to the insert: no other task can run
        # in between, so there is never a second server for one name.
        server = self._servers.get(name)
        if server is not None:
            return server
        self._check_quarantine(name)
        if self._nursery is None:
            raise Unavailable("the daemon is shutting down")
        server = ListServer(name, self._store, self._config, self.faults, self._on_stop, self.events)
        self._servers[name] = server
        self._nursery.start_soon(server.run, name=f"list:{name}")
        if len(self._servers) > self._config.max_servers and not self._trim_wanted:
            # Too many lists in memory: have the reaper stop the longest-idle.
            self._trim_wanted = True
            if self._reap_sleep is not None:
                self._reap_sleep.cancel()
        return server

    def _check_quarantine(self, name: str) -> None:
        entry = self._quarantine.get(name)
        if entry is None:
            return
        until, reason = entry
        left = until - trio.current_time()
        if left > 0:
            raise Unavailable(f"{reason}; {left:.0f} s left")
        del self._quarantine[name]

    def _forget(self, server: ListServer, quarantine_reason: str | None) -> None:
        if self._servers.get(server.name) is server:
            del self._servers[server.name]
        if quarantine_reason is not None:
            self._quarantine[server.name] = (trio.current_time() + self._config.quarantine, quarantine_reason)
            log.error("%s", quarantine_reason)

    async def call(self, name: str, op: Op, within: float | None = None) -> Any:
        """Send ``op`` to the server of list ``name``, starting it if needed.

        Args:
            within: seconds to wait in all, queueing included (default: the
                configured call timeout).

        Raises:
            Invalid: the list name is not allowed.
            Unavailable: the list is quarantined or the daemon is stopping.
            Timeout: no reply in time (a write may still be applied later).
            TodoError: the server's own error for this op.
        """
        validate_list_name(name)
        limit = self._config.call_timeout if within is None else within
        call = Call(op)
        # An already-cancelled caller must not enqueue anything, as with send().
        await trio.lowlevel.checkpoint_if_cancelled()
        # The timer answers the call with Timeout if its deadline passes: no
        # cancel scope per call (see todod/_timers.py).
        deadline = self._timer.watch(call, limit, name)
        try:
            # A server can stop (idle, quarantine) between our lookup and
            # our send; it is then gone from the registry, so a second
            # lookup starts a fresh one.  Three tries cover that window.
            for _attempt in range(3):
                server = self._get_or_start(name)
                try:
                    if not server.offer(call):
                        # A full mailbox: wait for room, within the same deadline.
                        with trio.move_on_at(deadline) as queueing:
                            await server.send(call)
                        if queueing.cancelled_caught:
                            raise call_timed_out(name, limit)
                except Gone:
                    continue
                # The wait is this call's checkpoint when offer() queued it.
                return await call.wait()
            raise Unavailable(f"list {name!r} keeps stopping; try again")
        finally:
            call.abandon()

    async def submit(self, name: str, op: Op, on_reply: Callable[[outcome.Outcome[Any]], None]) -> None:
        """Queue ``op`` for the server of list ``name``; its answer goes to ``on_reply``, not back here.

        The socket's connections use this, so a request needs no task of its
        own: the call is queued in the caller's task with no checkpoint when
        the mailbox has room, and whoever answers it (the list server, the
        store's writer, the call timer at the deadline) calls ``on_reply``
        in its own task, exactly once.  Waits only while the mailbox is full,
        within the call's deadline (which is also answered through
        ``on_reply``).

        Raises:
            Invalid: the list name is not allowed.
            Unavailable: the list is quarantined.
            In both cases nothing was queued and ``on_reply`` is never called;
            every later failure goes to ``on_reply`` instead.  On
            cancellation the call is answered with ``unavailable`` unless it
            was queued.
        """
        validate_list_name(name)
        self._check_quarantine(name)
        limit = self._config.call_timeout
        call = Call(op, on_reply)
        deadline = self._timer.watch(call, limit, name)
        # From here on every outcome goes to on_reply, never raised.
        try:
            for _attempt in range(3):
                server = self._get_or_start(name)
                try:
                    if server.offer(call):
                        return
                    with trio.move_on_at(deadline) as queueing:
                        await server.send(call)
                    if queueing.cancelled_caught:
                        call.reply(outcome.Error(call_timed_out(name, limit)))
                    return
                except Gone:
                    continue
            call.reply(outcome.Error(Unavailable(f"list {name!r} keeps stopping; try again")))
        except Unavailable as exc:  # quarantined or shutting down meanwhile
            call.reply(outcome.Error(exc))
        except BaseException:
            # Cancelled (shutdown) before the call was queued: answer it now,
            # so that nobody waits for it until its deadline.
            call.reply(outcome.Error(Unavailable("the daemon is shutting down; try again")))
            raise

    @property
    def call_timeout(self) -> float:
        return self._config.call_timeout

    def running(self) -> int:
        return len(self._servers)

    def quarantined(self) -> int:
        now = trio.current_time()
        return sum(1 for until, _ in self._quarantine.values() if until > now)

    def mailbox_depth(self) -> int:
        return sum(server.mailbox_depth() for server in self._servers.values())
