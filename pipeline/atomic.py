"""Atomic file writes: a reader sees the old file or the complete new one, never half of one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get the permissions any new file would
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_RANDOM_CHARS = 8  # what mkstemp adds between prefix and suffix


def _temp_prefix(path: Path) -> str:
    """`.<name>.`, so a leftover says whose it was; a fixed short one when that would make the temporary name
    longer than the folder allows (a legal 250-byte target name must not fail for its temporary's sake). It stays
    in the same folder, so the rename is still atomic."""
    prefix = f".{path.name}."
    fits = len(os.fsencode(prefix)) + _RANDOM_CHARS + len(".part") <= _name_max(path.parent)
    return prefix if fits else ".atomic."


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def current_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    with atomic_open(path, "w") as handle:
        json.dump(data, handle, ensure_ascii=False, indent=2)
        handle.write("\n")


def partial_path(path: str | os.PathLike[str]) -> Path:
    """Where a tool that writes its own file (ffmpeg) writes `path` before `commit_file`: beside it, keeping its
    suffix, `.<stem>.part<suffix>`; or, when that would be longer than the folder allows, a short name derived
    from the target's (so that one job's writer always finds its own)."""
    path = Path(path)
    name = f".{path.stem}.part{path.suffix}"
    if len(os.fsencode(name)) > _name_max(path.parent):
        name = f".{hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]}.part{path.suffix}"
    return path.with_name(name)


def commit_file(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Move a finished file written by another tool (ffmpeg, a worker) into place atomically."""
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
