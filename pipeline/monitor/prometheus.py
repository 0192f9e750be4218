"""The jobs' figures in Prometheus' text exposition format, for node_exporter's textfile collector.

Written atomically (the collector must never read half a file). Counters count what the manifests under the root
record, so deleting job folders lowers them, which Prometheus takes for a counter reset. An alert on segfaults:

    increase(pipeline_asr_crashes_total{kind="segfault"}[1h]) > 0
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from pipeline import atomic
from pipeline.monitor import aggregate
from pipeline.monitor.records import Job
from pipeline.reporting import distribution

FILE_NAME = "pipeline_jobs.prom"
QUANTILES = ("0.5", "0.9", "1")  # median, p90, max: what the report's tables show
MB = 2**20  # the manifests' MB are MiB (psutil's RSS / 2**20)


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines += [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, labels: Mapping[str, str], value: float) -> None:
        cells = ",".join(f'{key}="{escape_label(v)}"' for key, v in labels.items())
        self.lines.append(f"{name}{{{cells}}} {_value(value)}" if cells else f"{name} {_value(value)}")

    def summary(self, name: str, labels: Mapping[str, str], values: list[float]) -> None:
        for quantile, value in zip(QUANTILES, distribution(values) or (), strict=False):
            self.sample(name, {**labels, "quantile": quantile}, value)
        self.sample(f"{name}_sum", labels, sum(values))
        self.sample(f"{name}_count", labels, len(values))


def render(found: Iterable[Job], now: float | None = None) -> str:
    found = list(found)
    out = _Exposition()
    out.family("pipeline_jobs_total", "gauge", "Jobs under the output root now, by profile, backend and state.")
    for (profile, backend, state), count in sorted(aggregate.states(found).items()):
        out.sample("pipeline_jobs_total", {"profile": profile, "backend": backend, "state": state}, count)

    workers = aggregate.workers(found)
    out.family("pipeline_asr_attempts_total", "counter", "ASR worker attempts by profile, backend and outcome.")
    for w in workers:
        for outcome, count in sorted(w.outcomes.items()):
            out.sample(
                "pipeline_asr_attempts_total", {"profile": w.profile, "backend": w.backend, "outcome": outcome}, count
            )
    out.family(
        "pipeline_asr_crashes_total",
        "counter",
        "ASR worker crashes by profile, backend and kind: segfault (SIGSEGV), abort (SIGABRT), kill (SIGKILL, "
        "e.g. the OOM killer), hang (no progress, killed by the pipeline), or another signal's name.",
    )
    for w in workers:
        for kind in w.kinds():
            labels = {"profile": w.profile, "backend": w.backend, "kind": kind}
            out.sample("pipeline_asr_crashes_total", labels, w.crashes[kind])
    per_backend = (
        ("pipeline_asr_fallbacks_total", "fallbacks", "Jobs whose transcript this backend produced after an earlier "
         "backend in the chain failed."),
        ("pipeline_asr_salvaged_total", "salvaged", "Jobs whose transcript was salvaged from this backend's worker "
         "after it crashed having written it."),
    )  # fmt: skip
    for name, attribute, help_text in per_backend:
        out.family(name, "counter", help_text)
        for w in workers:
            out.sample(name, {"profile": w.profile, "backend": w.backend}, getattr(w, attribute))

    groups = aggregate.groups(found)
    out.family(
        "pipeline_job_rtf",
        "summary",
        "Real-time factor of done jobs (the stages' wall time / the media's duration): median, p90 and max.",
    )
    for g in groups:
        out.summary("pipeline_job_rtf", {"profile": g.profile, "backend": g.backend}, g.rtfs)
    out.family(
        "pipeline_job_peak_memory_bytes",
        "summary",
        "Peak resident memory of finished jobs (the highest of its stages and ASR workers): median, p90 and max.",
    )
    for g in groups:
        labels = {"profile": g.profile, "backend": g.backend}
        out.summary("pipeline_job_peak_memory_bytes", labels, [round(mb * MB) for mb in g.peaks_mb])
    out.family("pipeline_jobs_report_timestamp_seconds", "gauge", "When this file was written (Unix time).")
    out.sample("pipeline_jobs_report_timestamp_seconds", {}, round(time.time() if now is None else now, 3))
    return "\n".join(out.lines) + "\n"


def write(path: Path, found: Iterable[Job]) -> Path:
    atomic.write_text(path, render(found))
    return path
