"""faster-whisper: CTranslate2 Whisper with Silero VAD (ONNX), no torch. The lean backend.

Batched, it runs faster-whisper's own batched pipeline as a stream: Silero VAD over each chunk as it comes,
speech packed into 30 s windows that cross chunk boundaries (pipeline.asr.windows), each batch of windows decoded
by BatchedInferencePipeline and its times restored by faster-whisper's own map. So a long file decodes as many
windows as a whole-file call would (their edges move where Silero starts afresh on a chunk), while only one chunk
and one batch of speech are held.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from pipeline.asr import AsrRequest, ChunkByChunk, Segment, Word
from pipeline.asr.windows import Speech, batches, windows
from pipeline.audio import SAMPLE_RATE, Chunk

WINDOW_SECONDS = 30  # Whisper's input; the longest speech span Silero may report
# Silero holds ~0.45 MB per second of audio it is handed, and with glibc's default heap 120 s chunks made the
# peak creep 491 -> 582 MB over 20 min, 60 s ones held it at 488-519 MB. Windows cross chunks, so a shorter
# chunk costs no CPU here.
VAD_CHUNK_SECONDS = 60.0
# BatchedInferencePipeline's own VAD settings when it finds speech itself (vad_filter=True, no parameters).
_VAD = {"max_speech_duration_s": WINDOW_SECONDS, "min_silence_duration_ms": 160}


class FasterWhisperBackend(ChunkByChunk):
    name = "faster-whisper"
    tune_heap = True  # one arena, no mmap: flat and fewer page faults (pipeline.asr.worker)

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
        self.max_chunk_seconds = VAD_CHUNK_SECONDS if self.batched else None
        self._language: str | None = request.language
        self._head: np.ndarray | None = None  # the first 30 s, kept only to name the language of a file with no speech
        self.device = request.device
        self.compute_type = getattr(self.model.model, "compute_type", request.compute_type)

    def _options(self) -> dict[str, Any]:
        request = self.request
        return dict(
            language=self._language,
            task=request.task,
            beam_size=request.beam_size,
            word_timestamps=request.word_timestamps,
            initial_prompt=request.initial_prompt,
        )

    def transcribe(self, audio: np.ndarray) -> Iterator[Segment]:
        """One chunk through the sequential (long-form) path: no VAD, or a batch of one."""
        segments, info = self.model.transcribe(audio, vad_filter=self.request.vad, **self._options())
        # Detect once, on the first chunk, then hold the language for the rest of the file.
        self._language = self._language or info.language
        yield from map(_segment, segments)

    def transcribe_chunks(self, chunks: Iterable[Chunk]) -> Iterator[Segment]:
        if self.batched is None:
            yield from super().transcribe_chunks(chunks)
            return
        spans = self._speech(chunks)
        for batch in batches(windows(spans, WINDOW_SECONDS * SAMPLE_RATE), self.request.batch_size):
            yield from self._decode(batch)
        if self._language is None and self._head is not None:
            multilingual = self.model.model.is_multilingual
            self._language = self.model.detect_language(self._head)[0] if multilingual else "en"
        self._head = None

    def _speech(self, chunks: Iterable[Chunk]) -> Iterator[Speech]:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        options = VadOptions(**_VAD)
        for chunk in chunks:
            if self._language is None and self._head is None:
                self._head = chunk.samples[: WINDOW_SECONDS * SAMPLE_RATE].copy()
            start = round(chunk.offset * SAMPLE_RATE)
            for stamp in get_speech_timestamps(chunk.samples, options):
                # A copy, so that the chunk's buffer is freed once its speech is taken.
                yield Speech(start + stamp["start"], chunk.samples[stamp["start"] : stamp["end"]].copy())

    def _decode(self, batch: list[list[Speech]]) -> Iterator[Segment]:
        from faster_whisper.transcribe import restore_speech_timestamps

        assert self.batched is not None
        spans = [span for window in batch for span in window]
        # The batch's speech back to back; each window a clip of it, as faster-whisper's VAD path cuts them.
        clips, at = [], 0
        for window in batch:
            size = sum(len(span.samples) for span in window)
            clips.append({"start": at / SAMPLE_RATE, "end": (at + size) / SAMPLE_RATE})
            at += size
        speech = np.concatenate([span.samples for span in spans])
        segments, info = self.batched.transcribe(
            speech, clip_timestamps=clips, batch_size=len(batch), **self._options()
        )
        self._language = self._language or info.language
        # Times in the joined speech -> times in the whole audio (the spans' own positions).
        stamps = [{"start": span.start, "end": span.end} for span in spans]
        yield from map(_segment, restore_speech_timestamps(segments, stamps, SAMPLE_RATE))

    def detected_language(self) -> str | None:
        return self._language


def _segment(segment: Any) -> Segment:
    words = tuple(Word(start=w.start, end=w.end, text=w.word, probability=w.probability) for w in segment.words or ())
    return Segment(start=segment.start, end=segment.end, text=segment.text.strip(), words=words)
