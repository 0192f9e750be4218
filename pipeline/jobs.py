"""Jobs: a folder per job holding its own `.env.pipeline`, a manifest of stage states, a log and its outputs.

out/YYYY/MM/DD/<user>/job-YYYYMMDD-<user>-NNNN/
    .env.pipeline     the job's settings (every key, resolved at prepare time)
    manifest.json     stage states, timings, memory, backends, versions, outputs
    pipeline.log      stage and worker logs
    work/             intermediate files (audio, raw ASR results)
    <stem>.<lang>.{json,txt,srt,vtt}, <stem>.subtitled.<mp4|mkv>
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.errors import PipelineError

JOB_ID = re.compile(r"^job-(?P<date>\d{8})-(?P<user>[a-z0-9_]{1,32})-(?P<seq>\d{4,})$")
MANIFEST = "manifest.json"
STATES = ("pending", "running", "done", "failed", "interrupted", "skipped")


def default_out_root() -> Path:
    return Path(os.environ.get("PIPELINE_OUT", "out"))


def current_user() -> str:
    """The job owner's name as it appears in paths and ids: lower case letters, digits and underscores."""
    try:
        raw = os.environ.get("PIPELINE_USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry inside some containers
        raw = "user"
    cleaned = re.sub(r"[^a-z0-9_]+", "_", raw.lower()).strip("_")[:32]
    return cleaned or "user"


def check_job_id(job_id: str) -> re.Match[str]:
    match = JOB_ID.match(job_id)
    if not match:
        raise PipelineError(
            f"invalid job id {job_id!r}; job ids look like job-YYYYMMDD-<user>-NNNN "
            "(lower-case letters, digits and _ in the user part; no '/' or '..')"
        )
    return match


def job_dir_for(job_id: str, out_root: Path) -> Path:
    match = check_job_id(job_id)
    date = match["date"]
    return out_root / date[:4] / date[4:6] / date[6:] / match["user"] / job_id


def locate(job: str, out_root: Path) -> Path:
    """A job folder from a job id or a path to a job folder; one-line error when there is none."""
    as_path = Path(job)
    if (as_path / MANIFEST).is_file():
        return as_path
    if os.sep in job or job.startswith("."):
        raise PipelineError(f"no job folder at {job} (it has no {MANIFEST})")
    folder = job_dir_for(job, out_root)
    if not (folder / MANIFEST).is_file():
        raise PipelineError(f"job {job} not found under {out_root} (looked in {folder})")
    return folder


def new_job_dir(out_root: Path, *, user: str | None = None, today: dt.date | None = None) -> tuple[str, Path]:
    """Create the next free job folder for today and this user; safe against concurrent prepares."""
    user = user or current_user()
    today = today or dt.date.today()
    parent = out_root / f"{today:%Y}" / f"{today:%m}" / f"{today:%d}" / user
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(m["seq"]) for p in parent.iterdir() if (m := JOB_ID.match(p.name))]
    seq = max(taken, default=0) + 1
    while True:
        job_id = f"job-{today:%Y%m%d}-{user}-{seq:04d}"
        try:
            (parent / job_id).mkdir()  # atomic claim: a concurrent prepare gets FileExistsError and moves on
            return job_id, parent / job_id
        except FileExistsError:
            seq += 1


@dataclass
class Manifest:
    """The job's record. Saved atomically after every state change, so a crash leaves the last good state."""

    path: Path
    data: dict[str, Any]

    @classmethod
    def create(
        cls, folder: Path, job_id: str, workflow: str, media: str, stages: list[str], **extra: Any
    ) -> Manifest:
        data = {
            "job_id": job_id,
            "workflow": workflow,
            "media": media,
            "created": _now(),
            **extra,
            "stages": {name: {"state": "pending"} for name in stages},
        }
        manifest = cls(folder / MANIFEST, data)
        manifest.save()
        return manifest

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            return cls(path, json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise PipelineError(f"cannot read job manifest {path}: {exc}") from None

    def save(self) -> None:
        atomic.write_json(self.path, self.data)

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        return self.data["stages"]

    def stage(self, name: str) -> dict[str, Any]:
        return self.stages[name]

    def update(self, name: str, **fields: Any) -> None:
        self.stages[name].update(fields)
        self.save()

    def first_unfinished(self) -> str | None:
        return next((n for n, s in self.stages.items() if s["state"] not in ("done", "skipped")), None)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


now = _now


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the job's lock: two `pipeline run`s of one job would overwrite each other's outputs."""
    with open(folder / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineError(
                f"job {folder.name} is already running (lock held on {folder / '.lock'})"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
