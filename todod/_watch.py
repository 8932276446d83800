"""Watch the socket file: a daemon whose socket path no longer leads to it stops cleanly.

If the socket file is deleted (``rm``, a tmp cleaner) or replaced, the daemon
keeps running but no client can reach it, and it still holds the socket's
lock, so a daemon started in its place refuses to run: every later ``todo``
would stall.  Re-creating the socket is not ours to do when the file was
replaced (someone else's file is there), and a second listening socket would
mean a second accept loop to shut down; stopping is one path for both
cases, the same clean stop as SIGTERM, after which the next ``todo`` starts a
fresh daemon.  A socket passed by systemd is not watched: systemd owns its file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import trio

log = logging.getLogger("todod.watch")

#: How often the socket file is checked.  One ``lstat`` a second costs nothing
#: measurable, and a client that finds the file gone is told that the daemon
#: stops by itself within a few seconds.
WATCH_INTERVAL = 1.0

FileIdentity = tuple[int, int]


def socket_file_identity(path: str) -> FileIdentity:
    """The (device, inode) of the socket file just bound at ``path``."""
    st = os.lstat(path)
    return (st.st_dev, st.st_ino)


async def watch_socket_file(
    path: str,
    identity: FileIdentity,
    on_lost: Callable[[str], None],
    *,
    interval: float = WATCH_INTERVAL,
) -> None:
    """Check every ``interval`` seconds that ``path`` is still the file ``identity`` names.

    Calls ``on_lost(reason)`` once when it is gone or replaced, then returns;
    otherwise never returns unless cancelled.  An error other than a missing
    file (a permission change on the directory) is logged once and the watch
    goes on: it does not prove the file is gone.
    """
    warned = False
    while True:
        await trio.sleep(interval)
        try:
            current = socket_file_identity(path)
        except FileNotFoundError:
            on_lost(f"its socket file {path} is gone")
            return
        except OSError as exc:
            if not warned:
                log.warning("cannot check the socket file %s: %s", path, exc)
                warned = True
            continue
        if current != identity:
            on_lost(f"its socket file {path} was replaced")
            return
