"""The translate stage with the real Apertium engine, no ASR: routes side by side, pivots made once, and a
failed route that loses none of the others."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest

from pipeline import config, jobs, stages
from pipeline.asr import Segment, Transcript
from pipeline.errors import PipelineError
from pipeline.writers import write_transcript_json

SEGMENTS = (
    Segment(0.0, 3.0, "And so my fellow Americans,"),
    Segment(3.0, 6.5, "ask not what your country can do for you,"),
    Segment(6.5, 9.0, "ask what you can do for your country."),
)


def _job(tmp_path: Path, routes: list[dict]) -> stages.Context:
    folder = tmp_path / "job"
    folder.mkdir(exist_ok=True)
    cfg = config.load(
        cli={"MEDIA": str(tmp_path / "talk.wav"), "SOURCE_LANGUAGE": "en"}, project_config=tmp_path / "none"
    )
    manifest = jobs.Manifest.create(folder, "job-1", "translate", cfg.media, ["translate"], routes=routes)
    ctx = stages.Context(folder, cfg, manifest, (), "base", folder / "pipeline.log")
    write_transcript_json(Transcript("en", SEGMENTS, 9.0), ctx.output("en", "json"))
    return ctx


def _route(target: str, *languages: str) -> dict:
    """en -> languages... -> target, all through Apertium."""
    path = ["en", *languages, target]
    return {"target": target, "hops": [{"engine": "apertium", "src": a, "tgt": b} for a, b in pairwise(path)]}


def _text(ctx: stages.Context, language: str) -> str:
    return " ".join(s["text"] for s in json.loads(ctx.output(language, "json").read_text())["segments"])


def test_routes_run_side_by_side_and_a_pivot_is_made_once(tmp_path: Path) -> None:
    # ca through es and back to en: its es hop is the es route's track, its en hop the transcript itself.
    ctx = _job(tmp_path, [_route("es"), _route("eo"), _route("gl"), _route("ca", "es", "en")])
    facts = stages.translate(ctx)
    assert facts["targets"] == {
        "es": ["apertium"],
        "eo": ["apertium"],
        "gl": ["apertium"],
        "ca": ["apertium", "apertium", "apertium"],
    }
    assert facts["resumed"] == []
    assert "país" in _text(ctx, "es") and "lando" in _text(ctx, "eo") and "país" in _text(ctx, "gl")
    assert "país" in _text(ctx, "ca")  # from the English transcript, not English made back from Spanish
    for language in ("es", "eo", "gl", "ca"):
        track = json.loads(ctx.output(language, "json").read_text())
        assert track["language"] == language and len(track["segments"]) == len(SEGMENTS)
        assert ctx.output(language, "txt").is_file()


def test_a_failed_route_keeps_the_others_and_the_next_run_resumes(tmp_path: Path) -> None:
    ctx = _job(tmp_path, [_route("es"), _route("eo"), _route("zz"), _route("ca")])
    with pytest.raises(PipelineError, match="no en->zz mode"):
        stages.translate(ctx)
    written = {lang: ctx.output(lang, "json").stat().st_mtime_ns for lang in ("es", "eo", "ca")}
    ctx.manifest.data["routes"] = [_route("es"), _route("eo"), _route("ca"), _route("gl")]
    facts = stages.translate(ctx)
    assert facts["resumed"] == ["es", "eo", "ca"] and list(facts["targets"]) == ["gl"]
    assert {lang: ctx.output(lang, "json").stat().st_mtime_ns for lang in written} == written


def test_a_route_waiting_for_a_pivot_that_failed_fails_too(tmp_path: Path) -> None:
    ctx = _job(tmp_path, [_route("zz"), _route("es", "zz")])
    with pytest.raises(PipelineError, match="no en->zz mode"):
        stages.translate(ctx)
    assert not ctx.output("es", "json").exists()
