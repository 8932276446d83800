"""``todo import`` and ``todo export`` end to end, in entries per second, beside raw sqlite3 in the same run.

Run it from the repository root::

    .venv/bin/python bench/import_export.py [--lines 1000000] [--reps 3] [--json]

Each repetition, interleaved:

- ``todo import`` of a CSV file of ``--lines`` lines (the book's format) into
  a fresh list of a running todod, the whole command timed, while the
  daemon's resident memory is sampled every 20 ms (its peak during the import,
  and ``VmHWM``, its peak since start);
- the baseline: a Python process that parses the same file with :mod:`csv`
  and ``executemany``s the rows into a plain table of a fresh SQLite file (WAL,
  ``synchronous=FULL``), in one transaction;
- the ceiling of the design: the same rows ``executemany``d straight into
  todod's own store (its entries table and date indexes; the tag and text
  index is kept apart, from the log, by the indexer), without staging,
  validation or the change log;
- ``todo export --format csv`` of that list to /dev/null, beside a Python
  process reading the same rows with sqlite3 and writing them with :mod:`csv`.

Every process runs with its byte code cached (``PYTHONPYCACHEPREFIX``, in the
run's temporary directory), as an installed ``todo`` has its ``.pyc`` files,
and (``--layout plain``, the default without ``--compare``) ``todo`` and the
raw arms run from a venv without the editable install's import hook, which
costs every Python process of an editable venv some 50 ms here (see
bench/cli_startup.py).

With ``--compare BIN`` (a directory holding another build's ``todo`` and
``todod``, say main's, installed in a venv of its own), each repetition also
imports the same file through that build, into a daemon of its own started
from it, interleaved with the others: the ratio of the two is the change's.

The daemon's peak memory is also measured for an import a tenth the size:
bounded memory means the two peaks are close.  (An export loads its list into
a list server, which stays for the idle timeout, so each import's growth
over the memory just before it is reported too.)  Target: import at least
100,000 entries a second, daemon memory bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cli_startup import _plain_venv  # noqa: E402
from bench.run import tree_cpu_seconds  # noqa: E402

BIN = Path(sys.executable).parent
TODO, TODOD = str(BIN / "todo"), str(BIN / "todod")

RAW_PLAIN = """
import csv, sqlite3, sys
conn = sqlite3.connect(sys.argv[2], isolation_level=None)
conn.execute("PRAGMA journal_mode = WAL"); conn.execute("PRAGMA synchronous = FULL")
conn.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, date TEXT, title TEXT, done INTEGER, tags TEXT)")
with open(sys.argv[1], newline="") as f:
    rows = ((d, t, 0, "[]") for d, t in csv.reader(f))
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO entries (date, title, done, tags) VALUES (?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
"""

RAW_SCHEMA = """
import csv, sqlite3, sys
from todod.store import _sqlite as _store
open(sys.argv[2], "a").close()
conn = _store._connect(sys.argv[2])
_store._check_and_migrate(conn, sys.argv[2])
conn.execute("PRAGMA synchronous = FULL")
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO lists (name, next_id) VALUES ('big', 1)")
with open(sys.argv[1], newline="") as f:
    rows = ((1, i, d, t, 0, 1, "[]") for i, (d, t) in enumerate(csv.reader(f), 1))
    conn.executemany(
        "INSERT INTO entries (list_id, id, date, title, done, version, tags) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
    )
conn.execute("COMMIT")
"""

RAW_EXPORT = """
import csv, sqlite3, sys
conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
out = csv.writer(sys.stdout, lineterminator="\\n")
out.writerow(["date", "title", "done", "tags"])
for d, t, done, tags in conn.execute(
    "SELECT e.date, e.title, e.done, e.tags FROM entries e JOIN lists l ON l.id = e.list_id "
    "WHERE l.name = ? ORDER BY e.id", (sys.argv[2],)
):
    out.writerow([d, t, "true" if done else "false", " ".join(__import__("json").loads(tags))])
"""


def make_csv(path: Path, lines: int) -> None:
    with path.open("w") as f:
        for i in range(lines):
            f.write(f"2026-{1 + i % 12:02d}-{1 + i % 28:02d},Entry number {i} of the import\n")


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class Sampler:
    """The peak resident memory of a process, sampled every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            self._stop.wait(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start_daemon(todod: str, todo: str, sock: Path, data: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A todod on ``sock`` and ``data``, once it answers ``todo status``."""
    daemon = subprocess.Popen(
        [todod, "--socket", str(sock), "--data-dir", str(data)], env=env, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while subprocess.run([todo, "status"], env=env, capture_output=True).returncode:
        if time.monotonic() > deadline:
            daemon.terminate()
            raise SystemExit(f"{todod} did not start")
        time.sleep(0.1)
    return daemon


def settle(pid: int, within: float = 120.0) -> None:
    """Wait (untimed) until the daemon is idle: the indexer works on an import's titles after its answer.

    Otherwise that work (some 40 us of CPU per title here) would compete
    with the arms that come after an import on the same two cores, and slow
    the baselines down, not the import.
    """
    deadline = time.monotonic() + within
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:  # the indexer waits 0.5 s (INDEX_DELAY) before it starts
        before = tree_cpu_seconds(pid)
        time.sleep(0.5)
        quiet = quiet + 1 if tree_cpu_seconds(pid) - before < 0.02 else 0


def timed(argv: list[str], env: dict[str, str], stdout: Any = subprocess.DEVNULL) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=stdout, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    parser.add_argument("--compare", metavar="BIN", help="another build's todo and todod's directory")
    parser.add_argument("--imports-only", action="store_true", help="skip the exports")
    parser.add_argument(
        "--layout",
        choices=("plain", "venv"),
        help="plain (the default without --compare): todo and the raw arms run from a venv without the editable "
        "install's import hook, as an installed todo; venv (the default with --compare, whose build runs from "
        "its own venv): this venv's",
    )
    args = parser.parse_args()
    layout = args.layout or ("venv" if args.compare else "plain")
    tmp = Path(tempfile.mkdtemp(prefix="todob-bulk-"))
    os.chmod(tmp, 0o700)
    todo, python = TODO, sys.executable
    if layout == "plain":
        python, todo = _plain_venv(str(tmp / "plain"), TODO)
    daemon: subprocess.Popen[bytes] | None = None
    other: subprocess.Popen[bytes] | None = None
    try:
        source, small = tmp / "in.csv", tmp / "small.csv"
        make_csv(source, args.lines)
        make_csv(small, max(args.lines // 10, 1))
        sock, data = tmp / "todod.sock", tmp / "data"
        env = {**os.environ, "TODOD_SOCKET": str(sock), "TODOD_DATA_DIR": str(data), "TODOD_NO_START": "1"}
        # Byte code cached, in a directory of this run's, as an installed todo
        # has its .pyc files: with PYTHONDONTWRITEBYTECODE=1 (set on this
        # machine) every todo process would compile the CLI again, some 70 ms
        # of each import.  The small import below warms the cache.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        daemon = start_daemon(TODOD, TODO, sock, data, env)
        other_env: dict[str, str] = {}
        if args.compare:
            other_todo, other_todod = str(Path(args.compare) / "todo"), str(Path(args.compare) / "todod")
            other_sock, other_data = tmp / "other.sock", tmp / "other-data"
            other_env = {**env, "TODOD_SOCKET": str(other_sock), "TODOD_DATA_DIR": str(other_data)}
            other = start_daemon(other_todod, other_todo, other_sock, other_data, other_env)
        idle_rss = rss_kib(daemon.pid)
        with Sampler(daemon.pid) as sampler:
            timed([todo, "import", "small", str(small), "--timeout", "600"], env)
        small_peak = sampler.peak
        settle(daemon.pid)
        kinds = ("todo", "raw", "schema", "export", "raw_export", *(("compared",) if args.compare else ()))
        figures: dict[str, list[float]] = {k: [] for k in kinds}
        peaks: list[int] = []
        # CPU seconds of each import: the CLI's, the daemon's until the answer, and its indexing after it.
        cpu: dict[str, list[float]] = {"cli": [], "daemon": [], "daemon_after": []}
        before: list[int] = []
        for rep in range(args.reps):
            # Each export loads its list into a list server, which stays for the
            # idle timeout: the next import's growth is what counts, not the peak.
            before.append(rss_kib(daemon.pid))
            cli_before, daemon_before = children_cpu(), tree_cpu_seconds(daemon.pid)
            with Sampler(daemon.pid) as sampler:
                figures["todo"].append(timed([todo, "import", f"big{rep}", str(source), "--timeout", "600"], env))
            cpu["cli"].append(children_cpu() - cli_before)
            cpu["daemon"].append(tree_cpu_seconds(daemon.pid) - daemon_before)
            peaks.append(sampler.peak)
            settle(daemon.pid)
            cpu["daemon_after"].append(tree_cpu_seconds(daemon.pid) - daemon_before - cpu["daemon"][-1])
            if other is not None:
                figures["compared"].append(
                    timed([other_todo, "import", f"big{rep}", str(source), "--timeout", "600"], other_env)
                )
                settle(other.pid)
            figures["raw"].append(timed([python, "-c", RAW_PLAIN, str(source), str(tmp / f"raw{rep}.db")], env))
            schema_db = tmp / f"schema{rep}.db"
            figures["schema"].append(timed([python, "-c", RAW_SCHEMA, str(source), str(schema_db), "text"], env))
            if not args.imports_only:
                figures["export"].append(timed([todo, "export", f"big{rep}", "--timeout", "600"], env))
                figures["raw_export"].append(timed([python, "-c", RAW_EXPORT, str(schema_db), "big"], env))
            for path in (tmp / f"raw{rep}.db", schema_db):
                path.unlink(missing_ok=True)
        hwm = rss_kib(daemon.pid, "VmHWM")
        # The search index follows the log in the background: an import is
        # acknowledged before its titles are indexed, so its rate above does
        # not include that; how far behind the indexer is shows here.
        status = subprocess.run([TODO, "status", "--json"], env=env, capture_output=True, text=True, check=True)
        stats = json.loads(status.stdout)["stats"]
        index_lag = {k: v for k, v in stats.items() if "index" in k}
    finally:
        for proc in (daemon, other):
            if proc is not None:
                proc.terminate()
                proc.wait(60)
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in figures.items() if v}
    rate = {k: args.lines / v for k, v in med.items()}
    result = {
        "lines": args.lines,
        "reps": args.reps,
        "seconds": {k: [round(x, 3) for x in v] for k, v in figures.items()},
        "per_second": {k: round(v) for k, v in rate.items()},
        "import_over_raw": round(rate["todo"] / rate["raw"], 3),
        "import_over_schema": round(rate["todo"] / rate["schema"], 3),
        "schema_over_raw": round(rate["schema"] / rate["raw"], 3),
        "export_over_raw": round(rate["export"] / rate["raw_export"], 3) if "export" in rate else None,
        "import_over_compared": round(rate["todo"] / rate["compared"], 3) if "compared" in rate else None,
        "daemon_rss_kib": {
            "idle": idle_rss,
            "peak_small_import": small_peak,
            "peak_imports": peaks,
            "before_imports": before,
            "hwm": hwm,
        },
        "index_after_exports": index_lag,
        "import_cpu_seconds": {k: [round(x, 2) for x in v] for k, v in cpu.items()},
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.lines:,} lines, medians of {args.reps} interleaved repetitions")
    print(f"todo import:               {rate['todo']:>10,.0f}/s  (target 100,000/s)")
    print(f"raw sqlite3 executemany:   {rate['raw']:>10,.0f}/s  import / raw {result['import_over_raw']:.2f}x")
    print(f"same rows, todod's schema: {rate['schema']:>10,.0f}/s  import / schema {result['import_over_schema']:.2f}x")
    if "compared" in rate:
        ratio = result["import_over_compared"]
        print(f"--compare's todo import:   {rate['compared']:>10,.0f}/s  import / it {ratio:.2f}x")
    if "export" in rate:
        print(f"todo export --format csv:  {rate['export']:>10,.0f}/s  export / raw {result['export_over_raw']:.2f}x")
        print(f"raw sqlite3 + csv export:  {rate['raw_export']:>10,.0f}/s")
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    print(
        f"CPU per imported entry (medians): the CLI {cpu_med['cli'] / args.lines * 1e6:.1f} us, the daemon "
        f"{cpu_med['daemon'] / args.lines * 1e6:.1f} us until its answer and "
        f"{cpu_med['daemon_after'] / args.lines * 1e6:.1f} us after it (indexing)"
    )
    rss = result["daemon_rss_kib"]
    growth = zip(rss["peak_imports"], rss["before_imports"], strict=True)
    print(
        f"daemon RSS: idle {rss['idle'] / 1024:.0f} MiB, peak during an import of {args.lines // 10:,} lines "
        f"{rss['peak_small_import'] / 1024:.0f} MiB, of {args.lines:,} lines "
        f"{', '.join(f'{p / 1024:.0f}' for p in rss['peak_imports'])} MiB, "
        f"growth {', '.join(f'{(p - b) / 1024:.0f}' for p, b in growth)} MiB "
        f"(VmHWM after the exports {rss['hwm'] / 1024:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
