"""The diarization worker: `python -m pipeline.speakers.worker REQUEST.json RESULT.json`.

It runs sherpa-onnx's offline speaker diarization (pyannote segmentation, then CAM++ embeddings clustered) on the
job's audio and writes the raw turns atomically before it exits. Progress goes to stdout as JSON lines; its stdin
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
import sys
import threading
from pathlib import Path
from typing import IO, Any

from pipeline import atomic, audio
from pipeline.speakers import DiarizationRequest

# sherpa-onnx drops turns shorter than this, and bridges pauses shorter than that, within a speaker (its defaults)
MIN_DURATION_ON = 0.3
MIN_DURATION_OFF = 0.5
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

    threads = request.threads or os.cpu_count() or 1
    embedding = sherpa_onnx.SpeakerEmbeddingExtractorConfig(model=request.embedding, num_threads=threads)
    config = sherpa_onnx.OfflineSpeakerDiarizationConfig(
        segmentation=sherpa_onnx.OfflineSpeakerSegmentationModelConfig(
            pyannote=sherpa_onnx.OfflineSpeakerSegmentationPyannoteModelConfig(model=request.segmentation),
            num_threads=threads,
        ),
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


def diarize(request: DiarizationRequest, emit: IO[str] | None = None) -> Raw:
    """Raw turns (start, end, cluster) of the whole audio.

    The audio is read and diarized one chunk (`chunk_seconds`, cut in a quiet frame) at a time, so memory does
    not grow with the media's length. Each chunk's speakers get one embedding each (CAM++ over their turns), and
    those are clustered across chunks into the file's speakers. One chunk is sherpa-onnx's diarization as is,
    run again into the nearest count when its threshold found one outside [min_speakers, max_speakers]."""
    import sherpa_onnx

    total = audio.duration(request.audio)

    def progress(at: float) -> None:
        if emit is not None:
            emit.write(json.dumps({"event": "progress", "done": round(at, 1), "total": round(total, 1)}) + "\n")

    one_chunk = total <= 1.5 * max(request.chunk_seconds, 20.0)  # audio.chunks keeps such a file whole
    config, embedding_config = _configs(request, (request.num_speakers or -1) if one_chunk else -1)
    diarizer = sherpa_onnx.OfflineSpeakerDiarization(config)
    extractor: Any = None
    turns: Raw = []
    voices: list[Any] = []  # one embedding per (chunk, speaker)
    first_chunk: Any = None
    for index, chunk in enumerate(audio.chunks(request.audio, request.chunk_seconds)):
        local = diarizer.process(chunk.samples, callback=_within(chunk, progress)).sort_by_start_time()
        local_turns = [(float(s.start), float(s.end), int(s.speaker)) for s in local]
        if index == 1:  # a second chunk: the speakers of each chunk must be linked across them
            extractor = sherpa_onnx.SpeakerEmbeddingExtractor(embedding_config)
            turns, voices = _linkable(extractor, first_chunk, turns, 0)  # the first chunk starts at 0
            first_chunk = None
        if extractor is None:
            first_chunk = chunk
        else:
            local_turns, local_voices = _linkable(extractor, chunk, local_turns, len(voices))
            voices += local_voices
        turns += [(start + chunk.offset, end + chunk.offset, who) for start, end, who in local_turns]
        progress(chunk.offset + chunk.duration)
    if extractor is None:  # one chunk: sherpa-onnx's own clustering, bounded by a second pass if need be
        clusters = _bounded(request, len({t[2] for t in turns}))
        if clusters is None:
            return turns
        config, _ = _configs(request, clusters)
        samples = audio.read_all(request.audio)
        result = sherpa_onnx.OfflineSpeakerDiarization(config).process(samples).sort_by_start_time()
        return [(float(s.start), float(s.end), int(s.speaker)) for s in result]
    return _link(request, turns, voices)


def _within(chunk: audio.Chunk, progress: Any) -> Any:
    def callback(done: int, count: int) -> int:
        progress(chunk.offset + chunk.duration * done / max(count, 1))
        return 0  # go on

    return callback


def _linkable(extractor: Any, chunk: audio.Chunk, turns: Raw, first: int) -> tuple[Raw, list[Any]]:
    """The chunk's turns with its speakers numbered from `first`, and one embedding per speaker: the mean of CAM++
    embeddings of up to EMBED_PIECES pieces of its longest turns, each at most EMBED_SECONDS long (onnxruntime
    keeps buffers sized for the longest input it has seen, so no input is longer than the diarizer's own)."""
    import numpy as np

    own = sorted({t[2] for t in turns})
    voices = []
    longest = int(EMBED_SECONDS * audio.SAMPLE_RATE)
    for speaker in own:
        mine = sorted((t for t in turns if t[2] == speaker), key=lambda t: t[0] - t[1])  # longest first
        total = np.zeros(extractor.dim, dtype=np.float32)
        for start, end, _ in mine[:EMBED_PIECES]:
            samples = chunk.samples[int(start * audio.SAMPLE_RATE) : int(end * audio.SAMPLE_RATE)]
            middle = max(0, (len(samples) - longest) // 2)
            stream = extractor.create_stream()
            stream.accept_waveform(audio.SAMPLE_RATE, samples[middle : middle + longest])
            stream.input_finished()
            vector = np.asarray(extractor.compute(stream), dtype=np.float32)
            total += vector / (np.linalg.norm(vector) or 1.0)
        voices.append(total / (np.linalg.norm(total) or 1.0))
    number = {speaker: first + i for i, speaker in enumerate(own)}
    return [(start, end, number[who]) for start, end, who in turns], voices


def _link(request: DiarizationRequest, turns: Raw, voices: list[Any]) -> Raw:
    """The chunks' speakers clustered into the file's: by the threshold, or into the known or bounded count."""
    import numpy as np
    import sherpa_onnx

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
    request_path, result_path = Path(argv[0]), Path(argv[1])
    _lifeline()
    emit = _events()
    request = DiarizationRequest(**json.loads(request_path.read_bytes()))
    turns = diarize(request, emit)
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    versions = {}
    for dist in ("sherpa-onnx", "onnxruntime"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    payload = {"turns": turns, "peak_rss_mb": round(usage / 1024, 1), "versions": versions}
    atomic.write_text(result_path, json.dumps(payload))  # complete or absent: the parent may salvage it
    emit.write(json.dumps({"event": "done"}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
