"""Cue timing on the MLX code path: the real CLI on the `mps` profile (mlx, on its CPU build here, Metal on a
Mac), tiny.en converted by us, on a short clip of two real voices with known speech onsets (tests/cue_timing.py);
held to the mps profile's gates for tiny.en and recorded in the results like the E2E suites' figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cue_timing import build_clip, goforward, librivox, score

from pipeline.profiles import load_matrix
from pipeline.writers import read_subtitles

PROFILE = load_matrix().profile("mps")
pytestmark = pytest.mark.slow
MODEL = "tiny.en"  # mlx's CPU build decodes about in real time: the fastest model, the shortest clip


def test_mlx_cues_start_and_end_with_the_speech(mlx_models: dict[str, Path], tmp_path: Path, record_result) -> None:
    book = [librivox(f"sense_and_sensibility_01_austen_64kb-{n}") for n in ("0880", "0930")]
    voices = [book[0], goforward(tmp_path / "goforward.wav"), book[1]]  # a LibriVox reader and another man
    clip = build_clip(voices, [2.0, 2.5], tmp_path / "clip.wav", room_tone_db=-50.0)
    out = tmp_path / "out"
    env = os.environ | {"PIPELINE_PROFILE": PROFILE.name, "PIPELINE_OUT": str(out), "HF_HUB_OFFLINE": "1"}
    argv = ["transcribe", str(clip.path), "-s", "en", "--backend", "mlx", "--model", str(mlx_models[MODEL])]
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *argv], capture_output=True, text=True, env=env, timeout=1800
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [folder] = out.glob(f"*/*/*/*/{result.stdout.split()[0]}")
    asr = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["stages"]["transcribe"]
    timing = score(read_subtitles(folder / "clip.en.srt"), clip)
    record_result(
        suite="subtitle",
        case="cue-timing-mlx",
        audio_seconds=clip.duration,
        rtf=round(asr["wall_s"] / clip.duration, 4),
        backend=asr["backend"],
        extra={
            "model": MODEL,
            "device": asr.get("device"),
            "start_errors_s": list(timing.start_errors),
            "end_errors_s": list(timing.end_errors),
        },
        **timing.figures(),
    )
    assert asr["backend"] == "mlx", asr
    where = f"mlx {MODEL}: {timing}"
    assert timing.start_median <= PROFILE.threshold(MODEL, "cue_start_median"), where
    assert timing.start_max <= PROFILE.threshold(MODEL, "cue_start_max"), where
    assert timing.end_median <= PROFILE.threshold(MODEL, "cue_end_median"), where
