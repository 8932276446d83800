"""Moves between two daemons (a saga): each daemon and the CLI killed at each step, the entry ends in one list.

The kills are deterministic: a daemon started with ``TODOD_FAULT=<step>``
(test-only, see todod/_saga.py) and a ``todo`` run with
``TODO_FAULT=move:after-send`` kill themselves with SIGKILL at that step.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon, run_cli, short_tempdir, wait_until
from todod._saga import FAULT_POINTS


@pytest.fixture
def roots() -> Iterator[tuple[Path, Path]]:
    a, b = short_tempdir(), short_tempdir()
    try:
        yield a, b
    finally:
        shutil.rmtree(a, ignore_errors=True)
        shutil.rmtree(b, ignore_errors=True)


def where(source: Daemon, destination: Daemon) -> list[str]:
    """Every copy of the moved entry: ``source:home`` and ``destination:team`` entries by title."""
    here = [f"source:{e['title']}" for e in source.request("entries", list="home")]
    there = [f"destination:{e['title']}" for e in destination.request("entries", list="team")]
    return here + there


def settled(source: Daemon) -> bool:
    return source.request("status")["stats"]["sagas_open"] == 0


def test_a_move_to_another_daemon_moves_the_entry(roots: tuple[Path, Path]) -> None:
    """todo move --to adds the entry to the other daemon and removes it here, and says both ids."""
    source, destination = Daemon(roots[0]), Daemon(roots[1])
    try:
        source.start(), destination.start()
        source.request("add", list="home", title="Dentist", date="2026-12-19", tags=["health"])
        destination.request("add", list="team", title="Standup", date="2026-12-19")
        result = run_cli(["move", "home", "1", "team", "--to", str(destination.socket), "--json"], source.cli_env())
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["state"] == "done"
        assert answer["from"] == {"list": "home", "id": 1}
        assert answer["to"] == {"socket": str(destination.socket), "list": "team", "id": 2}
        assert where(source, destination) == ["destination:Standup", "destination:Dentist"]
        assert destination.request("entries", list="team")[1]["tags"] == ["health"]
        undo = run_cli(["undo", "home"], source.cli_env())
        assert undo.returncode == 1 and "another daemon" in undo.stderr
    finally:
        source.cleanup(), destination.cleanup()


def test_a_move_that_the_destination_refuses_leaves_the_entry_here(roots: tuple[Path, Path]) -> None:
    """A destination that refuses the entry (a daemon without move_in) ends the saga cancelled, the entry kept."""
    source = Daemon(roots[0])
    path = str(roots[1] / "old.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()

    def refuse() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            refusal = {"ok": False, "error": {"code": "bad_request", "message": "unknown op 'move_in'"}}
            connection.sendall(json.dumps(refusal).encode() + b"\n")

    thread = threading.Thread(target=refuse)
    thread.start()
    try:
        source.start()
        source.request("add", list="home", title="Dentist", date="2026-12-19")
        result = run_cli(["move", "home", "1", "team", "--to", path], source.cli_env())
        assert result.returncode == 1
        assert "taken back: the destination refused it: unknown op 'move_in'" in result.stderr
        assert [e["title"] for e in source.request("entries", list="home")] == ["Dentist"]
        assert settled(source)
    finally:
        thread.join(10)
        server.close()
        source.cleanup()


STEPS = [
    ("source", "saga:after-start"),
    ("source", "saga:after-remote"),
    ("source", "saga:after-finish"),
    ("destination", "move_in:before-commit"),
    ("destination", "move_in:after-commit"),
    ("cli", "move:after-send"),
]


def test_every_fault_point_is_tested() -> None:
    """The kill tests cover every fault point the daemon has."""
    assert {step for who, step in STEPS if who != "cli"} == set(FAULT_POINTS)


@pytest.mark.parametrize(("who", "step"), STEPS)
def test_a_kill_at_any_step_ends_with_the_entry_in_exactly_one_list(
    roots: tuple[Path, Path], who: str, step: str
) -> None:
    """A SIGKILL of either daemon or of the CLI at any step of the saga ends, once both are up, in one list."""
    fault = {"TODOD_FAULT": step}
    source = Daemon(roots[0], env=fault if who == "source" else None)
    destination = Daemon(roots[1], env=fault if who == "destination" else None)
    try:
        source.start(), destination.start()
        source.request("add", list="home", title="Dentist", date="2026-12-19")
        env = source.cli_env()
        if who == "cli":
            env["TODO_FAULT"] = step
        result = run_cli(["move", "home", "1", "team", "--to", str(destination.socket), "--timeout", "30"], env)
        if who == "cli":
            assert result.returncode == -signal.SIGKILL
        elif who == "source":
            assert source.proc is not None and source.proc.wait(30) == -signal.SIGKILL
            source = Daemon(roots[0])  # up again, without the fault
            source.start()
        else:
            assert destination.proc is not None and destination.proc.wait(30) == -signal.SIGKILL
            destination = Daemon(roots[1])
            destination.start()
        wait_until(lambda: settled(source), 30, "the saga to end")
        # Exactly one copy; and since nothing changed the entry meanwhile, the
        # saga is resumed to its end rather than taken back: it is moved.
        assert where(source, destination) == ["destination:Dentist"]
    finally:
        source.cleanup(), destination.cleanup()
