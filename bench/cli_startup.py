"""How long a whole ``todo`` process takes, beside a raw client doing the same request.

Starts its own daemon on a temporary socket with a list of 1,000 entries,
then runs each everyday command N times, round-robin so that drift in
machine load hits every command alike, beside ``bench/raw_client.py`` (the
standard library, ``sys.argv`` as it is, one request, the result printed)
doing the same request and beside ``python -c pass``.  It prints the medians,
the p90s and each command's ratio to its raw client; the target is at most
1.3 times (``todo --help``, which needs Typer, is shown without a target).

    .venv/bin/python bench/cli_startup.py [-n 30] [--daemon todod|fake] [--layout venv|plain|both]

``--daemon fake`` serves ``tests/fake_daemon.py`` instead of ``python -m todod``.

``--layout venv`` times the Python and the ``todo`` console script of the venv
this runs in.  With an editable install (``pip install -e``) every Python start
in that venv runs setuptools' import hook, which imports pathlib, re and
urllib.parse (15-20 ms here), and the raw client pays for them too, which
flatters every ratio.  ``--layout plain`` times a throw-away venv that only
puts the same site-packages and source tree on ``sys.path``, as an installed
wheel would be, with the very console-script wrapper pip wrote for ``todo``
(it imports ``re`` itself).  ``both`` (the default) prints both.  Exits 1 if a
target is missed.

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
TARGET = 1.3
WARMUP = 3
BIG = 1000  # entries in the list that `todo entries` shows


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
    if "cli._main" not in Path(todo).read_text():
        sys.exit(f"{todo} is an old wrapper: run `pip install -e . --no-deps` in the venv again")

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
        _fill(sock)
        layouts = ("venv", "plain") if args.layout == "both" else (args.layout,)
        for layout in layouts:
            if layout == "plain":
                python, todo = _plain_venv(os.path.join(tmp, "plain"), todo)
            commands = _commands(python, todo)
            _check_same_output(commands, env)
            results[layout] = _measure(commands, args.n, env)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"{args.n} runs each, round-robin, {args.daemon} daemon, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    passed = True
    for layout, times in results.items():
        passed &= _report(layout, times)
    return 0 if passed else 1


#: Each everyday command line, and the raw client's words for the same request.
EVERYDAY: dict[str, tuple[list[str], list[str]]] = {
    "add": (["add", "bench", "t"], ["add", "bench", "t"]),
    "entries": (["entries", "big"], ["entries", "big"]),
    "entries --json": (["entries", "big", "--json"], ["entries", "big", "--json"]),
    "list": (["list"], ["lists"]),
    "status": (["status"], ["status"]),
    "update --done": (["update", "bench", "1", "--done"], ["update", "bench", "1", "--done"]),
    # Every entry of the bench is dated today (the run's local date), so both
    # show the 1,001 entries across the two lists.
    "find --list": (["find", "--list", "big"], ["find", "big"]),
    "find --list --json": (["find", "--list", "big", "--json"], ["find", "big", "--json"]),
    "today": (["today"], ["today"]),
}


def _commands(python: str, todo: str) -> dict[str, list[str]]:
    commands = {"python -c pass": [python, "-c", "pass"]}
    for name, (words, raw) in EVERYDAY.items():
        commands[f"todo {name}"] = [todo, *words]
        commands[f"raw {name}"] = [python, str(HERE / "raw_client.py"), *raw]
    commands["todo --help"] = [todo, "--help"]
    return commands


def _fill(path: str) -> None:
    """Give the daemon a list ``big`` of :data:`BIG` entries and a list ``bench`` with entry 1, all dated today."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(path)
        reader = conn.makefile("rb")
        today = time.strftime("%Y-%m-%d")  # what `todo today` shows
        for i in range(BIG):
            title = f"entry {i} of the big list, a title of a usual length"
            add = {"op": "add", "list": "big", "title": title, "date": today}
            conn.sendall(json.dumps(add).encode() + b"\n")
            assert json.loads(reader.readline())["ok"]
        add = {"op": "add", "list": "bench", "title": "t", "date": today}
        conn.sendall(json.dumps(add).encode() + b"\n")
        assert json.loads(reader.readline())["ok"]


def _check_same_output(commands: dict[str, list[str]], env: dict[str, str]) -> None:
    """Exit unless ``todo X --json`` and the raw client print the same for the same request."""
    for name in ("entries --json", "find --list --json"):
        outputs = [
            subprocess.run(commands[f"{side} {name}"], env=env, capture_output=True, check=True).stdout
            for side in ("todo", "raw")
        ]
        if outputs[0] != outputs[1]:
            sys.exit(f"todo {name} and raw {name} print different results")


def _plain_venv(path: str, todo: str) -> tuple[str, str]:
    """A venv with this one's site-packages and the source tree on its path, but no .pth hooks.

    Returns:
        Its python and a copy of the venv's ``todo`` script (the wrapper pip
        wrote) that runs it.
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
    wrapper = Path(todo).read_text().split("\n", 1)[1]
    plain_todo = os.path.join(path, "bin", "todo")
    Path(plain_todo).write_text(f"#!{python}\n{wrapper}")
    os.chmod(plain_todo, 0o755)
    return python, plain_todo


def _report(layout: str, times: dict[str, list[float]]) -> bool:
    """Print one table; return whether every everyday command met the target."""
    floor = statistics.median(times["python -c pass"])
    print(f"\n{layout} layout (python -c pass: median {floor:.1f} ms)")
    print(f"{'command':<20}{'todo ms':>9}{'p90':>7}{'raw ms':>9}{'p90':>7}{'x raw':>8}{'x pass':>8}")
    passed = True
    for name in EVERYDAY:
        todo, raw = times[f"todo {name}"], times[f"raw {name}"]
        ratio = statistics.median(todo) / statistics.median(raw)
        passed &= ratio <= TARGET
        print(
            f"{name:<20}{statistics.median(todo):>9.1f}{_p90(todo):>7.1f}{statistics.median(raw):>9.1f}"
            f"{_p90(raw):>7.1f}{ratio:>8.2f}{statistics.median(todo) / floor:>8.2f}"
            + ("" if ratio <= TARGET else "  over target")
        )
    helped = times["todo --help"]
    print(
        f"{'--help (no target)':<20}{statistics.median(helped):>9.1f}{_p90(helped):>7.1f}"
        f"{'':>16}{'':>8}{statistics.median(helped) / floor:>8.2f}"
    )
    print(f"{'PASS' if passed else 'FAIL'}: every everyday command <= {TARGET} x its raw client")
    return passed


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
    """Wall milliseconds of each command, ``n`` rounds after warm-up, interleaved.

    Every other round runs the commands in the reverse order, so that neither
    ``todo X`` nor ``raw X`` always runs right after the other.
    """
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(WARMUP + n):
        order = list(commands.items())
        for name, argv in order if round_ % 2 == 0 else reversed(order):
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
