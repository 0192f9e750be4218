"""Packaged models installed into the models folder: complete, checked, and readable by everyone who may read it."""

from __future__ import annotations

import os
import stat

from pipeline import models


def test_an_installed_model_is_readable_by_other_users(tmp_path, monkeypatch):
    """An image installs its model as root and runs as another user; a server shares one models folder."""
    monkeypatch.setenv("PIPELINE_MODELS_DIR", str(tmp_path / "models"))
    previous = os.umask(0o022)
    try:
        folder = models.install("tiny.en")
    finally:
        os.umask(previous)
    assert folder == tmp_path / "models" / "tiny.en" and models.model_format(folder) == models.CT2
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o644}
