"""A plain (non-editable) install carries the matrix: pipeline/data/profiles.toml is a link to the one file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.profiles import load_matrix

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "pipeline" / "data" / "profiles.toml"


def test_the_packaged_matrix_is_a_link_to_the_matrix_not_a_copy():
    assert PACKAGED.is_symlink()
    assert PACKAGED.resolve() == (ROOT / "matrix" / "profiles.toml").resolve()


@pytest.mark.slow
def test_a_built_wheel_ships_the_matrix_and_finds_it(tmp_path: Path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--quiet", "--wheel-dir", str(tmp_path)],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        timeout=300,
    )
    (wheel,) = tmp_path.glob("pipeline-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("pipeline/data/profiles.toml")
    assert shipped == (ROOT / "matrix" / "profiles.toml").read_bytes()
    # Installed outside the repository, matrix_path() falls through to the shipped copy.
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    found = subprocess.run(
        [sys.executable, "-c", "from pipeline.profiles import load_matrix as m; print(m().path, *m().profiles)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site), "PIPELINE_MATRIX": ""},
    )
    path, *profiles = found.stdout.split()
    assert Path(path) == site / "pipeline" / "data" / "profiles.toml"
    assert profiles == list(load_matrix().profiles)


def test_outside_a_checkout_repository_commands_refuse_and_write_nothing(tmp_path: Path):
    # The package as a wheel installs it: a plain copy (the matrix link followed) with no checkout around it.
    site = tmp_path / "site"
    shutil.copytree(ROOT / "pipeline", site / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    before = sorted(p.relative_to(site) for p in site.rglob("*"))
    env = {**os.environ, "PYTHONPATH": str(site), "PIPELINE_MATRIX": ""}

    def pipeline(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", "matrix", *args], capture_output=True, text=True, cwd=tmp_path, env=env
        )

    for command in (["render", "--write"], ["render"], ["check"], ["requirements", "cpu"]):
        result = pipeline(*command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr.splitlines() == [
            f"pipeline: error: matrix {command[0]}: {site / 'pipeline'} is not a checkout of the project (no "
            "pyproject.toml and matrix/profiles.toml there); it works on a repository checkout only: run it from "
            "one, or pass --root (or --matrix) of one"
        ]
        assert result.stdout == ""
    assert sorted(p.relative_to(site) for p in site.rglob("*") if "__pycache__" not in p.parts) == before
    # What reads the packaged matrix still works there.
    listed = pipeline("list", "--names")
    assert listed.returncode == 0 and listed.stdout.split() == list(load_matrix().profiles)
