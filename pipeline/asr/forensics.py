"""What a worker left behind, judged: its result (used only when its marker pins exactly those bytes for exactly
this request), the last words of its stderr (faulthandler's report of a crash or a hang) as one line, and what
an earlier run's workers left that a resumed stage may take."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.asr import AsrRequest, Transcript
from pipeline.asr.attempts import Attempt, Outcome
from pipeline.asr.protocol import Phase, marker_path, request_bytes, request_digest


@dataclass(frozen=True)
class Result:
    status: Literal["valid", "missing", "invalid"]  # missing: no marker, never used; invalid: it doesn't match
    data: dict[str, Any] | None = None
    reason: str | None = None


def read_result(result: Path, request_bytes: bytes) -> Result:
    """The worker's result if, and only if, its marker pins exactly these bytes for exactly this request."""
    marker_file = marker_path(result)
    if not marker_file.exists():
        return Result("missing", reason="result file without its marker" if result.exists() else None)
    try:
        marker = json.loads(marker_file.read_bytes())
        sha256, size, request_sha = marker["sha256"], int(marker["size"]), marker["request_sha256"]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return Result("invalid", reason=f"unreadable marker {marker_file.name}: {type(exc).__name__}")
    if request_sha != request_digest(request_bytes):
        return Result("invalid", reason="marker belongs to another request")
    try:
        payload = result.read_bytes()
    except OSError as exc:
        return Result("invalid", reason=f"marker without result: {type(exc).__name__}")
    if len(payload) != size:
        return Result("invalid", reason=f"result is {len(payload)} bytes, its marker says {size}")
    if hashlib.sha256(payload).hexdigest() != sha256:
        return Result("invalid", reason="result sha256 does not match its marker")
    try:
        data = json.loads(payload)
        Transcript.from_dict(data["transcript"])
    except (ValueError, TypeError, KeyError) as exc:
        return Result("invalid", reason=f"result matches its marker but is not a transcript: {exc!r}"[:200])
    return Result("valid", data=data)


_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')
_THREAD = re.compile(r"^(Current thread|Thread) 0x[0-9a-fA-F]+ \(most recent call first\):")


def _innermost_frame(lines: Sequence[str]) -> str | None:
    """From a faulthandler dump: the innermost frame of the thread it ran on, else of the main thread.

    Threads are listed newest first, so the main thread is the last one when the signal landed on a native
    thread that Python doesn't know (faulthandler then marks none as current).
    """
    headers = [k for k, line in enumerate(lines) if _THREAD.match(line)]
    current = [k for k in headers if lines[k].startswith("Current")]
    start = current[0] if current else headers[-1] if headers else -1
    for line in lines[start + 1 :]:
        if m := _FRAME.match(line):
            return f"{Path(m['file']).name}:{m['line']} in {m['func']}"
    return None


def fatal_error(tail: str) -> str | None:
    """faulthandler's report of a fatal signal, with where it happened, as one line."""
    lines = tail.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Fatal Python error:"):
            where = _innermost_frame(lines[i + 1 :])
            return lines[i].strip() + (f" at {where}" if where else "")
    return None


def hang_site(tail: str) -> str | None:
    """Where the worker was when faulthandler dumped its stacks on our SIGTERM."""
    return _innermost_frame(tail.splitlines())


def last_line(tail: str) -> str | None:
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else None


def describe(
    outcome: Outcome,
    code: int,
    sig: str | None,
    timed_out: bool,
    timeout: float | None,
    stage: Phase,
    tail: str,
    result: Result,
) -> str | None:
    """One line for the manifest and StageFailed: what happened, where, and the worker's own words."""
    if outcome == "ok":
        return None
    if outcome == "corrupt":
        return f"{result.reason}" + (f"; {sig} during {stage}" if sig else "")
    if timed_out:
        site = hang_site(tail)
        return f"no progress for {timeout:g} s during {stage}" + (f"; hung at {site}" if site else "")
    if sig:
        fatal = fatal_error(tail)
        return f"{sig} during {stage}" + (f"; {fatal}" if fatal else "")
    if outcome == "salvaged":
        return f"exited {code} after writing its result: {last_line(tail) or 'no stderr'}"
    reason = result.reason or last_line(tail) or "no stderr"
    return f"exited 0 without a result: {reason}" if code == 0 else f"exited {code}: {reason}"


def _attempt_number(folder: Path) -> int:
    suffix = folder.name.removeprefix("attempt-")
    return int(suffix) if suffix.isdigit() else 0


def reusable(chain: Sequence[AsrRequest], workdir: Path) -> tuple[Attempt, dict[str, Any]] | None:
    """An earlier run's valid result for exactly one of `chain`'s requests, newer than the audio it read."""
    wanted = {request_bytes(r): r for r in chain}
    for folder in sorted(Path(workdir).glob("attempt-*"), key=_attempt_number):
        try:
            request = wanted.get((folder / "request.json").read_bytes())
        except OSError:
            continue
        result = folder / "result.json"
        found = read_result(result, request_bytes(request)) if request else None
        if request is None or found is None or found.data is None:
            continue
        try:  # a re-extracted audio file makes the result another audio's
            if result.stat().st_mtime_ns < Path(request.audio).stat().st_mtime_ns:
                continue
        except OSError:
            continue
        data = found.data
        reported = data.get("worker", {})
        attempt = Attempt(
            backend=request.backend,
            device=reported.get("device", request.device),
            compute_type=reported.get("compute_type", request.compute_type),
            model_dir=request.model_dir,
            outcome="reused",
            exit_code=None,
            signal=None,
            wall_s=0.0,  # this run's cost; the earlier worker's own figures stay in its result's `worker`
            peak_rss_mb=None,
            error=None,
            stage="teardown",
            progress_s=float(data["transcript"].get("duration") or 0.0),
            reused=str(result.relative_to(workdir)),
        )
        return attempt, data
    return None
