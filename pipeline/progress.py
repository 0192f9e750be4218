"""Progress for long work: a bar with ETA per stage on a terminal, plain start/finish lines elsewhere;
and the peak memory of the whole process tree (the pipeline, its ASR workers, ffmpeg) while a stage runs."""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from pipeline.asr.protocol import peak_rss_mb


class StageBar:
    """`update_to(done)` moves the bar; the total is in the stage's own unit (audio seconds, tracks).

    A bar only on a terminal (tqdm's `disable=None` rule, decided before tqdm is imported): logs and CI get the
    start/finish lines instead, and do not pay tqdm's import, which reads every installed distribution's
    metadata for its own version (benchmarks/README.md, overhead)."""

    def __init__(self, label: str, total: float, unit: str) -> None:
        self._bar: Any = None
        if not sys.stderr.isatty():
            return
        from tqdm import tqdm

        self._bar = tqdm(
            total=round(total, 1),
            desc=label,
            unit=unit,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
            bar_format="{desc:<24} {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} {unit} [{elapsed}<{remaining}]",
        )

    def update_to(self, done: float) -> None:
        if self._bar is None:
            return
        done = round(min(done, self._bar.total or done), 1)
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def set_total(self, total: float) -> None:
        if self._bar is not None:
            self._bar.total = round(total, 1)
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class PeakMemory:
    """The peak RSS of this process and all its descendants while a stage runs: `peak_mb`, in MB.

    Two readings, the higher wins. The kernel's exact peak of the children reaped meanwhile (ffmpeg, the ASR
    worker; ru_maxrss of RUSAGE_CHILDREN is the largest one) on top of our own RSS; and a sample of the live
    tree each `interval`, for children that run side by side. Sampling is rare on purpose: listing the tree
    reads every process on the machine (psutil's ppid map), and ten samples a second took a measurable share
    of a core from the transcription (benchmarks/README.md, overhead)."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._me = psutil.Process()
        self._children_peak = _children_peak_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def _sample(self) -> None:
        total = 0
        for process in [self._me, *self._me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # exited between listing and reading
                total += process.memory_info().rss
        self.peak_mb = max(self.peak_mb, total / 2**20)

    def _reaped(self) -> None:
        # The children's peak only grows; if it grew, the child that set it ran during this stage.
        peak = _children_peak_mb()
        if peak > self._children_peak:
            with contextlib.suppress(psutil.Error):
                self.peak_mb = max(self.peak_mb, self._me.memory_info().rss / 2**20 + peak)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self._reaped()


class JobLog(logging.FileHandler):
    """The job's pipeline.log. A write that fails (a full disk) is one warning line, once, not a traceback per
    record: the manifest is the job's record, the log its commentary."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            super().emit(record)
        except OSError as exc:  # opening the file (delay=True) happens outside StreamHandler's own guard
            self._warn(exc)

    def handleError(self, record: logging.LogRecord) -> None:
        self._warn(sys.exc_info()[1])

    def _warn(self, exc: BaseException | None) -> None:
        if not self.failed:
            self.failed = True
            reason = exc.strerror if isinstance(exc, OSError) else exc
            with contextlib.suppress(OSError):
                say(f"warning: cannot write the job log {self.baseFilename}: {reason}")


def _children_peak_mb() -> float:
    return peak_rss_mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


@contextmanager
def stage_bar(label: str, total: float, unit: str) -> Iterator[StageBar]:
    bar = StageBar(label, total, unit)
    try:
        yield bar
    finally:
        bar.close()


def say(message: str) -> None:
    print(f"pipeline: {message}", file=sys.stderr, flush=True)


def format_seconds(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds >= 60 else f"{seconds:.1f}s"
