"""Defer a few standard-library modules that ``import typer`` pulls in and ``todo`` hardly ever uses.

Typer (and the click it vendors) imports shutil, subprocess, traceback and
pathlib at start-up; they in turn import modules that only some of their
functions need.  :func:`deferred_imports` hands those modules out through
:class:`importlib.util.LazyLoader`: the import succeeds at once, and the module
runs the first time one of its attributes is read.  A command that needs one
(auto-start uses subprocess, which uses signal) gets it as usual.

Only modules on :data:`DEFERRED` are affected, all in the standard library,
none with side effects at import, each imported by a single ``import X``
statement on the way to ``import typer``: on CPython a second ``import X`` of a
lazy module runs it at once, because the import system reads its
``__spec__`` (python/cpython#127036), so a module imported twice would gain
nothing.  ``tests/test_cli_lazy.py`` checks that ``todo add`` leaves them
unrun.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Final

#: The deferred modules, each with who imports it and the C module it needs
#: (``None`` if none).  Together they took 7-14 ms of the ~145 ms that a
#: ``todo add`` through Typer took on this machine; everyday commands now skip
#: Typer (``cli._main``), but help, usage errors and completion still run it.
DEFERRED: Final[Mapping[str, str | None]] = {
    "bz2": "_bz2",  # shutil, to learn whether it can make .tar.bz2 archives
    "lzma": "_lzma",  # shutil, likewise for .tar.xz
    "ipaddress": None,  # urllib.parse (from pathlib), for URLs with an IPv6 host
    "locale": None,  # subprocess, for text-mode pipes
    "ntpath": None,  # pathlib, for Windows paths
    "signal": None,  # subprocess, to signal a child
    "textwrap": None,  # traceback, for exception groups; help text loads it anyway
}


class _LazyFinder:
    """A meta path finder that wraps the loader of each deferred module in a LazyLoader."""

    def __init__(self, deferred: Mapping[str, str | None]) -> None:
        self._deferred = deferred

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self._deferred:
            return None
        needs = self._deferred[fullname]
        # Without its C module the import would fail: fail now, as the module's
        # importers expect (shutil catches the ImportError), not at first use.
        if needs is not None and importlib.util.find_spec(needs) is None:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find_spec = getattr(finder, "find_spec", None)  # 3.11 still allows finders without it
            spec: ModuleSpec | None = None if find_spec is None else find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


@contextmanager
def deferred_imports(deferred: Mapping[str, str | None] = DEFERRED) -> Iterator[None]:
    """Inside the block, the first import of a module in ``deferred`` returns it unrun.

    Modules imported before the block are unaffected, and so are imports after
    it; a module deferred inside it runs whenever it is first used, later.

    Args:
        deferred: module names, each with the C module it needs or ``None``.
    """
    finder = _LazyFinder(deferred)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
