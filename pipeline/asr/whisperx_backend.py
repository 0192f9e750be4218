"""whisperx: faster-whisper's engine behind pyannote VAD and batched decoding, each window decoded without
timestamps. The fallback behind faster-whisper (matrix/profiles.toml says why).

Offline, whisperx works with a local model folder and its bundled pyannote VAD weights. Its word aligner
(wav2vec2) is a download; words come from ALIGN_MODEL_DIR's aligner or Whisper's own cross-attention
(pipeline.asr.whisperx_words).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from pipeline.asr import AsrRequest, ChunkByChunk, Segment, detect


class WhisperXBackend(ChunkByChunk):
    name = "whisperx"
    tune_heap = False  # torch's threads allocate all the time; flat without (benchmarks/README.md)

    def __init__(self, request: AsrRequest) -> None:
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")  # pyannote 4 telemetry: no connections
        import whisperx

        from pipeline.asr import seed_ctranslate2, whisperx_words

        seed_ctranslate2()
        self.request = request
        self._language = request.language
        threads = request.threads or 4
        asr_options = {
            "beam_size": request.beam_size,
            "initial_prompt": request.initial_prompt,
            "hotwords": request.hotwords or None,
            # Guards (pipeline.asr.guards): whisperx's batched decoding keeps these in its options but decodes
            # once, without fallback or a no-speech probability; the worker's filter applies them after.
            "no_speech_threshold": request.no_speech_threshold,
            "log_prob_threshold": request.log_prob_threshold,
            "compression_ratio_threshold": request.compression_ratio_threshold,
            "condition_on_previous_text": request.condition_on_previous_text,
            "hallucination_silence_threshold": request.hallucination_silence_threshold or None,
        }
        # Words: whisperx's wav2vec2 aligner from ALIGN_MODEL_DIR, else Whisper's cross-attention, computed by the
        # model itself as it decodes (whisperx_words.CrossAttentionWords).
        # The aligner is per language: with SOURCE_LANGUAGE=auto it loads once the first chunk has named it. A
        # translation's words are English, not the spoken language's aligner's: cross-attention times them.
        aligned = request.word_timestamps and request.task == "transcribe"
        self._align_dir = request.align_model_dir if aligned else ""
        self._aligner: tuple[Any, dict[str, Any]] | None = None
        self._words_model: whisperx_words.CrossAttentionWords | None = None
        if self._align_dir and request.language:
            self._aligner = whisperx_words.load_aligner(self._align_dir, request.language, request.device)
            self._align_dir = ""
        if request.word_timestamps and self._aligner is None:
            self._words_model = whisperx_words.CrossAttentionWords(
                request.model_dir,
                device=request.device,
                compute_type=request.compute_type,
                local_files_only=True,
                cpu_threads=threads,
            )
        self.pipeline = whisperx.load_model(
            request.model_dir,
            device=request.device,
            compute_type=request.compute_type,
            language=request.language,
            task=request.task,
            vad_method="pyannote",
            asr_options=asr_options,
            local_files_only=True,
            threads=threads,
            model=self._words_model,
        )
        if self._words_model is not None:
            self._words_model.watch(self.pipeline)

        self.device = request.device
        self.compute_type = getattr(self.pipeline.model.model, "compute_type", request.compute_type)

        if self._language is None and not self.pipeline.model.model.is_multilingual:
            self._language = "en"

    def transcribe(self, audio: np.ndarray) -> Iterator[Segment]:
        from pipeline.asr import whisperx_words

        if self._words_model is not None:
            self._words_model.reset()
        if self._language is None:
            # whisperx would name the language from the chunk's first 30 s, music and silence included: the first
            # speech windows vote instead (pipeline.asr.detect); a chunk without speech leaves it to the next.
            windows = detect.speech_windows(detect.speech_spans(audio), self.request.language_detection_segments)
            self._language = detect.vote(windows, detect.ct2_scorer(self.pipeline.model))
        result = self.pipeline.transcribe(
            audio,
            batch_size=self.request.batch_size,
            language=self._language,
            task=self.request.task,
        )
        if any(segment["text"].strip() for segment in result["segments"]):  # words where Silero heard none
            self._language = self._language or result.get("language")
        if self._align_dir and self._language:
            self._aligner = whisperx_words.load_aligner(self._align_dir, self._language, self.request.device)
            self._align_dir = ""
            if self._aligner is not None and self._words_model is not None:
                self._words_model.enabled = False  # the aligner times every later chunk's words
        if self._aligner is not None:
            import whisperx

            model, metadata = self._aligner
            aligned = whisperx.align(result["segments"], model, metadata, audio, self.request.device)
            yield from whisperx_words.aligned_segments(aligned["segments"])
        elif self._words_model is not None:
            yield from whisperx_words.timed_segments(result["segments"], self._words_model.words)
        else:
            for segment in result["segments"]:
                text = segment["text"].strip()
                if text:
                    yield Segment(
                        start=float(segment["start"]),
                        end=float(segment["end"]),
                        text=text,
                        avg_logprob=segment.get("avg_logprob"),
                    )

    def detected_language(self) -> str | None:
        return self._language
