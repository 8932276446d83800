"""systemd glue: sd_notify, socket activation and the watchdog.

All of it is optional: without ``NOTIFY_SOCKET``, ``LISTEN_FDS`` or
``WATCHDOG_USEC`` in the environment every function here does nothing, and
todod runs exactly as it does by hand.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, MutableMapping

import trio

log = logging.getLogger("todod.systemd")

SD_LISTEN_FDS_START = 3


def notify(message: str, env: MutableMapping[str, str] | None = None) -> bool:
    """Send one sd_notify datagram (``READY=1``, ``STATUS=...``); False if not under systemd.

    The address is a path, or an abstract socket when it starts with ``@``.
    Errors are logged, never raised: a lost notification must not stop the daemon.
    """
    env = os.environ if env is None else env
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False
    return True


def listen_fds(env: MutableMapping[str, str] | None = None, name: str = "todod") -> int | None:
    """The fd of the socket systemd passed us, if any, and clear the variables.

    Picks the fd named ``name`` in ``LISTEN_FDNAMES``, else the first one.
    ``LISTEN_PID`` must be our pid: the variables may have been inherited.
    """
    env = os.environ if env is None else env
    try:
        if int(env.get("LISTEN_PID", "0")) != os.getpid():
            return None
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    names = env.get("LISTEN_FDNAMES", "").split(":") if env.get("LISTEN_FDNAMES") else []
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)  # our children must not think the fds are theirs
    if count < 1:
        return None
    index = names.index(name) if name in names else 0
    if index >= count:
        index = 0
    return SD_LISTEN_FDS_START + index


def watchdog_interval(env: MutableMapping[str, str] | None = None) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds (systemd's advice), or None."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", str(os.getpid())))
    except ValueError:
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 2 / 1e6


async def run_watchdog(
    interval: float,
    healthy: Callable[[], bool],
    status: Callable[[], str],
    send: Callable[[str], object] = notify,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` seconds while ``healthy()``; never returns.

    The ping proves the event loop runs (this task is scheduled) and, through
    ``healthy``, that the store's writer is not hung: when it is, the pings
    stop and systemd restarts the daemon after ``WatchdogSec``.
    """
    task_status.started()
    last_status = ""
    was_healthy = True
    while True:
        is_healthy = healthy()
        if is_healthy:
            send("WATCHDOG=1")
        # Log the changes only: one line per stall, not one per interval.
        if was_healthy and not is_healthy:
            log.error("unhealthy (the store's writer is stuck): withholding the watchdog pings")
        elif is_healthy and not was_healthy:
            log.warning("healthy again: watchdog pings resume")
        was_healthy = is_healthy
        text = status()
        if text != last_status:
            send(f"STATUS={text}")
            last_status = text
        await trio.sleep(interval)
