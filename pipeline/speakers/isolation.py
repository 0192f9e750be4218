"""Run the diarization worker in its own process group, as the ASR workers run (pipeline.asr.process).

The worker writes its turns atomically before it exits: a worker that crashes after that (in teardown) is
salvaged; one that crashes before, or makes no progress for `timeout` seconds, is stopped with its whole group and
reported in one line. A resumed stage takes a result its earlier worker finished for the same request, or the
chunks it finished (the worker diarizes each chunk in a process of its own and keeps its turns in `chunks/`).
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.asr.process import Process, Stderr, pump, worker_env
from pipeline.errors import PipelineError
from pipeline.speakers import DiarizationRequest

EXIT_GRACE = 30.0  # seconds a worker that closed its stdout may take to exit before it is stopped


@dataclass
class Outcome:
    turns: list[tuple[float, float, int]]
    exit_code: int | None = None  # None: reused from an earlier run
    salvaged: bool = False  # the worker crashed after writing its result
    peak_rss_mb: float | None = None
    cpu_s: float | None = None  # the worker's and its chunk processes' user + system time
    versions: dict[str, str] = field(default_factory=dict)


def worker_argv() -> list[str]:
    return [sys.executable, "-m", "pipeline.speakers.worker"]


def _result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("turns"), list) else None


def _log(log_path: Path, line: str) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(line + "\n")


def run_diarization(
    request: DiarizationRequest,
    workdir: Path,
    *,
    log_path: Path,
    timeout: float,
    on_progress: Callable[[int, int], None] | None = None,
    reuse: bool = True,
    argv: list[str] | None = None,
) -> Outcome:
    request_bytes = request.to_json()
    request_path, result_path = workdir / "request.json", workdir / "result.json"
    same = reuse and request_path.is_file() and request_path.read_bytes() == request_bytes
    if same and (done := _result(result_path)) is not None:  # a resumed stage: its earlier worker finished
        return Outcome([tuple(t) for t in done["turns"]], versions=done.get("versions", {}))
    if not same:  # a stale result must never pass as this request's; the same request's finished chunks may
        shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    with atomic.atomic_open(request_path, "wb") as handle:
        handle.write(request_bytes)
    _log(log_path, f"== diarization worker: {request.segmentation} + {request.embedding}")
    try:
        proc = subprocess.Popen(
            [*(argv or worker_argv()), str(request_path), str(result_path)],
            stdin=subprocess.PIPE,  # its lifeline, held open until it is reaped
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=worker_env(workdir / "tmp"),
            start_new_session=True,  # its own process group: we stop all of it
        )
    except OSError as exc:
        raise PipelineError(f"could not start the diarization worker: {exc}") from None
    assert proc.stdout is not None and proc.stderr is not None
    process = Process(proc)
    events: queue.Queue[tuple[float, str] | None] = queue.Queue()
    threading.Thread(target=pump, args=(proc.stdout, events), daemon=True).start()
    stderr = Stderr(proc.stderr, log_path)
    stalled = False
    try:
        last = time.monotonic()
        while True:
            try:
                item = events.get(timeout=1.0)
            except queue.Empty:
                if time.monotonic() - last > timeout:
                    stalled = True
                    break
                continue
            if item is None:  # stdout closed: the worker is gone or going
                break
            last, line = item
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "progress" and on_progress:
                on_progress(int(event["done"]), int(event["total"]))
        # Its stdout closes as it exits: give it the time to finish exiting on its own before stopping it.
        deadline = time.monotonic() + EXIT_GRACE
        while not stalled and not process.exited() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.stop()  # SIGTERM, then SIGKILL to the group: also on Ctrl-C or a stall
        code, peak = process.reap()
        if proc.stdin:
            proc.stdin.close()
    shutil.rmtree(workdir / "tmp", ignore_errors=True)
    done = _result(result_path)
    if done is not None:  # written before exit: whatever happened after it, the turns are complete
        return Outcome(
            [tuple(t) for t in done["turns"]],
            exit_code=code,
            salvaged=code != 0,
            peak_rss_mb=max(peak, done.get("peak_rss_mb") or 0.0),  # its chunk processes' sum, side by side
            cpu_s=done.get("cpu_s"),
            versions=done.get("versions", {}),
        )
    if stalled:
        why = f"no progress for {timeout:g} s (ASR_TIMEOUT)"
    else:
        last_words = [line for line in stderr.text().splitlines() if line.strip()]
        why = f"exit code {code}" + (f": {last_words[-1].strip()[:300]}" if last_words else "")
    raise PipelineError(f"the diarization worker failed ({why}); the transcript is kept")
