"""What the CLI costs to start: none of the daemon's heavy dependencies are imported."""

from __future__ import annotations

import subprocess
import sys

REPORT = """
heavy = sorted(
    name for name in sys.modules
    if name.split(".")[0] in ("trio", "attrs", "attr", "rich") or name.startswith("todod._")
)
print(",".join(heavy))
print(",".join(sorted(name for name in sys.modules if name.split(".")[0] == "todod")))
"""

IMPORT = "import sys\nimport cli.app\n" + REPORT

# A whole command run, down the error path: no daemon and auto-start off.
RUN = (
    "import sys\nfrom cli.app import app\n"
    "try:\n"
    "    app(['list', '--no-start', '--socket', '/nonexistent/todod.sock'], prog_name='todo')\n"
    "except SystemExit as exc:\n"
    "    assert exc.code == 69, exc.code\n" + REPORT
)


def _loaded(code: str) -> tuple[str, set[str]]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    heavy, todod = done.stdout.splitlines()
    return heavy, set(todod.split(","))


def test_importing_the_cli_loads_no_trio_attrs_rich_or_daemon() -> None:
    """Importing cli.app loads no trio, attrs, rich or todod._* module, only todod's wire format and paths."""
    heavy, todod = _loaded(IMPORT)
    assert heavy == ""
    assert todod <= {"todod", "todod.paths", "todod.protocol"}


def test_running_a_command_loads_no_trio_attrs_rich_or_daemon() -> None:
    """A whole `todo list` run, to its error exit, still loads none of them."""
    heavy, todod = _loaded(RUN)
    assert heavy == ""
    assert todod <= {"todod", "todod.paths", "todod.protocol"}
