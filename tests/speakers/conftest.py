"""Real diarization on real speech: the speaker models (`pipeline models install speakers`, built once into the
shared models folder), the multi-speaker clip, and a diarization run the way the speakers stage runs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.profiles import load_matrix
from pipeline.speakers import DiarizationRequest, Turn, relabel
from pipeline.speakers.isolation import run_diarization
from tests.speakers import clips

PROFILE = load_matrix().profile(os.environ.get("PIPELINE_PROFILE", "cpu"))


def threshold(key: str) -> float:
    return PROFILE.threshold("speakers", key)


@pytest.fixture(scope="session")
def speaker_models() -> tuple[Path, Path]:
    from pipeline.models import speakers

    speakers.install()  # a no-op once installed (sha256-checked)
    return speakers.resolve()


@pytest.fixture(scope="session")
def turns_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Turn]]:
    path = tmp_path_factory.mktemp("speakers") / "turns.wav"
    return path, clips.turns_clip(path)


@pytest.fixture
def diarize(speaker_models: tuple[Path, Path], tmp_path: Path):  # type: ignore[no-untyped-def]
    def run(audio: Path, argv: list[str] | None = None, **settings: object) -> list[Turn]:
        segmentation, embedding = speaker_models
        request = DiarizationRequest(str(audio), str(segmentation), str(embedding), **settings)  # type: ignore[arg-type]
        workdir = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
        outcome = run_diarization(request, workdir, log_path=tmp_path / "log", timeout=600, argv=argv)
        return relabel(outcome.turns)

    return run
