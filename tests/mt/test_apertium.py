"""The real Apertium engine (Debian apertium + apertium-eng-spa/-eng-cat/-en-gl/-eo-en/-hbs-eng)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import PipelineError
from pipeline.mt import available_engines, get_engine
from pipeline.mt.apertium import ApertiumEngine, modes_by_pair

JFK = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


@pytest.fixture(scope="module")
def apertium() -> ApertiumEngine:
    return ApertiumEngine()


def test_installed_modes_map_to_whisper_codes(apertium):
    pairs = apertium.pairs()
    for tgt in ("es", "ca", "gl", "eo", "sh", "hr", "sr", "bs"):
        assert ("en", tgt) in pairs
    for src in ("es", "ca", "gl", "eo", "sh", "hr", "bs"):
        assert (src, "en") in pairs
    assert ("sr", "en") not in pairs  # Cyrillic Serbian is not read by hbs-eng
    assert apertium.mode("en", "es") == "eng-spa"
    assert apertium.mode("en", "gl") == "en-gl"
    assert apertium.mode("en", "hr") == "eng-hbs_HR"
    assert apertium.mode("en", "sh") == "eng-hbs"
    assert apertium.mode("ca", "en") == "cat-eng"
    assert available_engines()[-1] is get_engine("apertium")


def test_mode_names_parse_to_pairs():
    modes = [
        "Cyrl-Latn", "cat-eng", "cat-eng_US", "en-eo-bytecode", "en-eo", "eng-cat_valencia", "eng-cat",
        "eng-hbs", "eng-hbs_SR", "eu-en", "isl-eng", "mkd-eng", "spa-eng_US", "spa-eng",
    ]  # fmt: skip
    assert modes_by_pair(modes) == {
        ("ca", "en"): "cat-eng", ("en", "eo"): "en-eo", ("en", "ca"): "eng-cat", ("en", "sh"): "eng-hbs",
        ("en", "sr"): "eng-hbs_SR", ("eu", "en"): "eu-en", ("is", "en"): "isl-eng", ("mk", "en"): "mkd-eng",
        ("es", "en"): "spa-eng",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("tgt", "keywords"),
    [
        ("es", {"país", "puedes", "hacer"}),
        ("ca", {"país", "pot", "fer"}),
        ("gl", {"país", "facer"}),
        ("eo", {"lando", "povas", "fari"}),
        ("sh", {"zemlja"}),
    ],
)
def test_jfk_sentence_from_english(apertium, tgt, keywords):
    (out,) = apertium.translate([JFK], "en", tgt)
    words = set(out.lower().replace(",", " ").replace(".", " ").split())
    assert len(keywords & words) >= len(keywords) - 1, out  # keyword recall, tolerant of one miss


def test_into_english(apertium):
    out = apertium.translate(["Pregunta qué puedes hacer por tu país.", "La casa es grande."], "es", "en")
    assert "country" in out[0].lower() and "house" in out[1].lower(), out


SEGMENTS = [
    JFK, "", "ask not what your country can do for you,", "   ", "...", "-", "I have a red", "car.",
    'He said: "Hello!" [laughs]', "3.5 million people, 100% sure; $5 @home #tag <b> ^a$ \\ / {x}",
    "Mr. Smith went to Washington", "what?", "¿Qué? ¡Sí!", "café, naïve — “quoted” «text» …",
    "日本語 हिंदी", "a\nline\n\nbreak inside", "we choose to go to the moon",
]  # fmt: skip


@pytest.mark.slow
def test_batch_maps_one_to_one_with_blanks_and_punctuation(apertium):
    many = SEGMENTS * 12  # 204 segments in one apertium process
    out = apertium.translate(many, "en", "es")
    assert len(out) == len(many)
    for text, translated in zip(many, out, strict=True):
        assert (translated == "") == (text.strip() == "")
        assert "\n" not in translated
    # Each segment's batch translation is what Apertium gives it alone.
    alone = [apertium.translate([text], "en", "es")[0] for text in SEGMENTS]
    assert out[: len(SEGMENTS)] == alone
    assert out[len(SEGMENTS) : 2 * len(SEGMENTS)] == alone
    assert "país" in out[0] and out[4] == "..." and out[5] == "-"
    assert out[2].startswith("pide")  # a segment that continues a sentence stays lowercase


VOCABULARY = "ask not what your country can do for you the red car Mr. e.g. U.S.A. 3.5 100% é ñ 日本 हिंदी"
SYMBOLS = "$ @ # [ ] { } < > ^ \\ / | ~ ... … - — « » “ ” ' \" ( ) ; : ! ? ¿ ¡ * _ & = +"
words = st.sampled_from(VOCABULARY.split() + SYMBOLS.split())
segment = st.lists(words, min_size=0, max_size=8).map(" ".join)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(segment, min_size=1, max_size=30), mode=st.sampled_from([("en", "es"), ("en", "eo")]))
def test_generated_batches_stay_aligned(apertium, texts, mode):
    # A number passes through Apertium untouched: it tags each segment so misalignment shows.
    tagged = [f"{t} {7000 + i} {t}" if i % 3 else t for i, t in enumerate(texts)]
    out = apertium.translate(tagged, *mode)
    assert len(out) == len(tagged)
    for i, (text, translated) in enumerate(zip(tagged, out, strict=True)):
        assert (translated == "") == (text.strip() == "")
        tags = [n for n in range(7000, 7000 + len(texts)) if str(n) in translated]
        assert tags == ([7000 + i] if i % 3 else []), (text, translated)


def test_failures_are_one_line_pipeline_errors(apertium):
    with pytest.raises(
        PipelineError, match=r"Apertium has no en->ja mode installed; installed pairs: bs->en"
    ):
        apertium.translate(["hello"], "en", "ja")
    with pytest.raises(PipelineError, match="not installed"):
        ApertiumEngine(binary="apertium-not-installed-here")
    slow = ApertiumEngine(timeout=0.001)
    with pytest.raises(PipelineError, match=r"apertium eng-spa timed out after 0 s on 1 segments"):
        slow.translate([JFK * 50], "en", "es")
    with pytest.raises(PipelineError, match=r"cannot list Apertium modes with '\S*false -l'"):
        ApertiumEngine(binary="false").pairs()
