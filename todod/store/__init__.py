"""The durable store, behind one interface (:class:`Store`), with two backends.

- ``todod.store._sqlite``: SQLite in the data directory, the embedded
  default (one daemon owns it, by a lock on the directory).
- ``todod.store._postgres``: PostgreSQL, selected by a ``postgresql://``
  URI (``todod --store URI`` or ``TODOD_STORE``); several daemons may share it.

:func:`open_store` picks the backend; everything above it sees a :class:`Store`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from todod.store._base import (
    Batch,
    Commit,
    CommitListener,
    EventFeed,
    Hook,
    Part,
    StaleList,
    Store,
    StoreError,
    StoreFaults,
    StoreStatistics,
    Transaction,
)

# The SQLite backend's write context, the type of a Transaction's hook argument.
from todod.store._sqlite import WriteContext

#: The URI schemes libpq takes for a connection URI.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(uri: str | None) -> bool:
    """Whether ``uri`` selects the PostgreSQL backend."""
    return uri is not None and uri.startswith(POSTGRES_SCHEMES)


@asynccontextmanager
async def open_store(
    data_dir: str,
    *,
    uri: str | None = None,
    faults: StoreFaults | None = None,
    full_text: bool = True,
    change_log: bool = True,
    search_index: bool = True,
) -> AsyncIterator[Store]:
    """Open the store ``uri`` names, or without one SQLite in ``data_dir`` (see the backends' ``open_store``).

    Raises:
        StoreError: the URI names no backend we have, or the backend cannot open it.
    """
    if not uri:
        from todod.store import _sqlite

        async with _sqlite.open_store(
            data_dir, faults=faults, full_text=full_text, change_log=change_log, search_index=search_index
        ) as store:
            yield store
    elif is_postgres(uri):
        from todod.store import _postgres

        async with _postgres.open_store(uri, faults=faults, full_text=full_text, change_log=change_log) as pg:
            yield pg
    else:
        scheme = uri.partition(":")[0]
        raise StoreError(
            f"unknown store {scheme!r}: give a PostgreSQL URI (postgresql://...), or no --store for SQLite"
        )


__all__ = [
    "Batch",
    "Commit",
    "CommitListener",
    "EventFeed",
    "Hook",
    "Part",
    "StaleList",
    "Store",
    "StoreError",
    "StoreFaults",
    "StoreStatistics",
    "Transaction",
    "WriteContext",
    "is_postgres",
    "open_store",
]
