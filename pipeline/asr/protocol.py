"""The contract between the pipeline and its ASR worker (`python -m pipeline.asr.worker`), imported by both sides:
the request's bytes, the marker that pins a result to them, and the events the worker writes on its stdout.

The worker writes its result atomically, then the marker (the result's name + `MARKER_SUFFIX`): the sha256 and
size of the result's bytes and the sha256 of the request's. The parent uses a result only if its marker matches
both, so neither a half-written file nor an earlier run's result can pass for this attempt's.

Events are one JSON object a line, `{"event": <Event>, ...fields}`, in the order of `Event`; any of them counts
as activity against the parent's inactivity timeout. Anything else on stdout is not an event.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pipeline.asr import AsrRequest

MARKER_SUFFIX = ".ok"


class Event(StrEnum):
    START = "start"  # interpreter up: pid
    LOADED = "loaded"  # model loaded: load_s
    PROGRESS = "progress"  # done, total: seconds of audio
    WRITING = "writing"  # transcribed; writing the result
    RESULT = "result"  # result and marker written: path and the marker's fields
    # A served worker (`worker --serve`) only: a request ended (served: its number, peak_rss_mb), or was refused
    # (reason: another load key, a backend that cannot serve; the parent then starts an ordinary worker).
    DONE = "done"
    REFUSED = "refused"


# How far a worker got, as its events tell: spawned, loading its model, transcribing, writing, tearing down.
Phase = Literal["spawn", "load", "transcribe", "write", "teardown"]
_PHASE_AFTER: dict[Event, Phase] = {
    Event.START: "load",
    Event.LOADED: "transcribe",
    Event.WRITING: "write",
    Event.RESULT: "teardown",
}


# What a backend's load depends on: a served worker takes only requests that agree with its load on all of them.
LOAD_FIELDS = ("backend", "model_dir", "device", "compute_type", "threads", "batch_size", "vad", "align_model_dir")
SERVE_COMMAND = "go"  # `go ["REQUEST_JSON", "RESULT_JSON"]`: a served worker's request line on its stdin


def load_key(request: AsrRequest) -> tuple[Any, ...]:
    return tuple(getattr(request, name) for name in LOAD_FIELDS)


def serve_line(request: Path, result: Path) -> bytes:
    return f"{SERVE_COMMAND} {json.dumps([str(request), str(result)])}\n".encode()


def read_serve_line(line: bytes) -> tuple[Path, Path] | None:
    """The request and result paths of a `serve_line`; None for anything else (a plain "go")."""
    command, _, rest = line.decode("utf-8", errors="replace").strip().partition(" ")
    try:
        request, result = json.loads(rest) if command == SERVE_COMMAND and rest else (None, None)
    except (ValueError, TypeError):
        return None
    return (Path(request), Path(result)) if isinstance(request, str) and isinstance(result, str) else None


def request_bytes(request: AsrRequest) -> bytes:
    """The request file's bytes: canonical, so that the same request always has the same digest."""
    return json.dumps(asdict(request), sort_keys=True).encode()


def request_digest(request: bytes) -> str:
    return hashlib.sha256(request).hexdigest()


def marker_path(result: Path) -> Path:
    return result.with_name(result.name + MARKER_SUFFIX)


def pin(payload: bytes, request: bytes) -> dict[str, Any]:
    """The marker's content: exactly these result bytes, for exactly this request."""
    return {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
        "request_sha256": request_digest(request),
    }


def peak_rss_mb(ru_maxrss: int) -> float:
    """`ru_maxrss` is KiB on Linux and bytes on macOS."""
    return round(ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def hwm_mb(pid: int) -> float | None:
    """A live process's peak RSS (Linux's VmHWM; rusage has it only once the process is reaped); None elsewhere."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_hwm() -> None:
    """Reset our own VmHWM to the current RSS (Linux 4.0+), so that a served worker's peak is per request: the
    model it holds, plus what this request added. Where that is refused the peak stays the worker's life's."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        pass


def event_line(event: Event, **fields: Any) -> str:
    return json.dumps({"event": event, **fields}) + "\n"


def read_event(line: str) -> tuple[Event, dict[str, Any]] | None:
    """The event on a stdout line; None for anything else (a library that printed before the worker's redirect)."""
    try:
        data = json.loads(line)
        return Event(data["event"]), data
    except (ValueError, TypeError, KeyError):  # Event("unknown") is a ValueError too
        return None


@dataclass
class Watch:
    """The parent's reading of one worker's events: how far it got, how much audio it has done."""

    started: float  # time.monotonic() at spawn
    phase: Phase = "spawn"
    done: float = 0.0
    load_s: float | None = None  # spawn to model loaded: interpreter, imports and weights

    def feed(self, at: float, line: str, on_progress: Callable[[float, float], None] | None) -> bool:
        """Take one stdout line, read at `at`; True if it was an event."""
        if (read := read_event(line)) is None:
            return False
        event, data = read
        self.phase = _PHASE_AFTER.get(event, self.phase)
        if event is Event.LOADED:
            sent = data.get("at")  # the worker's own stamp; never later than our reading of it
            when = min(float(sent), at) if isinstance(sent, (int, float)) and sent >= self.started else at
            self.load_s = round(when - self.started, 3)
        elif event is Event.PROGRESS:
            self.done = float(data["done"])
            if on_progress:
                on_progress(self.done, float(data["total"]))
        return True
