"""The library API behind the CLI: prepare a job, run it (resuming), report its status."""

from __future__ import annotations

import contextlib
import logging
import platform
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import config as config_mod
from pipeline import envfile, jobs
from pipeline.asr.attempts import AsrFailed
from pipeline.errors import Interrupted, PipelineError, StageFailed
from pipeline.plan import JobPlan, plan_job, resolve_asr
from pipeline.progress import JobLog, PeakMemory, format_seconds, say
from pipeline.stages import STAGES, WORKFLOW_STAGES, Context, serve_start, warm_start
from pipeline.versions import library_versions

if TYPE_CHECKING:
    from pipeline.asr.served import ServedWorker


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
    plan, info = plan_job(cfg)
    from pipeline.speakers import job as speakers_job

    speakers_job.check(cfg)  # diarization settings and models, before anything is written
    out_root = out_root or jobs.default_out_root()
    source = cfg.source_language if cfg.source_language != "auto" else "xxx"  # a detected code: 2-3 letters
    languages = [source, *(r.target for r in plan.routes)]
    formats = ("json", "txt", *cfg.subtitle_formats)
    extra: tuple[str, ...] = (".subtitled.mkv",) if cfg.workflow == "subtitle" else ()
    extra += (f".{source if cfg.burn_in == 'source' else cfg.burn_in}.burned.mp4",) if cfg.burn_in else ()
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
            speakers_job.stages(WORKFLOW_STAGES[cfg.workflow], cfg.diarization != "off"),
            **plan.to_record(),
            media_info=info.to_dict(),
            media_stat={"size": media_stat.st_size, "mtime_ns": media_stat.st_mtime_ns},
            flags=flags,
            host={
                "system": platform.system(),
                "machine": platform.machine(),
                "python": platform.python_version(),
            },
        )
        probed = {"duration": info.duration, "video_streams": info.video_streams}
        manifest.stage_finished("probe", "done", 0.0, probed, started=manifest.created)
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
    job: str,
    overrides: Mapping[str, str] | None = None,
    *,
    force: bool = False,
    out_root: Path | None = None,
    served: ServedWorker | None = None,
) -> Path:
    """Run a prepared job's unfinished stages (all with `force`). Returns the job folder. With `served` (a batch
    actor's), the transcribe stage's first attempt is a request to that loaded worker where it can take it."""
    folder = jobs.locate(job, out_root or jobs.default_out_root())
    fixed = sorted(set(overrides or {}) & config_mod.JOB_KEYS)
    if fixed:
        raise PipelineError(f"{', '.join(fixed)} cannot change after prepare; allowed: prepare a new job")
    try:
        with jobs.locked(folder):
            _run_locked(folder, overrides, force, served)
    except PipelineError as exc:
        if isinstance(exc, StageFailed) or not exc.fix:
            raise
        # A full disk, a folder made read-only: what to fix, and that a resume then continues where this stopped.
        raise PipelineError(f"{exc} ({exc.fix}, then resume with `pipeline run {folder.name}`)") from None
    return folder


def _run_locked(
    folder: Path, overrides: Mapping[str, str] | None, force: bool, served: ServedWorker | None = None
) -> None:
    manifest = jobs.Manifest.load(folder)
    cfg = config_mod.load(job_dir=folder, cli=overrides, job_flags=manifest.flags)
    log = _logger(folder)
    plan = _plan_for_run(manifest, cfg, log)  # a plan that cannot be made stops the run before it writes
    _record_run_config(manifest, folder, cfg)
    ctx = Context(folder, cfg, manifest, plan, folder / "pipeline.log", force=force)
    pending = [
        name
        for name in manifest.stage_names
        if manifest.state(name) not in ("done", "skipped") or (force and name != "probe")
    ]
    previous = {signum: signal.signal(signum, _terminate) for signum in _STOP_SIGNALS}
    try:
        with contextlib.ExitStack() as stack:
            # Something runs before the transcription (the extract): its model loads meanwhile.
            if served is not None and "transcribe" in pending and serve_start(ctx, served):
                ctx = replace(ctx, warm=served)  # not entered: it outlives the job
            elif "transcribe" in pending[1:] and (warm := warm_start(ctx)):
                ctx = replace(ctx, warm=stack.enter_context(warm))
            for name in pending:
                _run_stage(ctx, name, log)
    except KeyboardInterrupt as exc:
        raise Interrupted(manifest.job_id, str(exc)) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    manifest.record_finished(library_versions())


def _plan_for_run(manifest: jobs.Manifest, cfg: config_mod.Config, log: logging.Logger) -> JobPlan:
    """The manifest's plan; resolved again (and recorded before anything runs) only where this run's settings
    change it, or its model folder is gone: what the manifest says is what runs."""
    plan = manifest.plan
    why = "the job has no recorded plan" if plan is None else plan.outdated(cfg)
    if plan is not None and why is None:
        return plan
    routes = plan.routes if plan is not None else manifest.routes
    plan = resolve_asr(cfg, routes)
    manifest.record_plan(plan)
    log.info("plan resolved again (%s): %s", why, plan.to_record())
    say(f"plan resolved again: {why}; profile {plan.profile}, {' -> '.join(c.backend for c in plan.chain)}")
    return plan


def _record_run_config(manifest: jobs.Manifest, folder: Path, cfg: config_mod.Config) -> None:
    """Record the settings this run uses that differ from the job's .env.pipeline (an exported variable, a
    flag), each with where it came from."""
    job_file = folder / config_mod.JOB_CONFIG
    written = config_mod.build([(str(job_file), envfile.read(job_file))]).to_env()
    effective = cfg.to_env()
    manifest.record_run(
        {
            name: {"value": value, "from": cfg.origins[name], "job_file": written[name]}
            for name, value in effective.items()
            if value != written[name]
        }
    )


def _run_stage(ctx: Context, name: str, log: logging.Logger) -> None:
    manifest = ctx.manifest
    start = time.perf_counter()
    try:  # a signal landing between recording `running` and the stage's start is still recorded below
        manifest.stage_started(name)
        log.info("stage %s started", name)
        with PeakMemory() as memory:
            result = STAGES[name](ctx)
    except KeyboardInterrupt:
        with _signals_held():  # a second Ctrl-C must not cut the record of the first short
            manifest.stage_interrupted(name, round(time.perf_counter() - start, 3))
            log.info("stage %s interrupted", name)
        raise
    except Exception as exc:  # any failure is recorded; the job stays resumable at this stage
        reason = str(exc) if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
        reason = " ".join(reason.split())
        # An exhausted fallback chain carries its attempts: the crash counts of failed jobs matter most.
        record = exc.record.to_manifest() if isinstance(exc, AsrFailed) else {}
        with contextlib.suppress(PipelineError):  # the disk that failed the stage may fail the record too:
            # the stage then stays `running`, which `status` shows as interrupted
            manifest.stage_failed(name, reason, round(time.perf_counter() - start, 3), record)
        log.exception("stage %s failed", name)
        raise StageFailed(f"stage {name} failed: {reason}{_advice(ctx, exc)}") from exc
    wall = time.perf_counter() - start
    state = result.state
    manifest.stage_finished(name, state, round(wall, 3), result.facts(), peak_rss_mb=round(memory.peak_mb, 1))
    log.info("stage %s %s in %.2f s, peak %.0f MB", name, state, wall, memory.peak_mb)
    say(f"{name:<11} {state} in {format_seconds(wall)}, peak {memory.peak_mb:.0f} MB{result.detail}")


def _advice(ctx: Context, exc: Exception) -> str:
    """What to do after a failed stage, advising a resume only where one can help."""
    import errno

    resume = f"resume with `pipeline run {ctx.manifest.job_id}`"
    media_path = ctx.media
    try:
        now = media_path.stat()
    except OSError:
        return f" (the media file {media_path} is gone; put it back, then {resume})"
    then = ctx.manifest.media_stat
    if then and (now.st_size, now.st_mtime_ns) != then:
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
    manifest = jobs.Manifest.load(folder)
    data = manifest.to_dict()
    running = [name for name in manifest.stage_names if manifest.state(name) == "running"]
    if running and not jobs.runner_alive(folder):
        again = jobs.Manifest.load(folder)  # read after the lock was seen free: not a run just finishing
        for name in running:
            if again.stage(name) == manifest.stage(name):
                data["stages"][name] |= {"state": "interrupted", "runner_gone": True}
    return data | {"folder": str(folder)}
