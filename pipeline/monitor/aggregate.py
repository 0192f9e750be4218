"""Jobs -> figures by profile and backend: what the Markdown, the HTML page and the Prometheus file all show.

Rates and distributions are over finished jobs (done or failed); RTF (the stages' wall time / the media's
duration) over done jobs only, a failed job's time being that of the stages it got through; peak memory over both,
since the job a worker's memory killed is the one to see. Worker crashes, fallbacks and salvaged results are
counted in every job that recorded them, whatever its state now."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.monitor.records import CRASH_KINDS, Job
from pipeline.reporting import distribution

UNKNOWN = "unknown"  # a job whose manifest names no profile or backend (a corrupt one, an old one)
FINISHED = ("done", "failed")


def _key(job: Job) -> tuple[str, str]:
    return job.profile or UNKNOWN, job.backend or UNKNOWN


@dataclass
class Group:
    """The finished jobs of one profile and backend."""

    profile: str
    backend: str
    jobs: list[Job] = field(default_factory=list)

    @property
    def done(self) -> int:
        return sum(j.state == "done" for j in self.jobs)

    @property
    def failed(self) -> int:
        return sum(j.state == "failed" for j in self.jobs)

    @property
    def success_rate(self) -> float | None:
        return self.done / len(self.jobs) if self.jobs else None

    @property
    def error_rate(self) -> float | None:
        """Jobs that failed or had a worker crash, hang or fail (even when a fallback or salvage saved them)."""
        return sum(j.troubled for j in self.jobs) / len(self.jobs) if self.jobs else None

    @property
    def crashes(self) -> int:
        return sum(a.crash is not None for j in self.jobs for a in j.attempts)

    @property
    def salvaged(self) -> int:
        return sum(j.salvaged for j in self.jobs)

    @property
    def fallbacks(self) -> int:
        return sum(j.fallback for j in self.jobs)

    @property
    def rtfs(self) -> list[float]:
        return [r for j in self.jobs if j.state == "done" and (r := j.rtf) is not None]

    @property
    def peaks_mb(self) -> list[float]:
        return [j.peak_rss_mb for j in self.jobs if j.peak_rss_mb is not None]

    @property
    def rtf(self) -> tuple[float, float, float] | None:
        return distribution(self.rtfs)

    @property
    def peak_mb(self) -> tuple[float, float, float] | None:
        return distribution(self.peaks_mb)


def groups(found: Iterable[Job]) -> list[Group]:
    by_key: dict[tuple[str, str], Group] = {}
    for job in found:
        if job.state in FINISHED:
            by_key.setdefault(_key(job), Group(*_key(job))).jobs.append(job)
    return [by_key[key] for key in sorted(by_key)]


@dataclass
class Workers:
    """Every ASR worker attempt of one backend (under one profile): how each ended."""

    profile: str
    backend: str
    outcomes: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)  # by kind
    salvaged: int = 0  # jobs whose transcript this backend's crashed worker had written first
    fallbacks: int = 0  # jobs whose transcript this backend produced after another's failed

    @property
    def attempts(self) -> int:
        return sum(self.outcomes.values())

    def kinds(self) -> list[str]:
        return [*CRASH_KINDS, *sorted(k for k in self.crashes if k not in CRASH_KINDS)]


def workers(found: Iterable[Job]) -> list[Workers]:
    """By profile and backend, over all jobs. A backend named in a job's chain is listed even with no attempt: its
    zero counts are samples too, so that a first crash is an increase an alert can see."""
    by_key: dict[tuple[str, str], Workers] = {}

    def get(profile: str | None, backend: str) -> Workers:
        key = (profile or UNKNOWN, backend)
        return by_key.setdefault(key, Workers(*key))

    for job in found:
        if job.state == "corrupt":
            continue
        for backend in job.chain:
            get(job.profile, backend)
        for run in job.asr:
            for attempt in run.attempts:
                entry = get(job.profile, attempt.backend)
                entry.outcomes[attempt.outcome] += 1
                if attempt.crash:
                    entry.crashes[attempt.crash] += 1
            if (producer := run.producer) is not None:
                get(job.profile, producer.backend).salvaged += run.salvaged
                get(job.profile, producer.backend).fallbacks += run.fallback
    return [by_key[key] for key in sorted(by_key)]


def states(found: Iterable[Job]) -> Counter[tuple[str, str, str]]:
    """Jobs by (profile, backend, state), every state included."""
    return Counter((*_key(job), job.state) for job in found)
