"""The ``todo`` command-line client of todod.

- ``cli._main``: the ``todo`` console script: the fast path, else the Typer app.
- ``cli.app``: the Typer app, the definition of the command line (help, usage
  errors, shell completion).
- ``cli._commands``: the command bodies and exit codes, shared by both paths.
- ``cli._params``: the parameter types Typer's own do not give (ids, ``--timeout``, ``--date``).
- ``cli._fast``, ``cli._table``: the fast path's parser and its table, which
  ``python -m cli._gen`` (``cli._gen``) derives from the Typer app.
- ``cli._client``: the blocking Unix-socket client, its trust checks and daemon auto-start.
- ``cli._procs``: the daemon as a process (its lock holder, waiting for its exit).
- ``cli._render``: human tables and ``--json`` output.
- ``cli._usage``: how the Typer app reports a usage error, in one line.
- ``cli._lazy``: leaves a few standard-library modules that Typer imports unrun until used.

The CLI imports only ``todod.protocol`` and ``todod.paths`` from the daemon's
package (standard library only), never trio or attrs: every ``todo`` start pays
for what it imports.  ``tests/test_cli_imports.py`` proves it, and
``tests/test_cli_fast.py`` that an everyday command imports neither Typer nor
typing.  So this file imports nothing.
"""
