"""Cues from segments: reading-rule invariants for any input (hypothesis), and the timing rules by example."""

from __future__ import annotations

import itertools
import unicodedata
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.asr import Segment, Word
from pipeline.errors import PipelineError
from pipeline.subtitles import DIALOGUE_DASH, Cue, ReadingRules, build_cues

EPS = 0.001  # cue times are whole milliseconds (what SRT and VTT store); rules in seconds round to them

# Scripts and shapes that break naive wrapping: Latin with punctuation, Devanagari (combining signs, viramas),
# CJK and Arabic, emoji, URLs, and any unicode at all.
_ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyzABC",
    "abcdefg.,;:!?\"'()-—",
    "कखगघचजटडतदनपबमयरलवशसह" + "ािीुूेैोौंः़्",
    "的一是不了人我在有他这中大来上们到说国和地，。、？！",
    "ابتثجحخدذرزسشصضطظعغفقكلمنهوي،؟",
    "😀🎉👍🏽\u200d",
    "https://example.org/path?q=1&x=y#frag",
]
_word = st.one_of(
    *(st.text(alphabet=a, min_size=1, max_size=12) for a in _ALPHABETS),
    st.text(alphabet=_ALPHABETS[0] + _ALPHABETS[2], min_size=40, max_size=130),  # longer than any line
    st.text(min_size=1, max_size=20),  # anything hypothesis can think of, whitespace and controls included
)
_separator = st.sampled_from([" ", "  ", "\n", "\t", " \u3000 "])
_time = st.floats(min_value=-1.0, max_value=500.0, allow_nan=False)
_length = st.one_of(st.just(0.0), st.floats(0.0, 0.05), st.floats(0.0, 5.0), st.floats(5.0, 90.0))


@st.composite
def _text(draw) -> str:
    words = draw(st.lists(_word, min_size=0, max_size=25))
    out = ""
    for word in words:
        out += word + draw(_separator)
    return out


@st.composite
def _segment(draw) -> Segment:
    start = draw(_time)
    end = start + draw(_length)
    text = draw(_text())
    words: tuple[Word, ...] = ()
    if draw(st.booleans()):
        # Word timings as backends give them: mostly inside the segment, sometimes overlapping or backwards.
        spoken = st.builds(lambda word, lead: lead + word, _word, st.sampled_from(["", " "]))
        texts = draw(st.lists(spoken, max_size=20))
        times = draw(st.lists(st.tuples(_time, _length), min_size=len(texts), max_size=len(texts)))
        words = tuple(Word(s, s + d, t) for t, (s, d) in zip(texts, times, strict=True))
    return Segment(start, end, text, words)


@st.composite
def _speech(draw) -> list[tuple[float, float]]:
    edges = sorted(draw(st.sets(st.floats(0.0, 60.0).map(lambda x: round(x, 3)), max_size=12)))
    return [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=False) if b > a]


_rules = st.builds(
    lambda chars, lines, shortest, extra, cps, gap: ReadingRules(
        max_line_chars=chars,
        max_lines=lines,
        min_duration=shortest,
        max_duration=max(shortest + extra, 0.01),
        max_cps=cps,
        min_gap=gap,
    ),
    st.integers(1, 60),
    st.integers(1, 4),
    st.floats(0.0, 3.0),
    st.floats(0.0, 10.0),
    st.floats(1.0, 40.0),
    st.floats(0.0, 0.5),
)


def _input_words(segments: list[Segment]) -> list[str]:
    spoken = ([x for word in s.words for x in word.text.split()] or s.text.split() for s in segments)
    return [word for words in spoken for word in words]


def assert_valid(cues: list[Cue], segments: list[Segment], rules: ReadingRules) -> None:
    for cue in cues:
        assert 1 <= len(cue.lines) <= rules.max_lines, cue
        assert all(0 < len(line) <= rules.max_line_chars for line in cue.lines), cue
        assert all(line == line.strip() and line for line in cue.lines), cue
        assert cue.end > cue.start, cue
        assert cue.end - cue.start <= rules.max_duration + EPS, cue
    for before, after in itertools.pairwise(cues):
        assert after.start >= before.end + rules.min_gap - EPS, (before, after)
        assert after.start > before.start
    # Every word, in order: whole when it fits a line, else as consecutive pieces that each fit one.
    shown = [token for cue in cues for line in cue.lines for token in line.split()]
    position = 0
    for word in _input_words(segments):
        if len(word) <= rules.max_line_chars:
            assert shown[position] == word, (word, shown[position : position + 3])
            position += 1
        else:
            joined = ""
            while joined != word:
                assert word.startswith(joined + shown[position]), (word, joined, shown[position])
                joined += shown[position]
                position += 1
    assert position == len(shown)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_segment(), max_size=8))
def test_invariants_with_default_rules(segments):
    rules = ReadingRules()
    assert_valid(build_cues(segments, rules), segments, rules)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_segment(), max_size=6), _rules, st.none() | st.floats(0.0, 600.0), st.just([]) | _speech())
def test_invariants_with_any_rules(segments, rules, duration, speech):
    assert_valid(build_cues(segments, rules, duration, speech), segments, rules)


def test_no_speech_gives_no_cues():
    assert build_cues([]) == []
    assert build_cues([Segment(0.0, 2.0, "  \n "), Segment(3.0, 4.0, "", (Word(3.0, 3.5, " "),))]) == []


def test_twenty_second_segment_is_split():
    text = (
        "This is a rather long stretch of speech that goes on for twenty seconds, and it has to be split "
        "into several cues. Each of them must fit on two lines of forty-two characters and last at most "
        "seven seconds."
    )
    cues = build_cues([Segment(0.0, 20.0, text)])
    assert len(cues) >= 3
    assert all(c.end - c.start <= 7.0 for c in cues)
    assert cues[0].start == 0.0 and cues[-1].end == pytest.approx(20.0, abs=0.05)
    assert " ".join(" ".join(c.lines) for c in cues) == text


def test_short_word_gets_min_duration_when_there_is_room():
    segments = [Segment(1.0, 1.3, "Hi.", (Word(1.0, 1.3, " Hi."),)), Segment(5.0, 6.0, "Then more.")]
    first, second = build_cues(segments)
    assert (first.start, first.end) == (1.0, 2.0)
    assert second.start == 5.0


def test_short_word_gives_way_to_the_next_cue():
    segments = [Segment(1.0, 1.3, "That is all I wanted to say."), Segment(1.5, 2.5, "Then more.")]
    first, second = build_cues(segments)
    assert first.start == 1.0 and first.end == pytest.approx(1.46)  # the next cue's start minus min_gap
    assert second.start == 1.5


def test_last_cue_is_not_lengthened_past_the_media_end():
    (cue,) = build_cues([Segment(9.5, 9.8, "The end.")], duration=10.0)
    assert (cue.start, cue.end) == (9.5, 10.0)
    (cue,) = build_cues([Segment(9.5, 9.8, "The end.")])
    assert cue.end == 10.5


def test_reading_speed_respected_when_there_is_room():
    text = "Fast talkers say a great deal in a very short time, really."
    first, _ = build_cues([Segment(0.0, 1.5, text), Segment(20.0, 21.0, "Later.")])
    chars = sum(len(line) for line in first.lines)
    assert len(first.lines) == 2
    assert chars / (first.end - first.start) <= 17.0 + 1e-6
    assert first.end - first.start < 7.0


def test_lines_are_balanced():
    (cue,) = build_cues([Segment(0.0, 4.0, "one two three four five six seven eight nine ten eleven")])
    top, bottom = cue.lines
    assert abs(len(top) - len(bottom)) <= 6, cue.lines


def test_breaks_at_sentence_end_rather_than_mid_clause():
    text = "The first sentence is long enough to matter here. The second one follows it directly and is long too."
    cues = build_cues([Segment(0.0, 6.0, text)])
    assert cues[0].lines[-1].endswith("matter here.")


def test_word_timings_are_used():
    words = (Word(0.0, 0.4, " Hello"), Word(0.5, 0.9, " there."), Word(10.0, 10.4, " Again."))
    first, second = build_cues([Segment(0.0, 10.4, "ignored when words exist", words)])
    assert first.lines == ("Hello there.",) and first.start == 0.0
    assert second.lines == ("Again.",) and second.start == 10.0


def test_long_url_and_unspaced_chinese_wrap_by_characters():
    url = "https://example.org/" + "a-very-long-path/" * 6 + "index.html"
    chinese = "我们今天去公园玩然后去商店买了很多东西天气很好我们都很开心明天我们还要去北京看朋友" * 2
    for text in (url, chinese):
        cues = build_cues([Segment(0.0, 8.0, text)])
        assert "".join(line for c in cues for line in c.lines) == text
        assert all(len(line) <= 42 for c in cues for line in c.lines)
    pieces = [line for c in build_cues([Segment(0.0, 8.0, url)]) for line in c.lines]
    assert all(p.endswith(("/", ".", "-")) for p in pieces[:-1]), pieces  # cut at URL punctuation


def test_devanagari_long_word_is_not_cut_inside_a_letter():
    word = "अन्तर्राष्ट्रीयकरणप्रक्रियाविश्वविद्यालयस्वास्थ्यमन्त्रालयप्रतिनिधिमण्डल"
    cues = build_cues([Segment(0.0, 5.0, word)])
    pieces = [line for c in cues for line in c.lines]
    assert "".join(pieces) == word and len(pieces) == 2
    for piece in pieces[1:]:
        assert not unicodedata.category(piece[0]).startswith("M")  # no orphaned vowel sign or virama
    for piece in pieces[:-1]:
        assert unicodedata.combining(piece[-1]) != 9  # no conjunct split after a virama


@pytest.mark.parametrize(
    "kwargs",
    [{"max_line_chars": 0}, {"max_lines": 0}, {"min_duration": 8.0}, {"max_cps": 0}, {"min_gap": -0.1}],
)
def test_impossible_rules_are_refused(kwargs):
    with pytest.raises(PipelineError):
        ReadingRules(**kwargs)


# --- word-timed cues, corrected against where the audio has speech ---------------------------------------------


@st.composite
def _timed_words(draw) -> tuple[list[Segment], list[Word]]:
    """Plain words in order, as a backend with word times gives them, in one to three segments."""
    texts = draw(st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=9), min_size=1, max_size=30))
    words, at = [], draw(st.floats(0.0, 5.0))
    for i, text in enumerate(texts):
        at += draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 2.0])) if i else 0.0
        length = draw(st.floats(0.05, 1.5))
        words.append(Word(round(at, 3), round(at + length, 3), " " + text + draw(st.sampled_from(["", "", ",", "."]))))
        at += length
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(words) - 1)), max_size=2)) if len(words) > 1 else [])
    bounds = [0, *cuts, len(words)]
    segments = [
        Segment(words[a].start, words[b - 1].end, "".join(w.text for w in words[a:b]), tuple(words[a:b]))
        for a, b in itertools.pairwise(bounds)
    ]
    return segments, words


def _in_pause(t: float, speech: list[tuple[float, float]]) -> bool:
    return not any(a - EPS <= t < b for a, b in speech)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_timed_words(), _speech())
def test_word_timed_cues_stay_on_their_words(timed, speech):
    segments, words = timed
    rules = ReadingRules()
    cues = build_cues(segments, rules, speech=speech)
    assert_valid(cues, segments, rules)  # the reading rules, monotone, no overlaps, every word once
    first, previous_end = 0, -1.0
    for cue in cues:
        word = words[first]
        # A cue starts on its first word: where that word began in the audio, or at most half a second before
        # it where that is where its stretch of speech begins.
        assert word.start - (_LEAD if speech else 0) - EPS <= cue.start <= word.end + _FLOOR_AND_GAP, (cue, word)
        if cue.start < word.start - EPS:
            assert any(abs(cue.start - a) < EPS or a < cue.start < b for a, b in speech), (cue, word, speech)
        moved = cue.start > max(word.start, previous_end + rules.min_gap) + EPS  # not by the cue before it
        if speech and moved and _in_pause(cue.start, speech):
            raise AssertionError(f"{cue} moved into a pause: {word}, {speech}")
        first, previous_end = first + len(" ".join(cue.lines).split()), cue.end


_FLOOR_AND_GAP = 0.3  # a cue squeezed by its neighbour still shows 250 ms, 40 ms before the next one
_LEAD = 0.5  # how far a word that starts late in its stretch of speech may move back


def test_a_word_start_in_a_pause_moves_to_the_speech_onset():
    # Whisper puts the first word after a silence early, in the silence; the VAD says where speech begins.
    words = (Word(0.5, 1.4, " He"), Word(1.4, 1.6, " was"), Word(1.6, 2.0, " late."), Word(4.0, 4.6, " Again."))
    segments = [Segment(0.5, 4.6, "He was late. Again.", words)]
    rules = ReadingRules(min_duration=0.0, max_cps=100.0)
    first, second = build_cues(segments, rules)
    assert (first.start, second.start) == (0.5, 4.0)
    first, second = build_cues(segments, rules, speech=[(1.2, 1.9), (4.1, 4.5)])
    assert first.start == 1.2 and second.start == 4.1  # starts move forward onto the speech they overlap
    assert first.end == 1.9 and second.end == 4.5  # ends that ran on into the silence move back


def test_the_first_word_of_a_stretch_of_speech_takes_its_start():
    # A small model can place the first word late inside speech that began earlier, where nothing else was
    # heard: the word moves back to the onset, by half a second at most. A word after another in the same
    # speech stays: the word before it took that time.
    words = (Word(1.0, 1.3, " So"), Word(1.5, 1.9, " then"), Word(6.0, 6.5, " And"))
    one_word_cues = ReadingRules(max_line_chars=5, max_lines=1, min_duration=0.0, max_cps=100.0)
    cues = build_cues([Segment(1.0, 6.5, "So then And", words)], one_word_cues, speech=[(0.8, 2.0), (4.0, 7.1)])
    assert [c.start for c in cues] == [0.8, 1.5, 5.5]


def test_a_word_wholly_in_a_pause_keeps_its_times():
    # The VAD can miss soft speech; a word it heard nothing under is left where Whisper put it.
    words = (Word(0.5, 0.9, " Um,"), Word(2.0, 2.5, " yes."))
    (cue,) = build_cues([Segment(0.5, 2.5, "Um, yes.", words)], speech=[(1.9, 2.6)])
    assert cue.start == 0.5


def test_segments_without_words_are_corrected_too():
    # Translations and word-less backends: the segment's start is what moves.
    (cue,) = build_cues([Segment(3.0, 6.0, "A whole sentence spoken here.")], speech=[(3.4, 5.9)])
    assert cue.start == 3.4


def test_overlapping_speech_regions_are_one_stretch():
    # 1.5 s is speech (inside 0.5-3.0), not a pause after 1.0-1.2: the word is not pushed on to 2.0.
    words = (Word(1.5, 2.2, " Hello"), Word(2.2, 2.8, " there."))
    speech = [(2.0, 2.5), (1.0, 1.2), (0.5, 3.0)]
    (cue,) = build_cues([Segment(1.5, 2.8, "Hello there.", words)], speech=speech)
    assert cue.start == 1.0  # the first word of the stretch, moved back by at most half a second


# --- speakers (issue 14) -----------------------------------------------------------------------------------

_LABELS = st.sampled_from([None, "SPEAKER_00", "SPEAKER_01", "SPEAKER_02"])


@st.composite
def _spoken_by(draw) -> list[Segment]:
    """Segments with a speaker each (as the speakers stage gives them), and sometimes a word spoken by another."""
    segments = draw(st.lists(_segment(), max_size=8))
    out = []
    for segment in segments:
        words = tuple(replace(w, speaker=draw(_LABELS)) if draw(st.booleans()) else w for w in segment.words)
        out.append(replace(segment, speaker=draw(_LABELS), words=words))
    return out


def _expected_speakers(segments: list[Segment]) -> list[tuple[str, str | None]]:
    """(word, speaker) of every spoken word, in order: a word's own speaker, else its segment's."""
    out = []
    for s in segments:
        timed = [(w.text, w.speaker or s.speaker) for w in s.words] or [(s.text, s.speaker)]
        out += [(word, speaker) for text, speaker in timed for word in text.split()]
    return out


def assert_speakers(cues: list[Cue], segments: list[Segment], rules: ReadingRules) -> None:
    """No cue spans two speakers but a dialogue cue (two lines, two speakers, each line dashed); every word is
    shown once, in order, on a line of its own speaker."""
    shown: list[tuple[str, str | None]] = []
    for cue in cues:
        speakers = cue.speakers or (None,) * len(cue.lines)
        assert len(speakers) == len(cue.lines), cue
        if len(set(speakers)) > 1:
            assert rules.dialogue and len(cue.lines) == 2 and None not in speakers, cue
            assert all(line.startswith(DIALOGUE_DASH) for line in cue.lines), cue
            lines = [line.removeprefix(DIALOGUE_DASH) for line in cue.lines]
        else:
            lines = list(cue.lines)
        shown += [(token, who) for line, who in zip(lines, speakers, strict=True) for token in line.split()]
    position = 0
    for word, speaker in _expected_speakers(segments):
        joined = ""  # a word longer than a line comes as consecutive pieces
        while joined != word:
            piece, who = shown[position]
            assert word.startswith(joined + piece) and who == speaker, (word, speaker, shown[position])
            joined += piece
            position += 1
    assert position == len(shown)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_spoken_by(), _rules, st.booleans(), st.just([]) | _speech())
def test_no_cue_spans_two_speakers_and_every_word_is_kept_once(segments, rules, dialogue, speech):
    rules = replace(rules, dialogue=dialogue)
    cues = build_cues(segments, rules, speech=speech)
    assert_speakers(cues, segments, rules)
    for cue in cues:  # the reading rules hold for dialogue cues too, their dashes included
        assert 1 <= len(cue.lines) <= rules.max_lines and all(len(line) <= rules.max_line_chars for line in cue.lines)
        assert cue.end - cue.start <= rules.max_duration + EPS
    for before, after in itertools.pairwise(cues):
        assert after.start >= before.end + rules.min_gap - EPS


def _turns(*turns: tuple[float, float, str, str]) -> list[Segment]:
    return [Segment(start, end, text, speaker=speaker) for start, end, text, speaker in turns]


def test_a_quick_exchange_shares_a_cue_with_dashes():
    segments = _turns((0.0, 1.2, "Are you coming?", "SPEAKER_00"), (1.4, 1.9, "Yes.", "SPEAKER_01"))
    (cue,) = build_cues(segments)
    assert cue.lines == ("- Are you coming?", "- Yes.")
    assert cue.speakers == ("SPEAKER_00", "SPEAKER_01")
    assert (cue.start, cue.end) == (0.0, 1.9)
    assert [w.text for w in cue.words] == ["Are", "you", "coming?", "Yes."]


def test_dialogue_off_always_splits():
    segments = _turns((0.0, 1.2, "Are you coming?", "SPEAKER_00"), (1.4, 1.9, "Yes.", "SPEAKER_01"))
    cues = build_cues(segments, ReadingRules(dialogue=False))
    assert [c.lines for c in cues] == [("Are you coming?",), ("Yes.",)]
    assert [c.speakers for c in cues] == [("SPEAKER_00",), ("SPEAKER_01",)]


@pytest.mark.parametrize(
    ("turns", "why"),
    [
        (((0.0, 1.2, "Are you coming?", "SPEAKER_00"), (2.3, 2.8, "Yes.", "SPEAKER_01")), "a pause of 1.1 s"),
        (
            (
                (0.0, 2.5, "I have been waiting here since noon.", "SPEAKER_00"),
                (2.6, 5.0, "The train was late again, sorry.", "SPEAKER_01"),
            ),
            "each turn long enough to read on its own",
        ),
        (
            (
                (0.0, 1.0, "Are you coming with us to the station, then?", "SPEAKER_00"),
                (1.1, 1.5, "Yes.", "SPEAKER_01"),
            ),
            "the first turn does not fit one line with its dash",
        ),
        (((0.0, 1.2, "Are you coming?", "SPEAKER_00"), (1.4, 1.9, "Yes.", None)), "one speaker is not known"),
    ],
)
def test_turns_that_are_no_quick_exchange_are_split(turns, why):
    cues = build_cues(_turns(*turns))
    assert len(cues) == 2, why
    assert all(len(set(c.speakers)) <= 1 and not c.lines[0].startswith(DIALOGUE_DASH) for c in cues), why


def test_a_one_line_cue_allows_no_dialogue():
    segments = _turns((0.0, 1.2, "Are you coming?", "SPEAKER_00"), (1.4, 1.9, "Yes.", "SPEAKER_01"))
    assert len(build_cues(segments, ReadingRules(max_lines=1))) == 2


def test_three_quick_turns_pair_the_first_two_only():
    segments = _turns(
        (0.0, 0.6, "Ready?", "SPEAKER_00"), (0.7, 1.1, "Yes.", "SPEAKER_01"), (1.2, 1.6, "Go!", "SPEAKER_02")
    )
    cues = build_cues(segments)
    assert [c.speakers for c in cues] == [("SPEAKER_00", "SPEAKER_01"), ("SPEAKER_02",)]


def test_a_speaker_change_inside_a_segment_splits_at_the_word():
    words = (
        Word(0.0, 0.4, " We", speaker="SPEAKER_00"),
        Word(0.4, 0.9, " agree", speaker="SPEAKER_00"),
        Word(3.0, 3.5, " Never", speaker="SPEAKER_01"),
        Word(3.5, 4.0, " mind.", speaker="SPEAKER_01"),
    )
    cues = build_cues([Segment(0.0, 4.0, "We agree Never mind.", words, speaker="SPEAKER_00")])
    assert [(c.lines, c.speakers) for c in cues] == [
        (("We agree",), ("SPEAKER_00",)),
        (("Never mind.",), ("SPEAKER_01",)),
    ]


def test_one_speakers_long_turn_keeps_the_speaker_on_every_line():
    text = "This is one person talking for a while, long enough to need two lines and more than one cue."
    cues = build_cues(_turns((0.0, 9.0, text, "SPEAKER_03")))
    assert len(cues) >= 2
    assert all(c.speakers == ("SPEAKER_03",) * len(c.lines) for c in cues)
    assert not any(line.startswith(DIALOGUE_DASH) for c in cues for line in c.lines)


def test_no_speakers_no_speaker_fields():
    (cue,) = build_cues([Segment(0.0, 2.0, "Nobody was labelled.")])
    assert cue.speakers == ()


def test_blank_words_leave_the_segment_text_to_show() -> None:
    # Found by hypothesis: a backend's blank word tokens ("\r") hid the segment's text entirely.
    segments = [Segment(0.0, 1.0, "Hello there", (Word(0.0, 0.5, "\r"), Word(0.5, 1.0, " ")))]
    assert [line for cue in build_cues(segments, ReadingRules()) for line in cue.lines] == ["Hello there"]
