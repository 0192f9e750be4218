"""The speakers stage through the real CLI: labels in the JSON of every language, resumable, a failed diarization
that keeps the transcript, and bad settings refused at prepare in one line with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.models import speakers as store

pytestmark = pytest.mark.slow


def _job(out: Path) -> Path:
    (folder,) = [p for p in out.rglob("manifest.json")]
    return folder.parent


def _segments(folder: Path, language: str) -> list[dict]:
    return json.loads(next(folder.glob(f"*.{language}.json")).read_text())["segments"]


def _speaker_saying(segments: list[dict], word: str) -> str:
    (speaker,) = {s["speaker"] for s in segments if word in s["text"]}
    return speaker


@pytest.mark.e2e
def test_transcribe_with_speakers_auto_labels_segments_and_words(cli, turns_clip, speaker_models) -> None:  # type: ignore[no-untyped-def]
    path, _ = turns_clip
    done = cli("transcribe", str(path), "-s", "en", "--speakers", "auto")
    assert done.returncode == 0, done.stderr
    folder = _job(cli.out)
    segments = _segments(folder, "en")
    assert all(s["speaker"].startswith("SPEAKER_") for s in segments)
    assert all(w["speaker"] == s["speaker"] for s in segments for w in s["words"])
    reader, kennedy = _speaker_saying(segments, "Dashwood"), _speaker_saying(segments, "Americans")
    assert reader == "SPEAKER_00" and kennedy == "SPEAKER_01"  # in order of first appearance
    assert _speaker_saying(segments, "selfish") == reader == _speaker_saying(segments, "amiable")
    assert _speaker_saying(segments, "forward") not in (reader, kennedy)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert list(manifest["stages"]) == ["probe", "extract", "transcribe", "speakers", "subtitles"]
    assert manifest["stages"]["speakers"]["speakers"] == 3
    assert len(json.loads((folder / "work" / "speakers.json").read_text())["speakers"]) == 3
    again = cli("run", manifest["job_id"])  # resumable: a finished job does nothing again
    assert again.returncode == 0, again.stderr
    assert json.loads((folder / "manifest.json").read_text())["stages"] == manifest["stages"]


@pytest.mark.e2e
def test_a_translation_keeps_the_source_speakers(cli, turns_clip, speaker_models) -> None:  # type: ignore[no-untyped-def]
    path, _ = turns_clip
    done = cli("translate", str(path), "-s", "en", "-t", "es", "--speakers", "3")
    assert done.returncode == 0, done.stderr
    folder = _job(cli.out)
    source, target = _segments(folder, "en"), _segments(folder, "es")
    assert [s["speaker"] for s in target] == [s["speaker"] for s in source]
    assert len({s["speaker"] for s in target}) == 3


@pytest.mark.e2e
def test_a_failed_diarization_keeps_the_transcript_and_resumes(cli, tmp_path, speaker_models) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken-models"
    broken.mkdir()
    for name in (store.SEGMENTATION, store.EMBEDDING):
        (broken / name).write_bytes(b"not an onnx model")
    jfk = Path(__file__).resolve().parents[1] / "fixtures" / "jfk.wav"
    failed = cli("transcribe", str(jfk), "-s", "en", "--speakers", "auto", "--set", f"DIARIZATION_MODEL_DIR={broken}")
    assert failed.returncode == 1
    assert "stage speakers failed" in failed.stderr and "diarization worker failed" in failed.stderr
    folder = _job(cli.out)
    transcript = _segments(folder, "en")
    assert "Americans" in " ".join(s["text"] for s in transcript) and "speaker" not in transcript[0]
    stages = json.loads((folder / "manifest.json").read_text())["stages"]
    good = speaker_models[0].parent
    resumed = cli("run", folder.name, "--set", f"DIARIZATION_MODEL_DIR={good}")
    assert resumed.returncode == 0, resumed.stderr
    after = json.loads((folder / "manifest.json").read_text())["stages"]
    assert after["transcribe"] == stages["transcribe"]  # not redone
    assert after["speakers"]["state"] == "done"
    assert {s["speaker"] for s in _segments(folder, "en")} == {"SPEAKER_00"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--speakers", "0"), "DIARIZATION='0' is not valid"),
        (("--speakers", "-2"), "DIARIZATION='-2' is not valid"),
        (("--speakers", "1000"), "a number of speakers from 1 to 50"),
        (("--speakers", "two"), "allowed: off, auto"),
        (("--speakers", "auto", "--set", "DIARIZATION_THRESHOLD=-1"), "DIARIZATION_THRESHOLD"),
        (
            ("--speakers", "auto", "--set", "DIARIZATION_MIN_SPEAKERS=4", "--set", "DIARIZATION_MAX_SPEAKERS=2"),
            "DIARIZATION_MIN_SPEAKERS=4 is above DIARIZATION_MAX_SPEAKERS=2",
        ),
        (("--speakers", "auto", "--set", "DIARIZATION_MODEL_DIR=/nonexistent/models"), "DIARIZATION_MODEL_DIR"),
        (("--speakers", "auto", "missing-models"), "speaker models not installed"),
    ],
)
def test_bad_settings_are_one_line_errors_at_prepare(cli, tmp_path, args, says) -> None:  # type: ignore[no-untyped-def]
    env = {}
    if args[-1] == "missing-models":
        args, env = args[:-1], {"PIPELINE_MODELS_DIR": str(tmp_path / "empty-models")}
        shutil.copytree(store.models_dir() / "tiny.en", tmp_path / "empty-models" / "tiny.en")
        env["WHISPER_MODEL"] = "tiny.en"
    jfk = Path(__file__).resolve().parents[1] / "fixtures" / "jfk.wav"
    done = cli("prepare", str(jfk), "-w", "transcribe", "-s", "en", *args, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipeline: error:") and says in lines[0], lines
    assert not cli.out.exists() or not list(cli.out.rglob("manifest.json"))


def test_models_list_shows_the_installed_speaker_models(cli, speaker_models) -> None:  # type: ignore[no-untyped-def]
    segmentation, _ = speaker_models
    done = cli("models", "list")
    assert done.returncode == 0, done.stderr
    assert any(line.split()[:2] == ["speakers", "onnx-speakers"] for line in done.stdout.splitlines()), done.stdout
    assert str(segmentation.parent) in done.stdout
