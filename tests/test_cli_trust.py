"""The CLI never talks to a daemon it cannot trust: another user's socket directory or listening process.

The tests that play the other user need root (they run a process as
``nobody``); the directory-mode test does not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from tests.daemon import short_tempdir
from tests.fake_daemon import FakeDaemon

runner = CliRunner(env={"TODOD_NO_START": "1", "TODOD_SOCKET": None, "TODOD_DATA_DIR": None})

NOBODY = 65534

needs_root = pytest.mark.skipif(os.getuid() != 0, reason="playing another user needs root")

#: The other user: drops to nobody, makes ``DIR`` (mode 0777) and listens on
#: ``DIR/todod.sock``; prints every connection's bytes, and answers a request
#: with a forged entry, as an attacker would.  It exits after 20 s without a
#: connection.
IMPOSTOR = r"""
import os, socket, sys
os.setgroups([]); os.setgid(65534); os.setuid(65534)
directory = sys.argv[1]
os.mkdir(directory); os.chmod(directory, 0o777)
path = os.path.join(directory, "todod.sock")
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path); os.chmod(path, 0o777); server.listen(8)
print("ready", flush=True)
server.settimeout(20)  # a test that waits for a line it never prints fails, not hangs
while True:
    try:
        conn, _ = server.accept()
    except TimeoutError:
        break
    conn.settimeout(10)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    print("got", repr(data), flush=True)
    if data:
        conn.sendall(b'{"ok":true,"result":{"id":666,"date":"2026-01-01","title":"forged","done":false}}\n')
    conn.close()
"""


@pytest.fixture
def impostor() -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """Another user (nobody) listening on todod.sock in a 0777 directory of its own under /tmp."""
    directory = Path(tempfile.gettempdir()) / f"todod-impostor-{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    proc = subprocess.Popen([sys.executable, "-I", "-c", IMPOSTOR, str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        yield directory, proc
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _heard(proc: subprocess.Popen[str]) -> str:
    """Everything the impostor printed, once it is stopped."""
    proc.kill()
    out, _ = proc.communicate()
    return out


@needs_root
def test_socket_in_another_users_open_directory_is_refused(impostor: tuple[Path, subprocess.Popen[str]]) -> None:
    """Another user's 0777 directory (the $TMPDIR/todod-UID trap) is refused before connecting: exit 69."""
    directory, proc = impostor
    assert os.stat(directory).st_uid == NOBODY
    result = runner.invoke(app, ["add", "home", "secret", "plan", "--socket", str(directory / "todod.sock")])
    assert result.exit_code == 69
    assert result.stdout == ""
    assert f"its directory is owned by uid {NOBODY}" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "got" not in _heard(proc)  # not even a connection


@needs_root
def test_listener_of_another_user_is_refused_before_sending(impostor: tuple[Path, subprocess.Popen[str]]) -> None:
    """A socket in a private directory of ours but served by another user's process is refused: nothing sent."""
    directory, proc = impostor
    ours = short_tempdir()  # 0700, owned by us
    try:
        # The impostor's socket, moved where a trusted one would be: only the peer check can tell.
        os.rename(directory / "todod.sock", ours / "todod.sock")
        result = runner.invoke(app, ["add", "home", "secret", "plan", "--socket", str(ours / "todod.sock")])
        assert result.exit_code == 69
        assert f"it runs as uid {NOBODY} (pid {proc.pid})" in result.stderr
        assert "nothing was sent" in result.stderr
        assert "forged" not in result.stdout
        assert proc.stdout is not None
        assert proc.stdout.readline() == "got b''\n"  # it was connected to, and closed unspoken
        assert "secret" not in _heard(proc)
    finally:
        shutil.rmtree(ours, ignore_errors=True)


@needs_root
def test_directory_owned_by_another_user_is_refused_even_if_private() -> None:
    """A 0700 directory that another user owns is refused although its listener is ours."""
    root = short_tempdir()
    try:
        with FakeDaemon(str(root / "todod.sock")) as fake:
            os.chown(root, NOBODY, NOBODY)
            result = runner.invoke(app, ["list", "--socket", fake.path])
            assert result.exit_code == 69
            assert f"owned by uid {NOBODY}" in result.stderr
            assert fake.requests == []
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_directory_writable_by_others_is_refused() -> None:
    """A socket directory of ours that others may write to (mode 0777) is refused: exit 69, nothing sent."""
    root = short_tempdir()
    try:
        with FakeDaemon(str(root / "todod.sock")) as fake:
            os.chmod(root, 0o777)
            result = runner.invoke(app, ["list", "--socket", fake.path])
            assert result.exit_code == 69
            assert f"writable by other users (mode 777); run: chmod 700 {root}" in result.stderr
            assert fake.requests == []
            os.chmod(root, 0o755)  # readable by others is fine: nobody else can replace the socket
            fake.answer([])
            assert runner.invoke(app, ["list", "--socket", fake.path]).exit_code == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


@needs_root
def test_auto_start_refuses_an_impostor_at_once(
    impostor: tuple[Path, subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An impostor that answers while our auto-started daemon comes up is refused at once, not polled."""
    directory, proc = impostor
    ours = short_tempdir()
    sock = ours / "todod.sock"
    started: list[list[str]] = []

    class MoveImpostorIn:
        """Stands in for subprocess.Popen: instead of a daemon, the impostor's socket appears at --socket."""

        pid = 4242

        def __init__(self, argv: list[str], **_kwargs: object) -> None:
            started.append(argv)
            os.rename(directory / "todod.sock", sock)

        def poll(self) -> int | None:
            return None

    monkeypatch.setattr(subprocess, "Popen", MoveImpostorIn)
    try:
        result = runner.invoke(
            app,
            ["add", "home", "secret", "--socket", str(sock), "--data-dir", str(ours / "data")],
            env={"TODOD_NO_START": None},
        )
        assert len(started) == 1
        assert result.exit_code == 69
        assert f"it runs as uid {NOBODY}" in result.stderr
        assert "secret" not in _heard(proc)
    finally:
        shutil.rmtree(ours, ignore_errors=True)
