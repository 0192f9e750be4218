"""faster-whisper: CTranslate2 Whisper with Silero VAD (ONNX), no torch. The lean backend.

Batched, it runs faster-whisper's own batched pipeline as a stream: Silero VAD over each chunk as it comes,
speech packed into 30 s windows that cross chunk boundaries (pipeline.asr.windows), each batch of windows decoded
by BatchedInferencePipeline and its times restored by faster-whisper's own map. So a long file decodes as many
windows as a whole-file call would (their edges move where Silero starts afresh on a chunk), while only one chunk
and one batch of speech are held.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import chain, islice, pairwise
from typing import Any

import numpy as np

from pipeline.asr import AsrRequest, ChunkByChunk, Segment, Word, detect, seed_ctranslate2
from pipeline.asr.windows import Speech, batches, windows
from pipeline.audio import SAMPLE_RATE, Chunk

WINDOW_SECONDS = 30  # Whisper's input; the longest speech span Silero may report
# Silero's memory grows with the audio it is handed, and with glibc's default heap longer chunks made the peak
# creep over 20 min where 60 s ones held it flat (benchmarks/README.md, "The VAD pass"). Windows cross chunks, so
# a shorter chunk costs no CPU here.
VAD_CHUNK_SECONDS = 60.0
SPLIT_PAUSE_S = 2.0  # a pause between words this long ends a segment (the batched path's windows hold several)


class FasterWhisperBackend(ChunkByChunk):
    name = "faster-whisper"
    tune_heap = True  # one arena, no mmap: flat and fewer page faults (pipeline.asr.worker)

    def __init__(self, request: AsrRequest) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        seed_ctranslate2()
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
        # An English-only model has nothing to detect; otherwise the first speech windows vote (pipeline.asr.detect).
        self._language: str | None = request.language or (None if self.model.model.is_multilingual else "en")
        self.device = request.device
        self.compute_type = getattr(self.model.model, "compute_type", request.compute_type)

    def rebind(self, request: AsrRequest) -> None:
        """The loaded model for another request of the same load fields (a served worker, `worker.serve`): the
        per-request state afresh, and the sampler seeded again, so that its transcript is a fresh worker's."""
        seed_ctranslate2()
        self.request = request
        self._language = request.language or (None if self.model.model.is_multilingual else "en")

    def _options(self) -> dict[str, Any]:
        request = self.request
        return dict(
            language=self._language,
            task=request.task,
            beam_size=request.beam_size,
            word_timestamps=request.word_timestamps,
            initial_prompt=request.initial_prompt,
            hotwords=request.hotwords or None,
            # The guards (pipeline.asr.guards). The batched path applies none of the thresholds (no temperature
            # fallback; filter_segments applies them to each segment's scores), keeps condition_on_previous_text
            # off and has no use for hallucination_silence_threshold (VAD cut the silences).
            no_speech_threshold=request.no_speech_threshold,
            log_prob_threshold=request.log_prob_threshold,
            compression_ratio_threshold=request.compression_ratio_threshold,
            condition_on_previous_text=request.condition_on_previous_text,
            hallucination_silence_threshold=request.hallucination_silence_threshold or None,  # 0: off
        )

    def _detect(self, spans: list[Speech]) -> None:
        windows_ = detect.speech_windows(spans, self.request.language_detection_segments)
        self._language = detect.vote(windows_, detect.ct2_scorer(self.model))

    def transcribe(self, audio: np.ndarray) -> Iterator[Segment]:
        """One chunk through the sequential (long-form) path: no VAD, or a batch of one."""
        if self._language is None:  # from this chunk's speech, if it has any; else the next chunk's
            self._detect(detect.speech_spans(audio))
        segments, info = self.model.transcribe(audio, vad_filter=self.request.vad, **self._options())
        for segment in segments:
            # Without VAD, Whisper may hear words where Silero heard none: then its own detection names them.
            self._language = self._language or info.language
            yield _segment(segment)

    def transcribe_chunks(self, chunks: Iterable[Chunk]) -> Iterator[Segment]:
        if self.batched is None:
            yield from super().transcribe_chunks(chunks)
            return
        stream: Iterator[list[Speech]] = windows(self._speech(chunks), WINDOW_SECONDS * SAMPLE_RATE)
        if self._language is None:
            # The first speech windows vote before any is decoded; they are held (a few 30 s windows) meanwhile.
            first = list(islice(stream, self.request.language_detection_segments))
            self._detect([span for window in first for span in window])
            stream = chain(first, stream)
        for batch in batches(stream, self.request.batch_size):
            yield from self._decode(batch)

    def _speech(self, chunks: Iterable[Chunk]) -> Iterator[Speech]:
        for chunk in chunks:
            # Copies, so that the chunk's buffer is freed once its speech is taken.
            yield from detect.speech_spans(chunk.samples, round(chunk.offset * SAMPLE_RATE))

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
        # Words always: a window's one segment runs across the non-speech VAD cut out of it (a sentence, 20 s of
        # music, the next sentence); its words say where to split it (`_split`). They are dropped if not asked for.
        options = self._options() | {"word_timestamps": True}
        segments, _ = self.batched.transcribe(speech, clip_timestamps=clips, batch_size=len(batch), **options)
        # Times in the joined speech -> times in the whole audio (the spans' own positions).
        stamps = [{"start": span.start, "end": span.end} for span in spans]
        for segment in map(_segment, restore_speech_timestamps(segments, stamps, SAMPLE_RATE)):
            for part in _split(segment):
                yield part if self.request.word_timestamps else replace(part, words=())

    def detected_language(self) -> str | None:
        return self._language


def _split(segment: Segment) -> Iterator[Segment]:
    """`segment` in parts at pauses of SPLIT_PAUSE_S or more between its words."""
    words = segment.words
    cuts = [i for i in range(1, len(words)) if words[i].start - words[i - 1].end >= SPLIT_PAUSE_S]
    if not cuts:
        yield segment
        return
    for begin, end in pairwise([0, *cuts, len(words)]):
        part = words[begin:end]
        text = "".join(w.text for w in part).strip()
        yield replace(segment, start=part[0].start, end=part[-1].end, text=text, words=part)


def _segment(segment: Any) -> Segment:
    words = tuple(Word(start=w.start, end=w.end, text=w.word, probability=w.probability) for w in segment.words or ())
    return Segment(
        start=segment.start,
        end=segment.end,
        text=segment.text.strip(),
        words=words,
        avg_logprob=segment.avg_logprob,
        no_speech_prob=segment.no_speech_prob,
    )
