"""The throwaway PostgreSQL cluster's own hygiene: clusters of killed test runs are swept, live ones left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.pg import Cluster, sweep_stale


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
        Path(orphan.root, "owner").write_text(f"{_dead_pid()}\n")
        removed = sweep_stale(pg_cluster.bindir)
        assert orphan.root in removed
        assert not os.path.exists(orphan.root)
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
        Path(pg_cluster.root, "owner").write_text(f"{os.getpid()}\n")
