"""E2E: speaker-aware and styled output (issue 14) on a real transcript, and a real burn-in through libass.

Speakers come from a named test double (speaker_double.py: clause-by-clause turns on jfk.wav's real tiny.en
transcript), standing where the speakers stage runs; the real diarization has its own suite (tests/speakers/).
"""

from __future__ import annotations

import itertools
import json
import subprocess

import numpy as np
import pysubs2
import pytest
from conftest import make_video
from speaker_double import rerun_after_transcription, take_turns
from subtitle_checks import assert_readable

from pipeline.writers import read_subtitles

pytestmark = pytest.mark.e2e

NAMES = {"SPEAKER_00": "Ravi", "SPEAKER_01": "Speaker 2"}  # --speaker-names Ravi: one name for two speakers


def _probe(path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def _frame(path, seconds: float, size: tuple[int, int]) -> np.ndarray:
    """The grey frame shown at `seconds`, decoded by ffmpeg."""
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{seconds:.3f}", "-i", str(path), "-frames:v", "1",
         "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    width, height = size
    return np.frombuffer(raw, np.uint8)[: width * height].reshape(height, width).astype(np.int16)


def _speakers(cue) -> list:
    return list(dict.fromkeys(cue.speakers))


def test_speakers_in_every_output_and_a_burned_in_translation(pipeline_cli, clips, tmp_path, record_job):
    video = make_video(clips["jfk"], tmp_path / "Two Speakers.mp4", "aac")
    stem = video.stem
    args = ("--formats", "srt,vtt,ass", "--speaker-names", "Ravi", "--burn-in", "es")
    first = pipeline_cli("prepare", str(video), "-w", "subtitle", "-s", "en", "-t", "es", *args)
    pipeline_cli("run", first.job_id)
    job = first.folder
    labels = take_turns(job / f"{stem}.en.json", ("Ravi",))  # the double, where the speakers stage runs
    assert labels[:2] == ["SPEAKER_00", "SPEAKER_01"]
    rerun_after_transcription(job, stem)
    pipeline_cli("run", first.job_id)

    # JSON: a speaker per segment and word; the translation keeps the source's, segment by segment
    source = json.loads(first.output(stem, "en", "json").read_text(encoding="utf-8"))
    spanish = json.loads(first.output(stem, "es", "json").read_text(encoding="utf-8"))
    assert [s["speaker"] for s in source["segments"]] == labels
    assert all(w["speaker"] == s["speaker"] for s in source["segments"] for w in s["words"])
    assert [s["speaker"] for s in spanish["segments"]] == labels
    assert spanish["speakers"] == [{"id": k, "name": v} for k, v in NAMES.items()]

    # TXT: turns under their names
    text = first.text(stem, "en")
    expected = "\n".join(
        f"{NAMES[label]}:\n" + "".join(" ".join(s["text"].split()) + "\n" for s in turn)
        for label, turn in itertools.groupby(source["segments"], key=lambda s: s["speaker"])
    )
    assert text.startswith("Ravi:\nAnd so my fellow Americans") and text == expected, text

    for language in ("en", "es"):
        srt = assert_readable(first.output(stem, language, "srt"))
        vtt = read_subtitles(first.output(stem, language, "vtt"))
        ass = read_subtitles(first.output(stem, language, "ass"))
        assert [c.lines for c in vtt] == [c.lines for c in srt] == [c.lines for c in ass]
        # No cue spans two speakers, unless it is a dashed two-line dialogue cue; both speakers are shown, in
        # the same order in every format and language
        for cue in vtt:
            assert len(_speakers(cue)) == 1 or (len(cue.lines) == 2 and all(x.startswith("- ") for x in cue.lines))
        assert list(dict.fromkeys(s for c in vtt for s in c.speakers)) == ["Ravi", "Speaker 2"]
        assert [c.speakers for c in ass] == [c.speakers for c in vtt]
        styles = pysubs2.load(str(first.output(stem, language, "ass"))).styles
        assert styles["Ravi"].primarycolor != styles["Speaker 2"].primarycolor
        vtt_text = first.output(stem, language, "vtt").read_text(encoding="utf-8")
        assert "<v Ravi>" in vtt_text and "<v Speaker 2>" in vtt_text

    # The burned-in Spanish video: H.264 of the source's duration, subtitles drawn where a cue shows
    burned = first.folder / f"{stem}.es.burned.mp4"
    info, original = _probe(burned), _probe(video)
    (stream,) = [s for s in info["streams"] if s["codec_type"] == "video"]
    assert stream["codec_name"] == "h264" and (stream["width"], stream["height"]) == (320, 240)
    assert float(info["format"]["duration"]) == pytest.approx(float(original["format"]["duration"]), abs=0.15)
    assert [s["codec_type"] for s in info["streams"]].count("audio") == 1
    mux = first.manifest["stages"]["mux"]
    assert mux["state"] == "done" and mux["burned"]["output"] == burned.name and burned.name in mux["outputs"]
    cues = read_subtitles(first.output(stem, "es", "ass"))

    def changed(seconds: float) -> tuple[float, float]:
        """Shares of the top half and bottom third's pixels that the burn-in changed by more than 40 grey levels
        (glyphs and their outline; H.264's own re-encoding noise stays far below that)."""
        diff = np.abs(_frame(burned, seconds, (320, 240)) - _frame(video, seconds, (320, 240))) > 40
        return float(diff[:120].mean()), float(diff[160:].mean())

    top, bottom = changed((cues[0].start + cues[0].end) / 2)
    before = changed(cues[0].start / 2)  # no cue on screen yet
    record_job(first, "subtitle", "speakers-burn-in", extra={"burned_bottom": bottom, "burned_top": top})
    assert bottom > 0.01 and top < 0.001, (top, bottom)  # bottom-centred text drawn, the picture kept
    assert max(before) < 0.001, before
    assert not list(job.glob(".*.part*")), "a temporary file was left behind"


def _rejected(run, *phrases: str) -> None:
    assert run.result.returncode == 2, run.result.stderr
    lines = run.result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipeline: error: "), run.result.stderr
    assert all(p in lines[0] for p in phrases), lines[0]
    assert not run.out_root.exists(), "something was written for a rejected job"


def test_burn_in_of_audio_only_media_is_refused_at_prepare(pipeline_cli, clips):
    run = pipeline_cli("subtitle", clips["jfk"]["path"], "-s", "en", "-t", "es", "--burn-in", "source", check=False)
    _rejected(run, "BURN_IN=source", "no video stream", "allowed")


def test_burn_in_needs_a_language_of_the_job_and_the_subtitle_workflow(pipeline_cli, clips, tmp_path):
    video = make_video(clips["jfk"], tmp_path / "talk.mp4", "aac")
    _rejected(pipeline_cli("subtitle", str(video), "-s", "en", "-t", "es", "--burn-in", "pt", check=False),
              "BURN_IN=pt is not a language of this job", "en, es")  # fmt: skip
    _rejected(pipeline_cli("transcribe", str(video), "-s", "en", "--burn-in", "source", check=False),
              "needs the subtitle workflow")  # fmt: skip


@pytest.mark.parametrize(
    ("names", "phrase"),
    [("Ravi,,Asha", "an empty name"), ("Ravi," + "A" * 41, "41 characters")],
)
def test_bad_speaker_names_are_refused_at_prepare(pipeline_cli, clips, names, phrase):
    run = pipeline_cli("transcribe", clips["jfk"]["path"], "-s", "en", "--speaker-names", names, check=False)
    _rejected(run, "SPEAKER_NAMES", phrase, "allowed")
