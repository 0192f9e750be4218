"""Run ASR backends in worker processes, so that no crash, hang or leak of a backend can lose finished work.

`run_isolated` tries the profile's fallback chain in order. Per attempt it spawns `pipeline.asr.worker` in its
own process group, reads progress from the worker's stdout, copies its stderr into the job log, and decides
(the first attempt may be a `WarmStart`: a worker started ahead of its audio, its model loaded meanwhile):

| worker ended                                  | result + marker        | outcome    | then          |
|-----------------------------------------------|------------------------|------------|---------------|
| exit 0                                        | valid                  | ok         | use it        |
| killed by a signal, non-zero exit, or timeout | valid                  | salvaged   | use it        |
| any way                                       | present, doesn't match | corrupt    | next backend  |
| no progress for `timeout` s (we kill it)      | missing                | timeout    | next backend  |
| killed by a signal                            | missing                | crashed    | next backend  |
| exited (any code)                             | missing                | failed     | next backend  |
| none started: an earlier run left it (resume) | valid, this request's  | reused     | use it        |

"Valid" means the marker names the sha256 and size of the result file and of this attempt's request, and the
result parses; a result without its marker is never used. The chain exhausted raises `AsrFailed`
(a StageFailed).

Finished work is never thrown away: with `reuse` (a resumed stage), a valid result that an earlier run's worker
left for exactly one of this chain's requests, newer than its audio, is taken without starting a worker (the
stage failed after it, writing the transcript: a full disk, a name too long). Only a run that redoes the stage
(`--force`) or finds no such result sweeps the earlier attempts.

Each worker gets a pipe on its stdin that we hold open for its whole life: it kills its own process group when
the pipe ends, so a pipeline killed with -9 leaves no worker behind (`pipeline.asr.worker`). Its temporary
files and the caches its libraries would leave in the home folder go to `attempt-N/tmp`, removed once its group
is gone; onnxruntime's telemetry (a device id and a database under ~/.cache/Microsoft) is switched off.

The timeout is inactivity, not total time: a worker that reports no progress for `timeout` seconds is killed.
A total limit would have to scale with the media's length and the machine's speed (MLX on a Linux CPU is ~30x
slower than CTranslate2 on the same audio); inactivity doesn't. It must exceed the model's load time and the
slowest gap between two progress events (a backend that reports once per chunk: chunk_seconds x real-time
factor).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any

from pipeline import atomic
from pipeline.asr import AsrRequest, Transcript
from pipeline.asr.worker import marker_path, peak_rss_mb, request_digest
from pipeline.errors import StageFailed

OUTCOMES = ("ok", "salvaged", "crashed", "timeout", "failed", "corrupt", "reused")
STAGES = ("spawn", "load", "transcribe", "write", "teardown")  # how far a worker got, from its events
_TERM_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when we stop a worker
_TAIL_BYTES = 64 * 1024
_ERROR_CHARS = 300
_WORKER_ENV = {"HF_HUB_OFFLINE": "1", "PYANNOTE_METRICS_ENABLED": "false", "ORT_DISABLE_TELEMETRY": "1"}


@dataclass(frozen=True)
class Attempt:
    """One worker run: what ran, how it ended, what it cost. Goes into the job manifest as-is."""

    backend: str
    device: str  # as the worker reported using it, else as requested
    compute_type: str
    model_dir: str
    outcome: str  # one of OUTCOMES
    exit_code: int | None  # as subprocess reports it: negative for a signal; None if it never started
    signal: str | None  # e.g. "SIGSEGV"
    wall_s: float
    peak_rss_mb: float | None
    error: str | None  # one line
    stage: str = "spawn"  # one of STAGES: where it crashed
    progress_s: float = 0.0  # seconds of audio transcribed when it ended
    load_s: float | None = None  # spawn to model loaded: the per-attempt overhead
    ahead_s: float = 0.0  # started this long before its audio was ready (WarmStart); its load overlapped that
    timed_out: bool = False  # we killed it: the signal is ours, not a crash
    reused: str | None = None  # outcome "reused": the earlier run's result it took, relative to the stage's folder

    @property
    def produced(self) -> bool:
        return self.outcome in ("ok", "salvaged", "reused")

    @property
    def crashed(self) -> bool:
        """Died of a signal it raised itself (SIGSEGV, SIGABRT, the OOM killer's SIGKILL), result or not."""
        return self.signal is not None and not self.timed_out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class AsrOutcome:
    transcript: Transcript
    attempts: tuple[Attempt, ...]
    worker: Mapping[str, Any] = field(default_factory=dict)  # the used worker's metadata: versions, device

    @property
    def used(self) -> Attempt:
        return self.attempts[-1]

    @property
    def crashes(self) -> int:
        return sum(a.crashed for a in self.attempts)

    @property
    def fallbacks(self) -> int:
        return len(self.attempts) - 1

    @property
    def salvaged(self) -> bool:
        return self.used.outcome == "salvaged"

    @property
    def reused(self) -> bool:
        return self.used.outcome == "reused"

    def to_dict(self) -> dict[str, Any]:
        """The manifest's `asr` block (the transcript itself is written separately)."""
        return {
            "backend": self.used.backend,
            "attempts": [a.to_dict() for a in self.attempts],
            "crashes": self.crashes,
            "salvaged": int(self.salvaged),
            "reused": int(self.reused),
            "fallbacks": self.fallbacks,
            "worker": dict(self.worker),
        }


class AsrFailed(StageFailed):
    """Every backend in the chain failed; `attempts` says how, for the manifest."""

    def __init__(self, message: str, attempts: Sequence[Attempt]) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's `asr` block for a failed stage: the same shape as AsrOutcome.to_dict()."""
        return {
            "backend": None,
            "attempts": [a.to_dict() for a in self.attempts],
            "crashes": sum(a.crashed for a in self.attempts),
            "salvaged": 0,
            "reused": 0,
            "fallbacks": len(self.attempts) - 1,
            "worker": {},
        }


def tally(jobs: Iterable[Sequence[Attempt | Mapping[str, Any]]]) -> dict[str, dict[str, int]]:
    """Per backend over many jobs' attempt lists: attempts, each outcome, crashes, and fallbacks it caused."""
    counts: dict[str, Counter[str]] = {}
    for job in jobs:
        attempts = [a if isinstance(a, Attempt) else Attempt.from_dict(a) for a in job]
        for index, attempt in enumerate(attempts):
            c = counts.setdefault(attempt.backend, Counter())
            c["attempts"] += 1
            c[attempt.outcome] += 1
            c["crashes"] += attempt.crashed
            c["fallbacks"] += not attempt.produced and index < len(attempts) - 1
    return {b: {k: c[k] for k in ("attempts", *OUTCOMES, "crashes", "fallbacks")} for b, c in counts.items()}


# --- the result and its marker ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Result:
    status: str  # "valid"; "missing": no marker, never used; "invalid": a marker the result doesn't match
    data: dict[str, Any] | None = None
    reason: str | None = None


def read_result(result: Path, request_bytes: bytes) -> _Result:
    """The worker's result if, and only if, its marker pins exactly these bytes for exactly this request."""
    marker_file = marker_path(result)
    if not marker_file.exists():
        return _Result("missing", reason="result file without its marker" if result.exists() else None)
    try:
        marker = json.loads(marker_file.read_bytes())
        sha256, size, request_sha = marker["sha256"], int(marker["size"]), marker["request_sha256"]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return _Result("invalid", reason=f"unreadable marker {marker_file.name}: {type(exc).__name__}")
    if request_sha != request_digest(request_bytes):
        return _Result("invalid", reason="marker belongs to another request")
    try:
        payload = result.read_bytes()
    except OSError as exc:
        return _Result("invalid", reason=f"marker without result: {type(exc).__name__}")
    if len(payload) != size:
        return _Result("invalid", reason=f"result is {len(payload)} bytes, its marker says {size}")
    if hashlib.sha256(payload).hexdigest() != sha256:
        return _Result("invalid", reason="result sha256 does not match its marker")
    try:
        data = json.loads(payload)
        Transcript.from_dict(data["transcript"])
    except (ValueError, TypeError, KeyError) as exc:
        return _Result("invalid", reason=f"result matches its marker but is not a transcript: {exc!r}"[:200])
    return _Result("valid", data=data)


# --- the worker's stderr ----------------------------------------------------------------------------------

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')
_THREAD = re.compile(r"^(Current thread|Thread) 0x[0-9a-fA-F]+ \(most recent call first\):")


def _innermost_frame(lines: Sequence[str]) -> str | None:
    """From a faulthandler dump: the innermost frame of the thread it ran on, else of the main thread.

    Threads are listed newest first, so the main thread is the last one when the signal landed on a native
    thread that Python doesn't know (faulthandler then marks none as current).
    """
    headers = [k for k, line in enumerate(lines) if _THREAD.match(line)]
    current = [k for k in headers if lines[k].startswith("Current")]
    start = current[0] if current else headers[-1] if headers else -1
    for line in lines[start + 1 :]:
        if m := _FRAME.match(line):
            return f"{Path(m['file']).name}:{m['line']} in {m['func']}"
    return None


def fatal_error(tail: str) -> str | None:
    """faulthandler's report of a fatal signal, with where it happened, as one line."""
    lines = tail.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Fatal Python error:"):
            where = _innermost_frame(lines[i + 1 :])
            return lines[i].strip() + (f" at {where}" if where else "")
    return None


def hang_site(tail: str) -> str | None:
    """Where the worker was when faulthandler dumped its stacks on our SIGTERM."""
    return _innermost_frame(tail.splitlines())


def last_line(tail: str) -> str | None:
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else None


# --- the worker process -----------------------------------------------------------------------------------


def default_worker_argv() -> list[str]:
    return [sys.executable, "-m", "pipeline.asr.worker"]


def _worker_env(tmpdir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, **_WORKER_ENV)
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


class _Process:
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
                deadline = time.monotonic() + _TERM_GRACE
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


def _pump(stream: IO[bytes], events: queue.Queue[tuple[float, str] | None]) -> None:
    # Stamped on arrival: a warm worker's events wait in the queue until the stage starts watching.
    for raw in stream:
        events.put((time.monotonic(), raw.decode("utf-8", errors="replace")))
    events.put(None)


class _Stderr:
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
                del self._tail[:-_TAIL_BYTES]

    def text(self) -> str:
        """All of the tail, once the worker's group is gone (its pipe then closes)."""
        self._thread.join(timeout=2)
        return bytes(self._tail).decode("utf-8", errors="replace")


@dataclass
class _Watch:
    """What the worker told us on stdout."""

    started: float  # time.monotonic() at spawn
    stage: str = "spawn"
    done: float = 0.0
    load_s: float | None = None  # spawn to model loaded: interpreter, imports and weights

    def feed(self, at: float, line: str, on_progress: Callable[[float, float], None] | None) -> bool:
        """Take one stdout line; True if it was an event (which counts as progress for the timeout)."""
        try:
            event = json.loads(line)
            kind = event["event"]
        except (ValueError, TypeError, KeyError):
            return False
        if kind == "start":
            self.stage = "load"
        elif kind == "loaded":
            self.stage, self.load_s = "transcribe", round(at - self.started, 3)
        elif kind == "progress":
            self.done = float(event["done"])
            if on_progress:
                on_progress(self.done, float(event["total"]))
        elif kind == "writing":
            self.stage = "write"
        elif kind == "result":
            self.stage = "teardown"
        return True


def _describe(
    outcome: str,
    code: int,
    sig: str | None,
    timed_out: bool,
    timeout: float | None,
    watch: _Watch,
    tail: str,
    result: _Result,
) -> str | None:
    """One line for the manifest and StageFailed: what happened, where, and the worker's own words."""
    if outcome == "ok":
        return None
    if outcome == "corrupt":
        return f"{result.reason}" + (f"; {sig} during {watch.stage}" if sig else "")
    if timed_out:
        site = hang_site(tail)
        return f"no progress for {timeout:g} s during {watch.stage}" + (f"; hung at {site}" if site else "")
    if sig:
        fatal = fatal_error(tail)
        return f"{sig} during {watch.stage}" + (f"; {fatal}" if fatal else "")
    if outcome == "salvaged":
        return f"exited {code} after writing its result: {last_line(tail) or 'no stderr'}"
    reason = result.reason or last_line(tail) or "no stderr"
    return f"exited 0 without a result: {reason}" if code == 0 else f"exited {code}: {reason}"


def _log(log_path: Path, line: str) -> None:
    with open(log_path, "ab") as log:
        log.write(f"{line}\n".encode())


@dataclass
class _Launch:
    """One attempt's worker, from spawn to reaping."""

    number: int
    request: AsrRequest
    request_bytes: bytes
    result_path: Path
    log_path: Path
    started: float
    waiting: bool  # started ahead of its audio: it holds after loading until `go`
    process: _Process | None = None
    events: queue.Queue[tuple[float, str] | None] = field(default_factory=queue.Queue)
    reader: threading.Thread | None = None  # pumps stdout into `events`
    stderr: _Stderr | None = None
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

    @property
    def tmpdir(self) -> Path:
        return self.result_path.parent / "tmp"


def _launch(
    number: int, request: AsrRequest, workdir: Path, log_path: Path, argv: Sequence[str], *, wait: bool
) -> _Launch:
    attempt_dir = workdir / f"attempt-{number}"
    shutil.rmtree(attempt_dir, ignore_errors=True)  # a stale result or marker must never pass as this one's
    attempt_dir.mkdir(parents=True)
    request_bytes = _request_bytes(request)
    request_path, result_path = attempt_dir / "request.json", attempt_dir / "result.json"
    with atomic.atomic_open(request_path, "wb") as handle:
        handle.write(request_bytes)
    _log(
        log_path,
        f"== asr attempt {number}: {request.backend} {request.device}/{request.compute_type} {request.model_dir}"
        + (" (started ahead of its audio)" if wait else ""),
    )
    launch = _Launch(number, request, request_bytes, result_path, log_path, time.monotonic(), wait)
    launch.tmpdir.mkdir()
    try:
        proc = subprocess.Popen(
            [*argv, *(["--wait"] if wait else []), str(request_path), str(result_path)],
            stdin=subprocess.PIPE,  # its lifeline: held open until it is reaped (`go` for a waiting one)
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_worker_env(launch.tmpdir),
            start_new_session=True,  # its own process group: we stop all of it
        )
    except OSError as exc:
        launch.error = f"could not start the worker: {exc}"
        shutil.rmtree(launch.tmpdir, ignore_errors=True)
        return launch
    assert proc.stdout is not None and proc.stderr is not None
    launch.process = _Process(proc)
    launch.reader = threading.Thread(target=_pump, args=(proc.stdout, launch.events), daemon=True)
    launch.reader.start()
    launch.stderr = _Stderr(proc.stderr, log_path)
    return launch


def _finish(
    launch: _Launch, timeout: float | None, on_progress: Callable[[float, float], None] | None
) -> tuple[Attempt, dict[str, Any] | None]:
    """Watch a launched worker to its end and judge it (the module's table)."""
    request = launch.request

    def attempt(**how: Any) -> Attempt:
        return Attempt(
            backend=request.backend,
            device=request.device,
            compute_type=request.compute_type,
            model_dir=request.model_dir,
            **how,
        )

    if launch.process is None:
        failed = attempt(
            outcome="failed",
            exit_code=None,
            signal=None,
            wall_s=0.0,
            peak_rss_mb=None,
            error=(launch.error or "")[:_ERROR_CHARS],
        )
        _log(launch.log_path, f"== asr attempt {launch.number}: {request.backend} {_summary(failed)}")
        return failed, None
    worker, watch = launch.process, _Watch(launch.started)
    timed_out, go_at = False, None
    try:
        if launch.waiting:
            go_at = launch.go()
        deadline = time.monotonic() + timeout if timeout else None
        while not worker.exited():
            with contextlib.suppress(queue.Empty):
                item = launch.events.get(timeout=0.1)
                if item is not None and watch.feed(*item, on_progress) and timeout:
                    deadline = time.monotonic() + timeout
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                break
    finally:
        # Also on Ctrl-C (the worker is in its own session, so the terminal's SIGINT never reached it)
        # and on an exception from on_progress: both propagate once the worker's group is gone.
        code, rss, tail = launch.reap(worker.stop)
    wall_s = round(time.monotonic() - launch.started, 3)
    while True:  # events written just before the worker exited
        try:
            item = launch.events.get_nowait()
        except queue.Empty:
            break
        if item is not None:
            watch.feed(*item, on_progress)

    sig = signal.Signals(-code).name if code < 0 else None
    result = read_result(launch.result_path, launch.request_bytes)
    if result.status == "valid":
        outcome = "ok" if code == 0 and not timed_out else "salvaged"
        watch.stage = "teardown"  # the marker is the last thing the worker writes
    elif result.status == "invalid":
        outcome = "corrupt"
    else:
        outcome = "timeout" if timed_out else "crashed" if sig else "failed"
    error = _describe(outcome, code, sig, timed_out, timeout, watch, tail, result)
    reported = (result.data or {}).get("worker", {})
    done = replace(
        attempt(
            outcome=outcome,
            exit_code=code,
            signal=sig,
            wall_s=wall_s,
            peak_rss_mb=rss,
            error=error[:_ERROR_CHARS] if error else None,
            stage=watch.stage,
            progress_s=watch.done,
            load_s=watch.load_s,
            ahead_s=round(go_at - launch.started, 3) if go_at else 0.0,
            timed_out=timed_out,
        ),
        device=reported.get("device", request.device),
        compute_type=reported.get("compute_type", request.compute_type),
    )
    _log(launch.log_path, f"== asr attempt {launch.number}: {request.backend} {_summary(done)}")
    return done, result.data


def _summary(attempt: Attempt) -> str:
    text = attempt.outcome + (f" {attempt.signal}" if attempt.signal else "")
    return text + (f" ({attempt.error})" if attempt.error else "")


def _request_bytes(request: AsrRequest) -> bytes:
    return json.dumps(asdict(request), sort_keys=True).encode()


def _attempt_number(folder: Path) -> int:
    suffix = folder.name.removeprefix("attempt-")
    return int(suffix) if suffix.isdigit() else 0


def _reusable(chain: Sequence[AsrRequest], workdir: Path) -> tuple[Attempt, dict[str, Any]] | None:
    """An earlier run's valid result for exactly one of `chain`'s requests, newer than the audio it read."""
    wanted = {_request_bytes(r): r for r in chain}
    for folder in sorted(Path(workdir).glob("attempt-*"), key=_attempt_number):
        try:
            request = wanted.get((folder / "request.json").read_bytes())
        except OSError:
            continue
        result = folder / "result.json"
        found = read_result(result, _request_bytes(request)) if request else None
        if request is None or found is None or found.data is None:
            continue
        try:  # a re-extracted audio file makes the result another audio's
            if result.stat().st_mtime_ns < Path(request.audio).stat().st_mtime_ns:
                continue
        except OSError:
            continue
        data = found.data
        reported = data.get("worker", {})
        attempt = Attempt(
            backend=request.backend,
            device=reported.get("device", request.device),
            compute_type=reported.get("compute_type", request.compute_type),
            model_dir=request.model_dir,
            outcome="reused",
            exit_code=None,
            signal=None,
            wall_s=0.0,  # this run's cost; the earlier worker's own figures stay in its result's `worker`
            peak_rss_mb=None,
            error=None,
            stage="teardown",
            progress_s=float(data["transcript"].get("duration") or 0.0),
            reused=str(result.relative_to(workdir)),
        )
        return attempt, data
    return None


def _log_file(workdir: Path, log_path: Path | None) -> Path:
    return Path(log_path) if log_path else Path(workdir) / "asr.log"


def _prepared_log(workdir: Path, log_path: Path | None) -> Path:
    log_path = _log_file(workdir, log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return log_path


def _prepared(workdir: Path, log_path: Path | None) -> tuple[Path, Path]:
    """The attempt folder's parent and the log, created; stale attempts of an earlier run removed."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob("attempt-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return workdir, _prepared_log(workdir, log_path)


class WarmStart:
    """The first attempt started ahead of its audio: the worker starts its interpreter and loads its model
    (about a second) while the pipeline is still extracting the audio, then waits for `run_isolated` to say go.

    A context manager: a warm worker that nothing took (the extract failed, Ctrl-C) is killed on leaving. It
    has written nothing by then, so SIGKILL loses nothing."""

    def __init__(
        self,
        request: AsrRequest,
        workdir: Path,
        *,
        log_path: Path | None = None,
        worker_argv: Sequence[str] | None = None,
    ) -> None:
        # Sweeping here loses nothing: a worker is started ahead only of an audio still to be extracted, and an
        # earlier result is then another audio's.
        self.workdir, self.log_path = _prepared(workdir, log_path)
        self.request = request
        self.argv = list(worker_argv) if worker_argv else default_worker_argv()
        self._launch: _Launch | None = _launch(1, request, self.workdir, self.log_path, self.argv, wait=True)

    def take(self, request: AsrRequest, workdir: Path, log_path: Path, argv: Sequence[str]) -> _Launch | None:
        """The waiting worker, if it was started for exactly this first attempt; else it is stopped."""
        launch, self._launch = self._launch, None
        if launch is None:
            return None
        if (request, Path(workdir), log_path, list(argv)) != (self.request, self.workdir, self.log_path, self.argv):
            _abandon(launch, "not used: the stage asked for another first attempt")
            return None
        return launch

    def close(self) -> None:
        launch, self._launch = self._launch, None
        if launch is not None:
            _abandon(launch, "not used")

    def __enter__(self) -> WarmStart:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _abandon(launch: _Launch, why: str) -> None:
    if launch.process is not None:
        launch.reap(launch.process.kill)
    _log(launch.log_path, f"== asr attempt {launch.number}: {launch.request.backend} {why}")


def run_isolated(
    chain: Sequence[AsrRequest],
    workdir: Path,
    *,
    timeout: float | None = None,
    on_progress: Callable[[float, float], None] | None = None,
    log_path: Path | None = None,
    worker_argv: Sequence[str] | None = None,
    warm: WarmStart | None = None,
    reuse: bool = False,
) -> AsrOutcome:
    """Transcribe with the first request in `chain` that produces a result; see the module's table. With
    `warm`, the first attempt is its waiting worker when that was started for `chain[0]`. With `reuse` (a
    resumed stage), an earlier run's valid result for one of `chain`'s requests is taken instead."""
    if not chain:
        raise ValueError("run_isolated needs at least one AsrRequest")
    if reuse and (found := _reusable(chain, Path(workdir))):
        earlier, document = found
        if warm is not None:
            warm.close()
        _log(
            _prepared_log(workdir, log_path),
            f"== asr: {earlier.backend} result of an earlier run reused ({earlier.reused}); no worker started",
        )
        return AsrOutcome(Transcript.from_dict(document["transcript"]), (earlier,), document.get("worker", {}))
    argv = list(worker_argv) if worker_argv else default_worker_argv()
    # A warm worker's attempt folder is already the fresh one; without it, sweep the stale ones.
    first = warm.take(chain[0], Path(workdir), _log_file(workdir, log_path), argv) if warm else None
    workdir, log_path = (Path(workdir), _log_file(workdir, log_path)) if first else _prepared(workdir, log_path)
    attempts: list[Attempt] = []
    for number, request in enumerate(chain, start=1):
        launch = first if number == 1 and first else _launch(number, request, workdir, log_path, argv, wait=False)
        attempt, data = _finish(launch, timeout, on_progress)
        attempts.append(attempt)
        if data is not None:
            transcript = Transcript.from_dict(data["transcript"])
            return AsrOutcome(transcript, tuple(attempts), data.get("worker", {}))
    reasons = "; ".join(f"{a.backend} ({a.device}/{a.compute_type}): {_summary(a)}" for a in attempts)
    raise AsrFailed(f"ASR failed with every backend in the chain: {reasons}; log: {log_path}", attempts)
