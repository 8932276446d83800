"""Where the socket and the data live: one resolution shared by CLI and daemon.

Standard library only (the CLI imports it at every start).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

SOCKET_NAME = "todod.sock"


def resolve_socket(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The socket path: ``explicit``, else ``$TODOD_SOCKET``, else the XDG default.

    The default is ``$XDG_RUNTIME_DIR/todod.sock``; without that variable,
    ``/run/user/UID/todod.sock`` if that directory exists; else
    ``$TMPDIR/todod-UID/todod.sock`` (a private directory the daemon creates 0700).
    """
    env = os.environ if env is None else env
    if explicit:
        return os.path.abspath(explicit)
    if env.get("TODOD_SOCKET"):
        return os.path.abspath(env["TODOD_SOCKET"])
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, SOCKET_NAME)
    uid = os.getuid()
    run_user = f"/run/user/{uid}"
    if os.path.isdir(run_user):
        return os.path.join(run_user, SOCKET_NAME)
    tmp = env.get("TMPDIR") or "/tmp"
    return os.path.join(tmp, f"todod-{uid}", SOCKET_NAME)


def resolve_data_dir(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The data directory: ``explicit``, else ``$TODOD_DATA_DIR``, else ``$XDG_DATA_HOME/todod``.

    ``$XDG_DATA_HOME`` defaults to ``~/.local/share``.
    """
    env = os.environ if env is None else env
    if explicit:
        return os.path.abspath(explicit)
    if env.get("TODOD_DATA_DIR"):
        return os.path.abspath(env["TODOD_DATA_DIR"])
    data_home = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data_home, "todod")


class UnsafeDirectory(Exception):
    """A directory that must be private is owned by someone else or open to others."""


def ensure_private_dir(path: str) -> None:
    """Create ``path`` (and parents) if missing, mode 0700; check an existing one.

    Raises:
        UnsafeDirectory: it exists but is not a directory owned by us, or others
            can enter it.  We never chmod a directory we did not create.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=False)
        os.chmod(path, 0o700)  # makedirs' mode is masked by the umask
        return
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{path} exists and is not a directory")
    if st.st_uid != os.getuid():
        raise UnsafeDirectory(f"{path} is owned by uid {st.st_uid}, not by us")
    if st.st_mode & 0o077:
        raise UnsafeDirectory(
            f"{path} is open to other users (mode {stat.S_IMODE(st.st_mode):o}); run: chmod 700 {path}"
        )
