"""`pipeline matrix report RESULTS...`: any number of E2E results files -> a Markdown table and one HTML page.

Rows are profile x backend x suite. The backend is the one that produced the transcript (after any fallback),
so the table is also the monitoring by backend: processing time (RTF), memory, success and error rates.
Success rate: passed cases / cases run (skips excluded). Error rate: cases that crashed a worker or errored
outside their assertions / cases run. Plots are PNG (matplotlib, Agg) embedded in the page as base64.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from pipeline import atomic
from pipeline.matrix.results import CaseResult, RunResults, collect
from pipeline.reporting import MISSING, html_figures, html_table, png, pyplot
from pipeline.reporting import grouped_bars as _grouped_bars
from pipeline.reporting import html_page as _page
from pipeline.reporting import markdown_table as _table
from pipeline.reporting import num as _num
from pipeline.reporting import pct as _pct

UNKNOWN_BACKEND = "unknown"  # a case that failed before the job said which backend ran


@dataclass
class Row:
    profile: str
    backend: str
    suite: str
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def ran(self) -> list[CaseResult]:
        return [c for c in self.cases if c.outcome != "skipped"]

    def rate(self, test: Callable[[CaseResult], bool]) -> float | None:
        ran = self.ran
        return sum(map(test, ran)) / len(ran) if ran else None

    @property
    def pass_rate(self) -> float | None:
        return self.rate(lambda c: c.outcome == "passed")

    @property
    def error_rate(self) -> float | None:
        return self.rate(lambda c: c.outcome == "error" or bool(c.crashes))

    def mean(self, attr: str) -> float | None:
        values = [v for c in self.ran if (v := getattr(c, attr)) is not None]
        return fmean(values) if values else None

    def speakers(self) -> tuple[float | None, str]:
        """Diarization cases (tests/speakers): mean DER, and cases whose speaker count was right / counted."""
        ders = [c.extra["der"] for c in self.ran if c.extra.get("der") is not None]
        counted = [c for c in self.ran if "speakers_found" in c.extra]
        right = sum(c.extra["speakers_found"] == c.extra.get("speakers_expected") for c in counted)
        return (fmean(ders) if ders else None), (f"{right}/{len(counted)}" if counted else MISSING)

    @property
    def peak_rss_mb(self) -> float | None:
        values = [c.peak_rss_mb for c in self.ran if c.peak_rss_mb is not None]
        return max(values) if values else None

    @property
    def crashes(self) -> int:
        return sum(len(c.crashes) for c in self.cases)

    @property
    def salvaged(self) -> int:
        return sum(c.salvaged or 0 for c in self.cases)

    @property
    def fallbacks(self) -> int:
        """Cases whose transcript came from a fallback backend."""
        return sum(bool(c.fallbacks) for c in self.cases)


def aggregate(runs: Iterable[RunResults]) -> list[Row]:
    rows: dict[tuple[str, str, str], Row] = {}
    for run in runs:
        for case in run.cases:
            key = (run.profile, case.backend or UNKNOWN_BACKEND, case.suite)
            rows.setdefault(key, Row(*key)).cases.append(case)
    return [rows[key] for key in sorted(rows)]


# --- Markdown -----------------------------------------------------------------------------------------------


COLUMNS = (
    "profile",
    "backend",
    "suite",
    "cases",
    "pass rate",
    "mean WER",
    "mean recall",
    "mean coverage",
    "cue start s",
    "cue end s",
    "mean DER",
    "speaker counts right",
    "mean RTF",
    "peak RSS MB",
    "crashes",
    "salvaged",
    "fallbacks",
    "error rate",
)


def _cue_start(row: Row) -> str:
    worst = max((c.cue_start_max_s for c in row.ran if c.cue_start_max_s is not None), default=None)
    return _num(row.mean("cue_start_median_s"), 2) + ("" if worst is None else f" (max {worst:.2f})")


def row_cells(row: Row) -> list[str]:
    return [
        row.profile,
        row.backend,
        row.suite,
        str(len(row.cases)),
        _pct(row.pass_rate),
        _num(row.mean("wer")),
        _num(row.mean("recall"), 2),
        _num(row.mean("coverage"), 2),
        _cue_start(row),
        _num(row.mean("cue_end_median_s"), 2),
        _num(row.speakers()[0]),
        row.speakers()[1],
        _num(row.mean("rtf")),
        _num(row.peak_rss_mb, 0),
        str(row.crashes),
        str(row.salvaged),
        str(row.fallbacks),
        _pct(row.error_rate),
    ]


def run_cells(path: Path, run: RunResults) -> list[str]:
    host = run.host
    where = (
        f"{host.get('hostname', '?')} ({host.get('system', '?')} {host.get('machine', '?')}, "
        f"{host.get('cpus', '?')} CPUs{', container' if host.get('container') else ''})"
    )
    engines = ", ".join(
        f"{k} {v}"
        for k, v in run.versions.items()
        if k in ("whisperx", "faster-whisper", "ctranslate2", "torch", "mlx")
    )
    passed = sum(c.outcome == "passed" for c in run.cases)
    return [
        run.profile,
        run.model,
        f"{run.run_id}/{run.worker}",
        run.started,
        where,
        engines or "–",
        f"{passed}/{len(run.cases)}",
        path.name,
    ]


RUN_COLUMNS = ("profile", "model", "run/worker", "started (UTC)", "host", "engines", "passed", "file")


def failures(runs: list[tuple[Path, RunResults]]) -> list[list[str]]:
    return [
        [run.profile, c.backend or UNKNOWN_BACKEND, c.suite, c.case, c.outcome, c.message or "–"]
        for _, run in runs
        for c in run.cases
        if c.outcome in ("failed", "error")
    ]


FAILURE_COLUMNS = ("profile", "backend", "suite", "case", "outcome", "message")
LEGEND = (
    "Pass rate: passed / cases run. Error rate: cases with a worker crash or an error outside the test's "
    "assertions / cases run. RTF: ASR wall time / audio duration. Fallbacks: cases whose transcript came "
    "from a fallback backend. Salvaged: chunks recovered after a crash. Cue start / end: seconds between "
    "subtitle cues and the speech onsets / ends of clips with known timing, mean of the cases' medians (and the "
    "worst start)."
)


def markdown(runs: list[tuple[Path, RunResults]], rows: list[Row]) -> str:
    total = sum(len(row.cases) for row in rows)
    passed = sum(c.outcome == "passed" for row in rows for c in row.cases)
    parts = [
        "# Matrix results",
        "",
        f"{len(runs)} results file(s), {total} cases, {passed} passed.",
        "",
        _table(COLUMNS, (row_cells(row) for row in rows)),
        "",
        LEGEND,
        "",
        "## Runs",
        "",
        _table(RUN_COLUMNS, (run_cells(path, run) for path, run in runs)),
    ]
    if failed := failures(runs):
        parts += [
            "",
            "## Failures",
            "",
            _table(FAILURE_COLUMNS, failed),
        ]
    return "\n".join(parts) + "\n"


# --- plots and HTML -----------------------------------------------------------------------------------------


def _by_system(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows by "profile\nbackend", the x axis of every plot."""
    systems: dict[str, list[Row]] = {}
    for row in rows:
        systems.setdefault(f"{row.profile}\n{row.backend}", []).append(row)
    return systems


def _pooled(rows: list[Row], attr: str) -> float | None:
    values = [v for row in rows for c in row.ran if (v := getattr(c, attr)) is not None]
    return fmean(values) if values else None


def plots(rows: list[Row]) -> dict[str, bytes]:
    """PNG figures by profile / backend: speed and memory, success and errors, quality per suite."""
    plt = pyplot()

    systems = _by_system(rows)
    names = list(systems)
    profiles = list(dict.fromkeys(row.profile for row in rows))
    colors = [f"C{profiles.index(systems[n][0].profile) % 10}" for n in names]  # one colour per profile
    wide = max(10.0, 1.3 * len(names))
    figures: dict[str, bytes] = {}

    def save(fig: Any, key: str) -> None:
        figures[key] = png(fig)

    fig, (speed, memory) = plt.subplots(1, 2, figsize=(max(wide, 2.6 * len(names)), 4))
    _grouped_bars(
        speed,
        names,
        {"mean RTF": [_pooled(systems[n], "rtf") for n in names]},
        "real-time factor (lower is faster)",
        "{:.3f}",
        colors,
    )
    speed.set_title("Processing time (mean RTF)")
    peaks = [max((r.peak_rss_mb for r in systems[n] if r.peak_rss_mb), default=None) for n in names]
    _grouped_bars(memory, names, {"peak RSS": peaks}, "peak resident memory (MB)", "{:.0f}", colors)
    memory.set_title("Memory (peak RSS)")
    save(fig, "Processing time and memory by profile / backend")

    fig, ax = plt.subplots(figsize=(wide, 3.6))
    ran = {n: [c for r in systems[n] for c in r.ran] for n in names}

    def share(n: str, test: Callable[[CaseResult], bool]) -> float | None:
        return sum(map(test, ran[n])) / len(ran[n]) if ran[n] else None

    _grouped_bars(
        ax,
        names,
        {
            "success rate": [share(n, lambda c: c.outcome == "passed") for n in names],
            "error rate": [share(n, lambda c: c.outcome == "error" or bool(c.crashes)) for n in names],
        },
        "share of cases",
        "{:.0%}",
    )
    ax.set_ylim(0, 1.15)
    ax.set_title("Success and error rates")
    save(fig, "Success and error rates by profile / backend")

    metrics = [
        (attr, label)
        for attr, label in (
            ("wer", "WER (lower is better)"),
            ("recall", "keyword recall (higher is better)"),
            ("coverage", "subtitle coverage (higher is better)"),
            ("cue_start_median_s", "cue start error, median s (lower is better)"),
            ("cue_end_median_s", "cue end error, median s (lower is better)"),
        )
        if any(row.mean(attr) is not None for row in rows)
    ]
    if metrics:
        fig, axes = plt.subplots(1, len(metrics), figsize=(max(wide, 5.5 * len(metrics)), 4), squeeze=False)
        for ax, (attr, label) in zip(axes[0], metrics, strict=True):
            suites = sorted({row.suite for row in rows if row.mean(attr) is not None})
            _grouped_bars(
                ax,
                names,
                {s: [_pooled([r for r in systems[n] if r.suite == s], attr) for n in names] for s in suites},
                label,
                "{:.3f}" if attr.endswith("_s") else "{:.2f}",  # seconds: to the millisecond SRT stores
                colors,
            )
            ax.set_title(f"{attr}: {', '.join(suites)} suite" + ("s" if len(suites) > 1 else ""))
        fig.tight_layout()
        save(fig, "Quality by suite and profile / backend")
    return figures


def html_page(
    markdown_rows: list[Row], runs: list[tuple[Path, RunResults]], figures: dict[str, bytes]
) -> str:
    failed = failures(runs)
    failed_html = f"<h2>Failures</h2>{html_table(FAILURE_COLUMNS, failed)}" if failed else ""
    total = sum(len(row.cases) for row in markdown_rows)
    passed = sum(c.outcome == "passed" for row in markdown_rows for c in row.cases)
    body = f"""<p>{len(runs)} results file(s), {total} cases, {passed} passed.</p>
{html_table(COLUMNS, (row_cells(row) for row in markdown_rows))}
<p>{html.escape(LEGEND)}</p>
{html_figures(figures)}
<h2>Runs</h2>
{html_table(RUN_COLUMNS, (run_cells(path, run) for path, run in runs))}
{failed_html}"""
    return _page("Matrix results", body)


def write_report(paths: list[Path], out: Path) -> tuple[str, list[Path]]:
    """Aggregate the results under `paths`; write out/report.md and out/report.html. Returns the Markdown."""
    runs = collect(paths)
    rows = aggregate(run for _, run in runs)
    text = markdown(runs, rows)
    md_path, html_path = out / "report.md", out / "report.html"
    atomic.write_text(md_path, text)
    atomic.write_text(html_path, html_page(rows, runs, plots(rows)))
    return text, [md_path, html_path]
