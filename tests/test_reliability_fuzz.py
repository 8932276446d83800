"""Bad input against a running todod: protocol fuzzing, control characters, lone surrogates, file-like names.

The fuzzing strategies and checks live in ``bench/fuzz_protocol.py``, whose
long run feeds 10,000 inputs; CI feeds a few hundred.
"""

from __future__ import annotations

import collections
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.fuzz_protocol import RSS_SLACK_KIB, fuzz, log_is_clean, send_lines
from tests.daemon import Daemon, LineReader, connect, raw_exchange, running_daemon, vm_rss_kib
from todod.protocol import MAX_LINE, encode_request


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with running_daemon() as d:
        yield d


def test_fuzzed_input_gets_documented_answers_and_memory_stays_bounded(daemon: Daemon) -> None:
    """Hundreds of random inputs each get one documented answer per line; the daemon lives, its RSS stays flat."""
    assert daemon.proc is not None
    fuzz(daemon, 60, collections.Counter(), cap_every=20)  # warm-up
    rss_before = vm_rss_kib(daemon.proc.pid)
    counts: collections.Counter[str] = collections.Counter()
    fuzz(daemon, 300, counts, cap_every=100)
    rss_after = vm_rss_kib(daemon.proc.pid)
    assert counts["inputs"] == 300
    assert counts["ok"] > 0 and counts["bad_request"] > 0 and counts["invalid"] > 0, counts
    assert rss_after - rss_before < RSS_SLACK_KIB, (rss_before, rss_after)
    assert daemon.request("hello")["protocol"] == 1
    log_is_clean(daemon)


@settings(max_examples=6, deadline=None)
@given(length=st.integers(MAX_LINE - 8, MAX_LINE + 8))
def test_lines_around_the_cap(daemon: Daemon, length: int) -> None:
    """A line up to the cap is answered on its merits; one byte over gets too_large and the connection closes."""
    head = b'{"op":"hello","pad":"'
    line = head + b"z" * (length - len(head) - 2) + b'"}'
    assert len(line) == length
    codes = send_lines(daemon, [line])
    assert codes == (["bad_request"] if length <= MAX_LINE else ["too_large"])


CONTROL = ["\n", "\r", "\x1b", "\x00", "\x07", "\x08", "\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\t"]
visible = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=10)


@settings(max_examples=40, deadline=None)
@given(before=visible, control=st.sampled_from([*CONTROL, "\x1b[2J", "\x1b]0;pwned\x07"]), after=visible)
def test_titles_and_list_names_that_would_break_a_line_are_invalid(
    daemon: Daemon, before: str, control: str, after: str
) -> None:
    """A title or list name holding a newline, an escape sequence or another control character is refused as invalid."""
    bad = before + control + after
    responses = raw_exchange(
        daemon.socket,
        encode_request("add", list="clean", title=bad)
        + encode_request("add", list=bad, title="fine")
        + encode_request("update", list="clean", entry=1, title=bad),
    )
    assert [r["error"]["code"] for r in responses] == ["invalid"] * 3, responses
    assert all(e["title"] != bad.strip() for e in daemon.request("entries", list="clean"))


def test_log_has_no_raw_control_characters_after_bad_names(daemon: Daemon) -> None:
    """Refused and crashing names reach the log escaped: no raw control byte gets into it."""
    raw_exchange(daemon.socket, encode_request("add", list="\x1b[31mred\n", title="\x1b]0;title\x07"))
    assert daemon.request("hello")["protocol"] == 1
    log_is_clean(daemon)


def test_lone_surrogates_are_invalid_and_harm_no_other_write(daemon: Daemon) -> None:
    """A title or list name with a lone surrogate is invalid; writes to other lists sent with it all succeed."""
    with connect(daemon.socket) as sock:
        responses = LineReader(sock)
        sock.sendall(
            encode_request("add", request_id="bad-title", list="sur", title="x\ud800y")
            + encode_request("add", request_id="bad-list", list="\udfff", title="t")
            + b"".join(encode_request("add", request_id=i, list=f"ok{i % 4}", title=f"t{i}") for i in range(32))
        )
        by_id = {r["id"]: r for r in (responses.response() for _ in range(34))}
    assert by_id["bad-title"]["error"]["code"] == "invalid", by_id["bad-title"]
    assert by_id["bad-list"]["error"]["code"] == "invalid", by_id["bad-list"]
    assert all(by_id[i]["ok"] for i in range(32)), [by_id[i] for i in range(32) if not by_id[i]["ok"]]
    # The refused list name did not crash a list server into quarantine.
    stats = daemon.request("status")["stats"]
    assert stats["quarantines"] == 0 and stats["restarts"] == 0


FILE_LIKE = [
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    ".",
    "~",
    "$HOME",
    "todod.sqlite3",
    "todod.sqlite3-wal",
    "todod.lock",
    ":memory:",
    "file:probe?mode=rwc",
    "..\\..\\windows",
    "-rf",
    "con",
    "nul",
]


def _names(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_no_request_can_name_a_file() -> None:
    """List names that look like paths are refused ('/') or stored as plain names: no file appears or changes."""
    with running_daemon() as daemon:
        _no_request_can_name_a_file(daemon)


def _no_request_can_name_a_file(daemon: Daemon) -> None:
    probe = f"probe-{uuid.uuid4().hex}"
    names = [*FILE_LIKE, probe, f"../{probe}", f"file:{probe}?mode=rwc"]
    before = _names(daemon.root)
    passwd = Path("/etc/passwd").read_bytes()
    stored = {}
    for name in names:
        (response,) = raw_exchange(daemon.socket, encode_request("add", list=name, title=f"in {name}"))
        if "/" in name:
            assert response["error"]["code"] == "invalid", (name, response)
        else:
            assert response["ok"], (name, response)
            stored[name] = response["result"]["title"]
    for name, title in stored.items():
        assert [e["title"] for e in daemon.request("entries", list=name)] == [title]
    assert set(stored) <= {item["name"] for item in daemon.request("lists")}
    assert _names(daemon.root) == before, "a request created or removed a file in the daemon's directories"
    # Nor anywhere a name could point to: the daemon's working directory, /tmp, /etc.
    for place in (Path.cwd(), Path("/tmp"), daemon.root.parent):
        assert not any(probe in name for name in os.listdir(place)), place
    assert Path("/etc/passwd").read_bytes() == passwd
