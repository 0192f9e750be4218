"""What one E2E run records: a case per suite/clip with its verdict and measurements, and the run's context.

A results file is JSON, one per profile run (per xdist worker), named `<profile>-<run id>-<worker>.json`, so
any number of runs from any number of machines can be dropped in one folder and aggregated by `report`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.errors import PipelineError
from pipeline.versions import ffmpeg_version, library_versions

SCHEMA = "pipeline.matrix.results/1"
OUTCOMES = ("passed", "failed", "error", "skipped")


@dataclass
class CaseResult:
    suite: str
    case: str
    outcome: str = "passed"  # passed, failed (an assertion, e.g. a quality gate), error (setup/teardown), skipped
    nodeid: str = ""
    duration_s: float | None = None  # the whole test, as pytest timed it
    message: str = ""  # first line of the failure, when there is one
    wer: float | None = None
    recall: float | None = None
    coverage: float | None = None
    # Subtitle timing against known speech onsets/offsets, seconds: median and worst |cue start - onset|, and
    # median |cue end - speech end| (a cue the reading rules keep on screen longer is not late for it).
    cue_start_median_s: float | None = None
    cue_start_max_s: float | None = None
    cue_end_median_s: float | None = None
    audio_seconds: float | None = None
    wall_s: float | None = None
    rtf: float | None = None  # ASR wall time / audio duration
    peak_rss_mb: float | None = None
    backend: str | None = None  # the backend that produced the transcript, after any fallback
    fallbacks: list[str] = field(default_factory=list)  # backends tried and abandoned before it
    crashes: list[Any] = field(default_factory=list)  # worker crashes (signal, backend ...), as the job recorded them
    salvaged: int = 0  # chunks recovered after a crash
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class RunResults:
    profile: str
    model: str
    run_id: str
    worker: str = "main"
    started: str = ""
    finished: str = ""
    host: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    cases: list[CaseResult] = field(default_factory=list)
    schema: str = SCHEMA

    @property
    def filename(self) -> str:
        return f"{self.profile}-{self.run_id}-{self.worker}.json"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResults:
        known = {f.name for f in fields(cls)} - {"cases"}
        run = cls(**{k: v for k, v in data.items() if k in known})
        run.cases = [CaseResult.from_dict(c) for c in data.get("cases", [])]
        return run

    def write(self, folder: Path) -> Path:
        path = folder / self.filename
        atomic.write_json(path, self.to_dict())
        return path


def new_run_id() -> str:
    """UTC start time, sortable, plus a random tag so two runs in the same second never share a file."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def host_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "container": Path("/.dockerenv").exists() or Path("/run/.containerenv").exists(),
    }
    with contextlib.suppress(ValueError, OSError, AttributeError):  # not every platform names these
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    if os.environ.get("GITHUB_ACTIONS"):
        info["ci"] = {k: os.environ.get(k, "") for k in ("GITHUB_RUN_ID", "GITHUB_JOB", "RUNNER_NAME", "RUNNER_OS")}
    return info


def versions() -> dict[str, str]:
    found = library_versions()
    if ffmpeg := ffmpeg_version():
        found["ffmpeg"] = ffmpeg
    return found


def load(path: Path) -> RunResults | None:
    """A results file, or None for JSON that is something else; a damaged results file is an error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PipelineError(f"cannot read results file {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return None
    try:
        return RunResults.from_dict(data)
    except TypeError as exc:
        raise PipelineError(f"results file {path} does not follow {SCHEMA}: {exc}") from None


def collect(paths: list[Path]) -> list[tuple[Path, RunResults]]:
    """Every results file in `paths` (files or folders, searched recursively), oldest run first."""
    runs: list[tuple[Path, RunResults]] = []
    for root in paths:
        if not root.exists():
            raise PipelineError(f"no such results file or folder: {root}")
        for path in sorted(root.rglob("*.json")) if root.is_dir() else [root]:
            if (run := load(path)) is not None:
                runs.append((path, run))
    if not runs:
        where = ", ".join(str(p) for p in paths)
        raise PipelineError(f"no results files ({SCHEMA}) in {where}; an E2E run writes them to $PIPELINE_RESULTS_DIR")
    return sorted(runs, key=lambda item: (item[1].started, item[1].profile, item[1].worker))
