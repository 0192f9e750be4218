"""Jobs under an output root, as monitoring sees them: one `Job` per job folder, read from its manifest.

A job's backend is the one that produced its transcript; for a job without one, the backend whose failure ended
its fallback chain, else the one its chain starts with (a job that failed or stopped before transcribing).
A worker crash is one of CRASH_KINDS, read from the attempt's signal (what `pipeline.asr.forensics` reports) or
its timeout (a hang we killed)."""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import jobs
from pipeline.errors import PipelineError

STATES = ("done", "failed", "running", "interrupted", "pending", "corrupt")
CRASH_KINDS = ("segfault", "abort", "kill", "hang")  # always reported, zero or not; other signals when seen
_SIGNAL_KINDS = {"SIGSEGV": "segfault", "SIGABRT": "abort", "SIGKILL": "kill"}
PRODUCED = ("ok", "salvaged", "reused")  # attempt outcomes that yield a transcript


@dataclass(frozen=True)
class WorkerRun:
    """One ASR worker attempt as its manifest records it."""

    backend: str
    outcome: str
    crash: str | None  # one of CRASH_KINDS, another signal's name (lower case), or None
    peak_rss_mb: float | None

    @property
    def produced(self) -> bool:
        return self.outcome in PRODUCED

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> WorkerRun:
        return cls(
            backend=str(data.get("backend") or "unknown"),
            outcome=str(data.get("outcome") or "unknown"),
            crash=crash_kind(data),
            peak_rss_mb=_number(data.get("peak_rss_mb")),
        )


def crash_kind(attempt: Mapping[str, Any]) -> str | None:
    """segfault (-11), abort (-6), kill (-9: the OOM killer, or anyone), hang (no progress: we killed it)."""
    if attempt.get("timed_out") or attempt.get("outcome") == "timeout":
        return "hang"
    name = attempt.get("signal")
    code = attempt.get("exit_code")
    if not name and isinstance(code, int) and code < 0:  # subprocess's way of saying "killed by signal -code"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"SIG{-code}"
    if not isinstance(name, str) or not name:
        return None
    return _SIGNAL_KINDS.get(name, name.lower())


@dataclass(frozen=True)
class AsrRun:
    """One ASR stage's fallback chain (transcription, or Whisper's speech translation): its attempts in order."""

    attempts: tuple[WorkerRun, ...]

    @property
    def producer(self) -> WorkerRun | None:
        return next((a for a in reversed(self.attempts) if a.produced), None)

    @property
    def fallback(self) -> bool:
        """A later backend in the chain produced the result."""
        producer = self.producer
        return producer is not None and producer is not self.attempts[0]

    @property
    def salvaged(self) -> bool:
        producer = self.producer
        return producer is not None and producer.outcome == "salvaged"


def asr_runs(stage: Mapping[str, Any]) -> list[AsrRun]:
    """The ASR records in a stage's manifest entry: any object in it (the entry itself, or a field of it, such as
    the translate stage's `speech_translation`) that holds a list of `attempts`."""
    found = []
    for record in (stage, *(v for v in stage.values() if isinstance(v, Mapping))):
        attempts = record.get("attempts")
        if isinstance(attempts, list) and attempts:
            found.append(AsrRun(tuple(WorkerRun.from_record(a) for a in attempts if isinstance(a, Mapping))))
    return found


@dataclass(frozen=True)
class Job:
    job_id: str
    folder: Path
    created: str | None  # ISO 8601, UTC
    media: str  # the media file's name
    workflow: str | None
    profile: str | None
    backend: str | None  # see the module's docstring
    state: str  # one of STATES
    stage: str | None  # the stage that failed, was interrupted or is running
    error: str | None  # one line: the failed stage's error, or why the manifest cannot be read
    media_s: float | None
    wall_s: float | None  # the stages' wall time, summed
    peak_rss_mb: float | None  # the highest of the stages' and the ASR workers' peaks
    chain: tuple[str, ...] = ()  # the backends the job's profile would try, in order
    asr: tuple[AsrRun, ...] = ()

    @property
    def rtf(self) -> float | None:
        if self.wall_s is None or not self.media_s:
            return None
        return self.wall_s / self.media_s

    @property
    def attempts(self) -> list[WorkerRun]:
        return [a for run in self.asr for a in run.attempts]

    @property
    def fallback(self) -> bool:
        return any(run.fallback for run in self.asr)

    @property
    def salvaged(self) -> bool:
        return any(run.salvaged for run in self.asr)

    @property
    def troubled(self) -> bool:
        """Failed, or a worker of it crashed, hung or failed (even if another attempt then produced)."""
        return self.state == "failed" or any(a.crash or not a.produced for a in self.attempts)

    def created_at(self) -> dt.datetime:
        if self.created:
            try:
                when = dt.datetime.fromisoformat(self.created)
                return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
            except ValueError:
                pass
        day = jobs.JOB_ID.match(self.job_id)
        return dt.datetime.strptime(day["date"], "%Y%m%d").replace(tzinfo=dt.UTC) if day else _EPOCH

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "folder": str(self.folder),
            "created": self.created,
            "media": self.media,
            "workflow": self.workflow,
            "profile": self.profile,
            "backend": self.backend,
            "state": self.state,
            "stage": self.stage,
            "error": self.error,
            "media_s": self.media_s,
            "wall_s": self.wall_s,
            "rtf": None if self.rtf is None else round(self.rtf, 4),
            "peak_rss_mb": self.peak_rss_mb,
            "crashes": sum(a.crash is not None for a in self.attempts),
            "fallback": self.fallback,
            "salvaged": self.salvaged,
            "attempts": [{"backend": a.backend, "outcome": a.outcome, "crash": a.crash} for a in self.attempts],
        }


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def job_folders(root: Path) -> Iterator[Path]:
    """Job folders in the out root's layout, YYYY/MM/DD/<user>/<job-id>, oldest day first."""
    if not root.is_dir():
        raise PipelineError(f"no output root at {root}; allowed: a folder of jobs (--out or $PIPELINE_OUT)")
    for folder in sorted(root.glob("[0-9]*/[0-9]*/[0-9]*/*/job-*")):
        if jobs.JOB_ID.match(folder.name) and folder.is_dir():
            yield folder


def read_job(folder: Path) -> Job:
    """The job in `folder`; a manifest that cannot be read or is not valid makes a `corrupt` job, not an error."""
    try:
        manifest = jobs.Manifest.load(folder)
        state, stage = _state(manifest, folder)
        if state == "interrupted" and stage and manifest.state(stage) == "running":
            # Read again after the lock was seen free: a run that just finished is not an interrupted one.
            manifest = jobs.Manifest.load(folder)
            state, stage = _state(manifest, folder)
        plan = manifest.plan  # None for a job prepared before plans were kept: its manifest names its chain
    except PipelineError as exc:
        return Job(folder.name, folder, None, "", None, None, None, "corrupt", None, str(exc), None, None, None)
    stages = [manifest.stage(name) for name in manifest.stage_names]
    runs = tuple(run for s in stages for run in asr_runs(s))
    walls = [w for s in stages if (w := _number(s.get("wall_s"))) is not None]
    peaks = [p for s in stages if (p := _number(s.get("peak_rss_mb"))) is not None]
    peaks += [a.peak_rss_mb for run in runs for a in run.attempts if a.peak_rss_mb is not None]
    chain = tuple(c.backend for c in plan.chain) if plan else tuple(_chain(manifest.data))
    profile = plan.profile if plan else manifest.data.get("profile")
    return Job(
        job_id=manifest.job_id,
        folder=folder,
        created=manifest.created,
        media=Path(manifest.data["media"]).name,
        workflow=manifest.data["workflow"],
        profile=profile if isinstance(profile, str) else None,
        backend=_backend(runs, chain),
        state=state,
        stage=stage,
        error=manifest.stage(stage).get("error") if stage and state == "failed" else None,
        media_s=_number(manifest.media_info.duration),
        wall_s=round(sum(walls), 3) if walls else None,
        peak_rss_mb=max(peaks) if peaks else None,
        chain=chain,
        asr=runs,
    )


def _state(manifest: jobs.Manifest, folder: Path) -> tuple[str, str | None]:
    """The job's state from its stages'; running with nobody holding the job's lock is interrupted (as in
    `pipeline status`: killed, its terminal closed, its disk full at the last write)."""
    states = {name: manifest.state(name) for name in manifest.stage_names}
    for name, state in states.items():
        if state == "running":
            return ("running" if jobs.runner_alive(folder) else "interrupted"), name
    for wanted in ("failed", "interrupted"):
        for name, state in states.items():
            if state == wanted:
                return wanted, name
    if all(state in ("done", "skipped") for state in states.values()):
        return "done", None
    return "pending", None


def _backend(runs: tuple[AsrRun, ...], chain: tuple[str, ...]) -> str | None:
    for run in runs:  # the transcription's chain comes first
        if run.producer is not None:
            return run.producer.backend
    if runs and runs[0].attempts:
        return runs[0].attempts[-1].backend
    return chain[0] if chain else None


def _chain(data: Mapping[str, Any]) -> Iterator[str]:
    chain = data.get("chain")
    for choice in chain if isinstance(chain, list) else ():
        if isinstance(choice, Mapping) and isinstance(choice.get("backend"), str):
            yield choice["backend"]


def scan(root: Path) -> list[Job]:
    return [read_job(folder) for folder in job_folders(root)]


def parse_since(text: str) -> dt.datetime:
    """--since: an ISO date or date and time; without a zone, UTC (as the manifests record)."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise PipelineError(
            f"--since {text!r} is not a date; allowed: an ISO date or date and time (2026-12-01, 2026-12-01T09:30)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def select(
    found: list[Job], *, state: str | None = None, since: dt.datetime | None = None, backend: str | None = None
) -> list[Job]:
    return [
        job
        for job in found
        if (state is None or job.state == state)
        and (since is None or job.created_at() >= since)
        and (backend is None or job.backend == backend)
    ]
