"""Several todod daemons over one PostgreSQL database: each guarantee of issue 15, with two and three daemons.

Every test starts real ``todod`` processes, each on its own socket, all with
the same ``--store`` URI (a fresh database of the session's cluster), and
drives them over their sockets as clients would.
"""

from __future__ import annotations

import collections
import datetime
import functools
import itertools
import json
import random
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
import pytest
import trio

from tests.daemon import Daemon, LineReader, connect, exchange, run_cli, running_daemon, wait_until
from todod._core import open_core
from todod.protocol import Unavailable, encode_request
from todod.store import StoreError, StoreFaults

DATE = "2026-12-01"


@pytest.fixture(params=[2, 3], ids=["2-daemons", "3-daemons"])
def daemons(request: pytest.FixtureRequest, pg_uri: str) -> Iterator[list[Daemon]]:
    """Two, then three, daemons sharing one fresh PostgreSQL database."""
    with started(request.param, pg_uri) as group:
        yield group


@contextmanager
def started(count: int, uri: str) -> Iterator[list[Daemon]]:
    with ExitStack() as stack:
        yield [stack.enter_context(running_daemon(env={"TODOD_STORE": uri})) for _ in range(count)]


def call(daemon: Daemon, op: str, **fields: Any) -> dict[str, Any]:
    """One request on a new connection; the whole response (``ok`` and ``result`` or ``error``)."""
    with connect(daemon.socket, timeout=30.0) as sock:
        return exchange(sock, op, **fields)


def ok(daemon: Daemon, op: str, **fields: Any) -> Any:
    response = call(daemon, op, **fields)
    assert response["ok"] is True, response
    return response["result"]


def entries(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = ok(daemon, "entries", list=name)
    return result


def pipelined(daemon: Daemon, requests: list[bytes]) -> list[dict[str, Any]]:
    """Send every request on one connection before reading any answer; the answers in order."""
    with connect(daemon.socket, timeout=60.0) as sock:
        sock.sendall(b"".join(requests))
        reader = LineReader(sock)
        return [reader.response() for _ in requests]


def in_threads(targets: list[Any]) -> None:
    threads = [threading.Thread(target=t) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive(), "a client never finished"


def test_concurrent_adds_to_one_list_through_every_daemon_lose_nothing_and_share_no_id(
    daemons: list[Daemon],
) -> None:
    """Clients of every daemon adding to one list at once each get a distinct id, and every daemon lists them all."""
    acked: dict[str, int] = {}
    lock = threading.Lock()

    def client(daemon: Daemon, tag: str) -> None:
        titles = [f"{tag}-{i}" for i in range(40)]
        answers = pipelined(daemon, [encode_request("add", list="shared", title=t, date=DATE) for t in titles])
        with lock:
            for title, answer in zip(titles, answers, strict=True):
                assert answer["ok"] is True, answer
                acked[title] = answer["result"]["id"]

    in_threads([functools.partial(client, d, f"d{n}c{c}") for n, d in enumerate(daemons) for c in range(3)])
    total = len(daemons) * 3 * 40
    assert sorted(acked.values()) == list(range(1, total + 1)), "an id was handed out twice or skipped"
    for daemon in daemons:
        seen = {e["title"]: e["id"] for e in entries(daemon, "shared")}
        assert seen == acked, f"daemon {daemon.socket} does not list every acknowledged add"


def test_concurrent_updates_of_one_entry_through_every_daemon_lose_no_update(daemons: list[Daemon]) -> None:
    """Each client of each daemon tags one shared entry with its own tag at once: the entry ends with every tag."""
    ok(daemons[0], "add", list="hot", title="shared entry", date=DATE)
    tags = [f"t{n}x{c}" for n in range(len(daemons)) for c in range(4)]

    def client(daemon: Daemon, tag: str) -> None:
        answer = call(daemon, "update", list="hot", entry=1, tag=[tag])
        assert answer["ok"] is True, answer

    in_threads([functools.partial(client, daemons[i % len(daemons)], t) for i, t in enumerate(tags)])
    for daemon in daemons:
        (entry,) = entries(daemon, "hot")
        assert sorted(entry["tags"]) == sorted(tags), "an update was lost"
        assert entry["version"] == 1 + len(tags)


def test_a_read_on_any_daemon_sees_every_change_acknowledged_by_another(daemons: list[Daemon]) -> None:
    """A change one daemon acknowledged is seen by a read then sent to any other: no daemon serves a stale list."""
    pairs = list(itertools.permutations(daemons, 2))
    for round_, (writer, reader) in enumerate(pairs * 4):
        title = f"round {round_}"
        added = ok(writer, "add", list="seen", title=title, date=DATE)
        assert entries(reader, "seen")[-1] == added, "a read missed an acknowledged add"
        updated = ok(reader, "update", list="seen", entry=added["id"], done=True)
        assert next(e for e in entries(writer, "seen") if e["id"] == added["id"]) == updated
        ok(writer, "delete", list="seen", entry=added["id"])
        assert all(e["id"] != added["id"] for e in entries(reader, "seen")), "a read saw a deleted entry"
        found = ok(reader, "find", lists=["seen"], search=title)["entries"]
        assert found == [], "find saw a deleted entry"


def test_if_version_and_undo_hold_across_daemons(daemons: list[Daemon]) -> None:
    """A conditional update made against a version another daemon replaced is refused; undo and redo on any daemon
    revert the list's last change, whoever made it."""
    first, second, last = daemons[0], daemons[1], daemons[-1]
    ok(first, "add", list="v", title="draft", date=DATE)
    assert ok(second, "update", list="v", entry=1, title="second", if_version=1)["version"] == 2
    refused = call(last if last is not second else first, "update", list="v", entry=1, title="late", if_version=1)
    assert refused["ok"] is False and refused["error"]["code"] == "conflict", refused
    assert entries(first, "v")[0]["title"] == "second"
    # The last change was made through `second`; undoing it through `first` reverts it.
    undone = ok(first, "undo", list="v")
    assert undone[0]["title"] == "draft"
    assert entries(last, "v")[0]["title"] == "draft"
    redone = ok(last, "redo", list="v")
    assert redone[0]["title"] == "second"
    assert entries(second, "v")[0]["title"] == "second"
    history = ok(second, "history", list="v")["events"]
    assert [e["op"] for e in history] == ["add", "update", "undo", "redo"]
    stale = call(first, "undo", list="v", if_seq=2)
    assert stale["ok"] is False and stale["error"]["code"] == "conflict", stale


class Watcher:
    """A raw watch subscription on its own connection."""

    def __init__(self, daemon: Daemon, **fields: Any) -> None:
        self.sock = connect(daemon.socket, timeout=30.0)
        self.sock.sendall(encode_request("watch", request_id="w", **fields))
        self.reader = LineReader(self.sock)
        first = json.loads(self.reader.line())
        assert first["ok"] is True, first
        self.start = first["result"]

    def events(self, n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            line = json.loads(self.reader.line())
            assert "event" in line, line
            out.append(line["event"])
        return out

    def close(self) -> None:
        self.sock.close()


def test_watch_sees_every_daemons_changes_in_position_order_and_since_resumes_on_another(
    daemons: list[Daemon],
) -> None:
    """A watch on one daemon gets the changes made through every daemon, each once, at consecutive positions;
    ``since`` on another daemon replays the rest, in the same order."""
    watcher = Watcher(daemons[0])
    titles: set[str] = set()

    def client(daemon: Daemon, tag: str) -> None:
        mine = [f"{tag}-{i}" for i in range(30)]
        requests = [encode_request("add", list=f"w{i % 3}", title=t, date=DATE) for i, t in enumerate(mine)]
        answers = pipelined(daemon, requests)
        assert all(a["ok"] for a in answers), answers

    for n in range(len(daemons)):
        for c in range(2):
            titles.update(f"d{n}c{c}-{i}" for i in range(30))
    in_threads([functools.partial(client, d, f"d{n}c{c}") for n, d in enumerate(daemons) for c in range(2)])
    events = watcher.events(len(titles))
    positions = [e["position"] for e in events]
    start = watcher.start["position"]
    expected = list(range(start + 1, start + 1 + len(titles)))
    assert positions == expected, "a position was skipped, repeated or out of order"
    assert {e["after"]["title"] for e in events} == titles
    watcher.close()
    middle = positions[len(positions) // 2]
    resumed = Watcher(daemons[-1], since=middle)
    replayed = resumed.events(len(positions) - positions.index(middle) - 1)
    assert replayed == [e for e in events if e["position"] > middle]
    ok(daemons[1], "add", list="w0", title="live", date=DATE)
    (live,) = resumed.events(1)
    assert live["position"] == positions[-1] + 1 and live["after"]["title"] == "live"
    resumed.close()


def test_a_daemon_killed_under_load_loses_nothing_acknowledged_and_the_others_serve_its_lists(pg_uri: str) -> None:
    """Clients writing through three daemons; one is SIGKILLed mid-load: every add it acknowledged is kept, and its
    clients go on through the others, on the same lists, with no manual step."""
    with started(3, pg_uri) as group:
        victim = group[0]
        acked: list[tuple[str, str, int]] = []
        retried: list[str] = []  # adds sent again after their daemon died: the first may have been stored
        lock = threading.Lock()
        killed = threading.Event()
        stop_at = 300

        def client(number: int) -> None:
            rng = random.Random(number)
            order = [group[number % 3], *(d for d in group if d is not group[number % 3])]
            for i in range(stop_at):
                name = f"l{rng.randrange(4)}" if rng.random() < 0.7 else f"cold{rng.randrange(100)}"
                title = f"c{number}-{i}"
                for daemon in order:
                    if daemon is victim and killed.is_set():
                        continue
                    try:
                        answer = call(daemon, "add", list=name, title=title, date=DATE)
                    except OSError:
                        # The daemon is gone: connect to another, as a client
                        # should.  The add may have been committed before it
                        # died, unanswered: sent again, it may be stored twice.
                        with lock:
                            retried.append(title)
                        continue
                    if answer["ok"]:
                        with lock:
                            acked.append((name, title, answer["result"]["id"]))
                    break

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(acked) >= 150, 60, "150 acknowledged adds before the kill")
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(30)
        killed.set()
        count_at_kill = len(acked)
        for thread in threads:
            thread.join(180)
            assert not thread.is_alive(), "a client never finished"
        assert len(acked) > count_at_kill, "no add was acknowledged after the kill"
        survivor = group[1]
        stored: dict[tuple[str, int], str] = {}
        for name in {name for name, _t, _i in acked}:
            for entry in entries(survivor, name):
                stored[(name, entry["id"])] = entry["title"]
        for name, title, entry_id in acked:
            assert stored.get((name, entry_id)) == title, f"acknowledged add {title!r} ({name} #{entry_id}) lost"
        copies = collections.Counter(stored.values())
        twice = {title for title, n in copies.items() if n > 1}
        assert twice <= set(retried), f"adds stored twice that no client sent twice: {sorted(twice - set(retried))}"
        assert max(copies.values()) <= 2, "an add sent at most twice was stored more often"
        # The victim's lists keep taking writes through the others.
        for daemon in group[1:]:
            assert ok(daemon, "add", list="l0", title=f"after via {daemon.socket}", date=DATE)["id"] > 0


def test_a_foreign_database_is_refused_and_a_bad_uri_is_a_clear_error(pg_uri: str) -> None:
    """A database holding tables that are not todod's is refused, and so is a store URI of no known kind."""
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    with pytest.raises(AssertionError, match="not todod's"):
        with running_daemon(env={"TODOD_STORE": pg_uri}):
            pass
    with pytest.raises(AssertionError, match="unknown store 'mysql'"):
        with running_daemon(env={"TODOD_STORE": "mysql://localhost/todo"}):
            pass


async def test_a_stale_list_is_patched_from_the_log_not_reloaded(pg_uri: str, tmp_path: Any) -> None:
    """Two cores on one database: the second, finding its cached list stale, replays the first's events onto it
    (adds, an update, a delete) instead of loading the list again, and ends with the same list."""
    day = datetime.date(2026, 12, 1)
    async with (
        open_core(str(tmp_path / "a"), store_uri=pg_uri) as a,
        open_core(str(tmp_path / "b"), store_uri=pg_uri) as b,
    ):
        for title in ("one", "two", "three"):
            await a.add("l", title, day)
        assert [e.title for e in await b.entries("l")] == ["one", "two", "three"]
        loads = b.store.statistics().loads
        await a.add("l", "four", day)
        await a.update("l", 2, title="TWO")
        await a.delete("l", 1)
        added = await b.add("l", "five", day)
        assert added.id == 5, "the id was not taken after the other daemon's add"
        assert await b.entries("l") == await a.entries("l")
        assert [e.title for e in await b.entries("l")] == ["TWO", "three", "four", "five"]
        assert b.store.statistics().loads == loads, "the stale list was loaded whole"
        assert b.registry.events.reloads >= 1


async def test_a_batch_built_on_a_stale_one_is_stale_even_when_the_seqs_meet(pg_uri: str, tmp_path: Any) -> None:
    """Two pipelined updates of one core reach its writer in one group after another core's update moved the list to
    the seq the second was built on: both are refused and applied again, so no core's tag is lost."""
    day = datetime.date(2026, 12, 1)
    faults = StoreFaults()
    async with (
        open_core(str(tmp_path / "a"), store_uri=pg_uri, store_faults=faults) as a,
        open_core(str(tmp_path / "b"), store_uri=pg_uri) as b,
        trio.open_nursery() as nursery,
    ):
        await a.add("hot", "shared", day)  # in a's cache at seq 1
        armed = [True]

        async def pipeline_then_overtake() -> None:
            # a's writer is busy: a's two updates queue as one group, the second built on the first (seq 2).
            nursery.start_soon(functools.partial(a.update, "hot", 1, tag=["x"]))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(functools.partial(a.update, "hot", 1, tag=["y"]))
            await trio.testing.wait_all_tasks_blocked()
            await b.update("hot", 1, tag=["z"])  # the list is at seq 2 in the database

        def meanwhile(_size: int) -> None:
            if armed and armed.pop():
                trio.from_thread.run(pipeline_then_overtake)

        faults.before_commit = meanwhile
        await a.add("other", "trigger", day)
        assert not armed
    async with open_core(str(tmp_path / "c"), store_uri=pg_uri) as c:
        (entry,) = await c.entries("hot")
        assert sorted(entry.tags) == ["x", "y", "z"], "an update was lost"
        assert entry.version == 4


async def test_a_move_whose_list_another_daemon_wrote_first_is_applied_again(pg_uri: str, tmp_path: Any) -> None:
    """Another core adds to the destination between the mover's catch-up and its commit: the move's transaction is
    refused by the seq fence, nothing of it is written, and the round applied again gives the entry the next id."""
    day = datetime.date(2026, 12, 1)
    faults = StoreFaults()
    async with (
        open_core(str(tmp_path / "a"), store_uri=pg_uri, store_faults=faults) as a,
        open_core(str(tmp_path / "b"), store_uri=pg_uri) as b,
    ):
        await a.add("home", "Dentist", day)
        await b.add("work", "Report", day)
        assert len(await a.entries("work")) == 1  # the list is in a's cache, at seq 1
        armed = [True]

        def meanwhile(_size: int) -> None:
            # In a's writer thread, before the move's transaction: b writes the destination first.
            if armed and armed.pop():
                trio.from_thread.run(functools.partial(b.add, "work", "Slides", day))

        faults.before_commit = meanwhile
        result = await a.move("home", 1, "work")
        assert not armed and a.mover.stale_rounds == 1, "the fence did not refuse the stale transaction"
        assert result["to"] == {"list": "work", "id": 3}
        for core in (a, b):
            assert await core.entries("home") == ()
            work = [(e.id, e.title) for e in await core.entries("work")]
            assert work == [(1, "Report"), (2, "Slides"), (3, "Dentist")]
        rebuilt, view = await a.store.rebuild_and_view()
        assert rebuilt == view
        await b.undo("work")
        assert [e.title for e in await a.entries("home")] == ["Dentist"]
        assert [e.title for e in await a.entries("work")] == ["Report", "Slides"]


async def test_an_import_whose_list_another_daemon_wrote_first_is_published_after_it(
    pg_uri: str, tmp_path: Any
) -> None:
    """Another core adds to the list just before an import's publish commits: the publish is refused by the seq
    fence and applied again, so the import takes the ids after that add, is one change, and one undo takes it back."""
    day = datetime.date(2026, 12, 1)
    faults = StoreFaults()
    async with (
        open_core(str(tmp_path / "a"), store_uri=pg_uri, store_faults=faults) as a,
        open_core(str(tmp_path / "b"), store_uri=pg_uri) as b,
    ):
        await a.add("big", "before", day)
        import_id = await a.imports.begin("big")
        await a.imports.rows(import_id, 1, [[i, DATE, f"row {i}", i % 2 == 0, ["bulk"]] for i in range(1, 301)])
        assert len(await b.entries("big")) == 1, "another daemon saw part of an import"
        armed = [True]

        def meanwhile(_size: int) -> None:
            if armed and armed.pop():
                trio.from_thread.run(functools.partial(b.add, "big", "between", day))

        faults.before_commit = meanwhile
        result = await a.imports.commit(import_id, 300)
        assert not armed and a.mover.stale_rounds == 1, "the fence did not refuse the stale publish"
        assert (result["first"], result["last"]) == (3, 302)
        for core in (a, b):
            titles = [e.title for e in await core.entries("big")]
            assert titles == ["before", "between", *(f"row {i}" for i in range(1, 301))]
        history = await b.history("big")
        assert len({e["change"] for e in history["events"] if e["op"] == "import"}) == 1
        rebuilt, view = await b.store.rebuild_and_view()
        assert rebuilt == view
        await b.undo("big")
        assert [e.title for e in await a.entries("big")] == ["before", "between"]


async def test_a_move_whose_catch_up_fails_is_refused_and_the_mover_goes_on(
    pg_uri: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mover's catch-up read failing (the database away) answers the move unavailable, changes nothing,
    and the next move succeeds."""
    day = datetime.date(2026, 12, 1)
    async with open_core(str(tmp_path / "a"), store_uri=pg_uri) as a:
        await a.add("home", "Dentist", day)

        async def failing(_store: Any, name: str, state: Any) -> Any:
            raise StoreError("could not read the log: the server is away")

        with monkeypatch.context() as patch:
            patch.setattr(type(a.store), "catch_up", failing)
            with pytest.raises(Unavailable, match="the server is away"):
                await a.move("home", 1, "work")
        assert [e.title for e in await a.entries("home")] == ["Dentist"] and await a.entries("work") == ()
        assert (await a.move("home", 1, "work"))["to"] == {"list": "work", "id": 1}


def test_watch_goes_on_after_the_followers_connection_is_killed(pg_uri: str) -> None:
    """The follower's LISTEN connection terminated by the server: it reconnects and the watch misses nothing."""
    with started(2, pg_uri) as (first, second), psycopg.connect(pg_uri, autocommit=True) as admin:
        watcher = Watcher(first)
        ok(second, "add", list="f", title="before", date=DATE)
        assert watcher.events(1)[0]["after"]["title"] == "before"
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'"
        ).fetchone()
        assert killed is not None and killed[0] == 2, "the two followers' connections were not found"
        for title in ("after 1", "after 2"):
            ok(second, "add", list="f", title=title, date=DATE)
        assert [e["after"]["title"] for e in watcher.events(2)] == ["after 1", "after 2"]
        assert "following the change log failed" in first.log()
        watcher.close()


def test_every_connection_cut_by_the_server_the_daemons_reconnect_and_answer(pg_uri: str) -> None:
    """All of the daemons' connections terminated by the server (a restart, a failover): the next adds and reads
    succeed on new connections, and nothing acknowledged is lost."""
    with started(2, pg_uri) as (first, second), psycopg.connect(pg_uri, autocommit=True) as admin:
        ok(first, "add", list="r", title="before", date=DATE)
        assert [e["title"] for e in entries(second, "r")] == ["before"]
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
        assert killed is not None and killed[0] >= 2 * 5, "the daemons' connections were not found"
        ok(second, "add", list="r", title="after", date=DATE)
        ok(first, "add", list="r", title="later", date=DATE)
        for daemon in (first, second):
            assert [e["title"] for e in entries(daemon, "r")] == ["before", "after", "later"]


def test_a_store_uri_is_shown_without_its_password() -> None:
    """``status`` and the logs show a PostgreSQL URI with its password masked, in either place libpq takes one."""
    from todod.store._postgres import redact

    assert (
        redact("postgresql://todo:s3cret@db1,db2/todo?sslmode=require")
        == "postgresql://todo:***@db1,db2/todo?sslmode=require"
    )
    assert (
        redact("postgres:///todo?host=/run/pg&password=s3cret&user=t")
        == "postgres:///todo?host=/run/pg&password=***&user=t"
    )
    assert redact("postgresql://todo@db/todo") == "postgresql://todo@db/todo"


def test_a_move_through_one_daemon_while_another_writes_both_lists_loses_nothing(pg_uri: str) -> None:
    """Moves through one daemon between two lists that another daemon adds to and updates at the same time:
    no write is lost, no id is given twice, and every entry ends in exactly one list."""
    with started(2, pg_uri) as (mover, writer):
        ok(writer, "add", list="a", title="seed", date=DATE)
        for i in range(40):
            ok(mover, "add", list="a" if i % 2 else "b", title=f"m{i}", date=DATE)
        errors: list[dict[str, Any]] = []

        def moves() -> None:
            for _ in range(3):
                for src, dst in (("a", "b"), ("b", "a")):
                    for entry in entries(mover, src):
                        if entry["title"].startswith("m"):
                            answer = call(mover, "move", list=src, entry=entry["id"], to_list=dst)
                            if not answer["ok"] and answer["error"]["code"] != "not_found":
                                errors.append(answer)

        def writes() -> None:
            for i in range(60):
                name = "a" if i % 2 else "b"
                answer = call(writer, "add", list=name, title=f"w{i}", date=DATE)
                if not answer["ok"]:
                    errors.append(answer)
                # An entry of a list the mover holds in every round: each update lands.
                update = call(writer, "update", list="a", entry=1, title=f"seed {i}")
                if not update["ok"]:
                    errors.append(update)

        in_threads([moves, writes])
        assert errors == []
        for daemon in (mover, writer):
            a, b = entries(daemon, "a"), entries(daemon, "b")
            titles = [e["title"] for e in a + b]
            assert sorted(t for t in titles if t.startswith("w")) == sorted(f"w{i}" for i in range(60))
            assert sorted(t for t in titles if t.startswith("m")) == sorted(f"m{i}" for i in range(40))
            assert len(titles) == len(set(titles)) == 101, titles  # in exactly one list, never doubled
            assert len({e["id"] for e in a}) == len(a) and len({e["id"] for e in b}) == len(b)
            assert [t for t in titles if t.startswith("seed")] == ["seed 59"]
        ok(writer, "add", list="a", title="after", date=DATE)
        assert "after" in [e["title"] for e in entries(mover, "a")]


def test_a_move_through_one_daemon_is_undone_through_another(pg_uri: str) -> None:
    """A move made through one daemon, with the lists loaded in another's cache, is seen and undone there."""
    with started(2, pg_uri) as (first, second):
        ok(first, "add", list="home", title="Dentist", date=DATE)
        ok(second, "add", list="work", title="Report", date=DATE)
        assert len(entries(second, "home")) == 1 and len(entries(first, "work")) == 1  # both cached on both
        moved = ok(first, "move", list="home", entry=1, to_list="work")
        assert moved["to"] == {"list": "work", "id": 2}
        assert entries(second, "home") == [] and [e["title"] for e in entries(second, "work")] == ["Report", "Dentist"]
        again = call(second, "move", list="home", entry=1, to_list="work")
        assert again["ok"] is False and again["error"]["code"] == "not_found", again
        ok(second, "undo", list="work")
        assert [e["title"] for e in entries(first, "home")] == ["Dentist"]
        assert [e["title"] for e in entries(first, "work")] == ["Report"]


def test_an_export_through_one_daemon_holds_what_another_wrote(pg_uri: str) -> None:
    """`todo export` through one daemon writes every entry added through another, in id order."""
    with started(2, pg_uri) as (first, second):
        titles = [f"entry {i}" for i in range(300)]
        answers = pipelined(first, [encode_request("add", list="ex", title=t, date=DATE) for t in titles])
        assert all(a["ok"] for a in answers)
        exported = run_cli(["export", "ex", "--format", "jsonl"], second.cli_env())
        assert exported.returncode == 0, exported.stderr
        rows = [json.loads(line) for line in exported.stdout.splitlines()]
        assert [r["id"] for r in rows] == list(range(1, 301))
        assert [r["title"] for r in rows] == titles


def test_find_in_rows_on_postgresql_holds_the_objects_values(daemons: list[Daemon]) -> None:
    """On the PostgreSQL store a ``find`` page of rows gives the values of its objects, in FIND_ROW_COLUMNS."""
    ok(daemons[0], "add", list="rows ☃", title="Crème brûlée", date=DATE, tags=["b", "a"])
    ok(daemons[0], "add", list="rows ☃", title="plain", date=DATE)
    objects = ok(daemons[1], "find", lists=["rows ☃"])["entries"]
    rows = ok(daemons[1], "find", lists=["rows ☃"], form="rows")["entries"]
    columns = ("list", "id", "date", "title", "done", "version", "tags")
    assert len(objects) == 2 and rows == [[e[key] for key in columns] for e in objects]
