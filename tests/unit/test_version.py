"""The version is pyproject.toml's, read from the installed package's metadata; a checkout that is not installed
says so instead of claiming one."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pipeline

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_the_installed_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert pipeline.__version__ == project["version"]


def test_a_checkout_that_is_not_installed_has_an_unknown_version(tmp_path: Path) -> None:
    # A copy of the package alone on the path (-S: no site-packages; not the checkout itself, where an editable
    # install leaves pipeline.egg-info metadata beside the package).
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import pipeline; print(pipeline.__version__)"
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert result.stdout.strip() == "0+unknown"
