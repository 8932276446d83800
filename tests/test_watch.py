"""The socket-file watch: it reports a deleted or replaced socket file once, and nothing else."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from todod._watch import WATCH_INTERVAL, socket_file_identity, watch_socket_file


def _bind(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


async def _watch_until(path: Path, change: Callable[[], None]) -> list[str]:
    """Run the watch on ``path``, apply ``change`` after three quiet intervals, and return what it reported."""
    reasons: list[str] = []
    lost = trio.Event()

    def on_lost(reason: str) -> None:
        reasons.append(reason)
        lost.set()

    identity = socket_file_identity(str(path))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_socket_file, str(path), identity, on_lost)
        await trio.sleep(3 * WATCH_INTERVAL + 0.5)
        assert reasons == []  # an unchanged file is never reported
        change()
        with trio.fail_after(2 * WATCH_INTERVAL):
            await lost.wait()
        await trio.sleep(3 * WATCH_INTERVAL)  # the watch has returned: nothing more is reported
        nursery.cancel_scope.cancel()
    return reasons


async def test_a_deleted_socket_file_is_reported_once(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """Deleting the socket file makes the watch report it, once, and return."""
    path = tmp_path / "todod.sock"
    with _bind(path):
        reasons = await _watch_until(path, path.unlink)
    assert reasons == [f"its socket file {path} is gone"]


async def test_a_replaced_socket_file_is_reported(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """A new file at the socket's path (another socket, or a regular file) is reported as a replacement."""
    path = tmp_path / "todod.sock"

    def replace() -> None:
        path.unlink()
        _bind(path).close()

    with _bind(path):
        reasons = await _watch_until(path, replace)
    assert reasons == [f"its socket file {path} was replaced"]


async def test_an_unreadable_directory_is_not_a_lost_file(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error other than a missing file does not count as a lost socket file: the watch goes on."""
    path = tmp_path / "todod.sock"
    calls: list[str] = []
    real_lstat = os.lstat

    def failing_lstat(p: str) -> os.stat_result:
        calls.append(p)
        if len(calls) <= 3:
            raise PermissionError(13, "Permission denied", p)
        return real_lstat(p)

    with _bind(path):
        identity = socket_file_identity(str(path))
        reasons: list[str] = []
        monkeypatch.setattr(os, "lstat", failing_lstat)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_socket_file, str(path), identity, reasons.append)
            await trio.sleep(6 * WATCH_INTERVAL)
            nursery.cancel_scope.cancel()
    assert len(calls) > 3
    assert reasons == []
