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


def _diarizer(request: DiarizationRequest, clusters: int) -> Any:
    import sherpa_onnx

    threads = request.threads or os.cpu_count() or 1
    config = sherpa_onnx.OfflineSpeakerDiarizationConfig(
        segmentation=sherpa_onnx.OfflineSpeakerSegmentationModelConfig(
            pyannote=sherpa_onnx.OfflineSpeakerSegmentationPyannoteModelConfig(model=request.segmentation),
            num_threads=threads,
        ),
        embedding=sherpa_onnx.SpeakerEmbeddingExtractorConfig(model=request.embedding, num_threads=threads),
        clustering=sherpa_onnx.FastClusteringConfig(num_clusters=clusters, threshold=request.threshold),
        min_duration_on=MIN_DURATION_ON,
        min_duration_off=MIN_DURATION_OFF,
    )
    if not config.validate():
        raise SystemExit(f"sherpa-onnx refused the diarization models {request.segmentation}, {request.embedding}")
    return sherpa_onnx.OfflineSpeakerDiarization(config)


def diarize(request: DiarizationRequest, emit: IO[str] | None = None) -> list[tuple[float, float, int]]:
    """Raw turns (start, end, cluster). A count found outside [min_speakers, max_speakers] is clustered again
    into the nearest bound."""
    samples = audio.read_all(request.audio)
    passes = 0

    def progress(done: int, total: int) -> int:
        if emit is not None:
            emit.write(json.dumps({"event": "progress", "done": done, "total": total, "pass": passes}) + "\n")
        return 0

    def run(clusters: int) -> list[tuple[float, float, int]]:
        nonlocal passes
        passes += 1
        result = _diarizer(request, clusters).process(samples, callback=progress).sort_by_start_time()
        return [(float(s.start), float(s.end), int(s.speaker)) for s in result]

    if request.num_speakers:
        return run(request.num_speakers)
    turns = run(-1)
    found = len({t[2] for t in turns})
    if turns and not request.min_speakers <= found <= request.max_speakers:
        turns = run(min(max(found, request.min_speakers), request.max_speakers))
    return turns


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
