"""The load generator of bench/run.py: closed-loop clients, in a process of their own.

Run by bench/run.py::

    python bench/loadgen.py --socket PATH --connections 32 --requests 10000 --lists 1000 --first 0

Opens ``--connections`` connections, prints ``connected``, then waits for a
line on stdin (the start signal, so that all generator processes start together), then keeps
one request in flight on each connection: each connection sends an ``add``
and sends the next only once its answer has come (a closed loop, like a
user waiting for each reply).  Connection ``i`` writes to lists
``first + i, first + i + connections, ...`` modulo ``--lists``, so that
the connections are on different lists at any moment.

With ``--entries LIST`` it instead sends ``entries`` requests for that list.

It prints one JSON line: start and end (``time.monotonic``, comparable across
processes on Linux), requests answered, errors, and the latencies' p50 and p90.
No JSON is decoded on the client beyond the ``"ok":true`` check, so the
generator spends as little CPU as it can.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time

DATE = "2026-02-03"
TITLE = "benchmark entry with a title of ordinary length"


def _request(list_name: str, entries: bool) -> bytes:
    if entries:
        return json.dumps({"op": "entries", "list": list_name}).encode() + b"\n"
    return json.dumps({"op": "add", "list": list_name, "title": TITLE, "date": DATE}).encode() + b"\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--requests", type=int, required=True, help="in all, over this process's connections")
    parser.add_argument("--lists", type=int, default=1)
    parser.add_argument("--first", type=int, default=0, help="the first connection's list number")
    parser.add_argument("--entries", metavar="LIST", help="read this list instead of adding")
    parser.add_argument("--prefix", default="l", help="the lists' names: PREFIX0, PREFIX1, ...")
    args = parser.parse_args()

    conns = []
    for _ in range(args.connections):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(args.socket)
        sock.setblocking(False)
        conns.append(sock)
    n = args.connections
    # Per connection: its next list number, the time its request was sent, its buffer.
    state = {sock.fileno(): [args.first + i, 0.0, bytearray(), sock] for i, sock in enumerate(conns)}
    quota = [args.requests // n + (1 if i < args.requests % n else 0) for i in range(n)]
    left = {sock.fileno(): quota[i] for i, sock in enumerate(conns)}
    latencies: list[float] = []
    errors = 0
    selector = selectors.DefaultSelector()

    def send(fd: int) -> None:
        st = state[fd]
        name = args.entries if args.entries else f"{args.prefix}{st[0] % args.lists}"
        st[0] += n
        st[1] = time.monotonic()
        st[3].sendall(_request(name, bool(args.entries)))

    print("connected", flush=True)
    sys.stdin.readline()  # the start signal
    start = time.monotonic()
    active = 0
    for fd in state:
        if left[fd] > 0:
            selector.register(state[fd][3], selectors.EVENT_READ)
            send(fd)
            active += 1
    while active:
        for key, _mask in selector.select():
            fd = key.fd
            st = state[fd]
            sock = st[3]
            data = sock.recv(1 << 20)
            if not data:
                raise SystemExit("the server closed a connection")
            buffer = st[2]
            buffer += data
            while (newline := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:newline])
                del buffer[: newline + 1]
                latencies.append(time.monotonic() - st[1])
                if b'"ok":true' not in line[:64] and b'"ok": true' not in line[:64]:
                    errors += 1
                left[fd] -= 1
                if left[fd] > 0:
                    send(fd)
                else:
                    selector.unregister(sock)
                    active -= 1
    end = time.monotonic()
    latencies.sort()
    count = len(latencies)
    print(
        json.dumps(
            {
                "start": start,
                "end": end,
                "requests": count,
                "errors": errors,
                "p50": latencies[count // 2] if count else None,
                "p90": latencies[count * 9 // 10] if count else None,
            }
        ),
        flush=True,
    )
    for sock in conns:
        sock.close()


if __name__ == "__main__":
    main()
