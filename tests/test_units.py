"""The systemd user units and ``todod install-units``, checked by ``systemd-analyze verify``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import TODOD, short_tempdir
from todod._core import CoreConfig
from todod._socket import SocketConfig
from todod._units import (
    PLACEHOLDER_EXEC_START,
    SERVICE_NAME,
    SOCKET_NAME,
    exec_start_argv,
    exec_start_line,
    render_units,
)

REPO = Path(__file__).resolve().parent.parent
VERIFY_SCRIPT = REPO / ".ci" / "verify-units.sh"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or shutil.which("bash") is None,
    reason="systemd-analyze (and bash) are needed to verify units",
)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections → keys → values (a key may repeat), as systemd reads them; no line continuations."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def run_todod(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TODOD, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=30)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = short_tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- the unit text -------------------------------------------------------------------


def test_repository_units_are_the_rendered_units() -> None:
    """systemd/todod.socket and systemd/todod.service equal what todod/_units.py renders with the placeholder ExecStart."""  # noqa: E501
    for name, text in render_units(PLACEHOLDER_EXEC_START).items():
        on_disk = (REPO / "systemd" / name).read_text()
        assert on_disk == text, f"systemd/{name} is stale: run `python -m todod._units systemd`"


def test_units_open_with_how_to_enable_them() -> None:
    """Each unit opens with a comment that gives the commands to enable it."""
    for name, text in render_units(PLACEHOLDER_EXEC_START).items():
        header = []
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            header.append(line)
        assert header, name
        assert any("systemctl --user enable --now todod.socket" in line for line in header), name
        assert any("systemctl --user daemon-reload" in line for line in header), name


def test_socket_unit_listens_privately_where_the_cli_looks() -> None:
    """The socket unit listens on $XDG_RUNTIME_DIR/todod.sock, mode 0600, under the fd name todod."""
    socket = parse_unit(render_units("/x/todod")[SOCKET_NAME])
    assert socket["Socket"] == {
        "ListenStream": ["%t/todod.sock"],
        "SocketMode": ["0600"],
        "FileDescriptorName": ["todod"],
    }
    assert socket["Install"]["WantedBy"] == ["sockets.target"]


def test_service_unit_has_notify_restart_watchdog_and_hardening() -> None:
    """The service is Type=notify with restarts, a start limit, a watchdog, a stop timeout, UMask and the seccomp hardening."""  # noqa: E501
    unit = parse_unit(render_units("/x/todod")[SERVICE_NAME])
    service = {key: values[-1] for key, values in unit["Service"].items()}
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/x/todod",
        "Restart": "on-failure",
        "UMask": "0077",
        "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_UNIX",
        "LockPersonality": "yes",
        "RestrictRealtime": "yes",
        "SystemCallArchitectures": "native",
    }
    assert {key: service.get(key) for key in expected} == expected
    for key in ("RestartSec", "WatchdogSec", "TimeoutStopSec"):
        assert float(service[key]) > 0, key
    # A clean stop must fit: requests in flight, then the writer's drain.
    stop_budget = SocketConfig().shutdown_timeout + CoreConfig().drain_timeout
    assert float(service["TimeoutStopSec"]) > stop_budget
    assert int(unit["Unit"]["StartLimitBurst"][0]) > 0
    assert int(unit["Unit"]["StartLimitIntervalSec"][0]) > 0
    # Exit 70 (escalation) and 1 must both be restarted: see the unit's comment.
    assert "RestartPreventExitStatus" not in service
    # Ignored in user units of systemd 252 without PrivateUsers=: not pretended.
    ignored = {
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "ReadWritePaths",
        "PrivateDevices",
        "ProtectKernelTunables",
    }
    assert not ignored & service.keys()


def test_exec_start_line_escapes_what_systemd_would_expand() -> None:
    """% is doubled everywhere, $ and backslashes in arguments only, and words with spaces or quotes are quoted."""
    assert exec_start_line(["/usr/bin/todod"]) == "/usr/bin/todod"
    assert exec_start_line(["/a b/python", "-m", "todod"]) == '"/a b/python" -m todod'
    assert exec_start_line(["/a%h$HOME/todod"]) == "/a%%h$HOME/todod"  # no $ expansion in the path
    assert exec_start_line(["/t", "a%h$HOME\\x"]) == "/t a%%h$$HOME\\\\x"
    assert exec_start_line(["/t", 'say "hi"', ""]) == '/t "say \\"hi\\"" ""'
    with pytest.raises(ValueError, match="control character"):
        exec_start_line(["/a\nb"])
    with pytest.raises(ValueError, match="quote or a backslash"):
        exec_start_line(["/it's/todod"])  # systemd 252 refuses such an executable path


def test_exec_start_argv_prefers_the_running_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The running console script is used, made absolute without resolving symlinks; else ``python -m todod``."""
    script = tmp_path / "bin" / "todod"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    link = tmp_path / "todod-link"
    link.symlink_to(script)
    assert exec_start_argv(str(script), "/py/python") == [str(script)]
    assert exec_start_argv(str(link), "/py/python") == [str(link)]
    monkeypatch.chdir(tmp_path)
    assert exec_start_argv("bin/todod", "/py/python") == [str(script)]
    # python -m todod: argv[0] is the package's __main__.py.
    assert exec_start_argv("/site/todod/__main__.py", "/venv/bin/python") == ["/venv/bin/python", "-P", "-m", "todod"]
    script.chmod(0o644)
    assert exec_start_argv(str(script), "/venv/bin/python") == ["/venv/bin/python", "-P", "-m", "todod"]


def test_exec_start_fallback_ignores_a_todod_folder_in_the_working_directory(tmp_path: Path) -> None:
    """The ``python -P -m todod`` fallback runs the installed todod even when the working directory holds a ``todod`` package."""  # noqa: E501
    impostor = tmp_path / "todod"
    impostor.mkdir()
    (impostor / "__init__.py").write_text("")
    (impostor / "__main__.py").write_text("print('impostor')\n")
    argv = exec_start_argv("/site/todod/__main__.py", sys.executable)
    result = subprocess.run([*argv, "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("todod "), result.stdout
    assert "impostor" not in result.stdout
    # Without -P the working directory wins: the check above can fail.
    plain = subprocess.run([sys.executable, "-m", "todod"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert plain.stdout == "impostor\n"


# --- install-units -------------------------------------------------------------------


def test_install_units_writes_both_units_for_this_todod(tmp_path: Path) -> None:
    """``todod install-units --user-dir DIR`` writes both units with this todod's absolute path and prints the next steps."""  # noqa: E501
    result = run_todod(["install-units", "--user-dir", str(tmp_path / "units")])
    assert result.returncode == 0, result.stderr
    written = {path.name: path.read_text() for path in (tmp_path / "units").iterdir()}
    assert written == render_units(TODOD)
    for step in ("systemctl --user daemon-reload", "systemctl --user enable --now todod.socket", "journalctl"):
        assert step in result.stdout
    assert "systemctl --user link" in result.stdout  # DIR is not in systemd's search path


def test_install_units_defaults_to_xdg_config_home(tmp_path: Path) -> None:
    """Without --user-dir the units go to $XDG_CONFIG_HOME/systemd/user, and running it again rewrites them."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    units = tmp_path / "config" / "systemd" / "user"
    assert run_todod(["install-units"], env).returncode == 0
    (units / SERVICE_NAME).write_text("stale\n")
    result = run_todod(["install-units"], env)
    assert result.returncode == 0, result.stderr
    assert (units / SERVICE_NAME).read_text() == render_units(TODOD)[SERVICE_NAME]
    assert sorted(os.listdir(units)) == [SERVICE_NAME, SOCKET_NAME]  # no temporary files left
    assert "systemctl --user link" not in result.stdout


def test_install_units_from_python_m_runs_the_interpreter(tmp_path: Path) -> None:
    """Run as ``python -m todod``, install-units puts that interpreter and ``-P -m todod`` in ExecStart."""
    result = subprocess.run(
        [sys.executable, "-m", "todod", "install-units", "--user-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    service = parse_unit((tmp_path / SERVICE_NAME).read_text())
    assert service["Service"]["ExecStart"] == [f"{os.path.abspath(sys.executable)} -P -m todod"]


def test_install_units_refuses_a_path_systemd_cannot_run(short_dir: Path) -> None:
    """A todod whose path holds a quote gets one clear line on stderr and exit status 1, and no units."""
    odd = short_dir / "it's"
    odd.mkdir()
    (odd / "todod").symlink_to(TODOD)
    result = subprocess.run(
        [str(odd / "todod"), "install-units", "--user-dir", str(short_dir / "units")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "quote or a backslash" in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert not (short_dir / "units").exists()


def test_install_units_reports_a_directory_it_cannot_create(tmp_path: Path) -> None:
    """When the directory cannot be created, install-units prints one line to stderr and exits 1."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_todod(["install-units", "--user-dir", str(blocker / "units")])
    assert result.returncode == 1
    assert result.stderr.startswith("todod install-units: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr


# --- systemd-analyze verify ------------------------------------------------------------


def run_verify_script(todod: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(VERIFY_SCRIPT), str(todod)], capture_output=True, text=True, timeout=60)


@needs_systemd_analyze
def test_verify_script_accepts_the_installed_units() -> None:
    """.ci/verify-units.sh: ``systemd-analyze --user verify`` prints nothing for the units install-units writes."""
    result = run_verify_script(TODOD)
    assert result.returncode == 0, result.stderr + result.stdout
    assert not result.stderr


@needs_systemd_analyze
def test_verify_script_fails_on_any_output(short_dir: Path) -> None:
    """A unit that systemd only warns about (exit status 0) still fails the check."""
    broken = short_dir / "todod"
    broken.write_text(
        f'#!/bin/sh\n"{TODOD}" "$@" || exit\necho "Frobnicate=yes" >> "$XDG_CONFIG_HOME/systemd/user/todod.service"\n'
    )
    broken.chmod(0o755)
    result = run_verify_script(broken)
    assert result.returncode == 1, result.stderr + result.stdout
    assert "Unknown key 'Frobnicate'" in result.stderr


@needs_systemd_analyze
def test_verify_script_accepts_a_todod_path_with_spaces_and_specifiers(short_dir: Path) -> None:
    """ExecStart escaping survives systemd's parsing: verify finds the todod at a path with spaces, %, $ and ;."""
    odd = short_dir / "my bin %h $HOME;x"
    odd.mkdir()
    (odd / "todod").symlink_to(TODOD)
    result = run_verify_script(odd / "todod")
    assert result.returncode == 0, result.stderr + result.stdout
