"""The floor for ``todo``'s start time: one request from ``sys.argv`` as it is, no argument parser.

Standard library only, no todod import: what any client of the protocol must
pay (the interpreter, json, socket, one exchange, printing the result).
``bench/cli_startup.py`` times each everyday ``todo`` command beside this
doing the same request.  The socket is ``$TODOD_SOCKET``.  Usage, the words
in these places only::

    raw_client.py add LIST TITLE
    raw_client.py entries LIST [--json]
    raw_client.py lists | status [--json]
    raw_client.py update LIST ID --done
    raw_client.py find LIST [--json]     (the entries of LIST, as ``todo find --list LIST``)
    raw_client.py today [--json]         (pending and due by today, as ``todo today``)

It prints the result as one line of JSON, or indented as ``todo --json``
does when the last word is ``--json``.
"""

import json
import os
import socket
import sys
import time

argv = sys.argv
op = argv[1]
request = {"op": op}
if op in ("add", "entries", "update"):
    request["list"] = argv[2]
if op == "add":
    request.update(title=argv[3], date=time.strftime("%Y-%m-%d"))
elif op == "update":
    request.update(entry=int(argv[3]), done=True)
elif op == "find":
    request["lists"] = [argv[2]]
elif op == "today":
    request.update(op="find", to=time.strftime("%Y-%m-%d"), done=False)
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.settimeout(10)
    sock.connect(os.environ["TODOD_SOCKET"])
    sock.sendall(json.dumps(request).encode() + b"\n")
    received = bytearray()
    while not received.endswith(b"\n"):
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        received += chunk
response = json.loads(received)
if not response.get("ok"):
    sys.exit(f"raw_client: {response['error']['message']}")
result = response["result"]
if request["op"] == "find":
    result = result["entries"]  # `todo find` and `todo today` print the entries
sys.stdout.write(json.dumps(result, indent=2) + "\n" if argv[-1] == "--json" else json.dumps(result) + "\n")
