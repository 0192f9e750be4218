"""One attempt's worker process: its folder and request file, its environment, its own process group (stopped and
reaped so that nothing outlives the attempt), its stdin lifeline and its stdout and stderr pipes."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pipeline import atomic
from pipeline.asr import AsrRequest
from pipeline.asr.protocol import peak_rss_mb, request_bytes

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


def log(log_path: Path, line: str) -> None:
    """A line of our own in the job log, between the workers' stderr."""
    with open(log_path, "ab") as handle:
        handle.write(f"{line}\n".encode())


@dataclass
class Launch:
    """One attempt's worker, from spawn to reaping."""

    number: int
    request: AsrRequest
    request_bytes: bytes
    result_path: Path
    log_path: Path
    started: float
    waiting: bool  # started ahead of its audio: it holds after loading until `go`
    process: Process | None = None
    events: queue.Queue[tuple[float, str] | None] = field(default_factory=queue.Queue)
    reader: threading.Thread | None = None  # pumps stdout into `events`
    stderr: Stderr | None = None
    error: str | None = None  # why it could not start

    def go(self) -> float:
        """Tell a waiting worker that its audio is ready. One that died meanwhile is found out by the watch.
        Its stdin stays open: its end tells the worker that we are gone."""
        assert self.process is not None and self.process.proc.stdin is not None
        with contextlib.suppress(OSError):  # BrokenPipeError: it is gone already
            self.process.proc.stdin.write(b"go\n")
            self.process.proc.stdin.flush()
        return time.monotonic()

    def reap(self, stop: Callable[[], None]) -> tuple[int, float, str]:
        """Stop the group (`stop`), reap the leader; its exit code, peak RSS and stderr tail."""
        assert self.process is not None and self.stderr is not None
        try:
            stop()
        finally:
            code, rss = self.process.reap()
            if self.reader is not None:
                self.reader.join(timeout=2)
            for stream in (self.process.proc.stdin, self.process.proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            shutil.rmtree(self.tmpdir, ignore_errors=True)  # its group is gone: nothing writes there any more
        return code, rss, self.stderr.text()

    def abandon(self, why: str) -> None:
        """Kill a worker nobody will use; it has written nothing yet, so SIGKILL loses nothing."""
        if self.process is not None:
            self.reap(self.process.kill)
        log(self.log_path, f"== asr attempt {self.number}: {self.request.backend} {why}")

    @property
    def tmpdir(self) -> Path:
        return self.result_path.parent / "tmp"


def launch(
    number: int, request: AsrRequest, workdir: Path, log_path: Path, argv: Sequence[str], *, wait: bool
) -> Launch:
    """Start attempt `number`'s worker in a fresh `attempt-N` folder; one that cannot start carries its error."""
    attempt_dir = workdir / f"attempt-{number}"
    shutil.rmtree(attempt_dir, ignore_errors=True)  # a stale result or marker must never pass as this one's
    attempt_dir.mkdir(parents=True)
    request_data = request_bytes(request)
    request_path, result_path = attempt_dir / "request.json", attempt_dir / "result.json"
    with atomic.atomic_open(request_path, "wb") as handle:
        handle.write(request_data)
    log(
        log_path,
        f"== asr attempt {number}: {request.backend} {request.device}/{request.compute_type} {request.model_dir}"
        + (" (started ahead of its audio)" if wait else ""),
    )
    started = Launch(number, request, request_data, result_path, log_path, time.monotonic(), wait)
    started.tmpdir.mkdir()
    try:
        proc = subprocess.Popen(
            [*argv, *(["--wait"] if wait else []), str(request_path), str(result_path)],
            stdin=subprocess.PIPE,  # its lifeline: held open until it is reaped (`go` for a waiting one)
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=worker_env(started.tmpdir),
            start_new_session=True,  # its own process group: we stop all of it
        )
    except OSError as exc:
        started.error = f"could not start the worker: {exc}"
        shutil.rmtree(started.tmpdir, ignore_errors=True)
        return started
    assert proc.stdout is not None and proc.stderr is not None
    started.process = Process(proc)
    started.reader = threading.Thread(target=pump, args=(proc.stdout, started.events), daemon=True)
    started.reader.start()
    started.stderr = Stderr(proc.stderr, log_path)
    return started
