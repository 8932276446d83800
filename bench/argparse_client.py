"""The floor for ``todo``'s start time: argparse, a socket and json, one request.

Standard library only, no todod import.  ``bench/cli_startup.py`` times it
against ``todo``.  Usage: ``argparse_client.py --socket S add LIST TITLE``,
``... entries LIST``, ``... lists``.
"""

import argparse
import json
import socket
import sys
import time

parser = argparse.ArgumentParser(prog="argparse_client")
parser.add_argument("--socket", required=True)
commands = parser.add_subparsers(dest="op", required=True)
add = commands.add_parser("add")
add.add_argument("list")
add.add_argument("title")
add.add_argument("--date", default=None)
commands.add_parser("entries").add_argument("list")
commands.add_parser("lists")
args = parser.parse_args()

request = {"op": args.op}
if args.op in ("add", "entries"):
    request["list"] = args.list
if args.op == "add":
    request.update(title=args.title, date=args.date or time.strftime("%Y-%m-%d"))
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.settimeout(10)
    sock.connect(args.socket)
    sock.sendall(json.dumps(request).encode() + b"\n")
    line = sock.makefile("rb").readline(1 << 20)
response = json.loads(line)
if not response.get("ok"):
    sys.exit(f"argparse_client: {response['error']['message']}")
print(json.dumps(response["result"]))
