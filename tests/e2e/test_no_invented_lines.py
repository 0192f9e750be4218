"""E2E (issue 12, row 3): no invented lines. Music, noise and silence give no text; real speech keeps its WER; what
the guards removed is in the manifest and counted by `pipeline status`; silence says "no speech found", exit 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import synthetic
from conftest import threshold, wer

from pipeline.asr import Segment
from pipeline.asr.guards import Limits, loop_share, units, verdict
from pipeline.writers import read_subtitles

pytestmark = pytest.mark.e2e
MUSIC_SECONDS = 20.0
SLACK = 1.0  # a segment or cue may run this far into the music (VAD and word edges)


@pytest.fixture(scope="session")
def quiet(tmp_path_factory) -> dict[str, Path]:
    """A minute of silence and of white noise, and 20 s of instrumental music."""
    folder = tmp_path_factory.mktemp("no-speech")
    return {
        "silence": synthetic.silence(folder / "silence.wav", 60),
        "noise": synthetic.noise(folder / "noise.wav", 60),
        "music": synthetic.music(folder / "music.wav", MUSIC_SECONDS),
    }


@pytest.fixture(scope="session")
def music_between_sentences(tmp_path_factory, quiet, clips) -> tuple[Path, str, tuple[float, float]]:
    """JFK's sentence, 20 s of music, a LibriVox sentence: the file, its reference, where the music is."""
    first, second = clips["jfk"], clips["librivox-0870"]
    target = synthetic.join(tmp_path_factory.mktemp("music") / "talk with a music break.wav",
                            first["path"], quiet["music"], second["path"])
    start = synthetic.duration(first["path"])
    return target, f"{first['text']} {second['text']}", (start, start + MUSIC_SECONDS)


def _segments(run, stem: str, language: str) -> list[dict]:
    return json.loads(run.output(stem, language, "json").read_text(encoding="utf-8"))["segments"]


@pytest.mark.parametrize("vad", ["true", "false"])
def test_music_between_two_sentences_holds_no_cue(pipeline_cli, music_between_sentences, record_job, vad):
    """With VAD (the profile's default) and without it: the decoder's own guards must then hold on their own."""
    path, reference, (start, end) = music_between_sentences
    run = pipeline_cli("transcribe", str(path), "-s", "en", env={"WHISPER_VAD": vad})
    text = run.text(path.stem, "en")
    score = wer(reference, text)
    record_job(run, "transcribe", f"music-break-vad-{vad}", wer=score)
    assert score <= threshold("librivox_wer"), text
    inside = (start + SLACK, end - SLACK)
    for item in [*_segments(run, path.stem, "en"), *read_subtitles(run.output(path.stem, "en", "srt"))]:
        begin, finish = (item["start"], item["end"]) if isinstance(item, dict) else (item.start, item.end)
        assert finish <= inside[0] or begin >= inside[1], f"{item} is inside the music {start:.1f}-{end:.1f} s"


@pytest.mark.parametrize(("kind", "vad"), [("silence", "true"), ("noise", "true"), ("noise", "false"),
                                           ("music", "false")])
def test_no_speech_gives_no_text_and_says_so(pipeline_cli, quiet, record_job, kind, vad):
    path = quiet[kind]
    run = pipeline_cli("transcribe", str(path), "-s", "auto", env={"WHISPER_VAD": vad})
    assert run.result.returncode == 0
    notices = [line for line in run.result.stderr.splitlines() if "no speech found" in line]
    assert len(notices) == 1 and path.name in notices[0], run.result.stderr
    manifest = run.manifest
    stage = manifest["stages"]["transcribe"]
    record_job(run, "transcribe", f"{kind}-vad-{vad}", extra={"removed": stage["removed_segments"]})
    # No language is named after noise: "und" (undetermined), and the job is done.
    assert manifest["language"] == "und" and stage["state"] == "done"
    assert stage["speech"] is False and stage["segments"] == 0
    assert _segments(run, path.stem, "und") == [] and run.text(path.stem, "und") == ""
    for fmt in ("srt", "vtt"):  # written, and empty: the media's subtitles are no subtitles
        assert read_subtitles(run.output(path.stem, "und", fmt)) == []
    assert manifest["stages"]["subtitles"]["cues"] == {"und": 0}
    removed = stage["removed"]
    assert stage["removed_segments"] == len(removed)
    assert all(0 <= r["start"] <= r["end"] <= 61 and r["text"] and r["reason"] for r in removed)
    status = pipeline_cli("status", run.job_id).result.stdout
    assert "no speech found" in status
    assert (f"{len(removed)} invented segment(s) removed" in status) == bool(removed), status


def test_a_looping_decode_is_cut_and_recorded(pipeline_cli, quiet, record_job):
    """Whisper's old defaults (no VAD, each window prompted with the previous one's text) loop over this noise
    ("I don't know if it's true, but I'm sure it's true, but I'm sure it's true, ..."). With the thresholds and the
    filter off the loops are in the transcript; with the filter alone they are cut and recorded (time, text,
    reason); with the profile's guards nothing is left. faster-whisper: the backend whose VAD can be switched off."""
    path = quiet["noise"]
    old_defaults = {"WHISPER_VAD": "false", "WHISPER_CONDITION_ON_PREVIOUS_TEXT": "true"}
    no_thresholds = old_defaults | {
        "WHISPER_COMPRESSION_RATIO_THRESHOLD": "100",
        "WHISPER_NO_SPEECH_THRESHOLD": "1",
        "WHISPER_HALLUCINATION_SILENCE_THRESHOLD": "0",
    }
    args = ("transcribe", str(path), "-s", "en", "--backend", "faster-whisper")
    raw = pipeline_cli(*args, env=no_thresholds | {"WHISPER_REPETITION_FILTER": "false"})
    loops = [s for s in _segments(raw, path.stem, "en") if verdict(Segment(s["start"], s["end"], s["text"]), Limits())]
    assert loops, f"no loop to cut: {raw.text(path.stem, 'en')!r}"

    filtered = pipeline_cli(*args, env=no_thresholds)
    kept = _segments(filtered, path.stem, "en")
    stage = filtered.manifest["stages"]["transcribe"]
    removed = stage["removed"]
    record_job(filtered, "transcribe", "noise-loop", extra={"loops": len(loops), "removed": len(removed)})
    # No loop is left (one said with confidence keeps its first time round), and each is recorded where it was.
    assert all(loop_share(units(s["text"])) == 0 for s in kept), kept
    for loop in loops:
        assert any(
            r["start"] < loop["end"] and loop["start"] < r["end"] and r["reason"].startswith(("loop", "repetitive"))
            for r in removed
        ), (loop, removed)
    assert f"{len(removed)} invented segment(s) removed" in pipeline_cli("status", filtered.job_id).result.stdout

    guarded = pipeline_cli(*args, env=old_defaults)
    assert _segments(guarded, path.stem, "en") == [] and guarded.manifest["stages"]["transcribe"]["speech"] is False
