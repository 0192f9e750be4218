"""Every file derived from the matrix, rendered whole: tox.ini (`tox_ini`), the CI workflow and its actionlint
config (`ci`), one Dockerfile per containerised profile (`images`). Here: all of them at once, how the files
on disk differ from them, and writing them.

The Makefile is not rendered: it reads the matrix when it runs. `pipeline matrix check` compares every file
here with what rendering makes, so editing a derived file by hand is caught; change the matrix and re-render
instead.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from pipeline import atomic
from pipeline.matrix.ci import ACTIONLINT, WORKFLOW, render_actionlint, render_workflow
from pipeline.matrix.images import container_profiles, dockerfile_path, render_dockerfile
from pipeline.matrix.tox_ini import TOX, render_tox
from pipeline.profiles import Matrix


def render_all(matrix: Matrix) -> dict[Path, str]:
    """Every derived file, by path relative to the repository root."""
    files = {
        TOX: render_tox(matrix),
        WORKFLOW: render_workflow(matrix),
        ACTIONLINT: render_actionlint(matrix),
    }
    for profile in container_profiles(matrix):
        files[dockerfile_path(profile)] = render_dockerfile(matrix, profile)
    return files


def stale(root: Path, matrix: Matrix) -> dict[Path, str]:
    """Derived files whose content on disk is not what rendering makes: path -> diff (disk -> rendered)."""
    out: dict[Path, str] = {}
    for rel, text in render_all(matrix).items():
        path = root / rel
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != text:
            out[rel] = "".join(
                difflib.unified_diff(
                    current.splitlines(True), text.splitlines(True), f"{rel} (on disk)", f"{rel} (rendered)"
                )
            )
    return out


def write(root: Path, matrix: Matrix) -> list[Path]:
    """Write the derived files that changed; return their paths."""
    changed = list(stale(root, matrix))
    rendered = render_all(matrix)
    for rel in changed:
        atomic.write_text(root / rel, rendered[rel])
    return changed
