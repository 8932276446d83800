"""The ``todo`` command-line client of todod.

- ``cli.app``: the Typer commands, option parsing and exit codes.
- ``cli._client``: the blocking Unix-socket client and daemon auto-start.
- ``cli._render``: human tables and ``--json`` output.
- ``cli._lazy``: leaves a few standard-library modules that Typer imports unrun until used.

The CLI imports only ``todod.protocol`` and ``todod.paths`` from the daemon's
package (standard library only), never trio or attrs: every ``todo`` start pays
for what it imports.  ``tests/test_cli_imports.py`` proves it.
"""
