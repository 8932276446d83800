"""The systemd user units, and ``todod install-units`` which writes them.

The canonical text of both units lives here, so an installed todod can write
them without package data.  ``systemd/todod.socket`` and
``systemd/todod.service`` in the repository are copies rendered with
:data:`PLACEHOLDER_EXEC_START` (a test keeps them identical; regenerate them
with ``python -m todod._units systemd``).  ``install-units`` renders the same
text with the absolute command of the todod that runs it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

SOCKET_NAME = "todod.socket"
SERVICE_NAME = "todod.service"

#: The ExecStart of the copies in the repository: where ``pipx install`` and
#: ``pip install --user`` put the script, so the copy works as-is for them.
PLACEHOLDER_EXEC_START = "%h/.local/bin/todod"

SOCKET_UNIT = """\
# todod's socket, for the systemd user manager: systemd listens on it and
# starts todod.service on the first connection, passing the socket along.
#
# Enable it (after `todod install-units`, which writes both units):
#   systemctl --user daemon-reload
#   systemctl --user enable --now todod.socket
# Written by `todod install-units` from todod/_units.py: re-running it
# overwrites this file, so change settings with `systemctl --user edit`.

[Unit]
Description=todod socket (durable to-do daemon)

[Socket]
# The path the todo CLI uses by default ($XDG_RUNTIME_DIR/todod.sock).
ListenStream=%t/todod.sock
SocketMode=0600
# todod picks the passed socket by this name in LISTEN_FDNAMES.
FileDescriptorName=todod

[Install]
WantedBy=sockets.target
"""

SERVICE_UNIT = """\
# todod, the durable to-do daemon, as a systemd user service.
#
# Enable its socket rather than this service: todod then starts on the
# first use of the todo CLI.
#   todod install-units    # writes this file with the real ExecStart
#   systemctl --user daemon-reload
#   systemctl --user enable --now todod.socket
#   loginctl enable-linger "$USER"    # only to keep it running while logged out
# Written by `todod install-units` from todod/_units.py: re-running it
# overwrites this file, so change settings with `systemctl --user edit`.

[Unit]
Description=todod (durable to-do daemon)
Requires=todod.socket
After=todod.socket
# At most 5 starts in 60 s: with RestartSec=2 a daemon that cannot start
# gives up after about 10 s and leaves the unit failed, its reason in the
# journal, instead of restarting for ever.
StartLimitIntervalSec=60
StartLimitBurst=5

[Service]
Type=notify
NotifyAccess=main
ExecStart=@EXEC_START@
SyslogIdentifier=todod
# Restart after a crash, a watchdog timeout or exit status 70 (a supervised
# task crashed too often: todod asks to be restarted as a whole).
Restart=on-failure
RestartSec=2
# Exit status 1 ("cannot start": another todod holds the data, the database
# is not ours, a directory is unsafe) is deliberately NOT in
# RestartPreventExitStatus=: Python also exits 1 on an uncaught exception,
# which is exactly the crash Restart= is for, and a lock left by a crashed
# todod is gone by the time systemd restarts it (it waits until the whole
# cgroup has exited).  A permanent failure such as a foreign database is
# bounded by the start limit above.
# todod pings every WatchdogSec/2 while its event loop runs and no SQLite
# transaction has been stuck for that long; 30 s is far above a slow fsync.
WatchdogSec=30
# A clean stop waits up to 10 s for requests in flight, up to 10 s more for
# the writer to commit what is queued, then checkpoints: 30 s covers it all
# before systemd sends SIGKILL.
TimeoutStopSec=30
UMask=0077

# Hardening that works in user units of systemd 252 (seccomp and
# no_new_privs need no privileges).  ProtectSystem=, ProtectHome=,
# PrivateTmp= and the other filesystem sandboxing settings need a mount
# namespace, which the user manager of systemd 252 sets up only with
# PrivateUsers=yes; without it they are silently ignored, so they are not
# listed here.  PrivateUsers=yes is left off because it fails the start on
# systems that disable unprivileged user namespaces.
NoNewPrivileges=yes
# Unix sockets only: a PostgreSQL store reached over TCP (TODOD_STORE=postgresql://host/...)
# needs RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 in a drop-in (systemctl --user edit).
RestrictAddressFamilies=AF_UNIX
LockPersonality=yes
RestrictRealtime=yes
SystemCallArchitectures=native

[Install]
# Enabling the service enables its socket, which starts it on demand.
Also=todod.socket
"""


def render_units(exec_start: str) -> dict[str, str]:
    """Both units' text, by file name, with ``exec_start`` (unit syntax, already escaped)."""
    return {SOCKET_NAME: SOCKET_UNIT, SERVICE_NAME: SERVICE_UNIT.replace("@EXEC_START@", exec_start)}


def exec_start_argv(argv0: str | None = None, executable: str | None = None) -> list[str]:
    """The command that runs this todod: the running console script, else ``python -P -m todod``.

    ``shutil.which("todod")`` could name another installation; the script
    that is running (``sys.argv[0]``) is this one.  The path is made absolute
    but symlinks are kept: a package manager's symlink (``~/.local/bin/todod``)
    survives upgrades that move its target, and a venv's ``python`` only finds
    the venv through the symlink.  ``-P`` keeps the service's working
    directory (a user service starts in the home directory) off ``sys.path``,
    so a ``todod`` folder there cannot stand in for the installed package.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    if argv0 and not argv0.endswith(".py"):
        script = os.path.abspath(argv0)
        if os.path.isfile(script) and os.access(script, os.X_OK):
            return [script]
    if not executable:
        raise ValueError("cannot tell how this todod was started (no sys.argv[0] or sys.executable)")
    return [os.path.abspath(executable), "-P", "-m", "todod"]


def exec_start_line(argv: Sequence[str]) -> str:
    """``argv`` as the value of ExecStart=, escaped for systemd (systemd.service(5), "Command lines").

    Raises:
        ValueError: systemd cannot run it (see :func:`unit_word`).
    """
    return " ".join([unit_word(argv[0], executable=True), *(unit_word(word) for word in argv[1:])])


def unit_word(word: str, *, executable: bool = False) -> str:
    """Escape one word of an ExecStart= command line.

    ``%`` starts a specifier everywhere; in the arguments ``$`` also starts a
    variable and ``\\`` an escape.  The executable's path gets no variable
    expansion (a doubled ``$`` would stay doubled), and systemd 252 refuses
    one with a quote or a backslash.  A word with spaces or quotes is quoted.

    Raises:
        ValueError: a control character (a unit line cannot carry one), or a
            quote or backslash in the executable's path.
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in word):
        raise ValueError(f"{word!r} holds a control character")
    escaped = word.replace("%", "%%")
    if executable:
        if any(c in word for c in "\\\"'"):
            raise ValueError(f"systemd cannot run {word!r}: its path holds a quote or a backslash")
    else:
        escaped = escaped.replace("\\", "\\\\").replace("$", "$$")
    if not escaped or any(c.isspace() or c in "\"'" for c in escaped):
        escaped = '"' + escaped.replace('"', '\\"') + '"'
    return escaped


def default_user_dir(env: Mapping[str, str] | None = None) -> str:
    """``$XDG_CONFIG_HOME/systemd/user``, where ``$XDG_CONFIG_HOME`` defaults to ``~/.config``."""
    env = os.environ if env is None else env
    config = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(config, "systemd", "user")


def write_units(directory: str, units: Mapping[str, str]) -> list[str]:
    """Write each unit into ``directory`` (created if missing), atomically; return the paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, text in units.items():
        path = os.path.join(directory, name)
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)  # unit files are read by the manager, never secret
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        paths.append(path)
    return paths


def install_units(user_dir: str | None = None) -> int:
    """``todod install-units``: write both units for this todod and print the next steps.

    Returns the exit status: 0, or 1 (with one line on stderr) when the units
    cannot be written.
    """
    directory = os.path.abspath(user_dir) if user_dir else default_user_dir()
    try:
        exec_start = exec_start_line(exec_start_argv())
        paths = write_units(directory, render_units(exec_start))
    except (OSError, ValueError) as exc:
        print(f"todod install-units: {exc}", file=sys.stderr)
        return 1
    print("\n".join(_next_steps(paths, directory, default_user_dir())))
    return 0


def _next_steps(paths: Sequence[str], directory: str, default_dir: str) -> list[str]:
    lines = [f"wrote {path}" for path in paths]
    lines += ["", "Next steps:"]
    if os.path.realpath(directory) != os.path.realpath(default_dir):
        lines.append(f"  systemctl --user link {' '.join(paths)}    # {directory} is not searched by default")
    lines += [
        "  systemctl --user daemon-reload",
        "  systemctl --user enable --now todod.socket",
    ]
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    if not user or not os.path.exists(os.path.join("/var/lib/systemd/linger", user)):
        lines.append('  loginctl enable-linger "$USER"    # only to keep todod running while you are logged out')
    lines.append("Logs: journalctl --user -u todod")
    return lines


if __name__ == "__main__":  # python -m todod._units DIR: regenerate the repository's copies
    for written in write_units(sys.argv[1], render_units(PLACEHOLDER_EXEC_START)):
        print(f"wrote {written}")
