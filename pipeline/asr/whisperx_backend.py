"""whisperx: faster-whisper's engine behind pyannote VAD and batched decoding. The stable default.

Offline, whisperx works with a local model folder and its bundled pyannote VAD weights. Word alignment needs a
wav2vec2 model that whisperx downloads, so words are left to the faster-whisper backend here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from pipeline.asr import AsrRequest, ChunkByChunk, Segment


class WhisperXBackend(ChunkByChunk):
    name = "whisperx"
    tune_heap = False  # torch's threads allocate all the time; flat without (benchmarks/README.md)

    def __init__(self, request: AsrRequest) -> None:
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")  # pyannote 4 telemetry: no connections
        import whisperx

        self.request = request
        self._language = request.language
        asr_options = {"beam_size": request.beam_size, "initial_prompt": request.initial_prompt}
        self.pipeline = whisperx.load_model(
            request.model_dir,
            device=request.device,
            compute_type=request.compute_type,
            language=request.language,
            task=request.task,
            vad_method="pyannote",
            asr_options=asr_options,
            local_files_only=True,
            threads=request.threads or 4,
        )

        self.device = request.device
        self.compute_type = getattr(self.pipeline.model.model, "compute_type", request.compute_type)

    def transcribe(self, audio: np.ndarray) -> Iterator[Segment]:
        result = self.pipeline.transcribe(
            audio,
            batch_size=self.request.batch_size,
            language=self._language,
            task=self.request.task,
        )
        self._language = self._language or result.get("language")
        for segment in result["segments"]:
            text = segment["text"].strip()
            if text:
                yield Segment(start=float(segment["start"]), end=float(segment["end"]), text=text)

    def detected_language(self) -> str | None:
        return self._language
