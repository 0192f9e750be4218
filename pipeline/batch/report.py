"""A batch's rows (one per media file, read from its job's manifest), the one progress display for the whole
batch (a live panel on a terminal, plain lines otherwise), and the summary table."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

# How a file ended in this batch; `done` also for a job an earlier run finished (`earlier` says so).
FAILED_STATES = ("failed", "interrupted")


@dataclass
class Row:
    file: str
    workflow: str
    state: str = "pending"  # pending, running, done, failed, interrupted
    job_id: str = ""
    backend: str = ""
    time_s: float | None = None  # the job's stage wall times, summed over its runs
    duration_s: float | None = None  # the media's
    peak_mb: float | None = None  # of the job's stages and its ASR worker
    error: str = ""
    attempts: int = 0  # runs started on a worker in this batch (more than one: a worker died)
    earlier: bool = False  # finished before this batch started
    worker: str = ""  # host:pid of the actor that ran it last
    node: str = ""  # its Ray node id

    @property
    def rtf(self) -> float | None:
        if self.time_s is None or not self.duration_s:
            return None
        return self.time_s / self.duration_s

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "rtf": None if self.rtf is None else round(self.rtf, 4)}


def read_job(row: Row, folder: Path) -> bool:
    """Fill `row` from the job's manifest; True when every stage is done (or skipped)."""
    try:
        data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    stages: dict[str, dict[str, Any]] = data.get("stages", {})
    row.job_id = str(data.get("job_id", row.job_id))
    row.duration_s = (data.get("media_info") or {}).get("duration")
    asr = stages.get("transcribe", {})
    row.backend = str(asr.get("backend") or "")
    walls = [s["wall_s"] for s in stages.values() if isinstance(s.get("wall_s"), int | float)]
    row.time_s = round(sum(walls), 3) if walls else None
    peaks = [
        v
        for s in stages.values()
        for k in ("peak_rss_mb", "worker_peak_rss_mb")
        if isinstance(v := s.get(k), int | float)
    ]
    row.peak_mb = max(peaks) if peaks else None
    failed = next((s.get("error") for s in stages.values() if s.get("state") == "failed"), None)
    if failed:
        row.error = str(failed)
    return all(s.get("state") in ("done", "skipped") for s in stages.values())


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else (f"{seconds // 60}:{seconds % 60:02d}")
    )


def table(rows: list[Row]) -> str:
    """The summary: file, workflow, backend, state, time, RTF, peak memory, error."""
    head = ("file", "workflow", "backend", "state", "time", "RTF", "peak MB", "job", "error")
    lines = [head]
    for r in rows:
        state = r.state + (" (earlier)" if r.earlier else "") + (f" ({r.attempts} tries)" if r.attempts > 1 else "")
        lines.append(
            (
                Path(r.file).name,
                r.workflow,
                r.backend or "-",
                state,
                "-" if r.time_s is None else f"{r.time_s:.1f}s",
                "-" if r.rtf is None else f"{r.rtf:.3f}",
                "-" if r.peak_mb is None else f"{r.peak_mb:.0f}",
                r.job_id or "-",
                r.error,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) + "  " + line[-1] for line in lines
    )


class Display:
    """Progress of the whole batch: counts, ETA (from the media seconds done so far) and each worker's file."""

    def __init__(self, rows: list[Row], stream: TextIO = sys.stderr) -> None:
        self.rows, self.stream = rows, stream
        self.started: float | None = None  # the first job's start: Ray's own start-up is no rate of work
        self.workers: dict[str, str] = {}  # worker label -> file it runs
        self._live: Any = None
        if stream.isatty():
            with contextlib.suppress(ImportError):
                from rich.console import Console
                from rich.live import Live

                self._live = Live(console=Console(file=stream), refresh_per_second=4, transient=False)
                self._live.start()

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "failed": 0, "running": 0, "pending": 0}
        for r in self.rows:
            out["failed" if r.state in FAILED_STATES else r.state if r.state in out else "pending"] += 1
        return out

    def eta(self) -> float | None:
        """Wall seconds left: the media seconds still to do at this batch's rate so far."""
        done = sum(r.duration_s or 0 for r in self.rows if r.state in ("done", "failed") and not r.earlier)
        left = sum(r.duration_s or 0 for r in self.rows if r.state in ("pending", "running"))
        elapsed = time.monotonic() - self.started if self.started else 0.0
        return left * elapsed / done if done and elapsed else None

    def status(self) -> str:
        c = self.counts()
        return (
            f"batch: {c['done']}/{len(self.rows)} done, {c['failed']} failed, {c['running']} running, "
            f"ETA {_clock(self.eta())}"
        )

    def event(self, row: Row, what: str, where: str = "") -> None:
        """A file started or ended (on the worker `where`): one line; the live panel is redrawn."""
        if self.started is None:
            self.started = time.monotonic()
        detail = f" ({row.error})" if row.error and row.state in FAILED_STATES else ""
        line = f"pipeline: {self.status()}; {what} {Path(row.file).name}" + (f" on {where}" if where else detail)
        if self._live is None:
            print(line, file=self.stream, flush=True)
        else:  # above the live panel, which stays at the bottom
            self._live.console.print(line, markup=False, highlight=False)
        self.refresh()

    def refresh(self) -> None:
        if self._live is None:
            return
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        grid.add_row(self.status())
        for worker, file in sorted(self.workers.items()):
            grid.add_row(f"  {worker}: {Path(file).name}")
        self._live.update(grid)

    def close(self) -> None:
        if self._live is not None:
            self.refresh()
            self._live.stop()
