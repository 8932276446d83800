"""Supervision of the daemon's long-lived children (OTP's ``one_for_one``).

The store's writer, its checkpointer and the socket listener are permanent:
restarted when they crash, up to ``max_restarts`` within ``max_seconds``.
Beyond that the supervisor escalates with :class:`SupervisorEscalation`, the
daemon exits non-zero, and its own supervisor (systemd) restarts it.

``trio.Cancelled`` is shutdown, never a crash: only ``Exception`` (exception
groups of them included) counts as one.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

log = logging.getLogger("todod.supervisor")


class Restart(enum.Enum):
    PERMANENT = "permanent"  # always restarted, even after a normal return
    TRANSIENT = "transient"  # restarted only after a crash
    TEMPORARY = "temporary"  # never restarted


@attrs.frozen
class ChildSpec:
    """A child: a name for the logs and an ``async fn(*, task_status)``."""

    name: str
    fn: Callable[..., Awaitable[Any]]
    restart: Restart = Restart.PERMANENT


@attrs.define(eq=False)
class RestartIntensity:
    """OTP's restart intensity: at most ``max_restarts`` crashes within ``max_seconds``.

    Measured on trio's clock, so tests can use a mock clock.  The supervisor
    uses one per child, and each list server one for its list.
    """

    max_restarts: int
    max_seconds: float
    _crashes: deque[float] = attrs.field(factory=deque, init=False)

    def crashed(self) -> bool:
        """Record a crash now; return whether that makes too many in the window."""
        now = trio.current_time()
        self._crashes.append(now)
        while now - self._crashes[0] > self.max_seconds:
            self._crashes.popleft()
        return len(self._crashes) > self.max_restarts

    def recent(self) -> int:
        """How many crashes fall in the current window."""
        return len(self._crashes)


class SupervisorEscalation(Exception):
    """A child crashed more often than the restart intensity allows."""

    def __init__(self, child: str, restarts: int, seconds: float) -> None:
        super().__init__(f"child {child!r} crashed more than {restarts} times in {seconds:g} s; giving up")
        self.child = child


@attrs.frozen
class SupervisorStatistics:
    children: int
    restarts: int


@attrs.define(eq=False)
class Supervisor:
    """Runs :class:`ChildSpec` children and restarts them by their policy.

    Args:
        max_restarts, max_seconds: the restart intensity, measured on trio's
            clock (so tests can use a mock clock).  Three restarts in five
            seconds is OTP's default order of magnitude: enough to ride out a
            transient fault, few enough that a crash loop ends quickly.
    """

    max_restarts: int = 3
    max_seconds: float = 5.0
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _children: int = attrs.field(default=0, init=False)
    _restarts: int = attrs.field(default=0, init=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the children; never returns unless cancelled or escalating.

        Raises:
            SupervisorEscalation: a child exceeded the restart intensity.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def start_child(self, spec: ChildSpec) -> Any:
        """Start ``spec`` under supervision; return what its first start reported.

        Raises:
            ExceptionGroup: holding whatever the child raised before its first
                ``started()`` (trio's nurseries wrap it); a child that cannot
                start at all is not restarted.
        """
        assert self._nursery is not None, "start_child needs a running supervisor"
        return await self._nursery.start(self._supervise, spec, name=f"supervise:{spec.name}")

    async def _supervise(self, spec: ChildSpec, *, task_status: trio.TaskStatus[Any]) -> None:
        intensity = RestartIntensity(self.max_restarts, self.max_seconds)
        started = False
        self._children += 1
        try:
            while True:
                try:
                    async with trio.open_nursery() as nursery:
                        value = await nursery.start(spec.fn)
                        if not started:
                            started = True
                            task_status.started(value)
                    if spec.restart is not Restart.PERMANENT:
                        return
                    log.error("child %r returned; a permanent child is restarted", spec.name)
                    cause: Exception | None = None
                except Exception as exc:
                    if not started:
                        raise
                    if spec.restart is Restart.TEMPORARY:
                        log.error("temporary child %r crashed", spec.name, exc_info=exc)
                        return
                    log.error("child %r crashed; restarting", spec.name, exc_info=exc)
                    cause = exc
                if intensity.crashed():
                    raise SupervisorEscalation(spec.name, self.max_restarts, self.max_seconds) from cause
                self._restarts += 1
        finally:
            self._children -= 1

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(children=self._children, restarts=self._restarts)
