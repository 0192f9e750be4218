"""Run ASR backends in worker processes, so that no crash, hang or leak of a backend can lose finished work.

`run_isolated` tries the profile's fallback chain in order. Per attempt it spawns `pipeline.asr.worker` in its
own process group, reads progress from the worker's stdout, copies its stderr into the job log, and decides
(the first attempt may be a `WarmStart`: a worker started ahead of its audio, its model loaded meanwhile; or a
request to a batch actor's served worker, `pipeline.asr.served`, whose "exit 0" is its `done` event):

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
A total limit would have to scale with the media's length and the machine's speed (MLX on a Linux CPU is many
times slower than CTranslate2 on the same audio); inactivity doesn't. It must exceed the model's load time and the
slowest gap between two progress events (a backend that reports once per chunk: chunk_seconds x real-time
factor).
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.asr import AsrRequest, Transcript
from pipeline.asr.attempts import AsrFailed, AsrOutcome, AsrRecord, Attempt, Outcome
from pipeline.asr.forensics import describe, read_result, reusable
from pipeline.asr.process import Launch, default_worker_argv, launch, log
from pipeline.asr.protocol import Watch

if TYPE_CHECKING:
    from pipeline.asr.served import ServedWorker

_ERROR_CHARS = 300


def _finish(
    run: Launch, timeout: float | None, on_progress: Callable[[float, float], None] | None
) -> tuple[Attempt, dict[str, Any] | None]:
    """Watch a launched worker to its end and judge it (the module's table)."""
    request = run.request

    def attempt(**how: Any) -> Attempt:
        return Attempt(
            backend=request.backend,
            device=request.device,
            compute_type=request.compute_type,
            model_dir=request.model_dir,
            **how,
        )

    if run.process is None:
        failed = attempt(
            outcome="failed",
            exit_code=None,
            signal=None,
            wall_s=0.0,
            peak_rss_mb=None,
            error=(run.error or "")[:_ERROR_CHARS],
        )
        log(run.log_path, f"== asr attempt {run.number}: {request.backend} {_summary(failed)}")
        return failed, None
    worker, watch = run.process, Watch(run.started)
    timed_out, go_at = False, None
    try:
        if run.waiting:
            go_at = run.go()
        deadline = time.monotonic() + timeout if timeout else None
        while not worker.exited():
            with contextlib.suppress(queue.Empty):
                item = run.events.get(timeout=0.1)
                if item is not None and watch.feed(*item, on_progress) and timeout:
                    deadline = time.monotonic() + timeout
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                break
    finally:
        # Also on Ctrl-C (the worker is in its own session, so the terminal's SIGINT never reached it)
        # and on an exception from on_progress: both propagate once the worker's group is gone.
        code, rss, tail = run.reap(worker.stop)
    wall_s = round(time.monotonic() - run.started, 3)
    while True:  # events written just before the worker exited
        try:
            item = run.events.get_nowait()
        except queue.Empty:
            break
        if item is not None:
            watch.feed(*item, on_progress)
    return judge(run, code, rss, tail, watch, timed_out=timed_out, timeout=timeout, wall_s=wall_s, go_at=go_at)


def judge(
    run: Launch,
    code: int | None,
    rss: float | None,
    tail: str,
    watch: Watch,
    *,
    timed_out: bool,
    timeout: float | None,
    wall_s: float,
    go_at: float | None,
) -> tuple[Attempt, dict[str, Any] | None]:
    """An ended attempt by the module's table. `code` None: a served worker that ended the request alive
    (`pipeline.asr.served`), as an ordinary worker's exit 0 ends it."""
    request = run.request
    sig = signal.Signals(-code).name if code is not None and code < 0 else None
    result = read_result(run.result_path, run.request_bytes)
    outcome: Outcome
    if result.status == "valid":
        outcome = "ok" if code in (0, None) and not timed_out else "salvaged"
        watch.phase = "teardown"  # the marker is the last thing the worker writes
    elif result.status == "invalid":
        outcome = "corrupt"
    else:
        outcome = "timeout" if timed_out else "crashed" if sig else "failed"
    error = describe(outcome, code or 0, sig, timed_out, timeout, watch.phase, tail, result)
    reported = (result.data or {}).get("worker", {})
    done = replace(
        Attempt(
            backend=request.backend,
            device=request.device,
            compute_type=request.compute_type,
            model_dir=request.model_dir,
            outcome=outcome,
            exit_code=code,
            signal=sig,
            wall_s=wall_s,
            peak_rss_mb=rss,
            error=error[:_ERROR_CHARS] if error else None,
            stage=watch.phase,
            progress_s=watch.done,
            load_s=watch.load_s,
            ahead_s=round(go_at - run.started, 3) if go_at else 0.0,
            timed_out=timed_out,
        ),
        device=reported.get("device", request.device),
        compute_type=reported.get("compute_type", request.compute_type),
    )
    log(run.log_path, f"== asr attempt {run.number}: {request.backend} {_summary(done)}")
    return done, result.data


def _summary(attempt: Attempt) -> str:
    text = attempt.outcome + (f" {attempt.signal}" if attempt.signal else "")
    return text + (f" ({attempt.error})" if attempt.error else "")


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
    """The first attempt started ahead of its audio: the worker starts its interpreter and loads its model while
    the pipeline is still extracting the audio, then waits for `run_isolated` to say go.

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
        self._launch: Launch | None = launch(1, request, self.workdir, self.log_path, self.argv, wait=True)

    def take(self, request: AsrRequest, workdir: Path, log_path: Path, argv: Sequence[str]) -> Launch | None:
        """The waiting worker, if it was started for exactly this first attempt; else it is stopped."""
        waiting, self._launch = self._launch, None
        if waiting is None:
            return None
        if (request, Path(workdir), log_path, list(argv)) != (self.request, self.workdir, self.log_path, self.argv):
            waiting.abandon("not used: the stage asked for another first attempt")
            return None
        return waiting

    def close(self) -> None:
        waiting, self._launch = self._launch, None
        if waiting is not None:
            waiting.abandon("not used")

    def __enter__(self) -> WarmStart:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_isolated(
    chain: Sequence[AsrRequest],
    workdir: Path,
    *,
    timeout: float | None = None,
    on_progress: Callable[[float, float], None] | None = None,
    log_path: Path | None = None,
    worker_argv: Sequence[str] | None = None,
    warm: WarmStart | ServedWorker | None = None,
    reuse: bool = False,
) -> AsrOutcome:
    """Transcribe with the first request in `chain` that produces a result; see the module's table. With
    `warm`, the first attempt is its waiting worker when that was started for `chain[0]` (or a served worker's
    request, when that worker can take `chain[0]`: `pipeline.asr.served`). With `reuse` (a
    resumed stage), an earlier run's valid result for one of `chain`'s requests is taken instead."""
    if not chain:
        raise ValueError("run_isolated needs at least one AsrRequest")
    backends = tuple(r.backend for r in chain)
    if reuse and (found := reusable(chain, Path(workdir))):
        earlier, document = found
        if warm is not None:
            warm.close()
        log(
            _prepared_log(workdir, log_path),
            f"== asr: {earlier.backend} result of an earlier run reused ({earlier.reused}); no worker started",
        )
        record = AsrRecord(backends, (earlier,), document.get("worker", {}))
        return AsrOutcome(Transcript.from_dict(document["transcript"]), record)
    argv = list(worker_argv) if worker_argv else default_worker_argv()
    # A warm worker's attempt folder is already the fresh one; without it, sweep the stale ones.
    first = warm.take(chain[0], Path(workdir), _log_file(workdir, log_path), argv) if warm else None
    workdir, log_path = (Path(workdir), _log_file(workdir, log_path)) if first else _prepared(workdir, log_path)
    attempts: list[Attempt] = []
    for number, request in enumerate(chain, start=1):
        started = first if number == 1 and first else launch(number, request, workdir, log_path, argv, wait=False)
        if isinstance(started, Launch):
            attempt, data = _finish(started, timeout, on_progress)
        else:  # a served worker's request (`pipeline.asr.served`)
            attempt, data = started.finish(timeout, on_progress)
        attempts.append(attempt)
        if data is not None:
            transcript = Transcript.from_dict(data["transcript"])
            return AsrOutcome(transcript, AsrRecord(backends, tuple(attempts), data.get("worker", {})))
    reasons = "; ".join(f"{a.backend} ({a.device}/{a.compute_type}): {_summary(a)}" for a in attempts)
    error = f"ASR failed with every backend in the chain: {reasons}; log: {log_path}"
    raise AsrFailed(AsrRecord(backends, tuple(attempts), error=error))
