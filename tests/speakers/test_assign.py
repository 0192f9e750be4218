"""Speakers given to a transcript's words and segments (pipeline.speakers.assign), and kept through its JSON."""

from __future__ import annotations

from pipeline.asr import Segment, Transcript, Word
from pipeline.speakers import Turn, assign, relabel


def _words(*spec: tuple[float, float, str]) -> tuple[Word, ...]:
    return tuple(Word(start, end, text) for start, end, text in spec)


def _transcript(*segments: Segment) -> Transcript:
    return Transcript(language="en", segments=segments, duration=20.0)


def test_relabel_names_speakers_in_order_of_first_appearance() -> None:
    turns = relabel([(5.0, 6.0, 0), (0.5, 2.0, 3), (2.5, 4.0, 0), (7.0, 7.0, 5), (8.0, 9.0, 3)])
    assert [(t.start, t.speaker) for t in turns] == [
        (0.5, "SPEAKER_00"),
        (2.5, "SPEAKER_01"),
        (5.0, "SPEAKER_01"),
        (8.0, "SPEAKER_00"),
    ]  # cluster 3 spoke first; the empty turn is dropped


def test_a_segment_is_split_where_its_words_change_speaker() -> None:
    words = _words((1.0, 1.4, " Ask"), (1.5, 1.9, " not."), (2.6, 3.0, " Why"), (3.1, 3.5, " not?"))
    transcript = _transcript(Segment(0.9, 3.6, " Ask not. Why not?", words))
    turns = [Turn(0.8, 2.1, "SPEAKER_00"), Turn(2.4, 3.8, "SPEAKER_01")]
    out = assign(transcript, turns)
    assert [(s.start, s.end, s.text, s.speaker) for s in out.segments] == [
        (0.9, 1.9, "Ask not.", "SPEAKER_00"),
        (2.6, 3.6, "Why not?", "SPEAKER_01"),
    ]
    assert [w.speaker for s in out.segments for w in s.words] == ["SPEAKER_00"] * 2 + ["SPEAKER_01"] * 2


def test_a_word_goes_to_the_longest_overlap_and_a_word_in_a_gap_to_the_nearest_turn() -> None:
    words = _words((1.0, 2.0, " straddles"), (5.0, 5.2, " gap"), (9.0, 9.5, " late"))
    transcript = _transcript(Segment(1.0, 9.5, " straddles gap late", words))
    turns = [Turn(0.0, 1.3, "SPEAKER_00"), Turn(1.3, 4.0, "SPEAKER_01"), Turn(5.9, 8.0, "SPEAKER_00")]
    out = assign(transcript, turns)
    assert [w.speaker for s in out.segments for w in s.words] == ["SPEAKER_01", "SPEAKER_00", "SPEAKER_00"]
    assert [s.speaker for s in out.segments] == ["SPEAKER_01", "SPEAKER_00"]


def test_a_segment_without_words_takes_the_speaker_who_talks_longest_in_it() -> None:
    transcript = _transcript(Segment(0.0, 4.0, " no word times"))
    out = assign(transcript, [Turn(0.0, 1.0, "SPEAKER_00"), Turn(1.0, 4.0, "SPEAKER_01")])
    assert [(s.text, s.speaker) for s in out.segments] == [(" no word times", "SPEAKER_01")]


def test_speech_without_turns_is_one_speaker() -> None:
    transcript = _transcript(Segment(0.0, 1.0, " hello", _words((0.1, 0.5, " hello"))))
    out = assign(transcript, [])
    assert out.segments[0].speaker == "SPEAKER_00" and out.segments[0].words[0].speaker == "SPEAKER_00"


def test_speakers_survive_the_transcript_json_and_are_absent_when_not_diarized() -> None:
    plain = _transcript(Segment(0.0, 1.0, " hi", _words((0.0, 1.0, " hi"))))
    data = plain.to_dict()
    assert "speaker" not in data["segments"][0] and "speaker" not in data["segments"][0]["words"][0]
    labelled = assign(plain, [Turn(0.0, 1.0, "SPEAKER_00")])
    again = Transcript.from_dict(labelled.to_dict())
    assert again.segments[0].speaker == "SPEAKER_00" and again.segments[0].words[0].speaker == "SPEAKER_00"
