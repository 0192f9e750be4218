"""`pipeline batch`: many media files, one ordinary job each, run on Ray (a local instance, or a cluster).

The batch keeps no state of its own: each file maps to the job folder holding it (`inputs.map_jobs`: found again
by media file and workflow options, else prepared), so a re-run skips finished jobs and resumes the others at
their first unfinished stage. One long-lived actor per device (`cluster.JobRunner`) runs a job at a time through
`workflow.run`; the driver keeps every actor fed (`pool`). What can go wrong, and what the batch does:

| event                                   | what happens                                                      |
|-----------------------------------------|-------------------------------------------------------------------|
| a bad file (not media, no audio, ...)   | its one-line error in the table; the others go on; exit 1         |
| a stage fails (ASR chain exhausted ...) | the job stays resumable at that stage; reported; exit 1           |
| a Ray worker process dies, or its node  | a new actor takes its place, the file is retried (`retries`)      |
| the job is run elsewhere (its lock)     | waited for, never run twice; its result is reported               |
| Ctrl-C, SIGTERM, SIGHUP                 | running jobs are stopped as a single run's Ctrl-C stops them      |
| Ray cannot start here (no loopback ...) | a one-line error before any job is prepared; exit 2               |
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.batch.inputs import Item, expand, map_jobs
from pipeline.batch.pool import Run, run_on_ray, stop_signals
from pipeline.batch.report import Display, Row, read_job, table
from pipeline.errors import PipelineError

__all__ = ["BatchResult", "Row", "run_batch", "table"]


@dataclass
class BatchResult:
    rows: list[Row]
    interrupted: bool = False
    nodes: set[str] = field(default_factory=set)  # Ray node ids that ran a job

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.state != "done"]

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else 1 if self.failed else 0


def run_settings(options: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    """What each job's run is given on top of its own settings: a CPU actor's ASR worker decodes with the actor's
    CPUs, as Ray means them (several workers each taking every core of a node slow each other down), unless the
    user chose WHISPER_THREADS. A run setting, recorded as such in the manifest: the job stays a single run's."""
    if options.get("num_gpus") or "WHISPER_THREADS" in overrides or "WHISPER_THREADS" in os.environ:
        return {}
    return {"WHISPER_THREADS": str(int(options.get("num_cpus", 1)))}


def _profile(overrides: Mapping[str, str]) -> tuple[Any, int]:
    """The profile a job prepared with `overrides` gets here, and this machine's CUDA devices."""
    from pipeline import config, hardware
    from pipeline.profiles import load_matrix

    hw = hardware.detect()
    return hardware.resolve_profile(config.load(cli=overrides), load_matrix(), hw), hw.cuda_devices


def run_batch(
    media: Sequence[str],
    workflow: str,
    overrides: Mapping[str, str],
    out_root: Path,
    *,
    address: str | None = None,
    workers: int | None = None,
    retries: int = 2,
    display: Display | None = None,
) -> BatchResult:
    """Map every file to its job, run the unfinished ones on Ray, and return one row per file."""
    from pipeline.batch.cluster import actor_options, check_address, check_local

    if (workers is not None and workers < 1) or retries < 0:
        raise PipelineError(f"--workers {workers} --retries {retries}; allowed: at least 1 worker, 0 or more retries")
    if address is not None:
        check_address(address)
    else:
        check_local()
    out_root = Path(os.path.abspath(out_root))
    paths = expand(media, out_root)
    if not paths:
        raise PipelineError(f"no media files in {' '.join(media)}; allowed: media files, folders holding them, @LIST")
    options = actor_options(*_profile({"WORKFLOW": workflow, **overrides}), joined=address is not None)
    display = display or Display([])
    ray = None
    try:
        with stop_signals():
            items, ray = _map_starting_ray(paths, workflow, overrides, out_root, address)
            rows = display.rows = [Row(str(i.media), workflow) for i in items]
            result = BatchResult(rows)
            todo: list[int] = []
            for index, (item, row) in enumerate(zip(items, rows, strict=True)):
                if item.error or item.folder is None:
                    row.state, row.error = "failed", item.error or "no job"
                elif read_job(row, item.folder) and not row.error:
                    row.state, row.earlier = "done", item.found
                else:
                    row.error = ""  # an earlier run's failure: this batch resumes it
                    todo.append(index)
            if todo:
                ray = ray or _connect(address)
                settings = run_settings(options, overrides)
                run = Run(items, rows, out_root, retries, options, display, settings, ray)
                try:
                    run_on_ray(run, todo, workers)
                finally:
                    result.interrupted, result.nodes = run.interrupted, run.nodes
    finally:
        display.close()
        if ray is not None:
            with contextlib.suppress(Exception):
                _shutdown(ray)
            from pipeline.asr.served import sweep

            sweep(out_root)  # the folders of served workers whose actor was killed (on this machine)
    return result


def _connect(address: str | None) -> Any:
    from pipeline.batch.cluster import connect

    # Ray's own notices (a worker died ...) go to stdout: it is kept for the table (and --json).
    with contextlib.redirect_stdout(sys.stderr):
        return connect(address)


def _shutdown(ray: Any) -> None:
    from pipeline.batch.cluster import shutdown

    shutdown(ray)


def _map_starting_ray(
    paths: list[Path], workflow: str, overrides: Mapping[str, str], out_root: Path, address: str | None
) -> tuple[list[Item], Any]:
    """Map the files to their jobs in a thread; Ray starts (in this, the main thread) as soon as one job needs
    running, while the others are still being prepared. Nothing to run (a re-run): Ray is never started."""
    needed, settled, cancel = threading.Event(), threading.Event(), threading.Event()
    outcome: list[Any] = []

    def work() -> None:
        needed.set()
        settled.set()

    def mapper() -> None:
        try:
            outcome.append(map_jobs(paths, workflow, overrides, out_root, on_work=work, cancel=cancel))
        except BaseException as exc:  # re-raised in the main thread
            outcome.append(exc)
        finally:
            settled.set()

    thread = threading.Thread(target=mapper, name="batch-map", daemon=True)
    thread.start()
    ray = None
    try:
        with contextlib.suppress(ImportError):  # meanwhile (the mapper mostly waits for ffprobe): not after it
            import ray as _  # noqa: F401
        settled.wait()
        ray = _connect(address) if needed.is_set() else None
        thread.join()
    except BaseException:  # Ctrl-C: no new job is prepared; those being prepared are finished (or removed)
        cancel.set()
        thread.join()
        if ray is not None:
            _shutdown(ray)
        raise
    if isinstance(outcome[0], BaseException):
        if ray is not None:
            _shutdown(ray)
        raise outcome[0]
    return outcome[0], ray
