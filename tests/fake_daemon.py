"""A scripted stand-in for todod on a Unix socket, for CLI tests and the start-up bench.

Standard library only, one thread per connection.  It records every request
and answers from a script of canned behaviours, first in first out; with an
empty script it answers ``hello``, ``status`` and a tiny in-memory version of
the list ops, so it also serves ``bench/cli_startup.py`` as a script::

    python tests/fake_daemon.py SOCKET_PATH
"""

from __future__ import annotations

import collections
import json
import os
import socketserver
import sys
import threading
import time
from typing import Any

MAX_LINE = 1 << 20  # the same cap as todod.protocol.MAX_LINE, kept stdlib-only here

HELLO = {"protocol": 1, "version": "0.1.0", "pid": os.getpid()}


class FakeDaemon:
    """A todod double serving one socket path in background threads.

    Use it as a context manager, or call :meth:`start` and :meth:`close`.
    Script behaviours with :meth:`answer`, :meth:`fail`, :meth:`answer_raw`,
    :meth:`refuse`, :meth:`hang_up` and :meth:`never_answer`; each applies to
    one request (a connection may carry several, one after the other).

    Attributes:
        path: the socket path it listens on.
        requests: every request received, parsed, in order.
        received: set as soon as any request has been recorded.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[dict[str, Any]] = []
        self.received = threading.Event()
        self._script: collections.deque[tuple[str, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._lists: dict[str, list[dict[str, Any]]] = {}
        self._next_id = 1
        self._started = time.monotonic()
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting ----------------------------------------------------------

    def answer(self, result: Any) -> None:
        """Answer the next request with ``{"ok": true, "result": result}``."""
        self._script.append(("ok", result))

    def fail(self, code: str, message: str) -> None:
        """Answer the next request with an error of this code and message."""
        self._script.append(("error", {"code": code, "message": message}))

    def answer_raw(self, data: bytes) -> None:
        """Send these bytes as the next response, then close the connection."""
        self._script.append(("raw", data))

    def refuse(self, code: str, message: str) -> None:
        """Send an error line to the next connection as soon as it is accepted, and close it unread."""
        self._script.append(("refuse", {"code": code, "message": message}))

    def hang_up(self) -> None:
        """Close the next connection after reading its request, without answering."""
        self._script.append(("close", None))

    def never_answer(self) -> None:
        """Read the next request and never answer (until :meth:`close`)."""
        self._script.append(("hang", None))

    # --- lifecycle ----------------------------------------------------------

    def start(self) -> FakeDaemon:
        """Bind the socket and serve in a background thread; returns ``self``."""
        server = socketserver.ThreadingUnixStreamServer(self.path, _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, release hung connections, and remove the socket file."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> FakeDaemon:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- behaviour ----------------------------------------------------------

    def _take_refusal(self) -> dict[str, str] | None:
        with self._lock:
            if self._script and self._script[0][0] == "refuse":
                refusal: dict[str, str] = self._script.popleft()[1]
                return refusal
            return None

    def _next(self, request: dict[str, Any]) -> tuple[str, Any]:
        with self._lock:
            self.requests.append(request)
            self.received.set()
            if self._script:
                return self._script.popleft()
            return self._default(request)

    def _default(self, request: dict[str, Any]) -> tuple[str, Any]:
        op = request.get("op")
        if op == "hello":
            return ("ok", HELLO)
        if op == "status":
            uptime = time.monotonic() - self._started
            return ("ok", {**HELLO, "uptime": uptime, "stats": {"requests": len(self.requests)}})
        if op == "lists":
            return ("ok", [{"name": n, "entries": len(e)} for n, e in sorted(self._lists.items())])
        if op == "entries":
            found = self._lists.get(request["list"], [])
            date = request.get("date")
            selected = [e for e in found if date is None or e["date"] == date]
            if "limit" not in request and "after" not in request:
                return ("ok", selected)
            return ("ok", {"next": None, "last_id": self._next_id - 1, "entries": selected})
        if op == "add":
            entry = {"id": self._next_id, "date": request["date"], "title": request["title"], "done": False}
            self._next_id += 1
            self._lists.setdefault(request["list"], []).append(entry)
            return ("ok", entry)
        if op == "find":
            # Date and done only: enough for a CLI that sends whatever it parsed.
            every = [{**e, "list": name} for name, found in sorted(self._lists.items()) for e in found]
            to, done = request.get("to"), request.get("done")
            hits = [e for e in every if (to is None or e["date"] <= to) and (done is None or e["done"] == done)]
            return ("ok", {"entries": sorted(hits, key=lambda e: (e["date"], e["list"], e["id"])), "more": False})
        return ("error", {"code": "bad_request", "message": f"the fake daemon does not do {op!r}"})


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        fake: FakeDaemon = self.server.fake  # type: ignore[attr-defined]
        refusal = fake._take_refusal()
        if refusal is not None:
            self._send({"ok": False, "error": refusal})
            return
        # Request after request on one connection (a paged read sends several).
        while True:
            try:
                line = self.rfile.readline(MAX_LINE)
            except (ConnectionResetError, BrokenPipeError):
                return  # the client left after its answer
            if not line:
                return
            kind, value = fake._next(json.loads(line))
            if kind == "close":
                return
            if kind == "hang":
                fake._closing.wait()
                return
            if kind == "raw":
                self._write(value)
            else:
                self._send({"ok": True, "result": value} if kind == "ok" else {"ok": False, "error": value})

    def _send(self, response: dict[str, Any]) -> None:
        self._write(json.dumps(response).encode("ascii") + b"\n")

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (a timeout or size-cap test)


def main() -> None:
    """Serve the socket path given as the only argument until interrupted or terminated."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with FakeDaemon(sys.argv[1]):
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
