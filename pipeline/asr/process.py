"""The worker's process: its environment, its own process group (stopped and reaped so that nothing outlives an
attempt), and its stdout and stderr pipes."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from pipeline.asr.worker import peak_rss_mb

TERM_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when we stop a worker
TAIL_BYTES = 64 * 1024
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "PYANNOTE_METRICS_ENABLED": "false", "ORT_DISABLE_TELEMETRY": "1"}


def default_worker_argv() -> list[str]:
    return [sys.executable, "-m", "pipeline.asr.worker"]


def worker_env(tmpdir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, **WORKER_ENV)
    if tmpdir is not None:
        # A job leaves nothing outside its folder: torch leaves a module-level temporary folder (the worker ends
        # without teardown), whisperx's VAD creates torch's cache folder, pyannote's matplotlib its font cache.
        env["TMPDIR"] = str(tmpdir)
        env.setdefault("TORCH_HOME", str(tmpdir / "torch"))
        env.setdefault("MPLCONFIGDIR", str(tmpdir / "matplotlib"))
    # The worker must import the same `pipeline` as we did, whatever the current directory.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class Process:
    """The worker's process group, stopped and reaped so that nothing outlives the attempt."""

    # Without reaping the leader, its pid (the group id) cannot be reused while we sweep the group. macOS has
    # no os.waitid before Python 3.13: there we reap first, and the sweep follows within milliseconds.
    _PEEK = hasattr(os, "waitid")

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._status: tuple[int, Any] | None = None  # (wait status, rusage) once reaped

    def exited(self) -> bool:
        if self._status is not None:
            return True
        if self._PEEK:
            return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid:
            self._status = (status, usage)
        return bool(pid)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM the group (faulthandler dumps where it hung), then SIGKILL whatever is left."""
        try:
            if not self.exited():
                self._signal_group(signal.SIGTERM)
                deadline = time.monotonic() + TERM_GRACE
                while not self.exited() and time.monotonic() < deadline:
                    time.sleep(0.05)
        finally:  # even on a second Ctrl-C
            self._signal_group(signal.SIGKILL)  # also anything the worker started that outlived it

    def reap(self) -> tuple[int, float]:
        """Exit code as subprocess reports it, and the peak RSS the kernel kept even if the worker crashed."""
        if self._status is None:
            _, status, usage = os.wait4(self.proc.pid, 0)
            self._status = (status, usage)
        status, usage = self._status
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return self.proc.returncode, peak_rss_mb(usage.ru_maxrss)


def pump(stream: IO[bytes], events: queue.Queue[tuple[float, str] | None]) -> None:
    # Stamped on arrival: a warm worker's events wait in the queue until the stage starts watching.
    for raw in stream:
        events.put((time.monotonic(), raw.decode("utf-8", errors="replace")))
    events.put(None)


class Stderr:
    """The worker's stderr, copied into the job log as it comes, and its last bytes kept for the one-line reason:
    the job log also gets the pipeline's own lines meanwhile, so the reason can't be read back from it."""

    def __init__(self, stream: IO[bytes], log_path: Path) -> None:
        self._tail = bytearray()
        self._thread = threading.Thread(target=self._copy, args=(stream, log_path), daemon=True)
        self._thread.start()

    def _copy(self, stream: IO[bytes], log_path: Path) -> None:
        with stream, open(log_path, "ab") as log:
            while chunk := os.read(stream.fileno(), 65536):
                log.write(chunk)
                log.flush()
                self._tail += chunk
                del self._tail[:-TAIL_BYTES]

    def text(self) -> str:
        """All of the tail, once the worker's group is gone (its pipe then closes)."""
        self._thread.join(timeout=2)
        return bytes(self._tail).decode("utf-8", errors="replace")
