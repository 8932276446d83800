"""Watch subscriptions: the change log, live, to every subscriber, in position order.

The store's writer hands each committed group to :meth:`Hub.publish`, which
appends its events to every subscriber's bounded buffer and returns: it never
waits, so a slow subscriber cannot slow a writer or another subscriber.  A
subscriber whose buffer would overflow drops the buffer and is marked behind;
its task then reads the log from the last position it sent until it has
caught up, and goes live again (KurrentDB's fix of its catch-up
subscriptions, PR #4093).  Nothing is ever missed and nothing sent twice:
before each read of the log the buffer is emptied and starts over, so every
event is either in the log snapshot read after that point or in the buffer,
and an event in both is sent once, since only positions after the last one
sent are sent.

The socket server hands each connection a :class:`Connection` through a
context variable, so the dispatcher can find the peer of a request and turn
the connection into a subscription without the socket server knowing about
either.
"""

from __future__ import annotations

import collections
import contextvars
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import attrs
import trio

from todod._log import wire_events
from todod._model import NOBODY, Change, Origin
from todod.protocol import Compacted, Invalid, encode_event, encode_ok
from todod.store import Store

#: Events a subscriber may have waiting before it is switched to reading the
#: log: 1,024 events are about 300 KiB, and a subscriber that is this far
#: behind is cheaper to serve from the log than from memory.
BUFFER: Final = 1024
#: Events per read of the log while catching up.
PAGE: Final = 512


class _NoReply:
    """The result of a request that answers on its own (a watch): the socket sends nothing for it."""

    def __repr__(self) -> str:
        return "NO_REPLY"


NO_REPLY: Final = _NoReply()


@attrs.define(eq=False)
class Connection:
    """What a request can know of its connection: the peer, and a way to stream lines to it.

    ``send`` writes one line with no time limit (a subscription's consumer may
    pause as long as it likes; what waits for it is bounded by the buffer).
    """

    origin: Origin
    send: Callable[[bytes], Awaitable[None]]
    _scopes: set[trio.CancelScope] = attrs.field(factory=set, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    @contextmanager
    def subscription(self) -> Iterator[trio.CancelScope]:
        """A scope that :meth:`close` cancels (the client hung up, or the daemon stops reading)."""
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            if self._closed:
                scope.cancel()
            try:
                yield scope
            finally:
                self._scopes.discard(scope)

    def close(self) -> None:
        """End the connection's subscriptions: nothing more is read from it."""
        self._closed = True
        for scope in list(self._scopes):
            scope.cancel()


CONNECTION: contextvars.ContextVar[Connection | None] = contextvars.ContextVar("todod_connection", default=None)


def current_origin() -> Origin:
    """The peer of the request being handled (NOBODY in-process)."""
    connection = CONNECTION.get()
    return NOBODY if connection is None else connection.origin


@attrs.frozen
class WatchStatistics:
    watchers: int
    #: Times a subscriber's buffer overflowed and it went back to the log.
    watch_catchups: int


@attrs.define(eq=False)
class _Subscriber:
    list_name: str | None
    capacity: int
    buffer: collections.deque[dict[str, Any]] = attrs.field(factory=collections.deque)
    behind: bool = False
    wakeup: trio.Event = attrs.field(factory=trio.Event)

    def offer(self, events: Sequence[dict[str, Any]]) -> bool:
        """Buffer the events of this subscriber's list; False if they overflowed it."""
        if self.behind:
            return True
        mine = events if self.list_name is None else [e for e in events if e["list"] == self.list_name]
        if not mine:
            return True
        if len(self.buffer) + len(mine) > self.capacity:
            self.buffer.clear()
            self.behind = True
            self.wakeup.set()
            return False
        self.buffer.extend(mine)
        self.wakeup.set()
        return True

    def restart(self) -> None:
        """Empty the buffer and take events again (before a read of the log)."""
        self.buffer.clear()
        self.behind = False

    def take(self) -> list[dict[str, Any]]:
        events = list(self.buffer)
        self.buffer.clear()
        if self.wakeup.is_set():
            self.wakeup = trio.Event()
        return events


@attrs.define(eq=False)
class Hub:
    """The live side of the change log; :meth:`publish` is the store's commit listener."""

    store: Store
    capacity: int = BUFFER
    page: int = PAGE
    _subscribers: set[_Subscriber] = attrs.field(factory=set, init=False)
    _catchups: int = attrs.field(default=0, init=False)

    def publish(self, position: int, now: float, batches: Sequence[tuple[str, Sequence[Change]]]) -> None:
        """Hand a committed group to every subscriber; never waits (called by the writer)."""
        if not self._subscribers:
            return
        events = list(wire_events(position, now, batches))
        for subscriber in self._subscribers:
            if not subscriber.offer(events):
                self._catchups += 1

    def publish_events(self, events: Sequence[dict[str, Any]]) -> None:
        """Hand committed events in wire form to every subscriber (a shared store's follower); never waits."""
        if not self._subscribers:
            return
        for subscriber in self._subscribers:
            if not subscriber.offer(events):
                self._catchups += 1

    def watched(self) -> bool:
        return bool(self._subscribers)

    def fall_behind(self) -> None:
        """Send every subscriber to the log for what was just committed (an import's events, which no batch carries)."""
        for subscriber in self._subscribers:
            subscriber.buffer.clear()
            if not subscriber.behind:
                subscriber.behind = True
                subscriber.wakeup.set()

    def statistics(self) -> WatchStatistics:
        return WatchStatistics(watchers=len(self._subscribers), watch_catchups=self._catchups)

    async def serve(self, connection: Connection, request_id: Any, list_name: str | None, since: int | None) -> None:
        """Answer a watch request, then stream its events until the connection ends.

        Without ``since`` the subscription starts at the last committed event;
        with it, every later event is replayed from the log first.  Returns
        when the client hangs up or the daemon stops reading connections.

        Raises:
            Compacted: events after ``since`` were dropped by compaction.
            Invalid: ``since`` is past the end of the log.
        """
        with connection.subscription():
            subscriber = _Subscriber(list_name, self.capacity)
            # Registered before the start is read: an event committed from
            # here on is in the buffer or in the log, whatever the timing.
            self._subscribers.add(subscriber)
            try:
                last = self.store.last_position() if since is None else since
                if since is not None:
                    horizon = await self.store.log_horizon()
                    if since < horizon:
                        raise Compacted(
                            f"events up to position {horizon} were compacted; resume from {horizon} or later "
                            "(what was lost is in the lists' current state)"
                        )
                    # A position the log has not reached (another store's, a typo) would skip every
                    # event up to it without a word; the daemon's own may lag a shared log, so ask it.
                    if since > self.store.last_position() and since > (end := await self.store.log_end()):
                        raise Invalid(
                            f"position {since} is past the end of the change log ({end}); "
                            "resume from a position this daemon gave, or watch without --since"
                        )
                await connection.send(
                    encode_ok(request_id, {"list": list_name, "since": last, "position": self.store.last_position()})
                )
                await self._stream(subscriber, connection, request_id, last, catch_up=since is not None)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the client hung up: the subscription simply ends
            finally:
                self._subscribers.discard(subscriber)

    async def _stream(
        self, subscriber: _Subscriber, connection: Connection, request_id: Any, last: int, *, catch_up: bool
    ) -> None:
        while True:
            if catch_up or subscriber.behind:
                last = await self._catch_up(subscriber, connection, request_id, last)
                catch_up = False
            events = subscriber.take()
            if not events:
                await subscriber.wakeup.wait()
                continue
            for event in events:
                if event["position"] > last:
                    await connection.send(encode_event(request_id, event))
                    last = event["position"]

    async def _catch_up(self, subscriber: _Subscriber, connection: Connection, request_id: Any, last: int) -> int:
        """Send what the log holds after ``last``, page by page; return the last position sent."""
        while True:
            subscriber.restart()
            page = await self.store.read_events(last, subscriber.list_name, self.page)
            for event in page:
                await connection.send(encode_event(request_id, event))
                last = event["position"]
            if len(page) < self.page:
                return last


__all__ = ["CONNECTION", "NO_REPLY", "Connection", "Hub", "WatchStatistics", "current_origin"]
