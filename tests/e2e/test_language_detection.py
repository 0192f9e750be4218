"""E2E (issue 12, row 5): with -s auto the language is voted from speech windows after VAD, not named after the
first 30 s of the file: Spanish after an intro of music or silence is Spanish."""

from __future__ import annotations

import pytest
import synthetic
from conftest import MODEL, threshold, wer

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("intro", "seconds"),
    [
        ("music", 20),  # the case
        ("music", 40),  # longer than Whisper's 30 s window: its own detection hears music only
        ("silence", 40),
    ],
)
def test_spanish_after_an_intro_is_detected_as_spanish(pipeline_cli, clips, tmp_path, record_job, intro, seconds):
    if MODEL.endswith(".en"):
        pytest.skip(f"{MODEL} is an English-only model; Spanish needs a multilingual one")
    spanish = clips["spanish"]
    make = synthetic.music if intro == "music" else synthetic.silence
    lead = make(tmp_path / f"{intro}.wav", seconds)
    path = synthetic.join(tmp_path / f"{intro} then spanish.wav", lead, spanish["path"])
    run = pipeline_cli("transcribe", str(path), "-s", "auto")
    assert run.manifest["language"] == "es", run.manifest["language"]
    score = wer(spanish["text"], run.text(path.stem, "es"))
    record_job(run, "transcribe", f"spanish-after-{seconds}s-{intro}", wer=score)
    assert score <= threshold("spanish_wer"), run.text(path.stem, "es")
