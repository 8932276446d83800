"""Shell completion through Typer's mechanism: scripts for bash, zsh and fish, and what they complete.

Each completion request runs the installed ``todo`` the way the shell's
script does (``_TODO_COMPLETE`` and the shell's words in the environment),
against a real ``todod`` for list names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import TODO, Daemon, short_tempdir

SHELLS = ["bash", "zsh", "fish"]


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    """One real daemon with the lists home, holiday and work."""
    root = short_tempdir()
    d = Daemon(root)
    try:
        d.start()
        for name in ("home", "holiday", "work"):
            d.request("add", list=name, title="x", date="2026-01-01")
        yield d
    finally:
        d.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def complete(shell: str, words: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Ask `todo` to complete the last of ``words`` as ``shell``'s completion script would."""
    env = {**env, "_TODO_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        parts = words.split(" ")
        env.update(COMP_WORDS=words, COMP_CWORD=str(len(parts) - 1))
    else:
        env["_TYPER_COMPLETE_ARGS"] = words
        if shell == "fish":
            env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    return subprocess.run([TODO], env=env, capture_output=True, text=True, timeout=30)


def offered(shell: str, output: str) -> list[str]:
    """The words a shell would offer from ``todo``'s completion output."""
    if shell == "zsh":
        # _arguments '*: :(("home":"help" "work":"help"))', one entry a line.
        return [line.split('"')[1] for line in output.splitlines() if line.count('"') >= 2]
    return [line.split("\t")[0] for line in output.splitlines() if line]


@pytest.mark.parametrize("shell", SHELLS)
def test_list_names_come_from_the_daemon(daemon: Daemon, shell: str) -> None:
    """Completing a list name offers the daemon's lists that start with what was typed."""
    done = complete(shell, "todo entries ho", daemon.cli_env())
    assert done.returncode == 0, done.stderr
    assert offered(shell, done.stdout) == ["holiday", "home"]
    assert done.stderr == ""


def test_find_list_option_completes_list_names(daemon: Daemon) -> None:
    """The value of `todo find --list` completes from the daemon's list names too."""
    done = complete("bash", "todo find --pending --list ho", daemon.cli_env())
    assert done.returncode == 0, done.stderr
    assert offered("bash", done.stdout) == ["holiday", "home"]


def test_list_names_use_the_socket_given_on_the_line(daemon: Daemon) -> None:
    """A --socket typed before the list name is the daemon asked, whatever $TODOD_SOCKET says."""
    env = {**daemon.cli_env(), "TODOD_SOCKET": "/nonexistent/todod.sock"}
    done = complete("bash", f"todo add --socket {daemon.socket} w", env)
    assert done.returncode == 0, done.stderr
    assert offered("bash", done.stdout) == ["work"]


@pytest.mark.parametrize("shell", SHELLS)
def test_commands_and_options_complete(daemon: Daemon, shell: str) -> None:
    """Command names and a command's options complete too."""
    commands = complete(shell, "todo en", daemon.cli_env())
    options = complete(shell, "todo add --j", daemon.cli_env())
    assert offered(shell, commands.stdout) == ["entries"]
    assert offered(shell, options.stdout) == ["--json"]


def test_no_daemon_completes_nothing_and_starts_none() -> None:
    """With no daemon, a list name completes to nothing, silently, and no daemon is started."""
    root = short_tempdir()
    try:
        env = {
            **os.environ,
            "TODOD_SOCKET": str(root / "todod.sock"),
            "TODOD_DATA_DIR": str(root / "data"),
        }
        env.pop("TODOD_NO_START", None)
        done = complete("bash", "todo entries ho", env)
        assert done.returncode == 0, done.stderr
        assert (done.stdout.strip(), done.stderr) == ("", "")
        assert not (root / "data").exists()
        assert not (root / "todod.sock").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _shell_env(home: Path) -> dict[str, str]:
    # Typer detects the user's shell unless told, as its own tests do, to take the name given.
    return {**os.environ, "HOME": str(home), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


@pytest.mark.parametrize("shell", SHELLS)
def test_show_completion_prints_the_shell_script(tmp_path: Path, shell: str) -> None:
    """`todo --show-completion SHELL` prints a script that calls `todo` with _TODO_COMPLETE=complete_SHELL."""
    done = subprocess.run(
        [TODO, "--show-completion", shell], env=_shell_env(tmp_path), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert f"_TODO_COMPLETE=complete_{shell}" in done.stdout
    assert "todo" in done.stdout


INSTALLED = {
    "bash": ".bash_completions/todo.sh",
    "zsh": ".zfunc/_todo",
    "fish": ".config/fish/completions/todo.fish",
}


@pytest.mark.parametrize("shell", SHELLS)
def test_install_completion_writes_the_script(tmp_path: Path, shell: str) -> None:
    """`todo --install-completion SHELL` installs the script where that shell looks for it."""
    done = subprocess.run(
        [TODO, "--install-completion", shell], env=_shell_env(tmp_path), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    script = tmp_path / INSTALLED[shell]
    assert f"_TODO_COMPLETE=complete_{shell}" in script.read_text()
    assert "completion installed" in done.stdout
