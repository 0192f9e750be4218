"""The translate stage with the real Apertium engine, no ASR: routes side by side, pivots made once, and a
failed route that loses none of the others."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest

from pipeline import config, jobs, stages
from pipeline.asr import Segment, Transcript
from pipeline.errors import PipelineError
from pipeline.mt import get_engine
from pipeline.mt.routing import Route
from pipeline.mt.scheduler import MT_THREADS, Schedule
from pipeline.plan import JobPlan
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
    plan = JobPlan("cpu", "base", (), (), tuple(Route.from_dict(r) for r in routes))
    ctx = stages.Context(folder, cfg, manifest, plan, folder / "pipeline.log")
    write_transcript_json(Transcript("en", SEGMENTS, 9.0), ctx.output("en", "json"))
    return ctx


def _route(target: str, *languages: str) -> dict:
    """en -> languages... -> target, all through Apertium."""
    path = ["en", *languages, target]
    return {"target": target, "hops": [{"engine": "apertium", "src": a, "tgt": b} for a, b in pairwise(path)]}


def _routed(ctx: stages.Context, routes: list[dict]) -> stages.Context:
    """The context of a run whose plan has these routes."""
    return replace(ctx, plan=replace(ctx.plan, routes=tuple(Route.from_dict(r) for r in routes)))


def _text(ctx: stages.Context, language: str) -> str:
    return " ".join(s["text"] for s in json.loads(ctx.output(language, "json").read_text())["segments"])


class RecordingApertium:
    """A test double around the real Apertium engine: records each call (pair, thread, start and end), and holds
    the first two calls until both have started, which only routes running side by side can do (one after
    another, the first call waits in vain and fails the test)."""

    name = "apertium"

    def __init__(self) -> None:
        self.engine = get_engine("apertium")
        self.calls: list[tuple[str, str, int, float, float]] = []
        self.together = threading.Barrier(2, timeout=120)  # generous: only a sequential run waits it out
        self.lock = threading.Lock()

    def pairs(self) -> frozenset[tuple[str, str]]:
        return self.engine.pairs()

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        start = time.monotonic()
        with self.lock:
            first_two = len(self.calls) < 2
            self.calls.append((src, tgt, threading.get_ident(), start, 0.0))
            index = len(self.calls) - 1
        if first_two:
            self.together.wait()
        out = self.engine.translate(texts, src, tgt)
        with self.lock:
            self.calls[index] = (*self.calls[index][:4], time.monotonic())
        return out


def test_routes_run_side_by_side_and_a_pivot_is_made_once(tmp_path: Path) -> None:
    """The scheduler with a recording Apertium: two routes' hops overlap in time on two threads; es, a pivot of
    the ca route, is translated once; the ca route's hop back to en takes the transcript, making nothing."""
    assert MT_THREADS >= 2
    routes = [Route.from_dict(r) for r in (_route("es"), _route("eo"), _route("gl"), _route("ca", "es", "en"))]
    source = Transcript("en", SEGMENTS, 9.0)
    recording, written = RecordingApertium(), list[Transcript]()
    schedule = Schedule(routes, source, {})
    schedule.speak(lambda hop: pytest.fail(f"no speech hop here: {hop}"))
    schedule.run(lambda name: recording if name == "apertium" else pytest.fail(name), written.append)
    pairs = sorted((src, tgt) for src, tgt, *_ in recording.calls)
    assert pairs == [("en", "ca"), ("en", "eo"), ("en", "es"), ("en", "gl")]  # es once; en never made from es
    (a, b) = recording.calls[:2]
    assert a[2] != b[2] and max(a[3], b[3]) < min(a[4], b[4]), recording.calls  # two threads, spans overlap
    assert sorted(t.language for t in written) == ["ca", "eo", "es", "gl"]
    assert all(t.backend == "apertium" and len(t.segments) == len(SEGMENTS) for t in written)


def test_the_stage_translates_every_route_once(tmp_path: Path) -> None:
    # ca through es and back to en: its es hop is the es route's track, its en hop the transcript itself.
    ctx = _job(tmp_path, [_route("es"), _route("eo"), _route("gl"), _route("ca", "es", "en")])
    facts = stages.translate(ctx).facts()
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
    ctx = _routed(ctx, [_route("es"), _route("eo"), _route("ca"), _route("gl")])
    facts = stages.translate(ctx).facts()
    assert facts["resumed"] == ["es", "eo", "ca"] and list(facts["targets"]) == ["gl"]
    assert {lang: ctx.output(lang, "json").stat().st_mtime_ns for lang in written} == written


def test_a_route_waiting_for_a_pivot_that_failed_fails_too(tmp_path: Path) -> None:
    ctx = _job(tmp_path, [_route("zz"), _route("es", "zz")])
    with pytest.raises(PipelineError, match="no en->zz mode"):
        stages.translate(ctx)
    assert not ctx.output("es", "json").exists()


def test_force_redoes_a_target_an_earlier_run_finished(tmp_path: Path) -> None:
    """`run --force` redoes every stage: a track left by an earlier run (here a stale one) is translated again."""
    ctx = _job(tmp_path, [_route("es"), _route("eo")])
    write_transcript_json(Transcript("es", (Segment(0.0, 9.0, "STALE"),), 9.0), ctx.output("es", "json"))
    stale = ctx.output("es", "json").stat().st_ino
    assert stages.translate(ctx).resumed == ["es"] and _text(ctx, "es") == "STALE"  # a resume keeps it
    facts = stages.translate(replace(ctx, force=True)).facts()
    assert facts["resumed"] == [] and list(facts["targets"]) == ["es", "eo"]
    assert "país" in _text(ctx, "es") and ctx.output("es", "json").stat().st_ino != stale


@pytest.mark.parametrize("language", ["en/../../x", "../x", "/tmp/x", "en\n", "", "EN", "e"])
def test_a_language_from_the_job_folder_cannot_name_a_file_outside_it(tmp_path: Path, language: str) -> None:
    """The manifest is input: a route target or a detected language that is no language code is refused."""
    ctx = _job(tmp_path, [_route("es")])
    with pytest.raises(PipelineError, match="cannot name an output file; allowed: a language code"):
        ctx.output(language, "json")
    routed = _routed(
        ctx, [_route("es"), {"target": language, "hops": [{"engine": "apertium", "src": "en", "tgt": language}]}]
    )
    with pytest.raises(PipelineError, match="cannot name an output file"):
        stages.translate(routed)
    ctx = _routed(ctx, [])
    ctx.manifest.record_language(language)  # as if detected; an empty one falls back to the configured "en"
    if language:
        with pytest.raises(PipelineError, match="cannot name an output file"):
            stages.subtitles(ctx)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and p.parent != ctx.job_dir) == []


@pytest.mark.parametrize("language", ["en", "pt", "yue", "und", "sr-Latn", "zh-Hant"])
def test_language_codes_name_outputs_in_the_job_folder(tmp_path: Path, language: str) -> None:
    ctx = _job(tmp_path, [])
    assert ctx.output(language, "srt") == ctx.job_dir / f"talk.{language}.srt"
