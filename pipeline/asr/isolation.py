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
import json
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.asr import AsrRequest, Transcript
from pipeline.asr.attempts import AsrFailed, AsrOutcome, Attempt
from pipeline.asr.forensics import describe, read_result
from pipeline.asr.process import Process, Stderr, default_worker_argv, pump, worker_env

_ERROR_CHARS = 300


# --- the worker process -----------------------------------------------------------------------------------


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
            env=worker_env(launch.tmpdir),
            start_new_session=True,  # its own process group: we stop all of it
        )
    except OSError as exc:
        launch.error = f"could not start the worker: {exc}"
        shutil.rmtree(launch.tmpdir, ignore_errors=True)
        return launch
    assert proc.stdout is not None and proc.stderr is not None
    launch.process = Process(proc)
    launch.reader = threading.Thread(target=pump, args=(proc.stdout, launch.events), daemon=True)
    launch.reader.start()
    launch.stderr = Stderr(proc.stderr, log_path)
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
    error = describe(outcome, code, sig, timed_out, timeout, watch.stage, tail, result)
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
