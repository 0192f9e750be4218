"""The ASR worker process: load one backend, transcribe one file, write the result, exit without teardown.

    python -m pipeline.asr.worker [--wait] REQUEST_JSON RESULT_JSON
    python -m pipeline.asr.worker --serve LOAD_REQUEST_JSON

With --serve it stays loaded and transcribes one request per `go` line of its stdin (`serve`; the parent's side is
`pipeline.asr.served`).

Our stdin is a pipe the parent holds open for our whole life: at its end (the parent was killed with -9, hung
up, crashed) a watch thread kills our process group at once, so that no worker outlives its pipeline, burning
the CPU until its next progress write fails or transcribing beside the worker of a resumed run. With --wait the
worker is started ahead of its audio (`isolation.WarmStart`): it loads the model, then waits for a line "go" on
stdin before it reads the audio.

The parent (`pipeline.asr.isolation`) reads our events on stdout (`pipeline.asr.protocol`) and everything else
from the log our stderr is appended to.

Order is what makes lost work impossible: the result is written atomically and fsynced, then its marker
(`protocol.pin`) pins its sha256 and size, and only then may anything crash. After the marker we leave
with `os._exit`, skipping interpreter teardown entirely (model destructors, atexit handlers, native thread
pools), because teardown is where MLX segfaulted and nothing is left in this process worth tearing down.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import queue
import resource
import shutil
import signal
import stat
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

from pipeline import atomic, audio
from pipeline.asr import AsrRequest, Backend, Segment, Transcript, guards, load_backend_class
from pipeline.asr.protocol import (
    Event,
    event_line,
    hwm_mb,
    load_key,
    marker_path,
    peak_rss_mb,
    pin,
    read_serve_line,
    reset_hwm,
)
from pipeline.asr.speech import SpeechRegions
from pipeline.versions import library_versions


class Hooks:
    """Where tests/faults injects real crashes. Production passes none: no switch exists to turn them on."""

    def after_load(self) -> None: ...

    def after_chunk(self, index: int) -> None: ...

    def before_result_write(self, result: Path, payload: bytes) -> None: ...

    def after_result_before_marker(self, result: Path) -> None: ...

    def after_marker(self, result: Path) -> None: ...


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_TRIM_THRESHOLD = 512 * 1024 * 1024  # free() keeps this much at the heap top; _release_heap trims per chunk


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL("libc.so.6")


def _tune_heap() -> None:
    """One malloc arena and no mmap'd blocks, for backends that ask (`tune_heap`), before the backend loads its
    model and starts its threads. A no-op where the C library is not glibc (macOS, musl). The figures behind
    both are in benchmarks/README.md (memory, page faults).

    - No mmap: CTranslate2's largest buffers (the encoder's attention scores, 8 heads x 1500 x 1500 floats per
      30 s window) are above any mmap threshold, so glibc would map them fresh for every layer and unmap them
      on free, page-faulting all the time; kept on the heap, they are reused, for less CPU and a higher but
      flat peak. glibc still maps a block when the heap cannot grow, so no allocation fails for this.
    - One arena: CTranslate2's and onnxruntime's threads would otherwise each keep an arena of fragments of
      the last chunk's buffers, and the peak would creep with the media's length; with one arena and a trim
      per chunk it is flat.
    whisperx does not ask: torch's intra-op threads allocate all the time and would queue on one arena."""
    with contextlib.suppress(OSError, AttributeError):
        libc = _libc()
        libc.mallopt(_M_ARENA_MAX, 1)
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


def _release_heap() -> None:
    """Hand freed chunk buffers back to the OS between chunks (glibc's malloc_trim also returns free pages
    inside the heap, not only at its top)."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().malloc_trim(0)


def _fsync_dir(path: Path) -> None:
    # os.replace is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Events:
    """The protocol channel: a private copy of the original stdout, so library prints cannot corrupt it."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, event: Event, **fields: Any) -> None:
        # `at`: when it happened, on the clock the parent reads too (CLOCK_MONOTONIC is system-wide), so a
        # parent that reads the line late (a warm worker's events wait unread; a loaded machine) still times it.
        self.stream.write(event_line(event, at=time.monotonic(), **fields))
        self.stream.flush()


def _protocol_stream() -> IO[str]:
    # Keep fd 1 for ourselves and point fd 1 (and sys.stdout) at the log: whisperx and friends print.
    events = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return events


_OWN_FOLDERS: list[Path] = []  # a served worker's folder (`serve`): removed when its parent is gone


def _die_with_group() -> None:
    """SIGKILL our process group (we lead it: the parent starts us in our own session), ourselves included."""
    for folder in _OWN_FOLDERS:  # nobody else will: our parent is gone
        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        if os.getpgid(0) == os.getpid():  # run by hand from a shell, the group would be the shell's job
            os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _watch_parent(go: threading.Event, lines: queue.Queue[bytes]) -> None:
    """Read our stdin, the parent's lifeline: "go" starts a waiting worker, a served worker's requests come as
    lines (`serve`); its end means the parent is gone.

    A pipe, not Linux's PR_SET_PDEATHSIG: that fires when the parent's *thread* that spawned us exits, and the
    pipeline spawns workers from threads."""
    with contextlib.suppress(OSError, ValueError):
        for line in sys.stdin.buffer:
            if line.strip() == b"go":
                go.set()
            lines.put(line)
    _die_with_group()


def _lifeline(lines: queue.Queue[bytes] | None = None) -> threading.Event:
    """Watch our stdin when it is a pipe, as the pipeline starts us; run by hand (a terminal, /dev/null), there is
    no parent to outlive, and "go" is then never needed: --wait is the pipeline's."""
    go = threading.Event()
    try:
        piped = stat.S_ISFIFO(os.fstat(0).st_mode)
    except OSError:
        piped = False
    if piped:
        watch = (go, lines if lines is not None else queue.Queue())
        threading.Thread(target=_watch_parent, args=watch, name="parent-watch", daemon=True).start()
    else:
        go.set()
    return go


def _load(request: AsrRequest, started: float, emit: _Events) -> tuple[Backend, float]:
    backend_class = load_backend_class(request.backend)
    if getattr(backend_class, "tune_heap", False):
        _tune_heap()
    backend = backend_class(request)
    load_s = round(time.monotonic() - started, 3)
    emit(Event.LOADED, load_s=load_s)
    return backend, load_s


def run(
    request_path: Path,
    result_path: Path,
    hooks: Hooks,
    emit: _Events,
    *,
    go: threading.Event | None = None,
) -> None:
    started = time.monotonic()
    request_bytes = request_path.read_bytes()
    request = AsrRequest(**json.loads(request_bytes))
    emit(Event.START, pid=os.getpid())
    backend, load_s = _load(request, started, emit)
    hooks.after_load()
    if go is not None:  # started ahead of its audio: wait until it is ready (or the watch kills us)
        go.wait()
    _transcribe(backend, request, request_bytes, result_path, hooks, emit, started=started, load_s=load_s)


def _transcribe(
    backend: Backend,
    request: AsrRequest,
    request_bytes: bytes,
    result_path: Path,
    hooks: Hooks,
    emit: _Events,
    *,
    started: float,
    load_s: float,
    served: int = 0,
) -> None:
    """Transcribe `request`'s audio with the loaded `backend`; write the result, then its marker."""
    total = audio.duration(request.audio)

    segments: list[Segment] = []
    done = 0.0
    # Cues of every language are timed against the spoken audio's speech: found once, as the source is read.
    speech = SpeechRegions() if request.task == "transcribe" else None

    def fed(chunks: Iterator[audio.Chunk]) -> Iterator[audio.Chunk]:
        # The backend asks for the next chunk once it is done with this one's samples.
        for index, chunk in enumerate(chunks):
            if speech is not None:
                speech.add(chunk)
            yield chunk
            _release_heap()
            emit(Event.PROGRESS, done=done, total=total)  # a heartbeat: VAD and reading count as activity
            hooks.after_chunk(index)

    chunk_seconds = min(request.chunk_seconds, backend.max_chunk_seconds or request.chunk_seconds)
    for segment in backend.transcribe_chunks(fed(audio.chunks(request.audio, chunk_seconds))):
        segments.append(segment)
        done = max(done, round(min(segment.end, total), 3))
        emit(Event.PROGRESS, done=done, total=total)
    emit(Event.PROGRESS, done=total, total=total)
    language = request.language or backend.detected_language()
    limits = guards.Limits(
        no_speech_threshold=request.no_speech_threshold,
        log_prob_threshold=request.log_prob_threshold,
        compression_ratio_threshold=request.compression_ratio_threshold,
        repetition_filter=request.repetition_filter,
    )
    filtered = guards.filter_segments(segments, limits)

    transcript = Transcript(
        language=language or "",
        segments=filtered.kept,
        duration=total,
        task=request.task,
        backend=request.backend,
        removed=filtered.removed,
        speech=tuple(speech.regions) if speech is not None else (),
    )
    worker = {
        "backend": request.backend,
        # What the backend actually ran on (it may settle "auto" or fall back): it says so via attributes.
        "device": str(getattr(backend, "device", request.device)),
        "compute_type": str(getattr(backend, "compute_type", request.compute_type)),
        "model_dir": request.model_dir,
        "versions": library_versions(imported_only=True),
        "chunk_seconds": chunk_seconds,
        "load_s": load_s,
        "wall_s": round(time.monotonic() - started, 3),
        "peak_rss_mb": peak_rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        "pid": os.getpid(),
    }
    if served:  # this request's number in its served worker; its peak since the request began (`serve`)
        worker |= {"served": served, "peak_rss_mb": hwm_mb(os.getpid()) or worker["peak_rss_mb"]}
    document = {"transcript": transcript.to_dict(), "worker": worker}
    payload = (json.dumps(document, ensure_ascii=False) + "\n").encode()
    emit(Event.WRITING)
    hooks.before_result_write(result_path, payload)
    with atomic.atomic_open(result_path, "wb") as handle:
        handle.write(payload)
    _fsync_dir(result_path.parent)
    hooks.after_result_before_marker(result_path)
    marker = pin(payload, request_bytes)
    atomic.write_json(marker_path(result_path), marker)
    _fsync_dir(result_path.parent)
    emit(Event.RESULT, path=str(result_path), **marker)
    hooks.after_marker(result_path)


def serve(load_path: Path, hooks: Hooks, emit: _Events, lines: queue.Queue[bytes]) -> None:
    """A served worker: load once for `load_path`'s request (in a folder of its own: we remove it if the parent
    dies), then run each `go [REQUEST, RESULT]` line of our
    stdin as `run` would (result, then marker), ending each with a `done` event. A request whose load fields
    differ from ours is refused (the parent starts an ordinary worker for it), and so is every request when the
    backend cannot take another request on its loaded model (no `rebind`): then we say so and exit before
    loading. An exception in a request ends the worker as it ends an ordinary one: its state is not trusted."""
    started = time.monotonic()
    _OWN_FOLDERS.append(load_path.parent)
    loaded = AsrRequest(**json.loads(load_path.read_bytes()))
    emit(Event.START, pid=os.getpid())
    if not hasattr(load_backend_class(loaded.backend), "rebind"):
        emit(Event.REFUSED, reason=f"the {loaded.backend} backend cannot serve several requests", final=True)
        return
    backend, load_s = _load(loaded, started, emit)
    hooks.after_load()
    served = 0
    while True:
        paths = read_serve_line(lines.get())
        if paths is None:
            continue
        request_bytes = paths[0].read_bytes()
        request = AsrRequest(**json.loads(request_bytes))
        if load_key(request) != load_key(loaded):
            emit(Event.REFUSED, reason="the request's load fields differ from this worker's")
            continue
        served += 1
        reset_hwm()  # this request's peak, not the worker's whole life's
        begun = time.monotonic()
        backend.rebind(request)  # type: ignore[attr-defined]
        _transcribe(backend, request, request_bytes, paths[1], hooks, emit, started=begun, load_s=load_s, served=served)
        emit(Event.DONE, served=served, peak_rss_mb=hwm_mb(os.getpid()))


def main(argv: Sequence[str] | None = None, hooks: Hooks | None = None) -> NoReturn:
    args = list(sys.argv[1:] if argv is None else argv)
    mode = args[0] if args[:1] in (["--wait"], ["--serve"]) else None
    if mode:
        args = args[1:]
    if len(args) != (1 if mode == "--serve" else 2):
        sys.stderr.write(
            "usage: python -m pipeline.asr.worker [--wait] REQUEST_JSON RESULT_JSON\n"
            "       python -m pipeline.asr.worker --serve LOAD_REQUEST_JSON\n"
        )
        os._exit(2)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    # On a timeout the parent sends SIGTERM: dump every thread's stack to the log (where did it hang?), die.
    faulthandler.register(signal.SIGTERM, file=sys.stderr, all_threads=True, chain=True)
    lines: queue.Queue[bytes] = queue.Queue()
    go = _lifeline(lines)
    emit = _Events(_protocol_stream())
    code = 0
    try:
        if mode == "--serve":
            serve(Path(args[0]), hooks or Hooks(), emit, lines)
        else:
            run(Path(args[0]), Path(args[1]), hooks or Hooks(), emit, go=go if mode else None)
    except BaseException as exc:  # the parent reads our last stderr line as the reason
        traceback.print_exc()
        sys.stderr.write(f"{type(exc).__name__}: {' '.join(str(exc).split())}\n")
        code = 1
    sys.stderr.flush()
    emit.stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
