"""The diarization worker: `python -m pipeline.speakers.worker REQUEST.json RESULT.json`.

It diarizes the job's audio (`pipeline.speakers.diarizer`: pyannote segmentation, CAM++ voices, sherpa-onnx's
clustering), one chunk per child process (`--chunk`, in the worker's process group), links the chunks' speakers and
writes the raw turns atomically before it exits. Progress goes to stdout as JSON lines; its stdin
is the parent's lifeline (at its end the worker stops, whatever it was doing); everything else goes to stderr,
which the parent copies into the job log.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import resource
import selectors
import signal
import stat
import subprocess
import sys
import threading
import wave
from pathlib import Path
from typing import IO, Any

from pipeline import atomic, audio
from pipeline.speakers import DiarizationRequest
from pipeline.speakers.diarizer import Cluster, Diarizer, Piece, assign

# A chunk speaker's longest pieces of speech alone that go with it to link it to other chunks' speakers.
LINK_PIECES = 5


def _lifeline() -> None:
    """At the end of stdin (the parent died or gave up on us), kill our process group: nothing outlives it."""

    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            for _ in sys.stdin.buffer:
                pass
        with contextlib.suppress(OSError):
            if os.getpgid(0) == os.getpid():
                os.killpg(0, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.fstat(0).st_mode):  # run by hand there is no parent to outlive
            threading.Thread(target=watch, name="lifeline", daemon=True).start()


def _events() -> IO[str]:
    # fd 1 is ours for progress lines; the libraries' own prints go to stderr (the job log).
    stream = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    return stream


def _cluster(threshold: float) -> Cluster:
    """sherpa-onnx's agglomerative clustering of unit voices: into `count`, or by the cosine-distance threshold."""
    import sherpa_onnx

    def cluster(voices: Any, count: int) -> list[int]:
        config = sherpa_onnx.FastClusteringConfig(num_clusters=min(count, len(voices)), threshold=threshold)
        return [int(x) for x in sherpa_onnx.FastClustering(config)(voices)]

    return cluster


Raw = list[tuple[float, float, int]]


def _bounded(request: DiarizationRequest, found: int) -> int | None:
    """The count to cluster into: the known one, or the nearest bound when the threshold found one outside."""
    if request.num_speakers:
        return request.num_speakers if found != request.num_speakers else None
    wanted = min(max(found, request.min_speakers), request.max_speakers)
    return wanted if found and wanted != found else None


def _chunks(request: DiarizationRequest) -> list[tuple[int, int]]:
    """(first sample, samples) of each chunk the audio is diarized in (audio.chunks cuts them in quiet frames)."""
    return [
        (round(c.offset * audio.SAMPLE_RATE), len(c.samples))
        for c in audio.chunks(request.audio, request.chunk_seconds)
    ]


def diarize_chunk(
    request: DiarizationRequest, first: int, length: int, count: int, emit: IO[str] | None = None
) -> dict[str, Any]:
    """One chunk's turns in seconds from its start, and each of its speakers' longest pieces (seconds, voice) to
    link them to the other chunks' speakers (`_link`). A file in one chunk is told apart into the known count, or
    into the nearest bound when the threshold found a count outside [min_speakers, max_speakers]."""
    import numpy as np

    with wave.open(request.audio, "rb") as wav:  # only this chunk's samples, with no copy to spare
        wav.setpos(first)
        samples = np.frombuffer(wav.readframes(length), dtype="<i2").astype(np.float32) / 32768.0
        total = wav.getnframes() / audio.SAMPLE_RATE
    offset, duration = first / audio.SAMPLE_RATE, length / audio.SAMPLE_RATE

    def progress(done: int, windows: int) -> None:
        if emit is not None:
            at = offset + duration * done / max(windows, 1)
            emit.write(json.dumps({"event": "progress", "done": round(at, 1), "total": round(total, 1)}) + "\n")

    diarizer = Diarizer(request.segmentation, request.embedding, request.threads or 1)
    analysis = diarizer.analyse(samples, progress)
    cluster = _cluster(request.threshold)
    turns, pieces = analysis.speakers(cluster, request.threshold, (request.num_speakers or -1) if count == 1 else -1)
    if count == 1 and (clusters := _bounded(request, len(pieces))) is not None:
        turns, pieces = analysis.speakers(cluster, request.threshold, clusters)
    kept = [sorted(own, key=lambda p: -p.seconds)[:LINK_PIECES] for own in pieces]
    voices = [[[p.seconds, [round(float(x), 6) for x in p.voice]] for p in own] for own in kept]
    return {"turns": turns, "voices": voices}


def diarize(request: DiarizationRequest, workdir: Path, emit: IO[str] | None = None) -> tuple[Raw, float]:
    """Raw turns (start, end, cluster) of the whole audio, and the highest RSS sum (MB) of this worker and the chunk
    processes it ran at once.

    Each chunk (`chunk_seconds`) is diarized by a fresh worker process of its own (`--chunk`), which writes its
    turns to `workdir/chunks/` and exits: onnxruntime and glibc keep the buffers a process ever grew, so only a
    new process per chunk keeps the peak flat whatever the media's length, and a resumed stage redoes only the
    chunks it has not finished. As many run at once as this process may use cores, each with one onnxruntime
    thread, so the peak is bounded by cores x chunk. The chunks' speakers are then linked by their voices."""
    bounds = _chunks(request)
    folder = workdir / "chunks"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{index:04d}.json" for index in range(len(bounds))]
    todo = [index for index, path in enumerate(paths) if not _finished(path)]  # not finished by an earlier worker
    peak = _Chunks(workdir / "request.json", bounds, paths, emit).run(todo, len(os.sched_getaffinity(0)))
    done: list[Raw] = []
    voices: list[list[Any]] = []
    for (first, _), path in zip(bounds, paths, strict=True):
        local = json.loads(path.read_text(encoding="utf-8"))
        offset = first / audio.SAMPLE_RATE
        done.append([(float(a) + offset, float(b) + offset, int(c)) for a, b, c in local["turns"]])
        voices.append(local["voices"])
    if len(done) <= 1:
        return (done[0] if done else []), peak
    return _link(request, done, voices), peak


class _Chunks:
    """Chunk processes side by side, at most `slots` at once; their progress summed into ours; the highest RSS sum
    of this process and them. A chunk that fails stops its siblings (killed and reaped: nothing outlives us) and
    the worker, as one failed chunk always did; the chunks finished before it stay for a resumed stage."""

    def __init__(
        self, request_path: Path, bounds: list[tuple[int, int]], paths: list[Path], emit: IO[str] | None
    ) -> None:
        self.request_path, self.bounds, self.paths, self.emit = request_path, bounds, paths, emit
        self.seconds = {i: length / audio.SAMPLE_RATE for i, (_, length) in enumerate(bounds)}  # done per chunk
        self.total = sum(self.seconds.values())
        self.peak = 0.0

    def _start(self, index: int) -> subprocess.Popen[bytes]:
        first, length = self.bounds[index]
        argv = [sys.executable, "-m", "pipeline.speakers.worker", "--chunk", str(self.request_path)]
        argv += [str(first), str(length), str(len(self.bounds)), str(self.paths[index])]
        self.seconds[index] = 0.0
        # In our process group; its stdin is its lifeline to us, its progress lines come to us.
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _progress(self, index: int, line: bytes) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            at = float(json.loads(line)["done"]) - self.bounds[index][0] / audio.SAMPLE_RATE
            self.seconds[index] = max(self.seconds[index], at)
            if self.emit is not None:
                done = round(min(sum(self.seconds.values()), self.total), 1)
                self.emit.write(json.dumps({"event": "progress", "done": done, "total": round(self.total, 1)}) + "\n")

    def _sample(self, running: dict[int, subprocess.Popen[bytes]]) -> None:
        import psutil

        total = 0
        for pid in [os.getpid(), *(child.pid for child in running.values())]:
            with contextlib.suppress(psutil.Error):  # exited between the listing and the reading
                total += psutil.Process(pid).memory_info().rss
        self.peak = max(self.peak, total / 2**20)

    def run(self, todo: list[int], slots: int) -> float:
        running: dict[int, subprocess.Popen[bytes]] = {}
        reading: set[int] = set()  # those whose stdout is still open
        todo = list(todo)
        try:
            with selectors.DefaultSelector() as waiting:
                while todo or running:
                    while todo and len(running) < max(slots, 1):
                        index = todo.pop(0)
                        running[index] = child = self._start(index)
                        assert child.stdout is not None
                        waiting.register(child.stdout, selectors.EVENT_READ, index)
                        reading.add(index)
                    for key, _ in waiting.select(timeout=0.25):
                        line = key.fileobj.readline()  # type: ignore[union-attr]
                        if line:
                            self._progress(key.data, line)
                        else:  # its stdout closed: it is exiting
                            waiting.unregister(key.fileobj)
                            reading.discard(key.data)
                    self._sample(running)
                    for index, child in list(running.items()):
                        if index in reading or child.poll() is None:
                            continue
                        del running[index]
                        self._close(child)
                        if child.returncode != 0 or not self.paths[index].is_file():
                            raise SystemExit(
                                f"the worker of chunk {index + 1} of {len(self.bounds)} failed"
                                f" (exit code {child.returncode})"
                            )
        finally:
            for child in running.values():  # a sibling failed, or we are stopping: no chunk process outlives us
                with contextlib.suppress(OSError):
                    child.kill()
                child.wait()
                self._close(child)
        return self.peak

    @staticmethod
    def _close(child: subprocess.Popen[bytes]) -> None:
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _finished(path: Path) -> bool:
    """A chunk's turns and voices, as this version writes them (an older one's, without voices, is redone)."""
    try:
        return "voices" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _link(request: DiarizationRequest, chunks: list[Raw], voices: list[list[Any]]) -> Raw:
    """The chunks' speakers told apart as the file's, by their pieces' voices (the same clustering as within a
    chunk, each chunk speaker an owner of its pieces): by the threshold, or into the known or bounded count."""
    import numpy as np

    pieces: list[Piece] = []
    number: list[dict[int, int]] = []  # chunk, its speaker -> owner
    owners = 0
    for local, own in zip(chunks, voices, strict=True):
        number.append({})
        for speaker in sorted({t[2] for t in local}):
            number[-1][speaker] = owners
            for seconds, voice in own[speaker] if speaker < len(own) else []:
                pieces.append(Piece(owners, float(seconds), np.asarray(voice, dtype=np.float32)))
            owners += 1
    cluster = _cluster(request.threshold)
    labels = assign(pieces, owners, cluster, request.num_speakers or -1)
    if not request.num_speakers and (count := _bounded(request, len(set(labels) - {-1}))) is not None:
        labels = assign(pieces, owners, cluster, count)
    labels = [label if label >= 0 else 0 for label in labels]  # a chunk speaker with no voice: the first speaker
    return [(a, b, labels[number[k][who]]) for k, local in enumerate(chunks) for a, b, who in local]


def main(argv: list[str]) -> None:
    _lifeline()
    emit = _events()
    if argv[0] == "--chunk":  # one chunk, in a process of its own: REQUEST FIRST_SAMPLE SAMPLES CHUNKS OUT
        request = DiarizationRequest(**json.loads(Path(argv[1]).read_bytes()))
        result = diarize_chunk(request, int(argv[2]), int(argv[3]), int(argv[4]), emit)
        atomic.write_text(Path(argv[5]), json.dumps(result))
        return
    request_path, result_path = Path(argv[0]), Path(argv[1])
    request = DiarizationRequest(**json.loads(request_path.read_bytes()))
    turns, together = diarize(request, request_path.parent, emit)
    own, chunks = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    usage, children = own.ru_maxrss, chunks.ru_maxrss  # the kernel's: the largest single chunk process's
    cpu = own.ru_utime + own.ru_stime + chunks.ru_utime + chunks.ru_stime
    versions = {}
    for dist in ("sherpa-onnx", "onnxruntime"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    peak = round(max(usage / 1024, children / 1024, together), 1)  # together: the chunk processes side by side
    payload = {"turns": turns, "peak_rss_mb": peak, "cpu_s": round(cpu, 2), "versions": versions}
    atomic.write_text(result_path, json.dumps(payload))  # complete or absent: the parent may salvage it
    emit.write(json.dumps({"event": "done"}) + "\n")
    emit.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the lifeline thread blocked in stdin would make the interpreter's shutdown abort
