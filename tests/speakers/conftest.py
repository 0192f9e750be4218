"""Real diarization on real speech: the speaker models (`pipeline models install speakers`, built once into the
shared models folder), the multi-speaker clip, and a diarization run the way the speakers stage runs it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pipeline.audio import duration as audio_duration
from pipeline.profiles import load_matrix
from pipeline.speakers import DiarizationRequest, Turn, relabel, speakers
from pipeline.speakers.isolation import run_diarization

from . import clips

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
        started = time.monotonic()
        outcome = run_diarization(request, workdir, log_path=tmp_path / "log", timeout=600, argv=argv)
        run.facts = {  # type: ignore[attr-defined]
            "audio_seconds": round(audio_duration(audio), 3),
            "wall_s": round(time.monotonic() - started, 3),
        }
        return relabel(outcome.turns)

    return run


@pytest.fixture
def record_speakers(record_result, diarize):  # type: ignore[no-untyped-def]
    """Record a diarization case in the matrix results (the report's DER and speaker-count columns), before its
    assertions, so a missed threshold is recorded with its figures. DER only where the reference is a human
    one (pyannote's RTTM); no peak: the kernel's counts the forked test process's pages too."""

    def record(case: str, turns: list[Turn], expected: int, der: float | None = None) -> None:
        found = len(speakers(turns))
        facts = getattr(diarize, "facts", {})
        extra = {
            "speakers_expected": expected,
            "speakers_found": found,
            **({"der": round(der, 4)} if der is not None else {}),
        }
        record_result(suite="speakers", case=case, backend="sherpa-onnx", extra=extra, **facts)

    return record


MODEL = os.environ.get("PIPELINE_TEST_MODEL", load_matrix().defaults["test_model"])


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    """`python -m pipeline ARGS` as a user runs it, in a private out/ root; returns (process, out root)."""
    import subprocess
    import sys

    out_root = tmp_path / "out"

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environ = os.environ | {
            "PIPELINE_PROFILE": PROFILE.name,
            "WHISPER_MODEL": MODEL,
            "PIPELINE_OUT": str(out_root),
            "HF_HUB_OFFLINE": "1",
            **(env or {}),
        }
        argv = [sys.executable, "-m", "pipeline", *args]
        return subprocess.run(argv, capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=1800)

    run.out = out_root  # type: ignore[attr-defined]
    return run
