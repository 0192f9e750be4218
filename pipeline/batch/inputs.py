"""A batch's files and their jobs: `MEDIA... | DIR | @list.txt` expanded to media paths, and each path mapped to
one ordinary job folder, found again on a re-run by its media file and workflow options (so the batch keeps no
state of its own: the job folders are its state)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline import config as config_mod
from pipeline import jobs
from pipeline.errors import PipelineError

# What a folder contributes: files with these extensions (a folder of films also holds posters, notes, subtitles).
# A file named explicitly (argument or list) is always taken, so that a bad one is reported, not ignored.
_EXTENSIONS = "aac aif aiff amr ape avi flac flv m2ts m4a m4v mka mkv mov mp2 mp3 mp4 mpeg mpg mts mxf oga ogg ogv opus"
MEDIA_EXTENSIONS = frozenset(f"{_EXTENSIONS} ts vob wav webm wma wmv".split(" "))
BATCH_LOCK = ".batch.lock"


@dataclass
class Item:
    """One media file of the batch, and the job that holds it once mapped (or why none could)."""

    media: Path
    folder: Path | None = None
    job_id: str | None = None
    error: str | None = None  # the one-line reason no job could be prepared (not media, no audio ...)
    found: bool = False  # an existing job (an earlier batch or single run), not prepared now


def expand(args: Sequence[str], out_root: Path) -> list[Path]:
    """Media paths, absolute, de-duplicated, in the order given (a folder's files sorted, recursively;
    hidden entries and the output root itself skipped; `@FILE` reads one path a line, relative to FILE)."""
    found: list[Path] = []
    skip = _absolute(out_root)
    for arg in args:
        if arg.startswith("@"):
            found += _listed(Path(arg[1:]))
            continue
        path = _absolute(Path(arg))
        if path.is_dir():
            found += _walk(path, skip)
        else:  # a missing or unreadable file is reported with its job, like any bad file
            found.append(path)
    return list(dict.fromkeys(found))


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path.expanduser()))


def _listed(listing: Path) -> list[Path]:
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(
            f"cannot read the media list {listing}: {exc}; allowed: a UTF-8 file, one path a line"
        ) from None
    base = _absolute(listing).parent
    names = (line.strip() for line in lines)
    return [_absolute(base / name) for name in names if name and not name.startswith("#")]


def _walk(folder: Path, skip: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and here / d != skip)
        files += [here / n for n in sorted(names) if not n.startswith(".") and _is_media_name(n)]
    return files


def _is_media_name(name: str) -> bool:
    return name.rpartition(".")[2].lower() in MEDIA_EXTENSIONS


def job_key(media: str, workflow: str, flags: Mapping[str, str], stat: Mapping[str, int] | None) -> str:
    """What makes two jobs the same job: the media file (path, size, mtime) and the workflow with its flags."""
    stat = stat or {}
    return json.dumps([media, workflow, dict(sorted(flags.items())), stat.get("size"), stat.get("mtime_ns")])


def _media_key(media: Path, workflow: str, flags: Mapping[str, str]) -> str | None:
    try:
        st = media.stat()
    except OSError:
        return None
    return job_key(str(media), workflow, flags, {"size": st.st_size, "mtime_ns": st.st_mtime_ns})


def existing_jobs(out_root: Path) -> dict[str, tuple[Path, bool]]:
    """Every job under `out_root` by its key, and whether it is finished; of several with one key, a finished
    one, else the newest."""
    found: dict[str, tuple[tuple[bool, str], Path]] = {}
    for manifest in out_root.glob(f"*/*/*/*/job-*/{jobs.MANIFEST}"):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            key = job_key(data["media"], data["workflow"], data.get("flags") or {}, data.get("media_stat"))
            states = [s["state"] for s in data["stages"].values()]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not a job this batch could have made
        rank = (all(s in ("done", "skipped") for s in states), str(data.get("created", "")))
        if key not in found or rank > found[key][0]:
            found[key] = (rank, manifest.parent)
    return {key: (folder, rank[0]) for key, (rank, folder) in found.items()}


@contextlib.contextmanager
def batch_lock(out_root: Path) -> Iterator[None]:
    """Held while files are mapped to jobs: two batches over one root then map a file to the same job."""
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        handle = open(out_root / BATCH_LOCK, "w")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise PipelineError(
            f"cannot use the output root {out_root}: {exc.strerror}; allowed: a writable folder (--out)"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def map_jobs(
    media: Sequence[Path],
    workflow: str,
    overrides: Mapping[str, str],
    out_root: Path,
    *,
    threads: int = 4,
    on_work: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[Item]:
    """Each media file's job: an existing one with the same key, else a new one (`workflow.prepare`, which
    rejects a bad file with its one-line error; the other files go on). `on_work` is called once a job is
    known to need running (the caller starts Ray meanwhile); once `cancel` is set, no more jobs are prepared."""
    from pipeline.workflow import prepare

    flags = {k: v for k, v in overrides.items() if k not in config_mod.JOB_KEYS}
    items = [Item(path) for path in media]

    def one(item: Item) -> None:
        key = _media_key(item.media, workflow, flags)
        if key is not None and key in known:
            (item.folder, finished), item.found = known[key], True
            item.job_id = item.folder.name
        else:
            if cancel is not None and cancel.is_set():
                item.error = "interrupted before its job was prepared"
                return
            try:
                item.job_id, item.folder = prepare(item.media, {"WORKFLOW": workflow, **overrides}, out_root)
            except PipelineError as exc:
                item.error = str(exc)
                return
            finished = False
        if not finished and on_work is not None:
            on_work()

    with batch_lock(out_root):
        known = existing_jobs(out_root)
        # The first file alone, so that the caller hears of work (and starts Ray) as soon as one job could be
        # prepared; then the others, several at a time (ffprobe per file: threads overlap the waits).
        for item in items[:1]:
            one(item)
        with ThreadPoolExecutor(max(1, threads)) as pool:
            list(pool.map(one, items[1:]))
    return items
