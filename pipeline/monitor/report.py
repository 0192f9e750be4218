"""`pipeline report jobs [ROOT]`: the jobs under an output root -> jobs.md, jobs.html (plots embedded, and beside
it as PNG files) and pipeline_jobs.prom, by profile and by the backend that produced each transcript."""

from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path

from pipeline import atomic
from pipeline.errors import PipelineError
from pipeline.monitor import aggregate, prometheus
from pipeline.monitor.aggregate import Group, Workers
from pipeline.monitor.records import CRASH_KINDS, STATES, Job, scan
from pipeline.reporting import (
    box_strip,
    grouped_bars,
    html_figures,
    html_page,
    html_table,
    markdown_table,
    num,
    pct,
    png,
    pyplot,
)

GROUP_COLUMNS = (
    "profile",
    "backend",
    "jobs",
    "done",
    "failed",
    "success rate",
    "error rate",
    "crashes",
    "salvaged",
    "fallbacks",
    "RTF median / p90 / max",
    "peak MB median / p90 / max",
)
WORKER_COLUMNS = ("profile", "backend", "attempts", "produced", *CRASH_KINDS, "other signals", "fallbacks", "salvaged")
FAILED_COLUMNS = ("job", "created", "media", "profile", "backend", "stage", "error")
CORRUPT_COLUMNS = ("folder", "why")
LEGEND = (
    "Finished jobs (done or failed) by profile and the backend that produced the transcript (for a job without "
    "one, the backend whose failure ended its chain, else the first of its chain). Success rate: done / "
    "finished. Error rate: jobs that failed or had an ASR worker crash, hang or fail, even when a fallback or a "
    "salvaged result saved them / finished. Crashes: ASR workers killed by a signal (segfault, abort, kill) or "
    "for a hang. Salvaged: transcripts a worker wrote before it crashed. Fallbacks: transcripts a later backend "
    "in the chain produced. RTF: the stages' wall time / the media's duration, done jobs. Peak MB: the highest "
    "resident memory of a job's stages and ASR workers."
)
WORKER_LEGEND = (
    "Every ASR worker attempt of every job under the root, by the backend that ran it: what the Prometheus "
    "counters pipeline_asr_crashes_total, pipeline_asr_fallbacks_total and pipeline_asr_salvaged_total hold."
)


def _spread(values: tuple[float, float, float] | None, digits: int) -> str:
    return " / ".join(num(v, digits) for v in values) if values else num(None)


def group_cells(g: Group) -> list[str]:
    return [
        g.profile,
        g.backend,
        str(len(g.jobs)),
        str(g.done),
        str(g.failed),
        pct(g.success_rate),
        pct(g.error_rate),
        str(g.crashes),
        str(g.salvaged),
        str(g.fallbacks),
        _spread(g.rtf, 3),
        _spread(g.peak_mb, 0),
    ]


def worker_cells(w: Workers) -> list[str]:
    produced = sum(w.outcomes[o] for o in ("ok", "salvaged", "reused"))
    other = sum(n for kind, n in w.crashes.items() if kind not in CRASH_KINDS)
    kinds = [str(w.crashes[k]) for k in CRASH_KINDS]
    return [w.profile, w.backend, str(w.attempts), str(produced), *kinds, str(other), str(w.fallbacks), str(w.salvaged)]


def failed_cells(job: Job) -> list[str]:
    return [
        job.job_id,
        job.created or num(None),
        job.media,
        job.profile or aggregate.UNKNOWN,
        job.backend or aggregate.UNKNOWN,
        job.stage or num(None),
        job.error or num(None),
    ]


def summary(root: Path, found: list[Job]) -> str:
    counts = Counter(job.state for job in found)
    states = ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])
    return f"{len(found)} job(s) under {root}" + (f": {states}." if states else ".")


def markdown(root: Path, found: list[Job]) -> str:
    failed = [failed_cells(j) for j in found if j.state == "failed"]
    corrupt = [[str(j.folder), j.error or ""] for j in found if j.state == "corrupt"]
    parts = [
        "# Jobs by profile and backend",
        "",
        summary(root, found),
        "",
        markdown_table(GROUP_COLUMNS, (group_cells(g) for g in aggregate.groups(found))),
        "",
        LEGEND,
        "",
        "## ASR workers by backend",
        "",
        markdown_table(WORKER_COLUMNS, (worker_cells(w) for w in aggregate.workers(found))),
        "",
        WORKER_LEGEND,
    ]
    if failed:
        parts += ["", "## Failed jobs", "", markdown_table(FAILED_COLUMNS, failed)]
    if corrupt:
        parts += ["", "## Manifests that cannot be read", "", markdown_table(CORRUPT_COLUMNS, corrupt)]
    return "\n".join(parts) + "\n"


def page(root: Path, found: list[Job], figures: dict[str, bytes], note: str | None = None) -> str:
    failed = [failed_cells(j) for j in found if j.state == "failed"]
    corrupt = [[str(j.folder), j.error or ""] for j in found if j.state == "corrupt"]
    body = [
        f"<p>{html.escape(summary(root, found))}</p>",
        html_table(GROUP_COLUMNS, (group_cells(g) for g in aggregate.groups(found))),
        f"<p>{html.escape(LEGEND)}</p>",
        f"<p><em>{html.escape(note)}</em></p>" if note else html_figures(figures),
        "<h2>ASR workers by backend</h2>",
        html_table(WORKER_COLUMNS, (worker_cells(w) for w in aggregate.workers(found))),
        f"<p>{html.escape(WORKER_LEGEND)}</p>",
    ]
    if failed:
        body += ["<h2>Failed jobs</h2>", html_table(FAILED_COLUMNS, failed)]
    if corrupt:
        body += ["<h2>Manifests that cannot be read</h2>", html_table(CORRUPT_COLUMNS, corrupt)]
    return html_page("Jobs by profile and backend", "\n".join(body), left_columns=2)


def plots(found: list[Job]) -> dict[str, bytes]:
    """PNG figures: RTF and peak memory per profile / backend (a box, and every job as a point), success and error
    rates, and worker crashes by backend and kind."""
    plt = pyplot()
    groups = aggregate.groups(found)
    names = [f"{g.profile}\n{g.backend}" for g in groups]
    profiles = list(dict.fromkeys(g.profile for g in groups))
    colors = [f"C{profiles.index(g.profile) % 10}" for g in groups]  # one colour per profile
    wide = max(10.0, 1.3 * len(names))
    figures: dict[str, bytes] = {}

    fig, (speed, memory) = plt.subplots(1, 2, figsize=(max(wide, 2.6 * len(names)), 4))
    box_strip(speed, names, [g.rtfs for g in groups], "real-time factor (lower is faster)", colors)
    speed.set_title("Processing time (RTF of done jobs)")
    box_strip(memory, names, [g.peaks_mb for g in groups], "peak resident memory (MB)", colors)
    memory.set_title("Memory (peak RSS of finished jobs)")
    figures["Processing time and memory by profile / backend"] = png(fig)

    fig, ax = plt.subplots(figsize=(wide, 3.6))
    rates = {"success rate": [g.success_rate for g in groups], "error rate": [g.error_rate for g in groups]}
    grouped_bars(ax, names, rates, "share of finished jobs", "{:.0%}")
    ax.set_ylim(0, 1.15)
    ax.set_title("Success and error rates")
    figures["Success and error rates by profile / backend"] = png(fig)

    workers = aggregate.workers(found)
    kinds = list(dict.fromkeys(k for w in workers for k in w.kinds()))
    fig, ax = plt.subplots(figsize=(max(10.0, 1.3 * len(workers)), 3.6))
    crashes: dict[str, list[float | None]] = {kind: [float(w.crashes[kind]) for w in workers] for kind in kinds}
    grouped_bars(ax, [f"{w.profile}\n{w.backend}" for w in workers], crashes, "ASR worker crashes", "{:.0f}")
    ax.set_title("Worker crashes by profile / backend and kind")
    figures["Worker crashes by profile / backend and kind"] = png(fig)
    return figures


def _file_name(title: str) -> str:
    return "jobs-" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") + ".png"


def write_report(root: Path, out: Path, prom: Path | None = None) -> tuple[str, list[Path], str | None]:
    """Write out/jobs.md, out/jobs.html, its plots as PNG files and the Prometheus file (`prom`, default
    out/pipeline_jobs.prom). Returns the Markdown, the files written and a notice (no matplotlib: no plots)."""
    found = scan(root)
    text = markdown(root, found)
    try:
        figures, note = plots(found), None
    except PipelineError as exc:  # the Markdown and the metrics need no matplotlib; only the plots do
        figures, note = {}, f"no plots: {exc}"
    written = [out / "jobs.md", out / "jobs.html"]
    try:
        atomic.write_text(written[0], text)
        atomic.write_text(written[1], page(root, found, figures, note))
        for title, data in figures.items():
            path = out / _file_name(title)
            with atomic.atomic_open(path, "wb") as handle:
                handle.write(data)
            written.append(path)
        written.append(prometheus.write(prom or out / prometheus.FILE_NAME, found))
    except OSError as exc:
        raise PipelineError(
            f"cannot write the report: {exc.strerror} ({exc.filename}); allowed: a writable folder (--out, --prom)"
        ) from None
    return text, written, note
