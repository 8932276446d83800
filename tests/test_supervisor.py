"""The supervisor: restart policies, restart intensity on trio's clock, and cancellation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from todod._supervisor import ChildSpec, Restart, Supervisor, SupervisorEscalation, SupervisorStatistics


class Child:
    """A child that counts its starts and then crashes, returns or runs, as told.

    ``behaviour`` is ``"crash"``, ``"return"`` or ``"run"`` (until cancelled);
    ``after`` seconds of trio's clock pass between ``started()`` and the end.
    Only the first ``limit`` starts misbehave; later ones run until cancelled.
    """

    def __init__(self, behaviour: str, *, after: float = 0.0, limit: int | None = None) -> None:
        self.behaviour = behaviour
        self.after = after
        self.limit = limit
        self.starts = 0
        self.cancelled = 0

    async def __call__(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        self.starts += 1
        task_status.started(self.starts)
        try:
            if self.behaviour == "run" or (self.limit is not None and self.starts > self.limit):
                await trio.sleep_forever()
            await trio.sleep(self.after)
        except trio.Cancelled:
            self.cancelled += 1
            raise
        if self.behaviour == "crash":
            raise RuntimeError(f"crash {self.starts}")


@asynccontextmanager
async def running_supervisor(max_restarts: int = 3, max_seconds: float = 5.0) -> AsyncIterator[Supervisor]:
    async with trio.open_nursery() as nursery:
        supervisor = Supervisor(max_restarts, max_seconds)
        await nursery.start(supervisor.run)
        yield supervisor
        nursery.cancel_scope.cancel()


async def test_start_child_returns_what_the_first_start_reported() -> None:
    """start_child returns the value the child passed to started() and counts the child."""
    child = Child("run")
    async with running_supervisor() as supervisor:
        assert await supervisor.start_child(ChildSpec("c", child)) == 1
        assert supervisor.statistics().children == 1
    assert child.starts == 1


async def test_permanent_child_is_restarted_after_a_crash_and_after_a_return() -> None:
    """A PERMANENT child is started again whether it crashed or returned normally."""
    crasher = Child("crash", limit=2)
    returner = Child("return", limit=2)
    async with running_supervisor() as supervisor:
        await supervisor.start_child(ChildSpec("crasher", crasher, Restart.PERMANENT))
        await supervisor.start_child(ChildSpec("returner", returner, Restart.PERMANENT))
        await trio.testing.wait_all_tasks_blocked()
        assert (crasher.starts, returner.starts) == (3, 3)
        assert supervisor.statistics().restarts == 4
        assert supervisor.statistics().children == 2


async def test_transient_child_is_restarted_only_after_a_crash() -> None:
    """A TRANSIENT child is started again after a crash but not after a normal return."""
    crasher = Child("crash", limit=2)
    returner = Child("return")
    async with running_supervisor() as supervisor:
        await supervisor.start_child(ChildSpec("crasher", crasher, Restart.TRANSIENT))
        await supervisor.start_child(ChildSpec("returner", returner, Restart.TRANSIENT))
        await trio.testing.wait_all_tasks_blocked()
        assert (crasher.starts, returner.starts) == (3, 1)
        assert supervisor.statistics() == SupervisorStatistics(children=1, restarts=2)


async def test_temporary_child_is_never_restarted_and_its_crash_stays_contained() -> None:
    """A TEMPORARY child is not started again after a crash or a return, and the supervisor keeps running."""
    crasher = Child("crash")
    returner = Child("return")
    sibling = Child("run")
    async with running_supervisor() as supervisor:
        await supervisor.start_child(ChildSpec("sibling", sibling))
        await supervisor.start_child(ChildSpec("crasher", crasher, Restart.TEMPORARY))
        await supervisor.start_child(ChildSpec("returner", returner, Restart.TEMPORARY))
        await trio.testing.wait_all_tasks_blocked()
        assert (crasher.starts, returner.starts) == (1, 1)
        assert sibling.starts == 1 and sibling.cancelled == 0
        assert supervisor.statistics() == SupervisorStatistics(children=1, restarts=0)
        # The supervisor still accepts children after a temporary child crashed.
        assert await supervisor.start_child(ChildSpec("late", Child("run"))) == 1


async def test_a_child_that_cannot_start_is_not_restarted() -> None:
    """A crash before the first started() reaches start_child and is not retried."""
    starts = 0

    async def broken(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal starts
        starts += 1
        raise OSError("cannot bind")

    async with running_supervisor() as supervisor:
        try:
            await supervisor.start_child(ChildSpec("broken", broken))
        except* OSError:
            pass
        else:
            pytest.fail("start_child did not raise")
        assert starts == 1
        assert supervisor.statistics() == SupervisorStatistics(children=0, restarts=0)


async def test_more_than_max_restarts_in_the_window_escalates(autojump_clock: trio.testing.MockClock) -> None:
    """The 4th crash within 5 s ends the supervisor with SupervisorEscalation after 3 restarts."""
    child = Child("crash", after=1.0)
    supervisor = Supervisor(max_restarts=3, max_seconds=5.0)
    with pytest.RaisesGroup(
        pytest.RaisesGroup(pytest.RaisesExc(SupervisorEscalation, match="'flaky' crashed more than 3 times"))
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            await supervisor.start_child(ChildSpec("flaky", child))
            await trio.sleep(60)
            pytest.fail("the supervisor never escalated")
    # Crashes at t = 1, 2, 3, 4: the fourth is the one too many.
    assert trio.current_time() == 4.0
    assert child.starts == 4
    assert supervisor.statistics().restarts == 3


async def test_crashes_spread_over_more_than_max_seconds_do_not_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Crashes 2 s apart never put 4 in a 5 s window, so the child is restarted indefinitely."""
    child = Child("crash", after=2.0)
    async with running_supervisor(max_restarts=3, max_seconds=5.0) as supervisor:
        await supervisor.start_child(ChildSpec("slow-flaky", child))
        await trio.sleep(21)  # crashes at t = 2, 4, ..., 20
        assert child.starts == 11
        assert supervisor.statistics().restarts == 10


async def test_cancellation_is_shutdown_not_a_crash() -> None:
    """Cancelling the supervisor stops its children once, without restarts or escalation."""
    children = [Child("run") for _ in range(3)]
    async with trio.open_nursery() as nursery:
        supervisor = Supervisor(max_restarts=0, max_seconds=5.0)  # any restart would escalate
        await nursery.start(supervisor.run)
        for i, child in enumerate(children):
            spec = ChildSpec(f"c{i}", child, (Restart.PERMANENT, Restart.TRANSIENT, Restart.TEMPORARY)[i])
            await supervisor.start_child(spec)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert [(c.starts, c.cancelled) for c in children] == [(1, 1)] * 3
    assert supervisor.statistics() == SupervisorStatistics(children=0, restarts=0)


async def test_a_child_cancelled_by_its_own_scope_returns_normally() -> None:
    """A child that cancels its own work and returns is a normal return for a TRANSIENT child, not a crash."""
    starts = 0

    async def gives_up(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal starts
        starts += 1
        task_status.started()
        with trio.move_on_after(0):
            await trio.sleep_forever()

    async with running_supervisor(max_restarts=0) as supervisor:
        await supervisor.start_child(ChildSpec("gives-up", gives_up, Restart.TRANSIENT))
        await trio.testing.wait_all_tasks_blocked()
        assert starts == 1
        assert supervisor.statistics() == SupervisorStatistics(children=0, restarts=0)
