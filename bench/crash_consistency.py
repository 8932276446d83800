"""Crash consistency under load: SIGKILL a working todod, restart it, and check every acknowledged change.

Each round starts client processes that add, retitle, redate, mark done and
delete entries of their own (unique titles, several shared lists) on a real
daemon, each one request at a time, writing every request and every
acknowledgement to a journal of its own.  After a random number of
acknowledgements the daemon is killed with SIGKILL; the clients see their
connection drop and stop.  Then the database is read read-only with the
standard library (``PRAGMA integrity_check`` must say ``ok``), the daemon is
started again with no manual step, and what it serves must equal that file.

The check, per entry: the state of the last acknowledged change is there; a
change whose acknowledgement was lost (the kill came in between) left the
entry either before or after that change, never anything else; an add whose
acknowledgement was lost is there at most once; no entry appears that no
client asked for; no title appears twice; an acknowledged add's id is above
every id seen before in its list, and each list's ``next_id`` stays above
every id ever seen, so ids are never reused.

The long run, recorded in docs/RELIABILITY.md::

    .venv/bin/python bench/crash_consistency.py --rounds 20

``tests/test_reliability_crash.py`` runs three rounds of the same harness.
Exits 1 (with the problems listed) if a check fails.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import multiprocessing
import random
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make tests.daemon importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemon import (
    Daemon,
    connect,
    exchange,
    read_store,
    request,
    short_tempdir,
    store_log_out_of_step,
    wait_until,
)

Key = tuple[str, int]  # (list name, entry id)
Wire = dict[str, Any]  # an entry as the protocol shows it

#: A client stops after this many requests in one round even if no kill comes
#: (a guard against a harness bug, never reached in a normal round).
MAX_OPS_PER_ROUND = 100_000
DATES = ("2026-11-22", "2026-11-23", "2026-12-24")


# --- the client processes ----------------------------------------------------------------


def _choose(rng: random.Random, owned: dict[Key, Wire], lists: list[str], tag: str) -> dict[str, Any]:
    """The next request of a client: its kind, fields, and the entry before and after it."""
    if not owned or rng.random() < 0.35:
        name = rng.choice(lists)
        date = rng.choice(DATES)
        wanted = {"date": date, "title": tag, "done": False}
        return {"kind": "add", "list": name, "entry": None, "fields": {"title": tag, "date": date}, "after": wanted}
    (name, entry_id), before = rng.choice(sorted(owned.items()))
    fields: dict[str, Any]
    roll = rng.random()
    if roll < 0.3:
        kind, fields = "title", {"title": tag}
    elif roll < 0.6:
        kind, fields = "done", {"done": not before["done"]}
    elif roll < 0.75:
        kind, fields = "date", {"date": rng.choice([d for d in DATES if d != before["date"]])}
    else:
        kind, fields = "delete", {}
    after: Wire | None = None if kind == "delete" else {**before, **fields, "version": before["version"] + 1}
    return {"kind": kind, "list": name, "entry": entry_id, "fields": fields, "before": before, "after": after}


def run_client(
    socket_path: str,
    client: int,
    round_no: int,
    owned_items: list[tuple[Key, Wire]],
    journal: str,
    acks: Any,
    seed: int,
    lists: list[str],
) -> None:
    """One client process: requests one at a time until the daemon goes away.

    Writes one journal line before each request (``sent``) and one after its
    response (``ack`` with the result, or ``error`` with the code); when the
    connection drops, a final ``lost`` line.  Never raises for a dead daemon.
    """
    rng = random.Random(seed)
    owned = {(key[0], key[1]): value for key, value in owned_items}
    with open(journal, "w") as out:

        def note(record: dict[str, Any]) -> None:
            out.write(json.dumps(record) + "\n")
            out.flush()

        n = 0
        try:
            with connect(socket_path, timeout=30.0) as sock:
                while n < MAX_OPS_PER_ROUND:
                    n += 1
                    op = _choose(rng, owned, lists, f"c{client}r{round_no}n{n}")
                    note({"n": n, "sent": op})
                    if op["kind"] == "add":
                        response = exchange(sock, "add", list=op["list"], **op["fields"])
                    elif op["kind"] == "delete":
                        response = exchange(sock, "delete", list=op["list"], entry=op["entry"])
                    else:
                        response = exchange(sock, "update", list=op["list"], entry=op["entry"], **op["fields"])
                    if not response.get("ok"):
                        note({"n": n, "error": response.get("error", {}).get("code")})
                        return  # the entry's state is now in doubt: stop for this round
                    result = response["result"]
                    note({"n": n, "ack": result})
                    with acks.get_lock():
                        acks.value += 1
                    key = (op["list"], result["id"])
                    if op["kind"] == "delete":
                        owned.pop(key, None)
                    else:
                        owned[key] = result
        except (OSError, ConnectionError, ValueError) as exc:
            note({"n": n, "lost": f"{type(exc).__name__}: {exc}"})


# --- the check -----------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the clients were told, across rounds: the expected durable state."""

    #: Every entry ever acknowledged: its expected state, None once deleted.
    known: dict[Key, Wire | None] = field(default_factory=dict)
    owner: dict[Key, int] = field(default_factory=dict)
    #: The highest id ever seen per list (acknowledged or found on disk).
    max_id: dict[str, int] = field(default_factory=dict)
    stats: collections.Counter[str] = field(default_factory=collections.Counter)

    def owned_by(self, client: int) -> list[tuple[Key, Wire]]:
        return [(k, v) for k, v in sorted(self.known.items()) if v is not None and self.owner[k] == client]


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Merge a journal's lines into one record per request, in order."""
    records: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if "sent" in item:
            records[item["n"]] = dict(item["sent"])
        elif item["n"] in records:
            records[item["n"]].update({k: v for k, v in item.items() if k != "n"})
    return [records[n] for n in sorted(records)]


def check_round(
    ledger: Ledger,
    journals: Mapping[int, list[dict[str, Any]]],
    entries: Mapping[Key, Wire],
    next_ids: Mapping[str, int],
) -> list[str]:
    """Check one round's journals against what is on disk; adopt the outcome of lost acks.

    Args:
        ledger: the expected state before the round; updated in place.
        journals: each client's merged journal records for this round.
        entries, next_ids: what the database holds after the kill.

    Returns:
        Every violation found, one line each (empty when the round is consistent).
    """
    problems: list[str] = []
    start_max = dict(ledger.max_id)
    in_doubt: dict[Key, tuple[Wire | None, Wire | None]] = {}
    doubtful_adds: dict[str, tuple[int, dict[str, Any]]] = {}
    acked_ids: collections.Counter[Key] = collections.Counter()
    for client, records in journals.items():
        for op in records:
            kind, name = op["kind"], op["list"]
            if "ack" in op:
                result = op["ack"]
                key = (name, result["id"])
                ledger.stats[f"acked_{kind}"] += 1
                if kind == "add":
                    acked_ids[key] += 1
                    if result["id"] <= start_max.get(name, 0):
                        problems.append(f"{key}: add acknowledged with a reused id (max seen {start_max[name]})")
                    if {k: result[k] for k in ("date", "title", "done")} != op["after"]:
                        problems.append(f"{key}: add acknowledged as {result}, asked {op['after']}")
                    ledger.owner[key] = client
                    ledger.known[key] = result
                elif kind == "delete":
                    if result != op["before"]:
                        problems.append(f"{key}: delete acknowledged as {result}, the entry was {op['before']}")
                    ledger.known[key] = None
                else:
                    if result != op["after"]:
                        problems.append(f"{key}: {kind} acknowledged as {result}, expected {op['after']}")
                    ledger.known[key] = result
            elif "error" in op and op["error"] != "timeout":
                # A refused request (any code but timeout) applied nothing.
                ledger.stats[f"refused_{op['error']}"] += 1
            elif kind == "add":  # the acknowledgement was lost (or timed out)
                ledger.stats["in_doubt_add"] += 1
                doubtful_adds[op["fields"]["title"]] = (client, op)
            else:
                ledger.stats[f"in_doubt_{kind}"] += 1
                in_doubt[(name, op["entry"])] = (op["before"], op["after"])
    problems += [f"{key}: id acknowledged {n} times" for key, n in acked_ids.items() if n > 1]

    for key, expected in ledger.known.items():
        actual = entries.get(key)
        if key in in_doubt:
            before, after = in_doubt[key]
            if actual == before:
                ledger.stats["in_doubt_not_applied"] += 1
            elif actual == after:
                ledger.stats["in_doubt_applied"] += 1
                ledger.known[key] = after
            else:
                problems.append(f"{key}: change in doubt left {actual}; must be {before} or {after}")
        elif actual != expected:
            problems.append(f"{key}: expected {expected} after the last acknowledgement, found {actual}")

    for key in sorted(set(entries) - set(ledger.known)):
        actual = entries[key]
        claimed = doubtful_adds.pop(actual["title"], None)
        if claimed is None:
            problems.append(f"{key}: {actual} was never requested (or is a duplicate)")
            continue
        client, op = claimed
        if key[0] != op["list"] or {k: actual[k] for k in ("date", "title", "done")} != op["after"]:
            problems.append(f"{key}: add in doubt stored as {actual}, asked {op['list']!r} {op['after']}")
        if key[1] <= start_max.get(key[0], 0):
            problems.append(f"{key}: add in doubt stored with a reused id (max seen {start_max[key[0]]})")
        ledger.stats["in_doubt_applied"] += 1
        ledger.known[key] = actual
        ledger.owner[key] = client
    ledger.stats["in_doubt_not_applied"] += len(doubtful_adds)

    titles = collections.Counter((name, e["title"]) for (name, _), e in entries.items())
    problems += [f"{name!r}: title {title!r} appears {n} times" for (name, title), n in titles.items() if n > 1]
    for key in list(entries) + [k for k in ledger.known]:
        ledger.max_id[key[0]] = max(ledger.max_id.get(key[0], 0), key[1])
    for name, highest in ledger.max_id.items():
        if next_ids.get(name, 0) <= highest:
            problems.append(f"{name!r}: next_id {next_ids.get(name)} would reuse id {highest} or lower")
    return problems


# --- the rounds ------------------------------------------------------------------------------


@dataclass
class Report:
    seed: int = 0
    rounds: int = 0
    kills: int = 0
    seconds: float = 0.0
    entries_at_end: int = 0
    stats: collections.Counter[str] = field(default_factory=collections.Counter)

    def summary(self) -> str:
        acked = sum(v for k, v in self.stats.items() if k.startswith("acked_"))
        lines = [
            f"{self.rounds} rounds, {self.kills} SIGKILLs, {acked} acknowledged changes checked, "
            f"{self.entries_at_end} entries at the end, {self.seconds:.1f} s (seed {self.seed})",
            *(f"  {k}: {v}" for k, v in sorted(self.stats.items())),
        ]
        return "\n".join(lines)


def run_rounds(
    rounds: int,
    *,
    clients: int = 4,
    lists: int = 3,
    kill_after: tuple[int, int] = (0, 300),
    seed: int | None = None,
    root: Path | None = None,
    log: Any = None,
    store_uri: str | None = None,
) -> Report:
    """Run ``rounds`` kill-and-restart rounds on a fresh daemon and check each one.

    Args:
        clients: client processes per round.
        lists: shared lists the clients write to.
        kill_after: the kill comes after a number of acknowledgements drawn
            from this range (0: while the clients are still connecting).
        seed: for the kill points and the clients' choices (printed on failure).
        store_uri: a PostgreSQL database for the daemon (``--store``); None: SQLite.

    Raises:
        AssertionError: a check failed; the message lists every problem.
    """
    seed = random.randrange(1 << 32) if seed is None else seed
    rng = random.Random(seed)
    own_root = root is None
    root = short_tempdir() if root is None else root
    daemon = Daemon(root, env=None if store_uri is None else {"TODOD_STORE": store_uri})
    ledger = Ledger()
    report = Report(seed=seed)
    names = [f"crash-{i}" for i in range(lists - 1)] + ["crash ✓ ünïcode"]
    ctx = multiprocessing.get_context("spawn")
    started = time.monotonic()
    try:
        daemon.start()
        for round_no in range(1, rounds + 1):
            acks = ctx.Value("q", 0)
            target = rng.randint(*kill_after)
            journals = {c: root / f"round{round_no}-client{c}.jsonl" for c in range(clients)}
            procs = [
                ctx.Process(
                    target=run_client,
                    args=(
                        str(daemon.socket),
                        c,
                        round_no,
                        ledger.owned_by(c),
                        str(journals[c]),
                        acks,
                        rng.randrange(1 << 32),
                        names,
                    ),
                    daemon=True,
                )
                for c in range(clients)
            ]
            for proc in procs:
                proc.start()
            wait_until(functools.partial(_kill_point, acks, target, procs), 60, f"{target} acks in round {round_no}")
            assert daemon.proc is not None
            pid = daemon.proc.pid
            daemon.kill()
            report.kills += 1
            for proc in procs:
                proc.join(60)
                assert proc.exitcode == 0, f"client {proc.name} ended with {proc.exitcode}"
            verdict, next_ids, entries = read_store(daemon)
            problems = [] if verdict == "ok" else [f"integrity_check after the kill: {verdict}"]
            problems += store_log_out_of_step(daemon)
            problems += check_round(ledger, {c: read_journal(p) for c, p in journals.items()}, entries, next_ids)
            daemon.start()  # the stale socket and the lock of the killed daemon need no manual step
            served = {
                (item["name"], e["id"]): e
                for item in request(daemon.socket, "lists")
                for e in request(daemon.socket, "entries", list=item["name"])
            }
            if served != entries:
                problems.append(f"round {round_no}: the restarted daemon serves other entries than the file holds")
            if problems:
                raise AssertionError(
                    f"round {round_no} (seed {seed}, killed pid {pid} after {acks.value} acks):\n"
                    + "\n".join(problems[:50])
                )
            report.rounds += 1
            if log is not None:
                log(f"round {round_no}: killed after {acks.value} acks; {len(entries)} entries ok")
        assert daemon.stop() == 0, f"todod did not stop cleanly:\n{daemon.log()}"
        verdict, _next_ids, entries = read_store(daemon)
        assert verdict == "ok", verdict
        expected = {k: v for k, v in ledger.known.items() if v is not None}
        assert entries == expected, "the final clean stop changed the entries"
        report.entries_at_end = len(entries)
    finally:
        daemon.cleanup()
        if own_root:
            shutil.rmtree(root, ignore_errors=True)
    report.seconds = time.monotonic() - started
    report.stats = ledger.stats
    return report


def _kill_point(acks: Any, target: int, procs: list[Any]) -> bool:
    return bool(acks.value >= target or not any(p.is_alive() for p in procs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--lists", type=int, default=4)
    parser.add_argument(
        "--kill-after",
        type=int,
        nargs=2,
        default=(0, 2000),
        metavar=("MIN", "MAX"),
        help="kill after a random number of acknowledgements in this range",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--store", help="a PostgreSQL URI for the daemon (default: SQLite)")
    args = parser.parse_args(argv)
    try:
        report = run_rounds(
            args.rounds,
            clients=args.clients,
            lists=args.lists,
            kill_after=tuple(args.kill_after),
            seed=args.seed,
            log=lambda text: print(text, flush=True),
            store_uri=args.store,
        )
    except AssertionError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
