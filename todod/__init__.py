"""todod: a durable to-do daemon on Trio, after *Elixir in Action* chapters 7-12.

The layers, from the bottom up:

- ``todod.protocol`` and ``todod.paths``: the wire format, the error codes and the
  shared path resolution.  Standard library only: the ``todo`` CLI imports them
  through this package, so nothing heavy may be imported here.
- ``todod._model``: the pure to-do list values (attrs, frozen).
- ``todod.store``: the store interface and its two backends, SQLite (one
  group-committing writer, a read pool) and PostgreSQL (several daemons).
- ``todod._server``, ``todod._registry``, ``todod._supervisor``: one task per
  active list, the name → server registry, and restart supervision.
- ``todod._core``: the facade that ties them together.
- ``todod._socket``, ``todod._dispatch``, ``todod._systemd``, ``todod._main``:
  the Unix socket server, request dispatch, systemd glue and the entry point.

``todod.daemon`` re-exports what the daemon side offers as public API.
"""

__version__ = "0.1.0"
