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
from typing import TYPE_CHECKING, Any, Literal, get_args

from pipeline import atomic
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.media import MediaInfo
    from pipeline.mt.routing import Route
    from pipeline.plan import JobPlan

# At most 9 digits of sequence: ids stay far below NAME_MAX, and an absurd one is "invalid", not ENAMETOOLONG.
JOB_ID = re.compile(r"^job-(?P<date>\d{8})-(?P<user>[a-z0-9_]{1,32})-(?P<seq>\d{4,9})$")
MANIFEST = "manifest.json"
LOCK = ".lock"
StageState = Literal["pending", "running", "done", "failed", "interrupted", "skipped"]
Finished = Literal["done", "skipped"]  # what a stage that returned ends as
STATES: tuple[StageState, ...] = get_args(StageState)


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


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long, a NUL: no such job either
        return False


def locate(job: str, out_root: Path) -> Path:
    """A job folder from a job id or a path to a job folder; one-line error when there is none."""
    as_path = Path(job)
    if _is_file(as_path / MANIFEST):
        return as_path
    if os.sep in job or job.startswith("."):
        raise PipelineError(f"no job folder at {job} (it has no {MANIFEST})")
    folder = job_dir_for(job, out_root)
    if not _is_file(folder / MANIFEST):
        raise PipelineError(f"job {job} not found under {out_root} (looked in {folder})")
    return folder


def new_job_dir(out_root: Path, *, user: str | None = None, today: dt.date | None = None) -> tuple[str, Path]:
    """Create the next free job folder for today and this user; safe against concurrent prepares."""
    user = user or current_user()
    today = today or dt.date.today()
    parent = out_root / f"{today:%Y}" / f"{today:%m}" / f"{today:%d}" / user
    try:
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
    except OSError as exc:  # the root under a file, a read-only mount, no permission, a full disk
        raise PipelineError(
            f"cannot create a job folder under {out_root}: {exc.strerror} ({exc.filename}); "
            "allowed: a writable folder (--out or $PIPELINE_OUT)"
        ) from None


@dataclass
class Manifest:
    """The job's record. Saved atomically after every state change, so a crash leaves the last good state."""

    path: Path
    data: dict[str, Any]

    @classmethod
    def create(cls, folder: Path, job_id: str, workflow: str, media: str, stages: list[str], **extra: Any) -> Manifest:
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
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
            raise PipelineError(f"cannot read job manifest {path}: {exc}") from None
        # What a job folder holds is input like any other: later code builds paths and runs stages from it.
        from pipeline.manifest_checks import manifest_problems

        if problems := manifest_problems(data):
            raise PipelineError(f"job manifest {path} is not valid: {'; '.join(problems)}")
        return cls(path, data)

    def save(self) -> None:
        try:
            atomic.write_json(self.path, self.data)
        except OSError as exc:  # a full disk, a folder made read-only: one line, and the last good state stays
            raise PipelineError(f"cannot write job manifest {self.path}: {exc.strerror}", fix=fix_for(exc)) from None

    # --- what the job is -------------------------------------------------------------------------------------

    @property
    def job_id(self) -> str:
        return str(self.data["job_id"])

    @property
    def created(self) -> str:
        return str(self.data["created"])

    @property
    def flags(self) -> dict[str, str]:
        """The flags the job was prepared with: they rank above the environment on every run."""
        return dict(self.data.get("flags", {}))

    @property
    def media_stat(self) -> tuple[int, int] | None:
        """(size, mtime_ns) of the media when the job was prepared."""
        stat = self.data.get("media_stat")
        if not isinstance(stat, dict):
            return None
        size, mtime = stat.get("size"), stat.get("mtime_ns")
        return (size if isinstance(size, int) else -1), (mtime if isinstance(mtime, int) else -1)

    @property
    def media_info(self) -> MediaInfo:
        from dataclasses import fields

        from pipeline.media import MediaInfo

        info = self.data["media_info"]
        return MediaInfo(**{f.name: info.get(f.name) for f in fields(MediaInfo)})

    def record_media_info(self, info: MediaInfo) -> None:
        """Saved with the probe stage's record."""
        self.data["media_info"] = info.to_dict()

    @property
    def plan(self) -> JobPlan | None:
        """The job's plan (pipeline.plan); None for a job prepared before plans were kept."""
        from pipeline.plan import JobPlan

        return JobPlan.from_record(self.data)

    @property
    def routes(self) -> tuple[Route, ...]:
        """The translation routes (also the plan's), planned at prepare."""
        from pipeline.mt.routing import Route

        return tuple(Route.from_dict(r) for r in self.data.get("routes", []))

    def record_plan(self, plan: JobPlan) -> None:
        self.data.update(plan.to_record())
        self.save()

    @property
    def language(self) -> str | None:
        """The spoken language, once the transcribe stage detected it (or was told it)."""
        return self.data.get("language")

    def record_language(self, language: str) -> None:
        """Saved with the transcribe stage's record."""
        self.data["language"] = language

    def record_run(self, overrides: dict[str, Any]) -> None:
        """The settings this run uses that differ from the job's .env.pipeline, with where each came from."""
        self.data["run_overrides"] = overrides
        self.save()

    def record_finished(self, versions: dict[str, str]) -> None:
        self.data["versions"] = versions
        self.data["finished"] = _now()
        self.save()

    def to_dict(self) -> dict[str, Any]:
        """A copy of the whole record, as `status --json` prints it."""
        return json.loads(json.dumps(self.data))

    # --- the stages --------------------------------------------------------------------------------------------

    @property
    def stage_names(self) -> list[str]:
        return list(self.data["stages"])

    def stage(self, name: str) -> dict[str, Any]:
        """A copy of one stage's record."""
        return dict(self.data["stages"][name])

    def state(self, name: str) -> StageState:
        return self.data["stages"][name]["state"]

    def stage_started(self, name: str) -> None:
        self._update(name, state="running", started=_now(), error=None)

    def stage_interrupted(self, name: str, wall_s: float) -> None:
        self._update(name, state="interrupted", wall_s=wall_s)

    def stage_failed(self, name: str, error: str, wall_s: float, record: dict[str, Any]) -> None:
        """`record`: what the failure carries (an exhausted ASR chain: its attempts)."""
        self._update(name, **record, state="failed", error=error, wall_s=wall_s)

    def stage_finished(
        self,
        name: str,
        state: Finished,
        wall_s: float,
        facts: dict[str, Any],
        *,
        peak_rss_mb: float | None = None,
        started: str | None = None,
    ) -> None:
        """`facts`: the stage's result (`pipeline.stages`); `started` for a stage done outside a run (probe)."""
        times = {"started": started} if started else {}
        peak = {"peak_rss_mb": peak_rss_mb} if peak_rss_mb is not None else {}
        self._update(name, state=state, **times, finished=_now(), wall_s=wall_s, **peak, **facts)

    def _update(self, name: str, **fields: Any) -> None:
        self.data["stages"][name].update(fields)
        self.save()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


now = _now


def check_output_names(
    stem: str, languages: list[str], formats: tuple[str, ...], extra: tuple[str, ...], out_root: Path
) -> None:
    """Refuse a media stem whose outputs could not be written: `<stem>.<lang>.<ext>` (and `extra` suffixes) must
    fit the file system's NAME_MAX (their temporary names fit wherever they do: `atomic.partial_path`).
    Refused rather than shortened: output names stay what users and scripts derive from their file's name."""
    suffixes = [f".{lang}.{ext}" for lang in languages for ext in formats] + list(extra)
    longest = max(suffixes, key=len)
    existing = next(p for p in (out_root.absolute(), *out_root.absolute().parents) if p.exists())
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    limit = name_max - len(longest)
    size = len(stem.encode("utf-8", "surrogateescape"))
    if size > limit:
        raise PipelineError(
            f"media file name is too long for its outputs: its stem is {size} bytes, and <stem>{longest} "
            f"must fit the {name_max}-byte name limit of {existing}; "
            f"allowed: a stem of at most {limit} bytes (rename the file or link it under a shorter name)"
        )


def fix_for(exc: OSError) -> str | None:
    """What to do before a resume can help after `exc`; None when a resume alone may help."""
    import errno

    return {
        errno.ENOSPC: "free some disk space",
        errno.EDQUOT: "free some disk space",
        errno.EROFS: "make the job folder writable",
        errno.EACCES: "make the job folder writable",
        errno.EPERM: "make the job folder writable",
    }.get(exc.errno or 0)


def runner_alive(folder: Path) -> bool:
    """Whether a `pipeline run` holds this job's lock. The kernel drops a flock when its holder dies, however
    it died (kill -9, a lost terminal), so a stage recorded `running` without it is an orphan."""
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY)
    except OSError:  # no lock file: no run ever held it
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our shared lock too
    return False


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the job's lock: two `pipeline run`s of one job would overwrite each other's outputs."""
    try:
        handle = open(folder / LOCK, "w")  # noqa: SIM115 (closed below, after the lock is released)
    except OSError as exc:  # a read-only or full job folder
        message = f"cannot lock job {folder.name} ({folder / LOCK}): {exc.strerror}"
        raise PipelineError(message, fix=fix_for(exc)) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineError(f"job {folder.name} is already running (lock held on {folder / '.lock'})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
