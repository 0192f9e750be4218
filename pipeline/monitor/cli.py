"""`pipeline jobs` and `pipeline report jobs [ROOT]`. Imports stay lazy so `pipeline --help` stays instant."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

JOB_STATES = ("done", "failed", "running", "interrupted", "pending", "corrupt")
JOB_COLUMNS = (
    "job",
    "created (UTC)",
    "media",
    "workflow",
    "profile",
    "backend",
    "state",
    "media s",
    "time",
    "RTF",
    "peak MB",
)


def _cmd_jobs(args: argparse.Namespace) -> int:
    from pipeline import jobs
    from pipeline.config_values import BACKENDS
    from pipeline.errors import PipelineError
    from pipeline.monitor import records

    backends = [b for b in BACKENDS if b != "auto"]
    if args.backend is not None and args.backend not in backends:
        raise PipelineError(f"--backend {args.backend!r} is not a backend; allowed: {', '.join(backends)}")
    since = records.parse_since(args.since) if args.since else None
    found = records.select(
        records.scan(args.out or jobs.default_out_root()), state=args.state, since=since, backend=args.backend
    )
    if args.json:
        print(json.dumps([job.to_dict() for job in found], indent=2, ensure_ascii=False))
    else:
        print(format_jobs(found))
    return 0


def _cell(value: float | None, fmt: str) -> str:
    return "" if value is None else fmt.format(value)


def format_jobs(found: list[Any]) -> str:
    """A table, one job a line; the last column (not padded) says why a job failed or cannot be read."""
    rows = [(*JOB_COLUMNS, "")]
    for job in found:
        created = (job.created or "")[:19].replace("T", " ")
        state = job.state + (f" ({job.stage})" if job.stage else "")
        note = " ".join((job.error or "").split())
        rows.append(
            (
                job.job_id,
                created,
                job.media,
                job.workflow or "",
                job.profile or "",
                job.backend or "",
                state,
                _cell(job.media_s, "{:.1f}"),
                _cell(job.wall_s, "{:.1f}s"),
                _cell(job.rtf, "{:.3f}"),
                _cell(job.peak_rss_mb, "{:.0f}"),
                note[:120] + ("..." if len(note) > 120 else ""),
            )
        )
    if len(rows) == 1:
        return "no jobs"
    widths = [max(len(r[i]) for r in rows) for i in range(len(JOB_COLUMNS))]
    numeric = set(range(7, len(JOB_COLUMNS)))
    return "\n".join(
        "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(r[:-1], widths, strict=True))
        )
        + ("  " + r[-1] if r[-1] else "")
        for r in rows
    ).rstrip()


def _cmd_report_jobs(args: argparse.Namespace) -> int:
    from pipeline import jobs
    from pipeline.monitor.report import write_report
    from pipeline.progress import say

    text, written, note = write_report(args.root or jobs.default_out_root(), args.out, args.prom)
    print(text, end="")
    if note:
        say(note)
    say("wrote " + ", ".join(str(p) for p in written))
    return 0


def register(sub: Any) -> None:
    """Add `jobs` and `report jobs` to the `pipeline` command's subparsers."""
    listing = sub.add_parser("jobs", help="list the jobs under an output root: state, backend, time, RTF, memory")
    listing.add_argument("--out", type=Path, help="root of job folders (default: $PIPELINE_OUT or ./out)")
    listing.add_argument("--state", choices=JOB_STATES, help="only jobs in this state")
    listing.add_argument("--since", metavar="DATE", help="only jobs created at or after DATE (ISO, UTC)")
    listing.add_argument(
        "--backend", metavar="NAME", help="only jobs whose transcript NAME produced (faster-whisper, whisperx, mlx)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON list, for scripts")
    listing.set_defaults(handler=_cmd_jobs)

    report = sub.add_parser("report", help="reports over many jobs: `report jobs` (monitoring by backend)")
    rsub = report.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    by_backend = rsub.add_parser(
        "jobs",
        help="finished and failed jobs by profile and backend: Markdown, HTML with plots, Prometheus metrics",
    )
    by_backend.add_argument("root", nargs="?", type=Path, help="root of job folders (default: $PIPELINE_OUT or ./out)")
    by_backend.add_argument(
        "--out",
        type=Path,
        default=Path("report"),
        help="folder for jobs.md, jobs.html and the plots (default ./report)",
    )
    by_backend.add_argument(
        "--prom",
        type=Path,
        help="the Prometheus text file, e.g. in node_exporter's --collector.textfile.directory "
        "(default: OUT/pipeline_jobs.prom)",
    )
    by_backend.set_defaults(handler=_cmd_report_jobs)
