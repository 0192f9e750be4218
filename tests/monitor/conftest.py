"""Fixtures for the monitoring tests: an output root of real jobs (scenarios.py), and a copy of recorded ones."""

from __future__ import annotations

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
    """Six real jobs (tiny.en on JFK, one per scenario), run through the CLI into a fresh output root."""
    scratch = tmp_path_factory.mktemp("monitor")
    return Jobs(scratch / "out", run_all(scratch / "out", scratch / "media"))


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """A writable copy of the recorded output root (the manifests of such a run), keyed by media name below."""
    root = tmp_path / "out"
    shutil.copytree(RECORDED, root)
    return root
