"""The registry: list name → running server (the book's ``Todo.Cache``).

Lookups are plain dict reads in the caller's task, never a round trip through
another task (like the ETS-backed registry of the Mix/OTP guide).  Lookup and
creation happen with no checkpoint in between, so two requests that reach a
new list at once start exactly one server; requests that arrive while it
loads wait in its mailbox.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import trio

from todod._model import validate_list_name
from todod._server import Gone, ListServer, Op, ServerConfig, ServerEvents, ServerFaults
from todod._store import Store
from todod.protocol import Timeout, Unavailable

log = logging.getLogger("todod.registry")


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

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the list servers until :meth:`close` or cancellation.

        Either way every server stops and answers what is still queued.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
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
        server = ListServer(name, self._store, self._config, self.faults, self._forget, self.events)
        self._servers[name] = server
        self._nursery.start_soon(server.run, name=f"list:{name}")
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
        # A bare CancelScope rather than trio.fail_after, which wraps the same
        # scope in a generator-based context manager and an exception
        # translation, paid on every request.
        with trio.CancelScope(deadline=trio.current_time() + limit):
            # A server can stop (idle, quarantine) between our lookup and
            # our send; it is then gone from the registry, so a second
            # lookup starts a fresh one.  Three tries cover that window.
            for _attempt in range(3):
                try:
                    return await self._get_or_start(name).call(op)
                except Gone:
                    continue
            raise Unavailable(f"list {name!r} keeps stopping; try again")
        # Only reached when the deadline cancelled the call.
        raise Timeout(f"list {name!r} did not answer within {limit:g} s")

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
