"""The modules ``cli._lazy`` defers: left unrun by ``todo add``, working as usual when used.

Every check runs in a fresh interpreter: the test process has long since
imported these modules, so ``CliRunner`` tests never see a deferred one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from cli import _lazy
from tests.daemon import TODO
from tests.fake_daemon import FakeDaemon

# A child's verdict on each deferred module: imported before cli.app (by the
# interpreter's start-up, e.g. an editable install's import hook), never
# imported, imported but unrun, or run.
STATES = """
import json, sys, types
from cli import _lazy
states = {}
for name in _lazy.DEFERRED:
    module = sys.modules.get(name)
    if name in BEFORE:
        states[name] = "before"
    elif module is None:
        states[name] = "absent"
    else:
        # LazyLoader swaps the module's class until the module runs.
        states[name] = "run" if type(module) is types.ModuleType else "unrun"
finders = [type(finder).__name__ for finder in sys.meta_path]
print(json.dumps({"states": states, "finders": finders}))
"""

ADD = """
import sys
BEFORE = set(sys.modules)
from cli.app import main
try:
    main(["add", "home", "buy milk", "--socket", SOCKET, "--no-start"])
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
"""

# What each deferred module is for, used after cli.app is imported.
USES = {
    "bz2": "assert bz2.decompress(bz2.compress(b'x')) == b'x'",
    "lzma": "assert lzma.decompress(lzma.compress(b'x')) == b'x'",
    "ipaddress": "assert ipaddress.ip_address('::1').version == 6",
    "locale": "assert locale.getpreferredencoding(False)",
    "ntpath": "assert ntpath.join('a', 'b') == 'a\\\\b'",
    "signal": "assert signal.SIGTERM.name == 'SIGTERM'",
    "textwrap": "assert textwrap.dedent('  x') == 'x'",
}

ARCHIVE_FORMATS = "import shutil; print(sorted(name for name, _ in shutil.get_archive_formats()))"


def _python(code: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    """A fake daemon on a short socket path of its own."""
    path = tempfile.mkdtemp(prefix="todo-lazy-", dir="/tmp")
    try:
        with FakeDaemon(os.path.join(path, "todod.sock")) as fake:
            yield fake
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_add_leaves_the_deferred_modules_unrun(daemon: FakeDaemon) -> None:
    """A whole `todo add` runs none of the deferred modules, and leaves no lazy finder behind."""
    report = json.loads(_python(f"SOCKET = {daemon.path!r}\n" + ADD + STATES).splitlines()[-1])
    assert [r["op"] for r in daemon.requests] == ["add"]
    states = report["states"]
    assert not [name for name, state in states.items() if state == "run"], states
    # Whatever the interpreter's start-up imports, these come from Typer's imports alone.
    assert {states["locale"], states["signal"], states["textwrap"]} == {"unrun"}, states
    assert "_LazyFinder" not in report["finders"]


@pytest.mark.parametrize("name", sorted(_lazy.DEFERRED))
def test_a_deferred_module_works_when_used(name: str) -> None:
    """Each deferred module runs on first use, after cli.app has been imported."""
    assert name in USES
    _python(f"import cli.app\nimport {name}\n{USES[name]}\n")


def test_shutil_offers_the_same_archive_formats() -> None:
    """shutil finds the same compressors (bz2, lzma) with cli.app imported as without."""
    assert _python("import cli.app\n" + ARCHIVE_FORMATS) == _python(ARCHIVE_FORMATS)


def test_help_and_usage_errors_still_work() -> None:
    """`todo --help`, which wraps text with textwrap, and a usage error work in a fresh process."""
    env = {**os.environ, "TODOD_NO_START": "1"}
    helped = subprocess.run([TODO, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert "add" in helped.stdout
    assert "entries" in helped.stdout
    wrong = subprocess.run([TODO, "add"], capture_output=True, text=True, env=env, timeout=60)
    assert wrong.returncode == 2, wrong.stderr
    assert wrong.stderr == "todo: usage: missing argument 'LIST' (see 'todo add --help')\n"
