"""Fuzz todod's protocol with hypothesis: bad bytes in, one documented answer per line out.

Each input is one to four lines sent on a fresh connection to a running
daemon: random bytes, random JSON of any shape, requests with wrong types,
huge numbers, deep nesting, NUL and control characters, lone surrogates
(escaped, or raw and so invalid UTF-8), path-like list names, mutated valid
requests, and now and then a line just under or just over the line cap.
The daemon must answer every complete line with one JSON response, ``ok`` or
an error with a documented code (an over-cap line gets ``too_large`` and the
connection closes), must never die, must not grow its memory without bound
(VmRSS after a warm-up against VmRSS at the end), and must keep its log free
of raw control characters.

The long run, recorded in docs/RELIABILITY.md::

    .venv/bin/python bench/fuzz_protocol.py --inputs 10000

``tests/test_reliability_fuzz.py`` runs a few hundred inputs of the same
strategies.  Exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import collections
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if __package__ in (None, ""):  # run as a script: make tests.daemon importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemon import Daemon, connect, running_daemon, vm_rss_kib
from todod.protocol import MAX_INT, MAX_LINE, OPS, ErrorCode, encode_request

#: Warm-up inputs before the first memory reading: the daemon's caches,
#: the loaded lists and Python's allocator reach their working size.
WARM_UP = 200
#: Allowed growth of the daemon's VmRSS from after the warm-up to the end.
RSS_SLACK_KIB = 50 * 1024

#: The error codes bad input may get from a healthy daemon.
HEALTHY_CODES = {ErrorCode.BAD_REQUEST, ErrorCode.INVALID, ErrorCode.NOT_FOUND, ErrorCode.TOO_LARGE}

# --- strategies ---------------------------------------------------------------------------

NASTY_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "line\nbreak",
    "cr\rreturn",
    "\x1b[2J\x1b[31mred",
    "\x07bell",
    "tab\there",
    "\u2028",
    "\u2029",
    "\x85nel",
    "\x7f",
    "\ud800",
    "x\udfffy",
    "\ufeffbom",
    "\u202eevil",
    "../../etc/passwd",
    "..",
    "/",
    "\\..\\..\\windows",
    "todod.sqlite3",
    "file:x?mode=rwc",
    ":memory:",
    "%s%n%x",
    "' OR 1=1; DROP TABLE entries; --",
    "x" * 1000,
    "x" * 1001,
    "é" * 200,
    "é" * 201,
    "\U0001f600" * 300,
]
HUGE_NUMBERS = [-1, 0, 1, MAX_INT, MAX_INT + 1, -MAX_INT - 2, 2**64, 10**30, -(10**30)]

texts = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=30), st.text(st.characters(codec=None), max_size=30))
names = st.one_of(st.sampled_from(["fuzz", "fuzz-2", "ünï ✓"]), texts)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=12
)
dates = st.one_of(
    st.sampled_from(
        [
            "2026-11-22",
            "2026-02-30",
            "2026-1-1",
            "\u0662\u0660\u0662\u0666-\u0661\u0661-\u0662\u0662",
            "9999-12-31",
            "0000-01-01",
        ]
    ),
    texts,
)
field_values = {
    "list": st.one_of(names, names, json_values),
    "title": st.one_of(texts, texts, json_values),
    "entry": st.one_of(st.integers(-2, 50), st.sampled_from(HUGE_NUMBERS), json_values),
    "date": st.one_of(dates, json_values),
    "done": st.one_of(st.booleans(), json_values),
    "id": st.one_of(st.integers(), st.sampled_from(HUGE_NUMBERS), texts, json_values),
}
#: Every op but ``stop``, whose well-formed request ends the daemon under test
#: (tests/test_cli_e2e_edges.py covers it).
FUZZED_OPS = sorted(set(OPS) - {"stop"})
requests = st.builds(
    lambda op, fields: {"op": op, **fields},
    st.one_of(st.sampled_from(FUZZED_OPS), texts, json_values),
    st.fixed_dictionaries({}, optional=field_values),
)
#: Requests with every field of the right type and nasty values: they get
#: past the parser, so the model's validation and the store see them.
typed_requests = st.one_of(
    st.fixed_dictionaries(
        {"op": st.just("add"), "list": names, "title": texts}, optional={"date": dates, "id": field_values["id"]}
    ),
    st.fixed_dictionaries(
        {"op": st.just("update"), "list": names, "entry": st.integers(0, 40)},
        optional={"title": texts, "date": dates, "done": st.booleans()},
    ),
    st.fixed_dictionaries({"op": st.just("delete"), "list": names, "entry": st.integers(0, 40)}),
    st.fixed_dictionaries({"op": st.just("entries"), "list": names}, optional={"date": dates}),
    st.fixed_dictionaries({"op": st.sampled_from(["hello", "lists", "status"])}),
)


def _encode(obj: Any, ascii_only: bool) -> bytes:
    # Without ensure_ascii a lone surrogate becomes bytes that are not UTF-8.
    return json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _mutate(line: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    data = bytearray(line)
    for kind, where, byte in edits:
        if not data:
            break
        at = where % len(data)
        if kind == 0:
            data[at] = byte
        elif kind == 1:
            data.insert(at, byte)
        else:
            del data[at]
    return bytes(data)


def _deep(depth: int, opener: bytes, closer: bytes) -> bytes:
    return b'{"op":"add","list":"deep","title":' + opener * depth + closer * depth + b"}"


valid_lines = st.builds(
    lambda op, name, title: encode_request(op, list=name, title=title)[:-1],
    st.just("add"),
    st.sampled_from(["fuzz", "fuzz-2"]),
    st.text(max_size=20),
)
well_typed_lines = st.builds(_encode, typed_requests, st.booleans())
malformed_lines = st.one_of(
    st.builds(_encode, requests, st.booleans()),
    st.builds(_encode, json_values, st.booleans()),
    st.binary(max_size=300),
    st.builds(
        _mutate,
        valid_lines,
        st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
    ),
    st.builds(_deep, st.integers(1, 200_000), st.sampled_from([b"["]), st.just(b"]")),
    st.builds(lambda depth: b"[" * depth, st.integers(1, 100_000)),  # never closed
    st.sampled_from(
        [
            b"",
            b" ",
            b"\r",
            b"NaN",
            b'{"op":"hello","id":NaN}',
            b'{"op":"hello","id":Infinity}',
            b"1e999",
            b"-0",
            b"null",
        ]
    ),
)
#: Half the lines get past the parser, half do not.
# (A flatmap, not one_of, which would flatten the malformed branches in beside it.)
lines_without_newline = (
    st.sampled_from([well_typed_lines, malformed_lines])
    .flatmap(lambda lines: lines)
    .map(lambda line: line.replace(b"\n", b" "))
)
#: Inputs: a few lines for one connection.
payloads = st.lists(lines_without_newline, min_size=1, max_size=4)
#: A line near the cap: its length, from just under to just over MAX_LINE.
cap_lengths = st.integers(MAX_LINE - 64, MAX_LINE + 64)


# --- checks ------------------------------------------------------------------------------------


def read_responses(sock: socket.socket) -> tuple[list[bytes], bool]:
    """Every line the daemon sends until it closes the connection, and whether it reset it."""
    data = bytearray()
    reset = False
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
    except ConnectionResetError:
        reset = True  # it closed with bytes of ours unread
    assert data.endswith(b"\n") or not data, f"a response line was cut off: {bytes(data[-80:])!r}"
    return bytes(data).splitlines(), reset


def check_response(raw: bytes) -> str:
    """Check one response line is a documented answer; return its code ('ok' for success)."""
    response = json.loads(raw)
    assert isinstance(response, dict) and isinstance(response.get("ok"), bool), raw
    assert raw.isascii(), f"a response carries raw non-ASCII bytes: {raw[:80]!r}"
    if response["ok"]:
        assert "result" in response, raw
        return "ok"
    error = response["error"]
    assert error["code"] in ErrorCode.ALL, raw
    # A healthy daemon (no faults, no overload) has no reason to be
    # unavailable, to time out or to crash: bad input must be refused as such.
    assert error["code"] in HEALTHY_CODES, raw
    assert isinstance(error["message"], str) and error["message"], raw
    return str(error["code"])


def send_lines(daemon: Daemon, lines: list[bytes]) -> list[str]:
    """Send ``lines`` on one connection and check the answers; return their codes.

    Every complete line gets exactly one response; a line over the cap gets
    ``too_large`` and ends the connection, so the lines after it get none.
    """
    payload = b"".join(line + b"\n" for line in lines)
    with connect(daemon.socket, timeout=30) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed after an over-cap line: the responses are still readable
        raw, reset = read_responses(sock)
    codes = [check_response(line) for line in raw]
    first_over = next((i for i, line in enumerate(lines) if len(line) > MAX_LINE), None)
    if first_over is None:
        assert not reset, "the daemon reset a connection that broke no bound"
        assert len(codes) == len(lines), f"{len(lines)} lines, {len(codes)} responses: {codes}"
    else:
        # The lines before it may or may not be answered before the close.
        assert codes[-1:] == ["too_large"] and len(codes) <= first_over + 1, codes
    assert daemon.proc is not None and daemon.proc.poll() is None, f"todod died:\n{daemon.log()[-3000:]}"
    return codes


def log_is_clean(daemon: Daemon) -> None:
    """The daemon's log holds no raw control character but newlines."""
    data = daemon.log_path.read_bytes()
    bad = sorted({b for b in data if (b < 0x20 and b != 0x0A) or b == 0x7F})
    assert not bad, f"control bytes in the log: {bad}"


def fuzz(daemon: Daemon, inputs: int, counts: collections.Counter[str], *, cap_every: int = 0) -> None:
    """Run ``inputs`` hypothesis examples against ``daemon``, counting response codes in ``counts``.

    Args:
        cap_every: one input in about this many is a line near the cap (0: none).
    """

    @settings(
        max_examples=inputs,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(lines=payloads, near_cap=st.one_of(st.none(), cap_lengths), roll=st.integers(0, 1 << 16))
    def one_input(lines: list[bytes], near_cap: int | None, roll: int) -> None:
        if cap_every and near_cap is not None and roll % cap_every == 0:
            head = b'{"op":"hello","pad":"'
            lines = [*lines[:1], head + b"y" * (near_cap - len(head) - 2) + b'"}']
            counts["near_cap_lines"] += 1
        counts["inputs"] += 1
        counts["lines"] += len(lines)
        for code in send_lines(daemon, lines):
            counts[code] += 1

    one_input()


def run(inputs: int) -> dict[str, Any]:
    """Fuzz a fresh daemon with a warm-up plus ``inputs`` inputs; return the figures.

    Raises:
        AssertionError: a check failed.
    """
    counts: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    with running_daemon() as daemon:
        assert daemon.proc is not None
        fuzz(daemon, WARM_UP, collections.Counter(), cap_every=50)
        rss_before = vm_rss_kib(daemon.proc.pid)
        fuzz(daemon, inputs, counts, cap_every=200)
        rss_after = vm_rss_kib(daemon.proc.pid)
        assert daemon.request("hello")["protocol"] == 1
        log_is_clean(daemon)
        assert rss_after - rss_before < RSS_SLACK_KIB, f"VmRSS grew from {rss_before} to {rss_after} KiB"
    return {
        "inputs": counts.pop("inputs", 0),
        "lines": counts.pop("lines", 0),
        "near_cap_lines": counts.pop("near_cap_lines", 0),
        "responses": dict(sorted(counts.items())),
        "rss_kib": (rss_before, rss_after),
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=10_000)
    args = parser.parse_args(argv)
    try:
        figures = run(args.inputs)
    except AssertionError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
