"""The diarization worker: `python -m pipeline.speakers.worker REQUEST.json RESULT.json`.

It runs sherpa-onnx's offline speaker diarization (pyannote segmentation, then CAM++ embeddings clustered) on the
job's audio, one chunk per child process (`--chunk`, in the worker's process group), links the chunks' speakers and
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

# sherpa-onnx drops turns shorter than this, and bridges pauses shorter than that, within a speaker (its defaults)
MIN_DURATION_ON = 0.3
MIN_DURATION_OFF = 0.5
# sherpa-onnx steps the 10 s segmentation window by this share of it (pyannote's own: 0.1). Every step embeds each
# local speaker again; 0.3 costs a third and widens the thresholds that count right (benchmarks/README.md).
WINDOW_SHIFT = 0.3
# A speaker's voice in a chunk, to link it to the same voice in other chunks: pieces of its longest turns.
EMBED_SECONDS = 10.0  # the diarizer's own window
EMBED_PIECES = 3


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


def _configs(request: DiarizationRequest, clusters: int) -> tuple[Any, Any]:
    import sherpa_onnx

    threads = request.threads or 1  # onnxruntime's second thread cost more than it gave (benchmarks/README.md)
    embedding = sherpa_onnx.SpeakerEmbeddingExtractorConfig(model=request.embedding, num_threads=threads)
    pyannote = sherpa_onnx.OfflineSpeakerSegmentationPyannoteModelConfig(
        model=request.segmentation, window_shift_ratio=WINDOW_SHIFT
    )
    config = sherpa_onnx.OfflineSpeakerDiarizationConfig(
        segmentation=sherpa_onnx.OfflineSpeakerSegmentationModelConfig(pyannote=pyannote, num_threads=threads),
        embedding=embedding,
        clustering=sherpa_onnx.FastClusteringConfig(num_clusters=clusters, threshold=request.threshold),
        min_duration_on=MIN_DURATION_ON,
        min_duration_off=MIN_DURATION_OFF,
    )
    if not config.validate():
        raise SystemExit(f"sherpa-onnx refused the diarization models {request.segmentation}, {request.embedding}")
    return config, embedding


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


def diarize_chunk(request: DiarizationRequest, first: int, length: int, count: int, emit: IO[str] | None = None) -> Raw:
    """sherpa-onnx's diarization of one chunk, its turns in seconds from the chunk's start. A file in one chunk
    is clustered into the known count, or again into the nearest bound when the threshold found one outside
    [min_speakers, max_speakers]; the speakers of several chunks are linked later (`_link`)."""
    import numpy as np
    import sherpa_onnx

    with wave.open(request.audio, "rb") as wav:  # only this chunk's samples, with no copy to spare
        wav.setpos(first)
        samples = np.frombuffer(wav.readframes(length), dtype="<i2").astype(np.float32) / 32768.0
        total = wav.getnframes() / audio.SAMPLE_RATE
    offset, duration = first / audio.SAMPLE_RATE, length / audio.SAMPLE_RATE

    def callback(done: int, windows: int) -> int:
        at = offset + duration * done / max(windows, 1)
        if emit is not None:
            emit.write(json.dumps({"event": "progress", "done": round(at, 1), "total": round(total, 1)}) + "\n")
        return 0  # go on

    config, _ = _configs(request, (request.num_speakers or -1) if count == 1 else -1)
    result = sherpa_onnx.OfflineSpeakerDiarization(config).process(samples, callback=callback)
    turns = [(float(s.start), float(s.end), int(s.speaker)) for s in result.sort_by_start_time()]
    if count == 1 and (clusters := _bounded(request, len({t[2] for t in turns}))) is not None:
        config, _ = _configs(request, clusters)
        result = sherpa_onnx.OfflineSpeakerDiarization(config).process(samples)
        turns = [(float(s.start), float(s.end), int(s.speaker)) for s in result.sort_by_start_time()]
    return turns


def diarize(request: DiarizationRequest, workdir: Path, emit: IO[str] | None = None) -> Raw:
    """Raw turns (start, end, cluster) of the whole audio.

    Each chunk (`chunk_seconds`) is diarized by a fresh worker process of its own (`--chunk`), which writes its
    turns to `workdir/chunks/` and exits: onnxruntime and glibc keep the buffers a process ever grew, so only a
    new process per chunk keeps the peak flat whatever the media's length, and a resumed stage redoes only the
    chunks it has not finished. The chunks' speakers are then linked by their voices (`_link`)."""
    bounds = _chunks(request)
    folder = workdir / "chunks"
    folder.mkdir(parents=True, exist_ok=True)
    request_path = workdir / "request.json"
    done: list[Raw] = []
    for index, (first, length) in enumerate(bounds):
        path = folder / f"{index:04d}.json"
        if not path.is_file():  # not finished by an earlier worker of this request
            _run_chunk(request_path, (first, length), index, len(bounds), path, emit)
        local = json.loads(path.read_text(encoding="utf-8"))["turns"]
        offset = first / audio.SAMPLE_RATE
        done.append([(float(a) + offset, float(b) + offset, int(c)) for a, b, c in local])
    if len(done) <= 1:
        return done[0] if done else []
    return _link(request, done)


def _run_chunk(
    request_path: Path, bounds: tuple[int, int], index: int, count: int, path: Path, emit: IO[str] | None
) -> None:
    argv = [sys.executable, "-m", "pipeline.speakers.worker", "--chunk", str(request_path), *map(str, bounds)]
    argv += [str(count), str(path)]
    # Its progress lines go straight to our parent; its stdin is its lifeline to us (same process group).
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=emit or subprocess.DEVNULL) as child:
        code = child.wait()
    if code != 0 or not path.is_file():
        raise SystemExit(f"the worker of chunk {index + 1} of {count} failed (exit code {code})")


def _voice(extractor: Any, wav: wave.Wave_read, pieces: Raw) -> Any:
    """One voice: the mean of CAM++ embeddings of a speaker's longest turns, each at most EMBED_SECONDS long
    (onnxruntime keeps buffers sized for the longest input it has seen) and read from the file as needed."""
    import numpy as np

    total = np.zeros(extractor.dim, dtype=np.float32)
    for start, end, _ in pieces:
        length = min(end - start, EMBED_SECONDS)
        wav.setpos(int((start + (end - start - length) / 2) * audio.SAMPLE_RATE))
        samples = np.frombuffer(wav.readframes(int(length * audio.SAMPLE_RATE)), dtype="<i2")
        stream = extractor.create_stream()
        stream.accept_waveform(audio.SAMPLE_RATE, samples.astype(np.float32) / 32768.0)
        stream.input_finished()
        vector = np.asarray(extractor.compute(stream), dtype=np.float32)
        total += vector / (np.linalg.norm(vector) or 1.0)
    return total / (np.linalg.norm(total) or 1.0)


def _link(request: DiarizationRequest, chunks: list[Raw]) -> Raw:
    """The chunks' speakers clustered into the file's by their voices (EMBED_PIECES pieces of each one's longest
    turns in its chunk): by the threshold, or into the known or bounded count."""
    import numpy as np
    import sherpa_onnx

    _, embedding_config = _configs(request, -1)
    extractor = sherpa_onnx.SpeakerEmbeddingExtractor(embedding_config)
    voices: list[Any] = []
    turns: Raw = []
    with wave.open(request.audio, "rb") as wav:
        for local in chunks:
            number = {}
            for speaker in sorted({t[2] for t in local}):
                longest = sorted((t for t in local if t[2] == speaker), key=lambda t: t[0] - t[1])
                number[speaker] = len(voices)
                voices.append(_voice(extractor, wav, longest[:EMBED_PIECES]))
            turns += [(start, end, number[who]) for start, end, who in local]
    if not voices:
        return turns
    matrix = np.stack(voices).astype(np.float32)

    def cluster(count: int) -> list[int]:
        if len(voices) == 1:
            return [0]
        config = sherpa_onnx.FastClusteringConfig(num_clusters=min(count, len(voices)), threshold=request.threshold)
        return list(sherpa_onnx.FastClustering(config)(matrix))

    labels = cluster(-1 if not request.num_speakers else request.num_speakers)
    if not request.num_speakers and (count := _bounded(request, len(set(labels)))) is not None:
        labels = cluster(count)
    return [(start, end, int(labels[who])) for start, end, who in turns]


def main(argv: list[str]) -> None:
    _lifeline()
    emit = _events()
    if argv[0] == "--chunk":  # one chunk, in a process of its own: REQUEST FIRST_SAMPLE SAMPLES CHUNKS OUT
        request = DiarizationRequest(**json.loads(Path(argv[1]).read_bytes()))
        turns = diarize_chunk(request, int(argv[2]), int(argv[3]), int(argv[4]), emit)
        atomic.write_text(Path(argv[5]), json.dumps({"turns": turns}))
        return
    request_path, result_path = Path(argv[0]), Path(argv[1])
    request = DiarizationRequest(**json.loads(request_path.read_bytes()))
    turns = diarize(request, request_path.parent, emit)
    own, chunks = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    usage, children = own.ru_maxrss, chunks.ru_maxrss  # the largest chunk worker's
    cpu = own.ru_utime + own.ru_stime + chunks.ru_utime + chunks.ru_stime
    versions = {}
    for dist in ("sherpa-onnx", "onnxruntime"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    peak = round(max(usage, children) / 1024, 1)
    payload = {"turns": turns, "peak_rss_mb": peak, "cpu_s": round(cpu, 2), "versions": versions}
    atomic.write_text(result_path, json.dumps(payload))  # complete or absent: the parent may salvage it
    emit.write(json.dumps({"event": "done"}) + "\n")
    emit.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the lifeline thread blocked in stdin would make the interpreter's shutdown abort
