"""A served ASR worker: one worker process (`python -m pipeline.asr.worker --serve`) that loads its model once and
then transcribes request after request, for a long-lived owner (a batch's device actor) that runs job after job.

It is still an isolated process in its own group, with its stdin as its lifeline: a backend crash costs the
request's attempt, never the owner. `ServedWorker.take` is what `run_isolated` calls for a stage's first attempt
(as `WarmStart.take`): the request goes to the worker as a line `go ["REQUEST_JSON", "RESULT_JSON"]` into the
attempt's own folder, and the attempt ends at the worker's `done` event, not at its exit. Its result is judged by
its marker exactly as an ordinary worker's (`isolation.judge`). If the worker dies or hangs mid-request, the
attempt is judged as an ordinary worker's end would be (a crash, a timeout: a salvaged result, else the next
backend of the chain), and the next request gets a fresh worker. The same for a request it cannot take:

| the request                                           | what runs it                                        |
|-------------------------------------------------------|-----------------------------------------------------|
| same load fields (`protocol.LOAD_FIELDS`) as the live | the live worker: no load                            |
| other load fields                                     | a fresh served worker, loaded for them (replacing)  |
| a backend that cannot serve (no `rebind`: whisperx)   | an ordinary worker (the served one refused it)      |
| another worker command line than the served worker's  | an ordinary worker                                  |

A served attempt's peak memory is the worker's VmHWM, which the worker resets as the request begins: the model
it holds plus what this request added (`peak_rss_mb`); an ordinary worker's is its whole life's, load included,
so the two compare.
"""

from __future__ import annotations

import contextlib
import glob
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pipeline import atomic
from pipeline.asr import AsrRequest
from pipeline.asr.attempts import Attempt
from pipeline.asr.process import TAIL_BYTES, Launch, Process, default_worker_argv, launch, log, pump, worker_env
from pipeline.asr.protocol import Event, Watch, hwm_mb, load_key, read_event, request_bytes, serve_line

HOME_PREFIX = ".served-"  # + the owner's host and pid: a served worker's folder, in its owner's root


def _host_prefix() -> str:
    return f"{HOME_PREFIX}{socket.gethostname()}."  # a root may be shared by the nodes of a cluster


def sweep(root: Path) -> None:
    """Remove the folders of served workers whose owner (on this host) is gone. Ray ends an actor and its
    children with SIGKILL, so neither the actor's exit nor the worker's lifeline removes its folder: the next
    owner on the node does (or the batch's driver, once its Ray instance is gone)."""
    host = _host_prefix()
    for home in root.glob(f"{glob.escape(host)}*.*"):
        owner = home.name.removeprefix(host).partition(".")[0]
        if not owner.isdigit():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(home, ignore_errors=True)
        except OSError:  # alive, another user's
            continue


class _Stderr:
    """The worker's stderr, copied into the log of the request it runs (its own log between requests)."""

    def __init__(self, stream: IO[bytes], log_path: Path) -> None:
        self.log_path = log_path
        self.tail = bytearray()
        self._thread = threading.Thread(target=self._copy, args=(stream,), daemon=True)
        self._thread.start()

    def _copy(self, stream: IO[bytes]) -> None:
        with stream:
            while chunk := os.read(stream.fileno(), 65536):
                with contextlib.suppress(OSError), open(self.log_path, "ab") as target:
                    target.write(chunk)
                self.tail += chunk
                del self.tail[:-TAIL_BYTES]

    def text(self, wait: bool) -> str:
        if wait:  # the group is gone: its pipe closes
            self._thread.join(timeout=2)
        return bytes(self.tail).decode("utf-8", errors="replace")


@dataclass
class _Live:
    """The running served worker."""

    process: Process
    key: tuple[Any, ...]
    started: float  # time.monotonic() at spawn
    stderr: _Stderr
    reader: threading.Thread
    home: Path  # its load request, its log between requests, its TMPDIR; removed with it
    events: queue.Queue[tuple[float, str] | None] = field(default_factory=queue.Queue)
    served: int = 0  # requests sent to it
    peak_mb: float | None = None

    @property
    def pid(self) -> int:
        return self.process.proc.pid


class ServedWorker:
    """One served worker at a time, started for the load fields of the first request that needs it. Owned by
    one thread; `shutdown` stops it (its lifeline stops it too if the owner dies). Its folder (load request, log
    between requests, TMPDIR) is in `root` (a batch's output root: nothing outside it is written), named after
    the owner (`HOME_PREFIX`), and removed with the worker."""

    def __init__(self, worker_argv: Sequence[str] | None = None, *, root: Path) -> None:
        self.argv = list(worker_argv) if worker_argv else default_worker_argv()
        self.root = Path(root)
        sweep(self.root)
        self.loads = 0  # workers started (each loads its model once)
        self._refused: set[tuple[Any, ...]] = set()  # load keys whose backend cannot serve
        self._live: _Live | None = None

    @property
    def pid(self) -> int | None:
        return self._live.pid if self._live else None

    def ensure(self, request: AsrRequest) -> bool:
        """A live worker for `request`'s load fields, started now (loading meanwhile) if there is none or the
        live one has other fields; False if none can serve it."""
        key = load_key(request)
        if key in self._refused:
            return False
        live = self._live
        if live is not None and live.key == key and not live.process.exited():
            return True
        self._stop(live)
        self._live = self._start(request)
        return self._live is not None

    def _start(self, request: AsrRequest) -> _Live | None:
        try:
            home = Path(tempfile.mkdtemp(prefix=f"{_host_prefix()}{os.getpid()}.", dir=self.root))
        except OSError:  # the root is gone or read-only: the stage runs an ordinary worker
            return None
        try:
            with atomic.atomic_open(home / "load.json", "wb") as handle:
                handle.write(request_bytes(request))
            (home / "tmp").mkdir()
            proc = subprocess.Popen(
                [*self.argv, "--serve", str(home / "load.json")],
                stdin=subprocess.PIPE,  # its lifeline, and its requests
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=worker_env(home / "tmp"),
                start_new_session=True,
            )
        except OSError:
            shutil.rmtree(home, ignore_errors=True)
            return None
        assert proc.stdout is not None and proc.stderr is not None
        self.loads += 1
        events: queue.Queue[tuple[float, str] | None] = queue.Queue()
        reader = threading.Thread(target=pump, args=(proc.stdout, events), daemon=True)
        reader.start()
        stderr = _Stderr(proc.stderr, home / "worker.log")
        return _Live(Process(proc), load_key(request), time.monotonic(), stderr, reader, home, events)

    def take(self, request: AsrRequest, workdir: Path, log_path: Path, argv: Sequence[str]) -> ServedAttempt | None:
        """`request` as attempt 1 in `workdir` (stale attempts swept), sent to the served worker; None if it
        cannot take it (the stage then starts an ordinary worker)."""
        from pipeline.asr.isolation import _prepared

        if list(argv) != self.argv or not self.ensure(request):
            return None
        live = self._live
        assert live is not None
        workdir, log_path = _prepared(workdir, log_path)
        attempt_dir = workdir / "attempt-1"
        attempt_dir.mkdir()
        data = request_bytes(request)
        request_path, result_path = attempt_dir / "request.json", attempt_dir / "result.json"
        with atomic.atomic_open(request_path, "wb") as handle:
            handle.write(data)
        live.served += 1
        started = live.started if live.served == 1 else time.monotonic()  # the first request waited for its load
        log(
            log_path,
            f"== asr attempt 1: {request.backend} {request.device}/{request.compute_type} {request.model_dir}"
            f" (served: worker pid {live.pid}, request {live.served})",
        )
        run = Launch(1, request, data, result_path, log_path, started, False, live.process, live.events)
        return ServedAttempt(self, live, run, workdir, list(argv))

    def close(self) -> None:
        """What `run_isolated` calls on a warm start it did not use: a served worker stays for the next job."""

    def shutdown(self) -> None:
        """Stop the worker (the owner is done; between requests it has nothing unwritten) and remove its folder."""
        self._stop(self._live)

    def _stop(self, live: _Live | None) -> None:
        """Stop a worker between requests (it has nothing unwritten) or after a failed one."""
        if live is None:
            return
        try:
            live.process.kill()
        finally:
            live.process.reap()
            for stream in (live.process.proc.stdin, live.process.proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            live.stderr.text(wait=True)
            shutil.rmtree(live.home, ignore_errors=True)
        if self._live is live:
            self._live = None

    def _lost(self, live: _Live) -> tuple[int, float | None, str]:
        """A worker that died, hung or was interrupted mid-request: its group stopped, reaped; the next request
        gets a fresh one. Its exit code, its peak as last seen alive, its stderr tail."""
        try:
            live.process.stop()
        finally:
            code, _ = live.process.reap()
            for stream in (live.process.proc.stdin, live.process.proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            if self._live is live:
                self._live = None
        live.reader.join(timeout=2)
        tail = live.stderr.text(wait=True)
        shutil.rmtree(live.home, ignore_errors=True)
        return code, live.peak_mb, tail


@dataclass
class ServedAttempt:
    """One request on the served worker, from `go` to its `done` event (or the worker's end)."""

    owner: ServedWorker
    live: _Live
    run: Launch
    workdir: Path
    argv: list[str]

    def finish(
        self, timeout: float | None, on_progress: Callable[[float, float], None] | None
    ) -> tuple[Attempt, dict[str, Any] | None]:
        from pipeline.asr.isolation import _finish, judge

        live, run = self.live, self.run
        first = live.served == 1  # its load is this attempt's: it counts from the spawn, as a warm start's does
        watch = Watch(run.started, phase="load" if first else "transcribe")
        live.stderr.tail.clear()
        live.stderr.log_path = run.log_path
        assert live.process.proc.stdin is not None
        with contextlib.suppress(OSError):  # a worker gone already is found out below
            live.process.proc.stdin.write(serve_line(run.result_path.with_name("request.json"), run.result_path))
            live.process.proc.stdin.flush()
        go_at = time.monotonic()
        deadline = time.monotonic() + timeout if timeout else None
        ended = timed_out = False
        refused: dict[str, Any] | None = None
        try:
            while not (ended or refused):
                try:
                    item = live.events.get(timeout=0.1)
                except queue.Empty:
                    item = None
                    if live.process.exited():
                        break
                if item is not None and (read := read_event(item[1])) is not None:
                    live.peak_mb = hwm_mb(live.pid) or live.peak_mb
                    ended, refused = read[0] is Event.DONE, read[1] if read[0] is Event.REFUSED else None
                    if watch.feed(*item, on_progress) and timeout:
                        deadline = time.monotonic() + timeout
                if deadline is not None and time.monotonic() > deadline:
                    timed_out = True
                    break
        except BaseException:  # Ctrl-C, an exception from on_progress: the worker's state is unknown
            self.owner._lost(live)
            raise
        finally:
            live.stderr.log_path = live.home / "worker.log"
        wall_s = round(time.monotonic() - watch.started, 3)
        ahead = go_at if first else None
        if refused is not None:  # the worker cannot take it: an ordinary worker runs it, in the same attempt folder
            if refused.get("final"):  # its backend serves no request: never start one for these load fields again
                self.owner._refused.add(live.key)
            self.owner._stop(live)
            log(run.log_path, f"== asr attempt 1: served worker refused it ({refused.get('reason')}); run ordinarily")
            ordinary = launch(1, run.request, self.workdir, run.log_path, self.argv, wait=False)
            return _finish(ordinary, timeout, on_progress)
        if ended:
            return judge(
                run, None, live.peak_mb, "", watch, timed_out=False, timeout=timeout, wall_s=wall_s, go_at=ahead
            )
        code, peak, tail = self.owner._lost(live)
        return judge(run, code, peak, tail, watch, timed_out=timed_out, timeout=timeout, wall_s=wall_s, go_at=ahead)
