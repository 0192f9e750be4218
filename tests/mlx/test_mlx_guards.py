"""The guards and the language vote on the MLX code path (mlx's CPU build here): through the real ASR worker, with
the `mps` profile's guard values from the matrix file."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from mlx_speech import REPO

from pipeline.asr import AsrRequest, Transcript
from pipeline.asr.isolation import run_isolated
from pipeline.config import Config
from pipeline.hardware import resolve_guards
from pipeline.profiles import load_matrix

PROFILE = load_matrix().profile("mps")
SPANISH = REPO / "tests/fixtures/spanish.wav"
# Whisper's settings before the guards: no thresholds, each window prompted with the last one's text, no filter.
UNGUARDED = {
    "no_speech_threshold": None,
    "log_prob_threshold": None,
    "compression_ratio_threshold": None,
    "condition_on_previous_text": True,
    "repetition_filter": False,
}


def sox(*args: str) -> None:
    subprocess.run(["sox", "-R", "-q", *args], check=True)


def worker(tmp_path: Path, model_dir: Path, audio: Path, **changes) -> Transcript:
    """One real worker process, started and judged as the transcribe stage does (`run_isolated`)."""
    request = AsrRequest(
        backend="mlx",
        model_dir=str(model_dir),
        device=PROFILE.runtime.device,
        compute_type=PROFILE.runtime.compute_type,
        audio=str(audio),
        language=None,
        batch_size=PROFILE.runtime.batch_size,
        chunk_seconds=PROFILE.runtime.chunk_seconds,
        beam_size=1,
        **resolve_guards(Config(), PROFILE),
    )
    folder = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    folder.mkdir()
    outcome = run_isolated([replace(request, **changes)], folder, timeout=900)
    assert [a.outcome for a in outcome.attempts] == ["ok"], outcome.attempts
    return outcome.transcript


def test_the_guards_reach_mlx_whisper(tmp_path: Path, mlx_models: dict[str, Path]) -> None:
    """10 s of white noise: unguarded, tiny.en writes something ("."); with the profile's guards, nothing."""
    noise = tmp_path / "noise.wav"
    sox("-n", "-r", "16000", "-c", "1", "-b", "16", str(noise), "synth", "10", "whitenoise", "vol", "0.3")
    unguarded = worker(tmp_path, mlx_models["tiny.en"], noise, **UNGUARDED)
    assert unguarded.segments, "tiny.en wrote nothing on noise even without its guards: this test proves nothing"
    guarded = worker(tmp_path, mlx_models["tiny.en"], noise)
    assert guarded.segments == ()
    assert all(r.reason and 0 <= r.start <= r.end <= 10.5 for r in guarded.removed)


@pytest.mark.slow
def test_spanish_after_35_s_of_silence_is_spanish(tmp_path: Path, mlx_models: dict[str, Path]) -> None:
    """mlx-whisper names the language from the first 30 s (here silence: it said English and translated); the
    speech windows' vote says Spanish, and the words are Spanish."""
    clip = tmp_path / "silence then spanish.wav"
    sox("-n", "-r", "16000", "-c", "1", "-b", "16", str(tmp_path / "silence.wav"), "trim", "0", "35")
    sox(str(tmp_path / "silence.wav"), str(SPANISH), "-b", "16", "-e", "signed-integer", str(clip))
    transcript = worker(tmp_path, mlx_models["base"], clip)
    assert transcript.language == "es"
    words = transcript.text.lower()
    assert "madrid" in words and "familia" in words and "playa" in words, transcript.text
    assert all(s.end > 35 for s in transcript.segments)  # none inside the silence (starts are window-coarse)
