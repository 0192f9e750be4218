"""Progress for long work: a bar with ETA per stage on a terminal, plain start/finish lines elsewhere;
and the peak memory of the whole process tree (the pipeline, its ASR workers, ffmpeg) while a stage runs."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
from tqdm import tqdm


class StageBar:
    """`update_to(done)` moves the bar; the total is in the stage's own unit (audio seconds, tracks)."""

    def __init__(self, label: str, total: float, unit: str) -> None:
        self._bar = tqdm(
            total=round(total, 1),
            desc=label,
            unit=unit,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
            disable=None,  # a bar only on a terminal: logs and CI get the start/finish lines instead
            bar_format="{desc:<24} {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} {unit} [{elapsed}<{remaining}]",
        )

    def update_to(self, done: float) -> None:
        done = round(min(done, self._bar.total or done), 1)
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def set_total(self, total: float) -> None:
        self._bar.total = round(total, 1)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class PeakMemory:
    """Samples the RSS of this process and all its descendants; `peak_mb` is the highest total seen."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        total = 0
        for process in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # exited between listing and reading
                total += process.memory_info().rss
        self.peak_mb = max(self.peak_mb, total / 2**20)

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
