"""The record of an ASR stage's worker runs: one `Attempt` per worker (what ran, how it ended, what it cost), the
`AsrOutcome` of a chain that produced a transcript, and `AsrFailed` when none did. They go into the job manifest."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pipeline.asr import Transcript
from pipeline.errors import StageFailed

OUTCOMES = ("ok", "salvaged", "crashed", "timeout", "failed", "corrupt", "reused")
STAGES = ("spawn", "load", "transcribe", "write", "teardown")  # how far a worker got, from its events

@dataclass(frozen=True)
class Attempt:
    """One worker run: what ran, how it ended, what it cost. Goes into the job manifest as-is."""

    backend: str
    device: str  # as the worker reported using it, else as requested
    compute_type: str
    model_dir: str
    outcome: str  # one of OUTCOMES
    exit_code: int | None  # as subprocess reports it: negative for a signal; None if it never started
    signal: str | None  # e.g. "SIGSEGV"
    wall_s: float
    peak_rss_mb: float | None
    error: str | None  # one line
    stage: str = "spawn"  # one of STAGES: where it crashed
    progress_s: float = 0.0  # seconds of audio transcribed when it ended
    load_s: float | None = None  # spawn to model loaded: the per-attempt overhead
    ahead_s: float = 0.0  # started this long before its audio was ready (WarmStart); its load overlapped that
    timed_out: bool = False  # we killed it: the signal is ours, not a crash
    reused: str | None = None  # outcome "reused": the earlier run's result it took, relative to the stage's folder

    @property
    def produced(self) -> bool:
        return self.outcome in ("ok", "salvaged", "reused")

    @property
    def crashed(self) -> bool:
        """Died of a signal it raised itself (SIGSEGV, SIGABRT, the OOM killer's SIGKILL), result or not."""
        return self.signal is not None and not self.timed_out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class AsrOutcome:
    transcript: Transcript
    attempts: tuple[Attempt, ...]
    worker: Mapping[str, Any] = field(default_factory=dict)  # the used worker's metadata: versions, device

    @property
    def used(self) -> Attempt:
        return self.attempts[-1]

    @property
    def crashes(self) -> int:
        return sum(a.crashed for a in self.attempts)

    @property
    def fallbacks(self) -> int:
        return len(self.attempts) - 1

    @property
    def salvaged(self) -> bool:
        return self.used.outcome == "salvaged"

    @property
    def reused(self) -> bool:
        return self.used.outcome == "reused"

    def to_dict(self) -> dict[str, Any]:
        """The manifest's `asr` block (the transcript itself is written separately)."""
        return {
            "backend": self.used.backend,
            "attempts": [a.to_dict() for a in self.attempts],
            "crashes": self.crashes,
            "salvaged": int(self.salvaged),
            "reused": int(self.reused),
            "fallbacks": self.fallbacks,
            "worker": dict(self.worker),
        }


class AsrFailed(StageFailed):
    """Every backend in the chain failed; `attempts` says how, for the manifest."""

    def __init__(self, message: str, attempts: Sequence[Attempt]) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's `asr` block for a failed stage: the same shape as AsrOutcome.to_dict()."""
        return {
            "backend": None,
            "attempts": [a.to_dict() for a in self.attempts],
            "crashes": sum(a.crashed for a in self.attempts),
            "salvaged": 0,
            "reused": 0,
            "fallbacks": len(self.attempts) - 1,
            "worker": {},
        }


def tally(jobs: Iterable[Sequence[Attempt | Mapping[str, Any]]]) -> dict[str, dict[str, int]]:
    """Per backend over many jobs' attempt lists: attempts, each outcome, crashes, and fallbacks it caused."""
    counts: dict[str, Counter[str]] = {}
    for job in jobs:
        attempts = [a if isinstance(a, Attempt) else Attempt.from_dict(a) for a in job]
        for index, attempt in enumerate(attempts):
            c = counts.setdefault(attempt.backend, Counter())
            c["attempts"] += 1
            c[attempt.outcome] += 1
            c["crashes"] += attempt.crashed
            c["fallbacks"] += not attempt.produced and index < len(attempts) - 1
    return {b: {k: c[k] for k in ("attempts", *OUTCOMES, "crashes", "fallbacks")} for b, c in counts.items()}
