"""The daemon as a process: who holds the socket's lock, whether a pid still runs, stopping it, waiting for it to exit.

Standard library only, no import beyond ``os`` and ``time``: ``todo stop`` and
the error paths use it.  Linux's ``/proc`` answers most precisely (a zombie
has exited; a reused pid runs something else); without it, ``kill(pid, 0)``.
"""

from __future__ import annotations

import os
import time

#: Polling for an exit backs off from the first to the last delay (seconds),
#: as the client's auto-start does.
_FIRST_POLL, _LAST_POLL = 0.01, 0.1


def lock_holder(socket_path: str) -> int | None:
    """The pid of the live todod that holds the socket's lock file, if it wrote one there.

    todod writes its pid into ``SOCKET.lock`` once it holds the lock; a pid
    that no longer runs (a killed daemon), or that now runs something other
    than todod (the pid was reused), does not count.  The lock itself is not
    probed: taking it even for a moment could make a daemon starting at that
    moment give up.
    """
    try:
        with open(socket_path + ".lock", "rb") as file:
            text = file.read(32)
        pid = int(text.strip() or b"0")
    except (OSError, ValueError):
        return None
    if pid <= 0 or not process_alive(pid):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            if b"todod" not in file.read(4096):
                return None
    except OSError:
        pass  # no /proc to ask: the live pid is the best we know
    return pid


def holder_hint(socket_path: str) -> str:
    """A clause naming the live holder of the socket's lock and what to do, or "" if there is none."""
    pid = lock_holder(socket_path)
    if pid is None:
        return ""
    return (
        f"; todod pid {pid} holds {socket_path}.lock but its socket file is gone: it stops by itself "
        f"within a few seconds, or stop it now with: kill {pid}"
    )


def terminate(pid: int) -> None:
    """Send SIGTERM (todod's clean stop) to ``pid``; one that has already exited is fine.

    Raises:
        PermissionError: ``pid`` is another user's process.
    """
    import signal  # only for `todo stop` of a daemon whose socket file is gone

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie has exited)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat_line = file.read(4096)
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # The state follows the command name, which is in parentheses and may hold any byte.
    state = stat_line[stat_line.rfind(b")") + 2 : stat_line.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"x")


def wait_exited(pid: int, deadline: float) -> bool:
    """Poll until process ``pid`` has exited or ``deadline`` (``time.monotonic()``) passes.

    Returns:
        Whether it exited in time.
    """
    delay = _FIRST_POLL
    while process_alive(pid):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, _LAST_POLL)
    return True
