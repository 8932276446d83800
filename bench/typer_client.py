"""The floor Typer sets: the argparse client's one ``add``, with Typer 0.28 instead.

One command, no todod import; ``bench/cli_startup.py`` times it beside the
argparse client and ``todo`` so that what Typer itself costs is visible.
Usage: ``typer_client.py --socket S LIST TITLE``.
"""

import json
import socket
import sys
import time

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def add(list_name: str, title: str, socket_path: str = typer.Option(..., "--socket")) -> None:
    request = {"op": "add", "list": list_name, "title": title, "date": time.strftime("%Y-%m-%d")}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(socket_path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        line = sock.makefile("rb").readline(1 << 20)
    response = json.loads(line)
    if not response.get("ok"):
        sys.exit(f"typer_client: {response['error']['message']}")
    print(json.dumps(response["result"]))


app()
