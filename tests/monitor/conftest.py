"""Fixtures for the monitoring tests: an output root of real jobs (scenarios.py), and a copy of recorded ones."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from .scenarios import RECORDED, run_all


@dataclass(frozen=True)
class Jobs:
    root: Path
    ids: dict[str, str]  # scenario -> job id


@pytest.fixture(scope="session")
def real_jobs(tmp_path_factory: pytest.TempPathFactory) -> Jobs:
    """Six real jobs (tiny.en on JFK, one per scenario), run through the CLI into a fresh output root: once per
    test session, shared by pytest-xdist's workers (their session folder is their base folder's parent)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        scratch = tmp_path_factory.mktemp("monitor")
        return Jobs(scratch / "out", run_all(scratch / "out", scratch / "media"))
    scratch = tmp_path_factory.getbasetemp().parent / "monitor-real-jobs"
    scratch.mkdir(exist_ok=True)
    with open(scratch / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker runs the jobs; the others wait, then read its ids
        ids_file = scratch / "ids.json"
        if not ids_file.exists():
            ids_file.write_text(json.dumps(run_all(scratch / "out", scratch / "media")))
        return Jobs(scratch / "out", json.loads(ids_file.read_text()))


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """A writable copy of the recorded output root (the manifests of such a run), keyed by media name below."""
    root = tmp_path / "out"
    shutil.copytree(RECORDED, root)
    return root
