"""Databases at an older schema version, made by the migrations up to it, for the migration tests."""

from __future__ import annotations

import os
import sqlite3

from todod.store._sqlite import APPLICATION_ID, DB_NAME, MIGRATIONS


def make_database(data_dir: str, version: int) -> sqlite3.Connection:
    """A fresh database in ``data_dir`` at schema ``version``, as the todod of that version made it.

    Returns an autocommit connection to it for the test to fill; close it before opening the store.
    """
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    conn = sqlite3.connect(os.path.join(data_dir, DB_NAME), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for steps in MIGRATIONS[:version]:
        for step in steps:
            if isinstance(step, str):
                conn.execute(step)
            else:
                step(conn)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {version}")
    return conn
