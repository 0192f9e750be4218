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

# At most 9 digits of sequence: ids stay far below NAME_MAX, and an absurd one is "invalid", not ENAMETOOLONG.
JOB_ID = re.compile(r"^job-(?P<date>\d{8})-(?P<user>[a-z0-9_]{1,32})-(?P<seq>\d{4,9})$")
MANIFEST = "manifest.json"
LOCK = ".lock"
STATES = ("pending", "running", "done", "failed", "interrupted", "skipped")
LANGUAGE = re.compile(r"^[a-z]{2,3}$")  # what a manifest may name in an output path: ISO 639-1/-3, or "und"


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
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
            raise PipelineError(f"cannot read job manifest {path}: {exc}") from None
        # What a job folder holds is input like any other: later code builds paths and runs stages from it.
        if problems := manifest_problems(data):
            raise PipelineError(f"job manifest {path} is not valid: {'; '.join(problems)}")
        return cls(path, data)

    def save(self) -> None:
        try:
            atomic.write_json(self.path, self.data)
        except OSError as exc:  # a full disk, a folder made read-only: one line, and the last good state stays
            raise PipelineError(
                f"cannot write job manifest {self.path}: {exc.strerror}", fix=fix_for(exc)
            ) from None

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


def manifest_problems(data: Any) -> list[str]:
    """What is wrong with a manifest read from disk: the fields later code trusts, each checked."""
    from pipeline import config
    from pipeline.mt import ENGINES
    from pipeline.stages import WORKFLOW_STAGES

    if not isinstance(data, dict):
        return ["not a JSON object"]
    problems: list[str] = []

    def check(field: str, value: Any, ok: bool, allowed: str) -> bool:
        if not ok:
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            problems.append(f"{field}={shown}, allowed: {allowed}")
        return ok

    def language(field: str, value: Any) -> None:
        check(field, value, isinstance(value, str) and bool(LANGUAGE.match(value)), "a language code (en, hi, haw)")

    def number(field: str, value: Any, allowed: str = "a number") -> bool:
        return check(field, value, isinstance(value, int | float) and not isinstance(value, bool), allowed)

    job_id = data.get("job_id")
    check("job_id", job_id, isinstance(job_id, str) and bool(JOB_ID.match(job_id)), "job-YYYYMMDD-<user>-NNNN")
    workflow = data.get("workflow")
    check("workflow", workflow, workflow in config.WORKFLOWS, ", ".join(config.WORKFLOWS))
    media = data.get("media")
    check("media", media, isinstance(media, str) and os.path.isabs(media) and "\0" not in media, "an absolute path")
    stages = data.get("stages")
    expected = list(WORKFLOW_STAGES.get(workflow, ())) if isinstance(workflow, str) else []
    from pipeline.speakers.stage import stages as with_speakers  # DIARIZATION adds a stage after transcribe

    ok = isinstance(stages, dict) and list(stages) in (expected, with_speakers(expected, True))
    if check("stages", stages, ok, ", ".join(expected)) and isinstance(stages, dict):
        for name, stage in stages.items():
            if not check(f"stages.{name}", stage, isinstance(stage, dict), "an object"):
                continue
            check(f"stages.{name}.state", stage.get("state"), stage.get("state") in STATES, ", ".join(STATES))
            for key in ("wall_s", "peak_rss_mb", "crashes"):
                if key in stage:
                    number(f"stages.{name}.{key}", stage[key])
            for key in ("error", "reason", "backend", "model", "device", "compute_type"):
                if stage.get(key) is not None:
                    check(f"stages.{name}.{key}", stage[key], isinstance(stage[key], str), "text")
    if "language" in data:
        language("language", data["language"])
    routes = data.get("routes", [])
    if check("routes", routes, isinstance(routes, list), "a list"):
        for i, route in enumerate(routes):
            if not check(f"routes[{i}]", route, isinstance(route, dict) and isinstance(route.get("hops"), list),
                         "an object with target and hops"):
                continue
            language(f"routes[{i}].target", route.get("target"))
            for j, hop in enumerate(route["hops"]):
                if check(f"routes[{i}].hops[{j}]", hop, isinstance(hop, dict), "an object with engine, src, tgt"):
                    engines = ("whisper", *ENGINES)
                    check(f"routes[{i}].hops[{j}].engine", hop.get("engine"), hop.get("engine") in engines,
                          ", ".join(engines))
                    language(f"routes[{i}].hops[{j}].src", hop.get("src"))
                    language(f"routes[{i}].hops[{j}].tgt", hop.get("tgt"))
    info = data.get("media_info")
    if check("media_info", info, isinstance(info, dict), "an object") and isinstance(info, dict):
        number("media_info.duration", info.get("duration"))
        video = info.get("video_streams")
        check("media_info.video_streams", video, isinstance(video, int) and video >= 0, "a whole number")
    flags = data.get("flags", {})
    if check("flags", flags, isinstance(flags, dict), "an object"):
        for key, value in flags.items():
            allowed = key in config.BY_NAME and key not in config.JOB_KEYS and isinstance(value, str)
            check(f"flags.{key}", value, allowed, "config keys (`pipeline config keys`) with text values")
    return problems


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
            raise PipelineError(
                f"job {folder.name} is already running (lock held on {folder / '.lock'})"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
