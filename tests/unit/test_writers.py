"""Subtitle and transcript files: round trips (pysubs2, Transcript.from_dict); real ffmpeg reads them."""

from __future__ import annotations

import json
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.asr import Segment, Transcript, Word
from pipeline.errors import PipelineError
from pipeline.subtitles import Cue, build_cues
from pipeline.writers import (
    read_subtitles,
    transcript_dict,
    write_subtitles,
    write_transcript_json,
    write_transcript_txt,
)

CUES = [
    Cue(0.0, 2.5, ("And so my fellow Americans,", "ask not what your country can do")),
    Cue(2.54, 4.0, ("भारत एक बड़ा देश है।", "दिल्ली भारत की राजधानी है।")),
    Cue(4.2, 6.123, ("我们今天去公园玩，", "然后去商店买东西。")),
    Cue(6.2, 8.0, ("مرحبا بكم في هذا الاختبار،", "هذا نص عربي.")),
    Cue(8.1, 9.0, ("Tom & Jerry: a < b > c --> d", "{not a tag} <i>kept</i>")),
    Cue(3600.0, 3601.999, ("Chapter", "12")),  # a number alone on the last line of the last cue
]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_round_trip_keeps_times_lines_and_scripts(tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    write_subtitles(CUES, path, fmt)
    assert read_subtitles(path) == CUES
    raw = path.read_bytes()
    assert b"\r" not in raw and not raw.startswith(b"\xef\xbb\xbf")  # UTF-8, no BOM, "\n" line ends
    text = raw.decode("utf-8")
    assert "भारत एक बड़ा देश है।\nदिल्ली भारत की राजधानी है।\n" in text
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    if fmt == "srt":
        assert text.startswith("1\n00:00:00,000 --> 00:00:02,500\nAnd so my fellow Americans,\n")
        assert "01:00:00,000 --> 01:00:01,999" in text
    else:
        assert text.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:02.500\n")
        assert "Tom &amp; Jerry: a &lt; b &gt; c --&gt; d" in text  # cue text is markup in WebVTT


def test_rewrite_replaces_the_file(tmp_path):
    path = tmp_path / "out.srt"
    write_subtitles(CUES, path, "srt")
    write_subtitles(CUES[:1], path, "srt")
    assert read_subtitles(path) == CUES[:1]


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(PipelineError, match="srt, vtt, ass"):
        write_subtitles(CUES, tmp_path / "out.sub", "sub")
    assert not list(tmp_path.iterdir())


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\"),
    min_size=1,
    max_size=200,
)
_items = st.lists(st.tuples(st.floats(0, 300), st.floats(0, 10), _text), max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_items, st.sampled_from(("srt", "vtt")))
def test_any_built_cues_survive_a_round_trip(tmp_path, items, fmt):
    """Whatever build_cues makes comes back unchanged (except ASS's backslash escapes, left out here)."""
    cues = build_cues([Segment(start, start + length, text) for start, length, text in items])
    path = tmp_path / f"any.{fmt}"
    write_subtitles(cues, path, fmt)
    assert read_subtitles(path) == cues


@pytest.mark.parametrize(("fmt", "codec"), [("srt", "subrip"), ("vtt", "webvtt")])
def test_ffmpeg_reads_the_files(tmp_path, fmt, codec):
    path = tmp_path / f"out.{fmt}"
    write_subtitles(CUES, path, fmt)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name:format=format_name", "-of", "json",
         str(path)],
        capture_output=True, text=True, check=True,
    )
    info = json.loads(probe.stdout)
    assert [s["codec_name"] for s in info["streams"]] == [codec]
    assert info["format"]["format_name"] == codec.replace("subrip", "srt")
    # Decode every cue: ffmpeg's own parser must see the same cues, scripts and line breaks.
    converted = tmp_path / "by-ffmpeg.srt"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), str(converted)], check=True)
    again = read_subtitles(converted)
    assert [(c.start, c.end) for c in again] == [(c.start, c.end) for c in CUES]
    assert [c.lines for c in again[:4]] == [c.lines for c in CUES[:4]]


TRANSCRIPT = Transcript(
    language="hi",
    segments=(
        Segment(0.0, 2.4, "भारत एक बड़ा देश है।",
                (Word(0.0, 0.5, " भारत", 0.91), Word(0.5, 0.8, " एक", None),
                 Word(0.8, 2.4, " बड़ा देश है।", 0.5))),
        Segment(2.4, 4.0, "  "),
        Segment(4.0, 6.5, "दिल्ली भारत की\nराजधानी है।"),
    ),
    duration=9.1225,
    task="transcribe",
    backend="faster-whisper",
)


def test_transcript_json_round_trip(tmp_path):
    path = tmp_path / "hindi.hi.json"
    write_transcript_json(TRANSCRIPT, path, extra={"model": "base", "wall_s": 1.5})
    data = json.loads(path.read_text(encoding="utf-8"))
    assert Transcript.from_dict(data) == TRANSCRIPT
    assert data["model"] == "base" and data["language"] == "hi" and data["backend"] == "faster-whisper"
    assert data["text"] == TRANSCRIPT.text
    assert "words" in data["segments"][0] and "words" not in data["segments"][2]  # words only where present
    assert "भारत" in path.read_text(encoding="utf-8")  # not \u-escaped


def test_transcript_extra_cannot_overwrite_the_transcript():
    with pytest.raises(ValueError, match="segments"):
        transcript_dict(TRANSCRIPT, extra={"segments": []})


def test_transcript_txt_one_segment_per_line(tmp_path):
    path = tmp_path / "hindi.hi.txt"
    write_transcript_txt(TRANSCRIPT, path)
    assert path.read_text(encoding="utf-8") == "भारत एक बड़ा देश है।\nदिल्ली भारत की राजधानी है।\n"
    write_transcript_txt(Transcript("en", (), 0.0), path)
    assert path.read_text(encoding="utf-8") == ""
