"""todod on the socket against same-run floors: the table of issue 10, in one command.

Run it from the repository root::

    .venv/bin/python bench/run.py [--quick] [--reps 3] [--json PATH] [--dir DIR]

Every figure is a ratio to a baseline measured in the same run; each is the
median of ``--reps`` interleaved repetitions (at least 3).  The servers
and the load generator (bench/loadgen.py, two processes of 32 closed-loop
connections) are separate processes; the script reports the CPU each used
during the load, so it is clear which one was the bottleneck (the machine
has 2 cores: the generator competes with the server, and the floors pay
the same).

1. Throughput, 64 connections, each waiting for its answer: the plain echo
   server (no storage, for scale), the durable echo server (every add
   committed, WAL + ``synchronous=FULL``, group commit; bench/echo_server.py),
   the design's ceiling (the durable echo with a task per list and a memory
   channel in front of the committer, nothing else; ``--list-tasks``),
   todod with the adds spread over 1,000 lists, todod with all adds into one
   list.  Targets: todod >= 0.7x the durable echo in both.  Both are also
   measured with ``todod --commit-in-loop`` (the transaction in the event
   loop instead of a worker thread), as is the sequential p50 below.
2. One connection, sequential adds, p50 latency: todod <= 1.3x the durable echo.
3. Memory per running list server, one entry each, 10,000 lists, against a
   bare Trio task waiting on a memory channel in the same interpreter
   (bench/list_memory.py): <= 1.3x.
4. ``entries`` of a 10,000-entry list over the socket, p50, against the same
   rows read with ``sqlite3`` and JSON-encoded in this process: <= 2x.
5. Start to ready (``hello`` answered) with 1,000,000 entries in 10,000
   lists, against an empty store: <= 1.5x.
6. The first ``entries`` of a cold 10,000-entry list against the same
   request warm: reported.
7. Durable adds/s on PostgreSQL with 1, 2 and 3 daemons, beside the SQLite
   daemon and raw psycopg inserts at the same group size
   (bench/pg_throughput.py; section ``postgres``, run where PostgreSQL's
   binaries are installed): reported.
8. ``todo import`` and ``todo export`` in entries per second, end to end
   from the CLI, against raw sqlite3 ``executemany`` of the same rows, and the
   daemon's peak memory during the import (bench/import_export.py; 1,000,000
   lines, 100,000 with ``--quick``): import >= 100,000/s, memory bounded.

``--quick`` uses fewer requests and finishes in under a minute; the full run
in under five.  The table is printed and written as JSON to ``--json``
(default ``bench/results/run.json``, ignored by git).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONNECTIONS = 64
GENERATORS = 2
LISTS = 1000
BIG = "big"
BIG_ENTRIES = 10_000
STORE_LISTS = 10_000
STORE_ENTRIES = 1_000_000


def stat_cpu_seconds(stat: str, reaped: bool = False) -> float:
    """User + system CPU in a /proc ``stat`` file, a process's or a thread's; with ``reaped``, reaped children's too."""
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11 : 15 if reaped else 13]) / CLK_TCK


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """User + system CPU of a process so far (from /proc); with ``reaped``, its reaped children's too."""
    return stat_cpu_seconds(f"/proc/{pid}/stat", reaped)


def descendants(pid: int) -> list[int]:
    """The live processes below ``pid`` (its children, theirs, and so on), from /proc."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process, of its live descendants and of those reaped (todod's search indexer is a child process).

    A child's CPU reaches its parent's counters (cutime, cstime) only once it
    is reaped, so a daemon's own figure leaves out the indexer while it runs;
    one that died and was replaced during a measure is counted there.
    """
    total = cpu_seconds(pid, reaped=True)
    for child in descendants(pid):
        try:
            total += cpu_seconds(child, reaped=True)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.002)


def hello(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(path)
            sock.sendall(b'{"op":"hello"}\n')
            return sock.recv(4096).startswith(b'{"ok":true')
    except OSError:
        return False


class Server:
    """One server process under test: an echo server or todod."""

    def __init__(
        self, kind: str, workdir: Path, data_dir: Path | None = None, extra: Sequence[str] = (), src: Path = ROOT
    ) -> None:
        self.kind = kind
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket = str(workdir / "s.sock")
        self.data_dir = data_dir or workdir / "data"
        if kind == "todod":
            argv = [PY, "-m", "todod", "--socket", self.socket, "--data-dir", str(self.data_dir), *extra]
        else:
            argv = [PY, str(BENCH / "echo_server.py"), "--socket", self.socket, *extra]
            if kind in ("durable", "ceiling"):
                argv += ["--durable", str(self.data_dir)]
            if kind == "ceiling":
                argv += ["--list-tasks"]
        self.log = open(workdir / f"{kind}.log", "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log, cwd=src)
        if kind == "todod":
            wait_until(lambda: self._alive() and hello(self.socket), 60, "todod to answer hello")
        else:
            assert self.proc.stdout is not None
            if self.proc.stdout.readline().strip() != b"ready":
                raise SystemExit(f"{kind} echo server did not start; see {workdir}")
        self.ready = time.monotonic()

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"{self.kind} exited with {self.proc.returncode}")
        return True

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by its pid
            self.proc.wait()
        self.log.close()


def run_load(
    server: Server, connections: int, requests: int, lists: int, processes: int = GENERATORS, entries: str | None = None
) -> dict[str, Any]:
    """Drive ``server`` with closed-loop generators; figures and the CPU of both sides."""
    per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    reqs = [requests * c // connections for c in per]
    gens = []
    first = 0
    for conns, n in zip(per, reqs, strict=True):
        argv = [PY, str(BENCH / "loadgen.py"), "--socket", server.socket, "--connections", str(conns)]
        argv += ["--requests", str(n), "--lists", str(lists), "--first", str(first)]
        if entries:
            argv += ["--entries", entries]
        first += conns
        gens.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    for gen in gens:
        assert gen.stdout is not None
        if gen.stdout.readline().strip() != b"connected":
            raise SystemExit("a load generator failed to connect")
    cpu_before = tree_cpu_seconds(server.proc.pid)
    for gen in gens:
        assert gen.stdin is not None
        gen.stdin.write(b"go\n")
        gen.stdin.flush()
    results = []
    gen_cpu = 0.0
    for gen in gens:
        assert gen.stdout is not None
        results.append(json.loads(gen.stdout.readline()))
        _pid, status, usage = os.wait4(gen.pid, 0)
        gen.returncode = os.waitstatus_to_exitcode(status)
        gen_cpu += usage.ru_utime + usage.ru_stime
    server_cpu = tree_cpu_seconds(server.proc.pid) - cpu_before
    start = min(r["start"] for r in results)
    end = max(r["end"] for r in results)
    total = sum(r["requests"] for r in results)
    errors = sum(r["errors"] for r in results)
    if errors:
        raise SystemExit(f"{errors} error responses from {server.kind}; see its log")
    wall = end - start
    return {
        "per_second": total / wall,
        "p50": statistics.median(r["p50"] for r in results),
        "wall": wall,
        "server_cpu": server_cpu / wall,  # cores busy
        "generator_cpu": gen_cpu / wall,
    }


def warm_up_requests(lists: int, connections: int = CONNECTIONS, processes: int = GENERATORS) -> int:
    """How many adds of :func:`run_load` write every one of ``lists`` lists at least once.

    A generator's connection ``i`` walks lists ``first + i``, then on by the
    generator's own number of connections (bench/loadgen.py), and the second
    generator's walk is the first one's a step on: so each generator must
    cover all the lists by itself.  One add per list in all (``lists``
    requests) left the upper half of them cold, and a list's first add (its
    load, its server's start, its row in ``lists``) then fell in the timed
    run of todod, not of the echo servers, which have no such cost.
    """
    per = connections // processes
    return processes * per * -(-lists // per)


# --- the data sets -------------------------------------------------------------------


def build_store(data_dir: Path, lists: int, entries: int) -> None:
    """A todod store with ``entries`` entries over ``lists`` lists, one of them BIG with BIG_ENTRIES."""
    from todod.store._sqlite import _open_sync  # the daemon's own schema and pragmas

    lock_fd, conn, _readers, _text_index, indexer = _open_sync(str(data_dir), 0, True)
    if indexer is not None:
        indexer.close()  # the search index is built by the daemon, from these entries
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        if lists:
            rest = (entries - BIG_ENTRIES) // max(lists - 1, 1) if lists > 1 else 0
            names = [(BIG, BIG_ENTRIES + 1)] + [(f"s{i}", rest + 1) for i in range(1, lists)]
            conn.executemany(
                "INSERT INTO lists (id, name, next_id) VALUES (?, ?, ?)",
                ((i + 1, n, k) for i, (n, k) in enumerate(names)),
            )
            title = "an entry of the start-up data set"
            conn.executemany(
                "INSERT INTO entries (list_id, id, date, title, done) VALUES (?, ?, '2026-02-03', ?, 0)",
                ((lid + 1, e, title) for lid, (_n, k) in enumerate(names) for e in range(1, k)),
            )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
        os.close(lock_fd)


def entries_in_process(db: Path, reps: int) -> float:
    """p50 of reading BIG's rows with sqlite3 and encoding them as todod's JSON entries, in process."""
    times = []
    conn = sqlite3.connect(db)
    for _ in range(reps):
        t0 = time.perf_counter()
        rows = conn.execute(
            "SELECT e.id, e.date, e.title, e.done, e.version, e.tags FROM entries e "
            "JOIN lists l ON l.id = e.list_id WHERE l.name = ? ORDER BY e.id",
            (BIG,),
        ).fetchall()
        result = [
            {"id": i, "date": d, "title": t, "done": bool(x), "version": v, "tags": json.loads(g)}
            for i, d, t, x, v, g in rows
        ]
        line = json.dumps({"ok": True, "result": result}, separators=(",", ":")).encode("ascii") + b"\n"
        times.append(time.perf_counter() - t0)
        assert len(rows) == BIG_ENTRIES and line
    conn.close()
    return statistics.median(times)


def timed_entries(path: str) -> float:
    """All of BIG's entries on a new connection, page by page: seconds until the last page has arrived.

    A whole read is bounded to one page (1 MiB, issue 11), so this reads as
    ``todo entries`` does: each page asks for the next one with its cursor.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        t0 = time.perf_counter()
        request: dict[str, object] = {"op": "entries", "list": BIG, "limit": 10_000}
        seen = 0
        buffer = bytearray()
        while True:
            sock.sendall(json.dumps(request).encode("ascii") + b"\n")
            while (end := buffer.find(b"\n")) < 0:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise SystemExit("todod closed the connection")
                buffer += chunk
            line, buffer = bytes(buffer[:end]), buffer[end + 1 :]
            response = json.loads(line)
            if not response.get("ok"):
                raise SystemExit(f"entries failed: {line[:200]!r}")
            page = response["result"]
            seen += len(page["entries"])
            if page["next"] is None:
                break
            request["after"] = page["next"]
        elapsed = time.perf_counter() - t0
    if seen != BIG_ENTRIES:
        raise SystemExit(f"entries gave {seen} entries, not {BIG_ENTRIES}")
    return elapsed


# --- the table ---------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests; under a minute")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (at least 3)")
    parser.add_argument("--json", default=str(BENCH / "results" / "run.json"), help="where to write the table")
    parser.add_argument("--dir", default=None, help="where the temporary stores live (default: $TMPDIR)")
    parser.add_argument("--todod-arg", action="append", default=[], help="an extra todod argument (repeatable)")
    parser.add_argument(
        "--baseline-src",
        default=None,
        help="a source tree of another todod build (say, main's, from git archive): the load section also "
        "runs it, interleaved with this one, and prints this build's ratios to it",
    )
    parser.add_argument("--only", default="", help="comma-separated sections: load,memory,entries,start,bulk,postgres")
    args = parser.parse_args()
    reps = max(3, args.reps)
    adds = 6_000 if args.quick else 20_000
    sequential = 400 if args.quick else 1_500
    sections = set(args.only.split(",")) if args.only else {"load", "memory", "entries", "start", "bulk", "postgres"}
    tmp = Path(tempfile.mkdtemp(prefix="todob-", dir=args.dir))
    table: dict[str, Any] = {"quick": args.quick, "reps": reps, "adds": adds, "todod_args": args.todod_arg}
    started = time.monotonic()
    try:
        if "load" in sections:
            table["load"] = load_section(
                tmp, reps, adds, sequential, args.todod_arg, Path(args.baseline_src) if args.baseline_src else None
            )
        if "memory" in sections:
            out = subprocess.run(
                [PY, str(BENCH / "list_memory.py"), "--dir", str(tmp / "mem"), "--reps", str(reps)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            table["memory"] = json.loads(out)
        if "entries" in sections or "start" in sections:
            table["store"] = store_section(tmp, reps, args.todod_arg)
        if "bulk" in sections:
            lines = 100_000 if args.quick else 1_000_000
            out = subprocess.run(
                [PY, str(BENCH / "import_export.py"), "--lines", str(lines), "--reps", str(reps), "--json"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            table["bulk"] = json.loads(out)
        if "postgres" in sections:
            from bench import pg_throughput
            from tests.pg import find_bindir

            if find_bindir() is not None or args.only:
                table["postgres"] = pg_throughput.measure(reps, 1500 if args.quick else 6000)
            else:
                print("postgres section skipped: no PostgreSQL binaries (install Debian's postgresql)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table["seconds"] = round(time.monotonic() - started, 1)
    print_table(table)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(table, indent=2) + "\n")
    print(f"\nwritten to {args.json} ({table['seconds']} s)")


def load_section(
    tmp: Path, reps: int, adds: int, sequential: int, todod_args: list[str], baseline: Path | None = None
) -> dict[str, Any]:
    """The throughput and latency rows; with ``baseline``, that build's todod too (``base_*``), interleaved."""
    kinds = ["plain", "durable", "ceiling_1000", "todod_1000", "todod_1", "inline_1000", "inline_1"]
    if baseline is not None:
        kinds += ["base_1000", "base_1"]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    seq: dict[str, list[float]] = {"durable": [], "todod": [], "inline": [], "base": []}
    for rep in range(reps):
        order = kinds[rep % len(kinds) :] + kinds[: rep % len(kinds)]
        for kind in order:
            work = tmp / f"{kind}-{rep}"
            server_kind = kind.split("_")[0]
            if server_kind == "inline":
                server = Server("todod", work, extra=[*todod_args, "--commit-in-loop"])
            elif server_kind == "base":
                assert baseline is not None
                server = Server("todod", work, extra=todod_args, src=baseline)
            else:
                server = Server(server_kind, work, extra=todod_args if server_kind == "todod" else ())
            try:
                lists = 1 if kind.endswith("_1") else LISTS
                # Warm up: every list written once, so loading is not in the figure.
                run_load(server, CONNECTIONS, warm_up_requests(lists), lists)
                if kind in ("durable", "todod_1000", "inline_1000", "base_1000"):
                    # Before the throughput run, whose WAL the checkpointer may still be copying.
                    seq[kind.split("_")[0]].append(run_load(server, 1, sequential, LISTS, processes=1)["p50"])
                runs[kind].append(run_load(server, CONNECTIONS, adds, lists))
            finally:
                server.stop()
                shutil.rmtree(work, ignore_errors=True)
    out: dict[str, Any] = {}
    for kind in kinds:
        rs = runs[kind]
        out[kind] = {
            "per_second": median([r["per_second"] for r in rs]),
            "all_per_second": [round(r["per_second"]) for r in rs],
            "server_cpu": median([r["server_cpu"] for r in rs]),
            "generator_cpu": median([r["generator_cpu"] for r in rs]),
        }
    durable = out["durable"]["per_second"]

    def rate_ratio(kind: str, base: str) -> float:
        """The median, over the repetitions, of ``kind``'s adds a second over ``base``'s in the same repetition."""
        return median([k["per_second"] / b["per_second"] for k, b in zip(runs[kind], runs[base], strict=True)])

    def p50_ratio(kind: str, base: str) -> float:
        return median([k / b for k, b in zip(seq[kind], seq[base], strict=True)])

    out["ratio_1000"] = rate_ratio("todod_1000", "durable")
    out["ratio_1"] = rate_ratio("todod_1", "durable")
    out["ceiling_1000_ratio"] = rate_ratio("ceiling_1000", "durable")
    out["todod_over_ceiling_1000"] = rate_ratio("todod_1000", "ceiling_1000")
    out["durable_over_plain"] = durable / out["plain"]["per_second"]
    out["sequential_p50"] = {k: median(v) for k, v in seq.items() if v}  # "base" only with a baseline
    out["sequential_ratio"] = p50_ratio("todod", "durable")
    out["inline_ratio_1000"] = rate_ratio("inline_1000", "durable")
    out["inline_ratio_1"] = rate_ratio("inline_1", "durable")
    out["inline_sequential_ratio"] = p50_ratio("inline", "durable")
    if baseline is not None:
        for lists in ("1000", "1"):
            out[f"base_ratio_{lists}"] = rate_ratio(f"base_{lists}", "durable")
            out[f"over_base_{lists}"] = rate_ratio(f"todod_{lists}", f"base_{lists}")
        out["base_sequential_ratio"] = p50_ratio("base", "durable")
        out["sequential_over_base"] = p50_ratio("todod", "base")
    return out


def store_section(tmp: Path, reps: int, todod_args: list[str]) -> dict[str, Any]:
    full = tmp / "full"
    empty = tmp / "empty"
    t0 = time.monotonic()
    build_store(full, STORE_LISTS, STORE_ENTRIES)
    build_store(empty, 0, 0)
    built = time.monotonic() - t0
    starts: dict[str, list[float]] = {"empty": [], "full": []}
    cold: list[float] = []
    warm: list[float] = []
    baseline: list[float] = []
    for rep in range(reps):
        for which in ("empty", "full") if rep % 2 == 0 else ("full", "empty"):
            server = Server(
                "todod", tmp / f"start-{which}-{rep}", data_dir=full if which == "full" else empty, extra=todod_args
            )
            try:
                starts[which].append(server.ready - server.started)
                if which == "full":
                    cold.append(timed_entries(server.socket))
                    warm.append(median([timed_entries(server.socket) for _ in range(7)]))
            finally:
                server.stop()
        baseline.append(entries_in_process(full / "todod.sqlite3", 7))
    return {
        "built_seconds": round(built, 1),
        "start_empty": median(starts["empty"]),
        "start_full": median(starts["full"]),
        "start_ratio": median([f / e for f, e in zip(starts["full"], starts["empty"], strict=True)]),
        "entries_socket_p50": median(warm),
        "entries_in_process_p50": median(baseline),
        "entries_ratio": median([w / b for w, b in zip(warm, baseline, strict=True)]),
        "cold": median(cold),
        "cold_over_warm": median([c / w for c, w in zip(cold, warm, strict=True)]),
    }


def print_table(t: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str, str]] = []

    def verdict(value: float, target: float, at_least: bool) -> str:
        ok = value >= target if at_least else value <= target
        return f"{'met' if ok else 'NOT MET'} ({'>=' if at_least else '<='} {target})"

    if "load" in t:
        ld = t["load"]
        for kind, label in (
            ("plain", "plain echo, 64 conns"),
            ("durable", "durable echo, 64 conns"),
            ("ceiling_1000", "design ceiling, 64 conns, 1,000 lists"),
            ("todod_1000", "todod, 64 conns, 1,000 lists"),
            ("todod_1", "todod, 64 conns, one list"),
            ("inline_1000", "todod --commit-in-loop, 1,000 lists"),
            ("inline_1", "todod --commit-in-loop, one list"),
            ("base_1000", "baseline build, 64 conns, 1,000 lists"),
            ("base_1", "baseline build, 64 conns, one list"),
        ):
            if kind not in ld:
                continue
            r = ld[kind]
            rows.append(
                (
                    label,
                    f"{r['per_second']:,.0f}/s",
                    f"server {r['server_cpu']:.2f} cores, generator {r['generator_cpu']:.2f}",
                    "",
                )
            )
        rows.append(("durable echo / plain echo", f"{ld['durable_over_plain']:.2f}x", "scale", ""))
        rows.append(
            ("design ceiling 1,000 lists / durable echo", f"{ld['ceiling_1000_ratio']:.2f}x", "list tasks only", "")
        )
        rows.append(
            ("todod 1,000 lists / durable echo", f"{ld['ratio_1000']:.2f}x", "", verdict(ld["ratio_1000"], 0.7, True))
        )
        rows.append(("todod 1,000 lists / design ceiling", f"{ld['todod_over_ceiling_1000']:.2f}x", "", ""))
        rows.append(("todod one list / durable echo", f"{ld['ratio_1']:.2f}x", "", verdict(ld["ratio_1"], 0.7, True)))
        sp = ld["sequential_p50"]
        rows.append(
            (
                "sequential add p50 / durable echo",
                f"{ld['sequential_ratio']:.2f}x",
                f"todod {sp['todod'] * 1e6:.0f} us, echo {sp['durable'] * 1e6:.0f} us",
                verdict(ld["sequential_ratio"], 1.3, False),
            )
        )
        rows.append(("  --commit-in-loop: 1,000 lists / durable echo", f"{ld['inline_ratio_1000']:.2f}x", "", "lever"))
        rows.append(("  --commit-in-loop: one list / durable echo", f"{ld['inline_ratio_1']:.2f}x", "", "lever"))
        rows.append(
            (
                "  --commit-in-loop: sequential p50 / durable echo",
                f"{ld['inline_sequential_ratio']:.2f}x",
                f"todod {sp['inline'] * 1e6:.0f} us",
                "lever",
            )
        )
        if "base_ratio_1000" in ld:
            for label, key in (
                ("  baseline build: 1,000 lists / durable echo", "base_ratio_1000"),
                ("  baseline build: one list / durable echo", "base_ratio_1"),
                ("  baseline build: sequential p50 / durable echo", "base_sequential_ratio"),
                ("  this build / baseline build: 1,000 lists", "over_base_1000"),
                ("  this build / baseline build: one list", "over_base_1"),
                ("  this build / baseline build: sequential p50", "sequential_over_base"),
            ):
                rows.append((label, f"{ld[key]:.2f}x", "", "compare"))
    if "memory" in t:
        m = t["memory"]
        rows.append(
            (
                "memory per list server / bare task",
                f"{m['ratio']:.2f}x",
                f"{m['server_bytes']:,.0f} B vs {m['task_bytes']:,.0f} B",
                verdict(m["ratio"], 1.3, False),
            )
        )
    if "store" in t:
        s = t["store"]
        rows.append(
            (
                "entries 10k over socket / in-process",
                f"{s['entries_ratio']:.2f}x",
                f"{s['entries_socket_p50'] * 1e3:.1f} ms vs {s['entries_in_process_p50'] * 1e3:.1f} ms",
                verdict(s["entries_ratio"], 2.0, False),
            )
        )
        rows.append(
            (
                "start, 1M entries / empty store",
                f"{s['start_ratio']:.2f}x",
                f"{s['start_full'] * 1e3:.0f} ms vs {s['start_empty'] * 1e3:.0f} ms",
                verdict(s["start_ratio"], 1.5, False),
            )
        )
        rows.append(
            ("first entries, cold / warm", f"{s['cold_over_warm']:.2f}x", f"cold {s['cold'] * 1e3:.1f} ms", "reported")
        )
    if "bulk" in t:
        b = t["bulk"]
        rate, rss = b["per_second"], b["daemon_rss_kib"]
        rows.append(
            (
                f"todo import, {b['lines']:,} lines",
                f"{rate['todo']:,}/s",
                f"raw executemany {rate['raw']:,}/s ({b['import_over_raw']:.2f}x)",
                f"{'met' if rate['todo'] >= 100_000 else 'NOT MET'} (>= 100,000/s)",
            )
        )
        rows.append(
            (
                "  the same rows into todod's schema, raw",
                f"{rate['schema']:,}/s",
                f"import {b['import_over_schema']:.2f}x of it",
                "ceiling",
            )
        )
        rows.append(
            ("todo export --format csv", f"{rate['export']:,}/s", f"{b['export_over_raw']:.2f}x raw", "reported")
        )
        growth = zip(rss["peak_imports"], rss["before_imports"], strict=True)
        peaks = ", ".join(f"{(p - b) / 1024:.0f}" for p, b in growth)
        rows.append(
            (
                "daemon RSS growth during the import",
                f"{peaks} MiB",
                f"a tenth as many lines: peak {rss['peak_small_import'] // 1024} MiB, idle {rss['idle'] // 1024}",
                "bounded if close",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)] if rows else []
    print(f"medians of {t['reps']} interleaved repetitions{' (quick)' if t['quick'] else ''}")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if "postgres" in t:
        from bench import pg_throughput

        print()
        pg_throughput.print_table(t["postgres"])


if __name__ == "__main__":
    main()
