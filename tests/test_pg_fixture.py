"""The throwaway PostgreSQL cluster's own hygiene: clusters of killed test runs are swept, live ones left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from tests.pg import PARENT, PREFIX, Cluster, owner_line, sweep_stale


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_cluster_whose_owner_died_is_stopped_and_removed(pg_cluster: Cluster) -> None:
    """A cluster left running by a killed pytest is stopped and its directory removed; the live session's is not."""
    orphan = Cluster(pg_cluster.bindir)
    orphan.start()
    try:
        postmaster = orphan.postmaster_pid()
        assert postmaster is not None
        dead = _dead_pid()
        Path(orphan.root, "owner").write_text(owner_line().replace(str(os.getpid()), str(dead), 1))
        removed = sweep_stale(pg_cluster.bindir)
        assert not os.path.exists(orphan.root)  # (another test worker's sweep may have been first)
        assert not Path(f"/proc/{postmaster}").exists() or "postgres" not in Path(
            f"/proc/{postmaster}/cmdline"
        ).read_bytes().decode(errors="replace")
        assert pg_cluster.root not in removed
        assert os.path.exists(pg_cluster.data)
        assert pg_cluster.psql("postgres", "SELECT 1").strip() == "1"
    finally:
        if os.path.exists(orphan.root):
            orphan.stop()


def test_a_cluster_without_an_owner_file_is_left_alone(pg_cluster: Cluster, tmp_path: Path) -> None:
    """A directory with the clusters' prefix but no owner file (being made, or not ours) is never touched."""
    Path(pg_cluster.root, "owner").unlink()
    try:
        assert pg_cluster.root not in sweep_stale(pg_cluster.bindir)
        assert os.path.exists(pg_cluster.data)
    finally:
        Path(pg_cluster.root, "owner").write_text(owner_line())


def test_a_released_database_comes_back_empty(pg_cluster: Cluster) -> None:
    """A database given back is handed out again only emptied: no table, no extension, no connection left."""
    uri = pg_cluster.new_database()
    name = uri.split("///", 1)[1].split("?", 1)[0]
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        lingering = psycopg.connect(uri, autocommit=True)
        pg_cluster.release(uri)
    assert lingering.closed or _is_cut(lingering)
    again = pg_cluster.new_database()
    assert again == uri
    with psycopg.connect(again, autocommit=True) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        extensions = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()
        others = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
        ).fetchone()
    assert tables == (0,) and extensions == (0,) and others == (0,)
    pg_cluster.release(again)


def _is_cut(conn: psycopg.Connection[Any]) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    finally:
        conn.close()
    return False


def test_a_cluster_of_another_pid_namespace_or_user_is_left_alone(pg_cluster: Cluster) -> None:
    """An owner that is no process here may live in another PID namespace, or be another user's: never swept."""
    roots = [tempfile.mkdtemp(prefix=PREFIX, dir=PARENT) for _ in range(2)]
    try:
        _pid, namespace, uid = owner_line().split()
        dead = str(_dead_pid())
        Path(roots[0], "owner").write_text(f"{dead} pid:[1] {uid}\n")
        Path(roots[1], "owner").write_text(f"{dead} {namespace} {int(uid) + 1}\n")
        removed = sweep_stale(pg_cluster.bindir)
        assert all(os.path.isdir(root) for root in roots) and not set(roots) & set(removed)
    finally:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
