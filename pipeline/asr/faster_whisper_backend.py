"""faster-whisper: CTranslate2 Whisper with Silero VAD (ONNX), no torch. The lean backend."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pipeline.asr import AsrRequest, Segment, Word


class FasterWhisperBackend:
    name = "faster-whisper"
    tune_heap = True  # one malloc arena: a flat peak at no CPU cost (pipeline.asr.worker)

    def __init__(self, request: AsrRequest) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.request = request
        self.model = WhisperModel(
            request.model_dir,
            device=request.device,
            compute_type=request.compute_type,
            cpu_threads=request.threads,
            local_files_only=True,
        )
        # Batching only pays off with VAD-cut windows; without VAD, faster-whisper's sequential path is the one
        # that honours long-form context.
        self.batched = BatchedInferencePipeline(self.model) if request.batch_size > 1 and request.vad else None
        self._language: str | None = request.language
        self.device = request.device
        self.compute_type = getattr(self.model.model, "compute_type", request.compute_type)

    def transcribe(self, audio: np.ndarray) -> Iterator[Segment]:
        request = self.request
        options = dict(
            language=self._language,
            task=request.task,
            beam_size=request.beam_size,
            word_timestamps=request.word_timestamps,
            initial_prompt=request.initial_prompt,
            vad_filter=request.vad,
        )
        if self.batched is not None:
            segments, info = self.batched.transcribe(audio, batch_size=request.batch_size, **options)
        else:
            segments, info = self.model.transcribe(audio, **options)
        # Detect once, on the first chunk, then hold the language for the rest of the file.
        self._language = self._language or info.language
        for segment in segments:
            words = tuple(
                Word(start=w.start, end=w.end, text=w.word, probability=w.probability) for w in (segment.words or ())
            )
            yield Segment(start=segment.start, end=segment.end, text=segment.text.strip(), words=words)

    def detected_language(self) -> str | None:
        return self._language
