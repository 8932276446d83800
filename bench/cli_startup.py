"""How long a whole ``todo`` process takes, next to a minimal argparse client.

Starts its own daemon on a temporary socket, then runs each command N times,
round-robin so that drift in machine load hits every command alike, and prints
the median and p90 wall time of each and its ratio to the argparse client's
median.  The target: ``todo add`` within 2.5 times the argparse client.

    .venv/bin/python bench/cli_startup.py [-n 30] [--daemon todod|fake] [--layout venv|plain|both]

``--daemon fake`` serves ``tests/fake_daemon.py`` instead of ``python -m todod``
(the figures are about client start-up, so the daemon hardly matters).

``--layout venv`` times the Python and the ``todo`` console script of the venv
this runs in.  With an editable install (``pip install -e``) every Python start
in that venv runs setuptools' import hook, which imports pathlib, re and
urllib.parse (15-20 ms here): the argparse client pays for them, but ``todo``
needs them anyway for Typer, so the editable venv flatters the ratio.
``--layout plain`` times a throw-away venv that only puts the same
site-packages and source tree on ``sys.path``, as an installed wheel would be.
``both`` (the default) prints both.  Exits 1 if a target is missed.

Every child runs with byte-code caching on, in a private cache directory
(``PYTHONPYCACHEPREFIX``), after warm-up runs: an installed ``todo`` has its
``.pyc`` files, and ``PYTHONDONTWRITEBYTECODE=1`` in the environment would
otherwise make every run recompile ``cli`` and ``todod``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = 2.5
WARMUP = 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=30, help="runs of each command (default 30)")
    parser.add_argument("--daemon", choices=("todod", "fake"), default="todod")
    parser.add_argument("--layout", choices=("venv", "plain", "both"), default="both")
    args = parser.parse_args()

    python = sys.executable
    todo = str(Path(python).parent / "todo")
    if not os.path.exists(todo):
        sys.exit(f"no {todo}: run `pip install -e . --no-deps` in the venv first")

    tmp = tempfile.mkdtemp(prefix="todo-bench-", dir="/tmp")  # short: AF_UNIX paths are capped
    sock = os.path.join(tmp, "todod.sock")
    data = os.path.join(tmp, "data")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        PYTHONPYCACHEPREFIX=os.path.join(tmp, "pycache"),
        TODOD_SOCKET=sock,
        TODOD_DATA_DIR=data,
        TODOD_NO_START="1",
    )
    if args.daemon == "todod":
        argv = [python, "-m", "todod", "--socket", sock, "--data-dir", data]
    else:
        argv = [python, str(HERE.parent / "tests" / "fake_daemon.py"), sock]
    log_path = os.path.join(tmp, "daemon.log")
    with open(log_path, "ab") as log:
        daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    results: dict[str, dict[str, list[float]]] = {}
    try:
        _wait_ready(sock, daemon, log_path)
        layouts = ("venv", "plain") if args.layout == "both" else (args.layout,)
        for layout in layouts:
            if layout == "plain":
                python, todo = _plain_venv(os.path.join(tmp, "plain"))
            results[layout] = _measure(_commands(python, todo, sock), args.n, env)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"{args.n} runs each, round-robin, {args.daemon} daemon, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs"
    )
    passed = True
    for layout, times in results.items():
        passed &= _report(layout, times)
    return 0 if passed else 1


def _commands(python: str, todo: str, sock: str) -> dict[str, list[str]]:
    return {
        "python -c pass": [python, "-c", "pass"],
        "argparse add": [python, str(HERE / "argparse_client.py"), "--socket", sock, "add", "bench", "t"],
        # Typer's own floor: the same request from a one-command Typer app.
        "typer add": [python, str(HERE / "typer_client.py"), "--socket", sock, "bench", "t"],
        "todo add": [todo, "add", "bench", "t"],
        "todo entries": [todo, "entries", "bench"],
        "todo list": [todo, "list"],
    }


def _plain_venv(path: str) -> tuple[str, str]:
    """A venv with this one's site-packages and the source tree on its path, but no .pth hooks.

    Returns:
        Its python and a ``todo`` script like the one pip writes.
    """
    import site
    import venv

    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    python = os.path.join(path, "bin", "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Directories named in a .pth file join sys.path, but .pth files in them
    # are not run: the editable install's hook stays out.
    Path(purelib, "todo-bench.pth").write_text("\n".join([*site.getsitepackages(), str(HERE.parent)]) + "\n")
    todo = os.path.join(path, "bin", "todo")
    Path(todo).write_text(
        f"#!{python}\nimport sys\nfrom cli.app import main\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n"
    )
    os.chmod(todo, 0o755)
    return python, todo


def _report(layout: str, times: dict[str, list[float]]) -> bool:
    """Print one table; return whether ``todo add`` met the target."""
    base = statistics.median(times["argparse add"])
    print(f"\n{layout} layout")
    print(f"{'command':<16}{'median ms':>10}{'p90 ms':>9}{'x argparse':>12}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<16}{median:>10.1f}{_p90(samples):>9.1f}{median / base:>12.2f}")
    ratio = statistics.median(times["todo add"]) / base
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"{verdict}: todo add = {ratio:.2f} x argparse add (target <= {TARGET} x)")
    floor = statistics.median(times["typer add"]) / base
    print(f"      a one-command Typer client = {floor:.2f} x: todo add costs {ratio / floor:.2f} x Typer's floor")
    return verdict == "PASS"


def _wait_ready(path: str, daemon: subprocess.Popen[bytes], log_path: str) -> None:
    """Poll until the daemon answers ``hello``; exit with its log if it dies or takes 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            sys.exit(f"the daemon exited with status {daemon.returncode}:\n{Path(log_path).read_text()}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(1)
                conn.connect(path)
                conn.sendall(b'{"op":"hello"}\n')
                if json.loads(conn.makefile("rb").readline()).get("ok"):
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    sys.exit(f"the daemon did not answer on {path} within 10 s:\n{Path(log_path).read_text()}")


def _measure(commands: dict[str, list[str]], n: int, env: dict[str, str]) -> dict[str, list[float]]:
    """Wall milliseconds of each command, ``n`` rounds after warm-up, interleaved."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(WARMUP + n):
        for name, argv in commands.items():
            start = time.perf_counter()
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
            )
            elapsed = (time.perf_counter() - start) * 1000
            if done.returncode != 0:
                sys.exit(f"{name} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
            if round_ >= WARMUP:
                times[name].append(elapsed)
    return times


def _p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]  # nearest rank


if __name__ == "__main__":
    sys.exit(main())
