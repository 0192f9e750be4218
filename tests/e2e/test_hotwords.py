"""E2E (issue 12, row 4): names and jargon. A rare name that Whisper mishears is heard with WHISPER_HOTWORDS."""

from __future__ import annotations

import subprocess

import pytest
import synthetic
from conftest import keyword_recall

pytestmark = pytest.mark.e2e
SENTENCES = (
    "Yesterday I had lunch with Siobhan Quigley at the office. Our new container platform runs on Kubernetes. "
    "My manager Tadeusz Wrzesniewski approved the budget."
)
# Whisper base hears "Shivon" (faster-whisper) or "Shivorn" (whisperx) without a hint; the other names come and go.
NAMES = ["Siobhan"]


@pytest.fixture(scope="session")
def names_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("names")
    raw = folder / "raw.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", str(raw), SENTENCES], check=True)
    return synthetic.join(folder / "names.wav", raw)


def test_a_rare_name_is_misheard_without_hotwords_and_heard_with_them(pipeline_cli, names_clip, record_job):
    plain = pipeline_cli("transcribe", str(names_clip), "-s", "en")
    hinted = pipeline_cli(
        "transcribe", str(names_clip), "-s", "en", env={"WHISPER_HOTWORDS": "Siobhan Quigley, Kubernetes, Tadeusz"}
    )
    without, with_ = plain.text("names", "en"), hinted.text("names", "en")
    record_job(hinted, "transcribe", "hotwords", extra={"without": without, "with": with_})
    assert keyword_recall(NAMES, without) == 0, without
    assert keyword_recall(NAMES, with_) == 1, with_
