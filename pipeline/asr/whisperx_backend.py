"""whisperx: faster-whisper's engine behind pyannote VAD and batched decoding. The stable default.

Offline, whisperx works with a local model folder and its bundled pyannote VAD weights. Word alignment needs a
wav2vec2 model that whisperx downloads, so words are left to the faster-whisper backend here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from pipeline.asr import AsrRequest, ChunkByChunk, Segment, detect


class WhisperXBackend(ChunkByChunk):
    name = "whisperx"
    tune_heap = False  # torch's threads allocate all the time; flat without (benchmarks/README.md)

    def __init__(self, request: AsrRequest) -> None:
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")  # pyannote 4 telemetry: no connections
        import whisperx

        self.request = request
        self._language = request.language
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

        if self._language is None and not self.pipeline.model.model.is_multilingual:
            self._language = "en"

    def transcribe(self, audio: np.ndarray) -> Iterator[Segment]:
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
        for segment in result["segments"]:
            text = segment["text"].strip()
            if text:
                self._language = self._language or result.get("language")  # words where Silero heard none
                yield Segment(
                    start=float(segment["start"]),
                    end=float(segment["end"]),
                    text=text,
                    avg_logprob=segment.get("avg_logprob"),
                )

    def detected_language(self) -> str | None:
        return self._language
