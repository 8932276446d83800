"""The socket protocol against a real ``todod`` process: framing, bounds, peers."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import backend_env
from tests.daemon import (
    Daemon,
    connect,
    raw_exchange,
    read_line,
    request,
    running_daemon,
    short_tempdir,
    wait_until,
)
from todod.protocol import MAX_LINE, NotFound, Unavailable, encode_request


@pytest.fixture(scope="module")
def daemon(module_store_uri: str | None) -> Iterator[Daemon]:
    # A short line timeout keeps the half-line test quick.
    with running_daemon(["--line-timeout", "1", "--max-in-flight", "64"], env=backend_env(module_store_uri)) as d:
        yield d


def test_add_and_entries_round_trip(daemon: Daemon) -> None:
    """An add is answered with the new entry and entries returns it, with the echoed id."""
    (added,) = raw_exchange(
        daemon.socket,
        encode_request("add", request_id=7, list="rt", title="Dentist", date="2026-12-19"),
    )
    entry = {"id": 1, "date": "2026-12-19", "title": "Dentist", "done": False, "version": 1, "tags": []}
    assert added == {"id": 7, "ok": True, "result": entry}
    assert request(daemon.socket, "entries", list="rt") == [added["result"]]


def test_garbage_line_gets_error_and_connection_stays_usable(daemon: Daemon) -> None:
    """A line that is not JSON gets bad_request, and the next line on the same connection is served."""
    responses = raw_exchange(daemon.socket, b"\x00\xffgarbage{{\n" + encode_request("hello", request_id=1))
    assert responses[0]["ok"] is False and responses[0]["error"]["code"] == "bad_request"
    assert responses[1]["id"] == 1 and responses[1]["ok"] is True
    assert responses[1]["result"]["protocol"] == 1


def test_invalid_utf8_is_bad_request(daemon: Daemon) -> None:
    """Invalid UTF-8 inside a JSON string is answered with bad_request."""
    (response,) = raw_exchange(daemon.socket, b'{"op":"add","list":"u","title":"\xc3\x28"}\n')
    assert response["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b'{"op":"nope"}', "bad_request"),
        (b"[1,2,3]", "bad_request"),
        (b'{"op":"add","list":"x"}', "bad_request"),
        (b'{"op":"add","list":"x","title":5}', "bad_request"),
        (b'{"op":"delete","list":"x","entry":true}', "bad_request"),
        (b'{"op":"delete","list":"x","entry":99999999999999999999999}', "bad_request"),
        (b'{"op":"add","list":"x","title":"t","extra":1}', "bad_request"),
        (b'{"op":"add","list":"x","title":"t","date":"2026-02-30"}', "invalid"),
        (b'{"op":"add","list":"x","title":"  "}', "invalid"),
        (b'{"op":"add","list":"a/b","title":"t"}', "invalid"),
        (b'{"op":"add","list":"x","title":"a\\u001b[31mred"}', "invalid"),
        (b'{"op":"update","list":"x","entry":1}', "bad_request"),
        (b'{"op":"delete","list":"never-written","entry":1}', "not_found"),
        (b'{"op":"add","list":"x","title":"t","date":NaN}', "bad_request"),
    ],
)
def test_bad_requests_get_documented_codes(daemon: Daemon, line: bytes, code: str) -> None:
    """Each malformed or invalid request is answered with its documented error code."""
    (response,) = raw_exchange(daemon.socket, line + b"\n")
    assert response["ok"] is False
    assert response["error"]["code"] == code, response


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"op":"delete","list":"x","entry":-1}', "field 'entry' must be an integer from 0 to 2^63-1"),
        (
            b'{"op":"delete","list":"x","entry":9223372036854775808}',
            "field 'entry' must be an integer from 0 to 2^63-1",
        ),
        (b'{"op":"hello","id":"' + b"i" * 257 + b'"}', "'id' must be a string of at most 256 characters"),
        (
            b'{"op":"hello","id":9223372036854775808}',
            "'id' must be a string of at most 256 characters, an integer of 64 bits",
        ),
    ],
)
def test_out_of_range_values_are_named_in_the_error(daemon: Daemon, line: bytes, message: str) -> None:
    """An integer out of its range, or an id string that is too long, gets a bad_request that names the bound, not just the type."""  # noqa: E501
    (response,) = raw_exchange(daemon.socket, line + b"\n")
    assert response["error"]["code"] == "bad_request"
    assert response["error"]["message"].startswith(message), response


def test_deep_nesting_is_bad_request(daemon: Daemon) -> None:
    """Deeply nested JSON cannot crash the daemon; it is a bad request."""
    (response,) = raw_exchange(daemon.socket, b"[" * 100_000 + b"]" * 100_000 + b"\n")
    assert response["error"]["code"] == "bad_request"
    assert daemon.request("hello")["protocol"] == 1


def test_line_over_cap_is_too_large_and_closes(daemon: Daemon) -> None:
    """A 2 MiB line is answered with too_large and the connection is closed."""
    with connect(daemon.socket) as sock:
        payload = b'{"op":"hello","pad":"' + b"x" * (2 << 20) + b'"}\n'
        try:
            sock.sendall(payload)
        except BrokenPipeError:
            pass  # the daemon may close before reading it all
        response = json.loads(read_line(sock))
        assert response["error"]["code"] == "too_large"
        assert _closed(sock)
    assert daemon.request("hello")["protocol"] == 1


def _closed(sock: socket.socket) -> bool:
    # Closing with unread input makes the kernel send a reset instead of EOF.
    try:
        return read_line(sock) == b""
    except ConnectionResetError:
        return True


def test_line_just_under_cap_is_parsed(daemon: Daemon) -> None:
    """A line of exactly the cap is read and answered on its merits (here: an unknown field)."""
    head = b'{"op":"hello","pad":"'
    line = head + b"x" * (MAX_LINE - len(head) - 2) + b'"}'
    assert len(line) == MAX_LINE
    (response,) = raw_exchange(daemon.socket, line + b"\n")
    assert response["error"]["code"] == "bad_request"
    assert "pad" in response["error"]["message"]


def test_half_line_times_out(daemon: Daemon) -> None:
    """A connection that stops half-way through a line is answered and closed after the line timeout."""
    with connect(daemon.socket, timeout=10) as sock:
        sock.sendall(b'{"op":"hel')
        response = json.loads(read_line(sock))
        assert response["error"]["code"] == "bad_request"
        assert "timed out" in response["error"]["message"]
        assert read_line(sock) == b""


def test_pipelined_burst_answered_by_id(daemon: Daemon) -> None:
    """64 requests sent at once on one connection are all answered, matched by their ids."""
    burst = b"".join(
        encode_request("add", request_id=f"r{i}", list="pipe", title=f"t{i}", date="2026-01-01") for i in range(64)
    )
    responses = raw_exchange(daemon.socket, burst)
    assert len(responses) == 64
    by_id = {r["id"]: r for r in responses}
    assert set(by_id) == {f"r{i}" for i in range(64)}
    assert all(r["ok"] for r in responses)
    assert {by_id[f"r{i}"]["result"]["title"] for i in range(64)} == {f"t{i}" for i in range(64)}
    assert sorted(r["result"]["id"] for r in responses) == list(range(1, 65))


def test_many_idle_connections_do_not_stall_others(daemon: Daemon) -> None:
    """500 idle connections stay open while another client is served normally."""
    idle = [connect(daemon.socket) for _ in range(500)]
    try:
        for i in range(20):
            assert daemon.request("add", list="busy", title=f"n{i}", date="2026-01-01")["id"] == i + 1
        assert daemon.request("status")["stats"]["connections"] >= 500
    finally:
        for sock in idle:
            sock.close()


def test_client_disconnecting_mid_request_is_harmless(daemon: Daemon) -> None:
    """A client that sends a write and leaves at once does not disturb the daemon; the write is kept."""
    with connect(daemon.socket) as sock:
        sock.sendall(encode_request("add", list="gone", title="left early", date="2026-01-01"))
    with connect(daemon.socket) as sock:  # and one that leaves half-way through a line
        sock.sendall(b'{"op":"add","li')
    # A later request on the same list is ordered after it by the list server.
    entries = daemon.request("entries", list="gone")
    titles = [e["title"] for e in entries]
    assert titles in ([], ["left early"])  # raced: either not yet taken, or kept
    assert daemon.request("hello")["protocol"] == 1


def test_not_found_raises_typed_error(daemon: Daemon) -> None:
    """The client side decodes an error response into its own error class."""
    with pytest.raises(NotFound):
        daemon.request("update", list="nf", entry=41, done=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client under another uid")
def test_peer_of_another_uid_is_refused(daemon: Daemon) -> None:
    """A client running as another uid (nobody) is refused with forbidden, and it is logged."""
    # The socket is 0600 in a 0700 directory: open it to others for this
    # test only, so the peer check itself (SO_PEERCRED) is what refuses.
    opened = [daemon.root, daemon.socket.parent]
    for path in opened:
        os.chmod(path, 0o755)
    os.chmod(daemon.socket, 0o666)
    try:
        code = (
            "import os, socket, sys\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])\n"
            # The refusal comes unasked, right after accept; sending first
            # could meet a connection the daemon has already closed.
            "print(s.recv(4096).decode())\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(daemon.socket)], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    finally:
        os.chmod(daemon.socket, 0o600)
        for path in opened:
            os.chmod(path, 0o700)
    response = json.loads(out)
    assert response["ok"] is False and response["error"]["code"] == "forbidden"
    assert "refused a connection from uid 65534" in daemon.log()


def test_socket_and_data_are_private(daemon: Daemon, module_store_uri: str | None) -> None:
    """The socket is 0600 in a 0700 directory; on SQLite the data directory is 0700 and the database 0600."""
    mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
    assert mode(daemon.socket) == 0o600
    assert mode(daemon.socket.parent) == 0o700
    if module_store_uri is None:  # on PostgreSQL the data is the server's, and no file is made here
        assert mode(daemon.data_dir) == 0o700
        assert mode(daemon.data_dir / "todod.sqlite3") == 0o600
    else:
        assert not daemon.data_dir.exists()


def test_over_connection_cap_gets_error() -> None:
    """Past the connection cap a new client gets an unavailable error line instead of hanging."""
    with running_daemon(["--max-connections", "4"]) as d:
        held = [connect(d.socket) for _ in range(4)]
        try:
            # Make sure the daemon has accepted the held ones before the extra one.
            for sock in held:
                sock.sendall(encode_request("hello"))
                assert json.loads(read_line(sock))["ok"] is True
            with connect(d.socket) as extra:
                response = json.loads(read_line(extra))
            assert response["error"]["code"] == "unavailable"
        finally:
            for sock in held:
                sock.close()


def test_second_daemon_on_same_socket_is_refused() -> None:
    """A second todod on a socket a daemon answers on exits 1 with a clear message."""
    with running_daemon() as d:
        other = subprocess.run(
            [*d.argv[:3], "--data-dir", str(d.root / "other")], capture_output=True, text=True, timeout=30
        )
        assert other.returncode == 1
        assert "another todod" in other.stderr
        assert d.request("hello")["protocol"] == 1


def test_stale_socket_file_is_replaced() -> None:
    """A socket file left by a killed daemon is replaced by the next one."""
    with running_daemon() as d:
        d.kill()
        assert d.socket.exists()
        d.start()
        assert d.request("hello")["protocol"] == 1


def test_unix_socket_type(daemon: Daemon) -> None:
    """The daemon's socket is a Unix stream socket."""
    with connect(daemon.socket) as sock:
        assert sock.family == socket.AF_UNIX


def test_trickled_line_times_out_from_its_first_byte(daemon: Daemon) -> None:
    """A client sending a line one byte at a time is cut off one line timeout after its first byte."""
    with connect(daemon.socket, timeout=10) as sock:
        started = time.monotonic()
        try:
            for byte in b'{"op":"hello","pad":"' + b"x" * 100:
                sock.sendall(bytes([byte]))
                # Pacing, not synchronisation: a byte every 0.3 s is well within
                # each receive's patience but not within the 1 s for the whole line.
                time.sleep(0.3)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = json.loads(read_line(sock))
    assert response["error"]["code"] == "bad_request" and "timed out" in response["error"]["message"]
    assert time.monotonic() - started < 5


def test_fd_limit_below_the_connection_cap_refuses_instead_of_hanging() -> None:
    """With a soft and hard fd limit far below the cap, the cap shrinks to fit, so extra clients get an error."""

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    root = short_tempdir()
    d = Daemon(root)
    try:
        with open(d.log_path, "ab") as log:
            d.proc = subprocess.Popen(d.argv, stdout=log, stderr=log, preexec_fn=low_fd_limit)
        d.wait_ready()
        assert "allows only 64 connections" in d.log()
        held = [connect(d.socket) for _ in range(80)]
        try:
            refused = 0
            for sock in held:
                try:
                    sock.sendall(encode_request("hello"))
                except BrokenPipeError:
                    pass  # a refused connection is closed after its error line, which is still ours to read
                response = json.loads(read_line(sock))
                refused += response["ok"] is False and response["error"]["code"] == "unavailable"
            assert refused == 80 - 64
        finally:
            for sock in held:
                sock.close()

        def served() -> bool:
            try:
                return bool(d.request("hello")["protocol"] == 1)
            except Unavailable:
                return False  # the daemon has not yet seen all the closes

        wait_until(served, 10, "a connection slot to free up")
    finally:
        d.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_max_lists_bounds_the_lists_in_memory_and_loses_nothing() -> None:
    """With --max-lists 3, writing to 12 lists keeps about 3 servers running (status counts the evictions),
    and every list still has all of its entries."""
    with running_daemon(["--max-lists", "3"]) as d:
        for round_ in range(2):
            for i in range(12):
                request(d.socket, "add", list=f"l{i}", title=f"entry {round_}")
        wait_until(
            lambda: request(d.socket, "status")["stats"]["servers_running"] <= 3,
            10,
            "the registry to stop the lists over --max-lists",
        )
        assert request(d.socket, "status")["stats"]["evictions"] >= 12
        for i in range(12):
            entries = request(d.socket, "entries", list=f"l{i}")
            assert [(e["id"], e["title"]) for e in entries] == [(1, "entry 0"), (2, "entry 1")]
