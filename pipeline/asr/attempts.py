"""The record of an ASR stage's worker runs: one `Attempt` per worker (what ran, how it ended, what it cost) and
the chain's `AsrRecord`, written to the job manifest in one shape whether a transcript came out (`AsrOutcome`)
or none did (`AsrFailed`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.asr import Transcript
from pipeline.asr.protocol import Phase
from pipeline.errors import StageFailed

# How a worker ended (the table in pipeline.asr.isolation); the first three produced the transcript.
Outcome = Literal["ok", "salvaged", "reused", "crashed", "timeout", "failed", "corrupt"]
_PRODUCED = ("ok", "salvaged", "reused")


@dataclass(frozen=True)
class Attempt:
    """One worker run: what ran, how it ended, what it cost."""

    backend: str
    device: str  # as the worker reported using it, else as requested
    compute_type: str
    model_dir: str
    outcome: Outcome
    exit_code: int | None  # as subprocess reports it: negative for a signal; None if it never started
    signal: str | None  # e.g. "SIGSEGV"
    wall_s: float
    peak_rss_mb: float | None
    error: str | None  # one line
    stage: Phase = "spawn"  # how far it got: where it crashed
    progress_s: float = 0.0  # seconds of audio transcribed when it ended
    load_s: float | None = None  # spawn to model loaded: the per-attempt overhead
    ahead_s: float = 0.0  # started this long before its audio was ready (WarmStart); its load overlapped that
    timed_out: bool = False  # we killed it: the signal is ours, not a crash
    reused: str | None = None  # outcome "reused": the earlier run's result it took, relative to the stage's folder

    @property
    def produced(self) -> bool:
        return self.outcome in _PRODUCED

    @property
    def crashed(self) -> bool:
        """Died of a signal it raised itself (SIGSEGV, SIGABRT, the OOM killer's SIGKILL), result or not."""
        return self.signal is not None and not self.timed_out


@dataclass(frozen=True)
class AsrRecord:
    """An ASR stage's workers along its fallback chain: what the manifest records, transcript or not."""

    chain: tuple[str, ...]  # the backends the stage could try, in order
    attempts: tuple[Attempt, ...]
    worker: Mapping[str, Any] = field(default_factory=dict)  # the used worker's own report: versions, chunk
    error: str | None = None  # why no backend produced a transcript (the stage's error); None if one did

    @property
    def used(self) -> Attempt | None:
        """The attempt whose transcript the stage took; None if the chain was exhausted."""
        last = self.attempts[-1] if self.attempts else None
        return last if last is not None and last.produced else None

    @property
    def crashes(self) -> int:
        return sum(a.crashed for a in self.attempts)

    @property
    def fallbacks(self) -> int:
        return max(len(self.attempts) - 1, 0)

    @property
    def salvaged(self) -> bool:
        return self.used is not None and self.used.outcome == "salvaged"

    @property
    def reused(self) -> bool:
        return self.used is not None and self.used.outcome == "reused"

    def to_manifest(self) -> dict[str, Any]:
        """The stage's ASR facts, the same keys on success and failure (what ran is None where nothing produced).
        `error` is left to the stage's runner, which records the exception's message: this record's error."""
        used = self.used
        served = self.worker.get("served")  # a served worker's request number (`pipeline.asr.served`)
        return ({"served": {"pid": self.worker.get("pid"), "request": served}} if served else {}) | {
            "backend": used.backend if used else None,
            "model": Path(used.model_dir).name if used else None,
            "model_dir": used.model_dir if used else None,
            "device": used.device if used else None,
            "compute_type": used.compute_type if used else None,
            "chain": list(self.chain),
            "attempts": [asdict(a) for a in self.attempts],
            "crashes": self.crashes,
            "salvaged": int(self.salvaged),
            "reused": int(self.reused),
            "fallbacks": self.fallbacks,
            "worker_peak_rss_mb": used.peak_rss_mb if used else None,
            "chunk_seconds": self.worker.get("chunk_seconds"),  # the backend's own limit may be shorter
            "versions": dict(self.worker.get("versions", {})),
        }


@dataclass(frozen=True)
class AsrOutcome:
    """A chain that produced a transcript."""

    transcript: Transcript
    record: AsrRecord

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        return self.record.attempts

    @property
    def used(self) -> Attempt:
        assert self.record.used is not None, "an outcome's last attempt produced its transcript"
        return self.record.used


class AsrFailed(StageFailed):
    """Every backend in the chain failed; `record` says how, for the manifest."""

    def __init__(self, record: AsrRecord) -> None:
        super().__init__(record.error or "ASR failed with every backend in the chain")
        self.record = record

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        return self.record.attempts
