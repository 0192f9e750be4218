"""Subtitle and transcript files: round trips (pysubs2, Transcript.from_dict); real ffmpeg reads them."""

from __future__ import annotations

import json
import re
import subprocess

import pysubs2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import config
from pipeline.asr import Segment, Transcript, Word
from pipeline.errors import PipelineError
from pipeline.subtitles import Cue, build_cues, display_names
from pipeline.subtitles.speakers import carry
from pipeline.writers import (
    AssOptions,
    ass,
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
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name:format=format_name", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
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
        Segment(
            0.0,
            2.4,
            "भारत एक बड़ा देश है।",
            (Word(0.0, 0.5, " भारत", 0.91), Word(0.5, 0.8, " एक", None), Word(0.8, 2.4, " बड़ा देश है।", 0.5)),
        ),
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


# --- speakers and styles (issue 14) ------------------------------------------------------------------------

DIALOGUE = [
    Segment(0.0, 1.2, "Are you coming?", speaker="SPEAKER_00"),
    Segment(1.4, 1.9, "Yes.", speaker="SPEAKER_01"),
    Segment(2.5, 6.0, "Then we should leave now, before the rain starts again tonight.", speaker="SPEAKER_00"),
    Segment(
        6.2, 8.0, "Fine, {let me} get my coat.", speaker="SPEAKER_01",
        words=(Word(6.2, 6.5, " Fine,"), Word(6.5, 6.7, " {let"), Word(6.7, 6.9, " me}"), Word(6.9, 7.1, " get"),
               Word(7.1, 7.3, " my"), Word(7.3, 8.0, " coat.")),
    ),
]  # fmt: skip
NAMES = {"SPEAKER_00": "Ravi", "SPEAKER_01": "Asha <& co>"}


def test_srt_marks_a_speaker_change_with_dashes_and_names_no_one(tmp_path):
    path = tmp_path / "talk.srt"
    write_subtitles(build_cues(DIALOGUE), path, "srt", NAMES)
    text = path.read_text(encoding="utf-8")
    assert "00:00:00,000 --> 00:00:01,900\n- Are you coming?\n- Yes.\n" in text
    assert "Ravi" not in text and "Asha" not in text
    assert [c.lines for c in read_subtitles(path)][:2] == [
        ("- Are you coming?", "- Yes."),
        ("Then we should leave now, before", "the rain starts again tonight."),
    ]


def test_vtt_voice_spans_carry_escaped_names_and_read_back(tmp_path):
    path = tmp_path / "talk.vtt"
    cues = build_cues(DIALOGUE)
    write_subtitles(cues, path, "vtt", NAMES)
    text = path.read_text(encoding="utf-8")
    assert "<v Ravi>- Are you coming?</v>\n<v Asha &lt;&amp; co&gt;>- Yes.</v>\n" in text
    assert "<v Ravi>Then we should leave now, before\nthe rain starts again tonight.</v>\n" in text
    again = read_subtitles(path)
    assert [c.lines for c in again] == [c.lines for c in cues]
    assert [c.speakers for c in again] == [tuple(NAMES[s] for s in c.speakers) for c in cues]
    # pysubs2, a reader that is not ours, keeps the cues and their text
    parsed = pysubs2.load(str(path))
    assert len(parsed) == len(cues) and "Are you coming?" in parsed[0].plaintext


def test_ass_has_a_style_per_speaker_in_distinct_colours(tmp_path):
    path = tmp_path / "talk.ass"
    cues = build_cues(DIALOGUE)
    write_subtitles(cues, path, "ass", NAMES, AssOptions(font="DejaVu Serif", size=60))
    subs = pysubs2.load(str(path))
    assert {"Ravi", "Asha <& co>"} <= set(subs.styles)
    colours = {name: subs.styles[name].primarycolor for name in ("Ravi", "Asha <& co>")}
    assert colours["Ravi"] != colours["Asha <& co>"]
    assert all(subs.styles[n].fontname == "DejaVu Serif" and subs.styles[n].fontsize == 60 for n in colours)
    assert [e.style for e in subs] == ["Ravi", "Ravi", "Asha <& co>"]
    assert subs[0].text == r"- Are you coming?\N{\rAsha <& co>}- Yes."  # the second speaker's own style
    assert subs[2].text == r"Fine, \{let me\} get my coat."  # braces escaped: not an override block
    again = read_subtitles(path)
    assert [c.lines for c in again] == [c.lines for c in cues]
    assert [c.speakers for c in again] == [tuple(NAMES[s] for s in c.speakers) for c in cues]
    assert [(c.start, c.end) for c in again] == [(round(c.start, 2), round(c.end, 2)) for c in cues]


def test_ass_karaoke_times_each_word_from_its_start(tmp_path):
    path = tmp_path / "talk.ass"
    cues = build_cues(DIALOGUE)
    write_subtitles(cues, path, "ass", NAMES, AssOptions(karaoke=True))
    subs = pysubs2.load(str(path))
    last = subs[-1]
    durations = [int(k) for k in re.findall(r"\\k(\d+)", last.text)]
    assert durations == [30, 20, 20, 20, 20, 70]  # to the next word's start; the last to the cue's end
    assert sum(durations) == round((last.end - last.start) / 10)
    assert subs.styles["Ravi"].secondarycolor != subs.styles["Ravi"].primarycolor  # words not yet said
    assert read_subtitles(path)[-1].lines == cues[-1].lines  # the tags are not text


def test_ffmpeg_reads_the_ass_file(tmp_path):
    path = tmp_path / "talk.ass"
    write_subtitles(build_cues(DIALOGUE), path, "ass", NAMES, AssOptions(karaoke=True))
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "ass"
    converted = tmp_path / "by-ffmpeg.ass"  # ffmpeg's own ASS parser and writer: the same events come back
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), str(converted)], check=True)
    assert [(c.lines, c.speakers) for c in read_subtitles(converted)] == [
        (c.lines, c.speakers) for c in read_subtitles(path)
    ]


_spoken = st.lists(
    st.tuples(st.floats(0, 300), st.floats(0, 10), _text, st.sampled_from([None, "SPEAKER_00", "SPEAKER_01"])),
    max_size=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_spoken, st.sampled_from(("srt", "vtt", "ass")))
def test_any_cues_with_speakers_survive_a_round_trip(tmp_path, items, fmt):
    cues = build_cues([Segment(start, start + length, text, speaker=who) for start, length, text, who in items])
    path = tmp_path / f"any.{fmt}"
    names = {"SPEAKER_00": "Ravi", "SPEAKER_01": "Speaker 2"}
    write_subtitles(cues, path, fmt, names)
    again = read_subtitles(path)
    assert [c.lines for c in again] == [c.lines for c in cues]
    if fmt != "srt":  # SRT names no speakers: its dialogue dashes are in the lines
        assert [c.speakers for c in again] == [tuple(names[s] if s else None for s in c.speakers) for c in cues]
    if fmt != "ass":  # ASS stores centiseconds
        assert [(c.start, c.end) for c in again] == [(c.start, c.end) for c in cues]


SPOKEN = Transcript(
    language="en",
    segments=(
        Segment(0.0, 1.0, "Are you coming?", (Word(0.0, 1.0, " Are you coming?", 0.9, "SPEAKER_00"),), None, None,
                "SPEAKER_00"),
        Segment(1.2, 2.0, "Yes.", speaker="SPEAKER_01"),
        Segment(2.2, 3.0, "Right   now.", speaker="SPEAKER_01"),
        Segment(3.2, 4.0, "Good.", speaker="SPEAKER_00"),
    ),
    duration=4.0,
)  # fmt: skip


def test_json_keeps_speakers_and_names_them(tmp_path):
    path = tmp_path / "talk.en.json"
    write_transcript_json(SPOKEN, path, names=("Ravi",))
    data = json.loads(path.read_text(encoding="utf-8"))
    assert Transcript.from_dict(data) == SPOKEN
    assert [s["speaker"] for s in data["segments"]] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_01", "SPEAKER_00"]
    assert data["segments"][0]["words"][0]["speaker"] == "SPEAKER_00"
    assert data["speakers"] == [{"id": "SPEAKER_00", "name": "Ravi"}, {"id": "SPEAKER_01", "name": "Speaker 2"}]
    # Without speakers the document is what it was before issue 14
    assert "speaker" not in json.dumps(transcript_dict(TRANSCRIPT))


def test_txt_heads_each_turn_with_its_speaker(tmp_path):
    path = tmp_path / "talk.en.txt"
    write_transcript_txt(SPOKEN, path, names=("Ravi", "Asha", "Nobody"))
    assert path.read_text(encoding="utf-8") == ("Ravi:\nAre you coming?\n\nAsha:\nYes.\nRight now.\n\nRavi:\nGood.\n")
    write_transcript_txt(SPOKEN, path)
    assert path.read_text(encoding="utf-8").startswith("Speaker 1:\nAre you coming?\n\nSpeaker 2:\nYes.\n")


def test_names_follow_the_label_numbers_in_every_track():
    # A translation whose SPEAKER_00 lines are all gone still calls SPEAKER_01 what the source calls it.
    track = [Segment(0.0, 1.0, "Sí.", speaker="SPEAKER_01"), Segment(1.0, 2.0, "Bien.", speaker="odd label")]
    assert display_names(track, ("Ravi", "Asha")) == {"SPEAKER_01": "Asha", "odd label": "Speaker 3"}
    assert display_names(SPOKEN.segments, ("Ravi", "Asha", "Extra")) == {"SPEAKER_00": "Ravi", "SPEAKER_01": "Asha"}
    assert display_names([Segment(0.0, 1.0, "x")], ("Ravi",)) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("Ravi,,Asha", "an empty name"),
        ("R" * 41, "41 characters"),
        ("Ravi,As\tha", "control character"),
    ],
)
def test_bad_speaker_names_are_one_line_errors(raw, message):
    with pytest.raises(PipelineError) as error:
        config.build([("command line", {"SPEAKER_NAMES": raw})])
    assert message in str(error.value) and "SPEAKER_NAMES" in str(error.value) and "\n" not in str(error.value)


def test_good_speaker_names_and_burn_in_values():
    cfg = config.build([("command line", {"SPEAKER_NAMES": " Ravi , Asha Rao ", "BURN_IN": "ES"})])
    assert cfg.speaker_names == ("Ravi", "Asha Rao") and cfg.burn_in == "es"
    assert config.build([("x", {"BURN_IN": "on"})]).burn_in == "source"
    assert config.build([]).burn_in == "" and config.build([]).speaker_names == ()
    with pytest.raises(PipelineError, match="BURN_IN='xx' is not valid; unknown language code 'xx'"):
        config.build([("x", {"BURN_IN": "xx"})])


def test_a_speech_translation_takes_the_speakers_of_the_source():
    source = SPOKEN.segments
    # Whisper's English track has its own segmentation; each segment takes the speaker it overlaps most.
    track = (Segment(0.0, 0.9, "Coming?"), Segment(1.1, 2.9, "Yes, right now."), Segment(3.3, 3.9, "Good."))
    assert [s.speaker for s in carry(track, source)] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    assert carry(track, TRANSCRIPT.segments) == track  # a source without speakers changes nothing


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_ass_escaping_keeps_any_text_and_opens_no_tag(text):
    escaped = ass.escape(text)
    assert ass.unescape(escaped) == text
    # libass reads "{" as an override block and "\N", "\n", "\h" as breaks and spaces: none may survive escaping
    assert not re.search(r"(?<!\\)\{", escaped) and not re.search(r"\\[Nnh]", escaped)
