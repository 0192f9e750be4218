"""The guards' filter (pipeline.asr.guards): never removes varied speech, always cuts a loop, records why."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.asr import Segment
from pipeline.asr.guards import (
    FILLERS,
    LOOP_REPEATS,
    LOOP_UNITS,
    Limits,
    filter_segments,
    loop_share,
    normalise,
    units,
)

LIMITS = Limits()
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fixtures.toml"

# Words of Latin, Cyrillic, Devanagari letters; and CJK characters for a script written without spaces.
_word = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzäéñабвгдежзकखगघचछजट"), min_size=2, max_size=9)
_han = st.sampled_from("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年就那要下以生会自可")


def _segments(texts: list[str], **scores: float) -> list[Segment]:
    return [Segment(2.0 * i, 2.0 * i + 1.5, text, **scores) for i, text in enumerate(texts)]


@st.composite
def varied_speech(draw: st.DrawFn) -> list[str]:
    """Segments of distinct words (no word twice in a segment, no two neighbours alike): speech, not a loop."""
    texts = []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            words = draw(st.lists(_word, min_size=1, max_size=25, unique=True))
            text = " ".join(words).capitalize() + draw(st.sampled_from([".", "?", "!", ",", ""]))
        else:
            text = "".join(draw(st.lists(_han, min_size=3, max_size=30, unique=True))) + "。"
        if (texts and normalise(texts[-1]) == normalise(text)) or normalise(text) in FILLERS:
            continue
        texts.append(text)
    return texts


@settings(max_examples=300, deadline=None)
@given(texts=varied_speech(), logprob=st.floats(-0.9, 0.0), no_speech=st.floats(0.0, 0.55))
def test_varied_speech_is_never_removed(texts: list[str], logprob: float, no_speech: float) -> None:
    segments = _segments(texts, avg_logprob=logprob, no_speech_prob=no_speech)
    result = filter_segments(segments, LIMITS)
    assert [s.text for s in result.kept] == texts and result.removed == ()
    # Scores are the worker's business: they do not reach the transcript.
    assert all(s.avg_logprob is None and s.no_speech_prob is None for s in result.kept)


@settings(max_examples=300, deadline=None)
@given(
    phrase=st.lists(_word, min_size=1, max_size=6, unique=True),
    extra=st.integers(0, 20),
    before=st.lists(_word, max_size=3),
    sure=st.booleans(),
)
def test_a_phrase_repeated_k_times_is_always_cut(phrase: list[str], extra: int, before: list[str], sure: bool):
    """Unsure (or unscored, as whisperx's segments are), the loop's segment goes; said with confidence, the loop is
    cut back to its first time round. Either way no loop is left, and what went is recorded."""
    times = max(LOOP_REPEATS, math.ceil(LOOP_UNITS / len(phrase))) + extra
    loop = " ".join(before + phrase * times)
    scores = {"avg_logprob": -0.3, "no_speech_prob": 0.1} if sure else {}
    segments = _segments(["It was a quiet evening.", loop, "Then the music stopped."], **scores)
    result = filter_segments(segments, LIMITS)
    texts = [s.text for s in result.kept]
    assert texts[0] == "It was a quiet evening." and texts[-1] == "Then the music stopped."
    assert all(loop_share(units(text)) == 0 for text in texts)
    (removed,) = result.removed
    assert (removed.start, removed.end) == (2.0, 3.5) and removed.reason.startswith(("loop", "repetitive"))
    if sure:  # what is kept and what is cut make up the segment, word for word
        assert len(texts) == 3 and len(texts[1].split()) + len(removed.text.split()) == len(loop.split())
        assert normalise(texts[1]).endswith(normalise(phrase[-1]))
    else:
        assert len(texts) == 2 and removed.text == loop


@settings(max_examples=100, deadline=None)
@given(phrase=st.lists(_han, min_size=2, max_size=5, unique=True), times=st.integers(8, 30))
def test_a_loop_in_a_script_without_spaces_is_cut(phrase: list[str], times: int) -> None:
    loop = "".join(phrase) * times
    result = filter_segments(_segments([loop]), LIMITS)
    assert result.kept == () and result.removed[0].text == loop


def test_the_same_text_in_segment_after_segment_keeps_its_first() -> None:
    texts = ["We begin.", *["I'm going to the store."] * 5, "We end."]
    result = filter_segments(_segments(texts), LIMITS)
    assert [s.text for s in result.kept] == ["We begin.", "I'm going to the store.", "We end."]
    assert len(result.removed) == 4 and all(r.reason == "repeated segment (5 in a row)" for r in result.removed)
    # Twice is speech ("Hello? Hello?"), and is kept.
    twice = filter_segments(_segments(["Hello?", "Hello?"]), LIMITS)
    assert len(twice.kept) == 2


def test_a_filler_is_removed_when_unsure_or_repeated_and_kept_when_said() -> None:
    said = filter_segments(_segments(["That is all.", "Thank you."], avg_logprob=-0.2, no_speech_prob=0.05), LIMITS)
    assert [s.text for s in said.kept] == ["That is all.", "Thank you."]
    unsure = filter_segments(_segments(["Thank you."], avg_logprob=-1.3, no_speech_prob=0.2), LIMITS)
    assert unsure.kept == () and unsure.removed[0].reason == "filler phrase with low confidence"
    over_music = filter_segments(_segments(["Thank you."] * 4), LIMITS)  # whisperx: no scores, every copy goes
    assert over_music.kept == () and len(over_music.removed) == 4


@pytest.mark.parametrize("text", ["♪", "[Music]", "(upbeat music)", "♪ ♪ ♪", "...", "*laughs*", "[BLANK_AUDIO]"])
def test_sound_tags_and_symbols_are_not_words(text: str) -> None:
    result = filter_segments(_segments([text]), LIMITS)
    assert result.kept == () and result.removed[0].reason.startswith("no words")


def test_whispers_silent_window_rule_and_the_compression_ratio() -> None:
    silent = _segments(["Okay, so here we are."], avg_logprob=-1.2, no_speech_prob=0.8)
    assert filter_segments(silent, LIMITS).removed[0].reason.startswith("no speech")
    # Either score alone is not silence (Whisper's own rule needs both).
    assert filter_segments(_segments(["Okay."], avg_logprob=-1.2, no_speech_prob=0.3), LIMITS).kept
    assert filter_segments(_segments(["Okay."], avg_logprob=-0.3, no_speech_prob=0.9), LIMITS).kept
    repetitive = "the cat sat on the mat, the cat sat on the mat, the cat sat on the mat and the cat sat on the mat"
    unsure = filter_segments(_segments([repetitive], avg_logprob=-1.2), LIMITS)
    assert unsure.removed[0].reason.startswith("repetitive")
    # Real speech repeats itself: over the threshold but said with confidence, it stays (JFK's sentence is 2.5).
    jfk = "And so my fellow Americans ask not what your country can do for you ask what you can do for your country."
    assert filter_segments(_segments([jfk, repetitive], avg_logprob=-0.1), LIMITS).kept
    assert len(filter_segments(_segments([jfk, repetitive], avg_logprob=-0.1), LIMITS).kept) == 2
    # Far over it, confidence does not matter: a loop longer than the n-grams the loop rule looks for.
    long_loop = " ".join(["we are the people who came from the far mountains to see the great river today"] * 6)
    assert filter_segments(_segments([long_loop], avg_logprob=-0.1), LIMITS).removed[0].reason.startswith("repetitive")


def test_switched_off_only_the_librarys_thresholds_apply() -> None:
    limits = Limits(repetition_filter=False, compression_ratio_threshold=None)
    texts = ["[Music]", "la la la la la la la la", *["Thank you."] * 3]
    assert [s.text for s in filter_segments(_segments(texts), limits).kept] == texts


def test_the_fixtures_references_pass_untouched() -> None:
    """Real sentences, the LibriVox reader's "a more a amiable" included, in English, Spanish and Hindi."""
    clips = tomllib.loads(FIXTURES.read_text(encoding="utf-8"))["clips"]
    texts = [c["text"] for c in clips.values()] + [c["en_reference"] for c in clips.values() if "en_reference" in c]
    assert [s.text for s in filter_segments(_segments(texts, avg_logprob=-0.3), LIMITS).kept] == texts


# --- the WHISPER_* guard keys: auto is the profile's value from the matrix file ---------------------------------


def test_auto_guards_are_the_profiles_and_a_set_key_wins() -> None:
    from pipeline.config import build
    from pipeline.hardware import GUARDS, resolve_guards
    from pipeline.profiles import load_matrix

    for profile in load_matrix().profiles.values():
        assert resolve_guards(build([]), profile) == {name: profile.runtime.guards[name] for name in GUARDS}
    cpu = load_matrix().profile("cpu")
    config = build([("flags", {"WHISPER_NO_SPEECH_THRESHOLD": "0.4", "WHISPER_CONDITION_ON_PREVIOUS_TEXT": "yes"})])
    resolved = resolve_guards(config, cpu)
    assert resolved["no_speech_threshold"] == 0.4 and resolved["condition_on_previous_text"] is True
    assert resolved["compression_ratio_threshold"] == cpu.runtime.guards["compression_ratio_threshold"]


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("WHISPER_NO_SPEECH_THRESHOLD", "2", "a number from 0 to 1, or auto"),
        ("WHISPER_LOG_PROB_THRESHOLD", "high", "a number from -20 to 0, or auto"),
        ("WHISPER_REPETITION_FILTER", "sometimes", "allowed: true, false"),
        ("WHISPER_LANGUAGE_DETECTION_SEGMENTS", "0", "a whole number from 1 to 20, or auto"),
    ],
)
def test_a_bad_guard_value_is_one_line_naming_what_is_allowed(key: str, value: str, allowed: str) -> None:
    from pipeline.config import build
    from pipeline.errors import PipelineError

    with pytest.raises(PipelineError) as caught:
        build([("environment", {key: value})])
    assert "\n" not in str(caught.value) and key in str(caught.value) and allowed in str(caught.value)


def test_a_matrix_without_guards_is_named_in_the_error(tmp_path: Path) -> None:
    from pipeline.config import build
    from pipeline.errors import PipelineError
    from pipeline.hardware import resolve_guards
    from pipeline.profiles import load_matrix, matrix_path

    text = matrix_path().read_text(encoding="utf-8")
    stripped = tmp_path / "profiles.toml"
    stripped.write_text(text.replace("no_speech_threshold = 0.6", ""), encoding="utf-8")
    with pytest.raises(PipelineError, match="no \\[guards\\] value 'no_speech_threshold' for profile 'cpu'"):
        resolve_guards(build([]), load_matrix(stripped).profile("cpu"))


def test_a_confident_loop_keeps_its_first_sentence_and_its_words_times() -> None:
    """base's translation of the synthetic Hindi clip: one sentence, then five more of it."""
    from pipeline.asr import Word

    sentence = "I am the king of India."
    raw = " ".join([sentence] * 6).split()
    words = tuple(Word(0.5 * i, 0.5 * i + 0.4, f" {w}", 0.9) for i, w in enumerate(raw))
    segment = Segment(0.0, 18.0, " ".join(raw), words, avg_logprob=-0.4, no_speech_prob=0.02)
    result = filter_segments([segment], LIMITS)
    (kept,) = result.kept
    assert kept.text == sentence and [w.text.strip() for w in kept.words] == sentence.split()
    assert (kept.start, kept.end) == (0.0, 2.9)
    (cut,) = result.removed
    assert (cut.start, cut.end, cut.reason) == (3.0, 17.9, "loop (5 repeats cut)")
    assert cut.text == " ".join([sentence] * 5)
