"""mlx-whisper: Whisper on Apple silicon's GPU through Metal, or on mlx's CPU build elsewhere (`mps` profile).

It reads MLX weights (`pipeline models convert SRC --to mlx` makes them from a CTranslate2 folder).
mlx-whisper decodes greedily: it has no beam search, so `beam_size` is unused (temperature fallback still
applies). It has no VAD either: silence is left to Whisper's own no-speech check and the worker's guards
(pipeline.asr.guards); only the language is voted from Silero's speech windows (pipeline.asr.detect). It has no
hotwords: they are put before the initial prompt, where faster-whisper puts them too.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.asr import SAMPLING_SEED, AsrRequest, ChunkByChunk, Segment, Word, detect
from pipeline.errors import PipelineError
from pipeline.models import CT2, MLX, model_format

log = logging.getLogger(__name__)

# MLX is not safe to call from two threads at once, and mlx-whisper keeps its model in a class attribute.
_MLX_LOCK = threading.Lock()
DEVICES = ("mps", "cpu", "auto")
# request.extra keys passed through to mlx_whisper.transcribe.
_PASSTHROUGH = ("temperature",)


class MlxBackend(ChunkByChunk):
    name = "mlx"
    tune_heap = False  # MLX has its own allocator

    def __init__(self, request: AsrRequest) -> None:
        folder = Path(request.model_dir)
        found = model_format(folder) if folder.is_dir() else None
        if found == CT2:
            raise PipelineError(
                f"{folder} holds CTranslate2 weights; the mlx backend reads MLX weights: "
                f"run `pipeline models convert {folder} --to mlx` and pass the converted folder"
            )
        if found != MLX:
            raise PipelineError(
                f"model folder {folder} holds no MLX Whisper model (needs config.json + weights.safetensors)"
            )
        if request.device not in DEVICES:
            raise PipelineError(f"the mlx backend runs on {', '.join(DEVICES)}, not {request.device!r}")
        # mlx-whisper falls back to the Hugging Face hub for a path it cannot find; it must never get there.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import mlx.core as mx
        from mlx.utils import tree_map
        from mlx_whisper.load_models import load_model

        self.request = request
        self.model_dir = str(folder.resolve())
        self.compute_type = "float32" if request.compute_type == "float32" else "float16"
        # "mps" means Metal when this mlx has it (macOS); mlx's Linux build has only the CPU.
        metal = request.device != "cpu" and mx.metal.is_available()
        self.device = "mps" if metal else "cpu"
        self._device = mx.gpu if metal else mx.cpu
        dtype = getattr(mx, self.compute_type)
        with _MLX_LOCK, mx.stream(self._device):
            model = load_model(self.model_dir, dtype=dtype)
            # load_model keeps the file's dtype (the converter's choice); compute in the one asked for.
            model.update(
                tree_map(
                    lambda a: a.astype(dtype) if mx.issubdtype(a.dtype, mx.floating) else a,
                    model.parameters(),
                )
            )
            mx.eval(model.parameters())
        self._model = model
        if request.task == "translate" and not model.is_multilingual:
            raise PipelineError(f"model {folder} is English-only; translate needs a multilingual model")
        if request.beam_size > 1:
            log.info("mlx-whisper has no beam search; decoding greedily instead of beam_size=%d", request.beam_size)
        self._language: str | None = request.language or (None if model.is_multilingual else "en")

    def rebind(self, request: AsrRequest) -> None:
        """The loaded model for another request of the same load fields (a served worker, `worker.serve`): the
        per-request state afresh (the sampler is seeded at every call already)."""
        if request.task == "translate" and not self._model.is_multilingual:
            raise PipelineError(f"model {self.model_dir} is English-only; translate needs a multilingual model")
        self.request = request
        self._language = request.language or (None if self._model.is_multilingual else "en")

    def transcribe(self, audio: np.ndarray) -> Iterator[Segment]:
        import mlx.core as mx
        import mlx_whisper
        from mlx_whisper.transcribe import ModelHolder

        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.size == 0:
            return
        request = self.request
        options: dict[str, Any] = {k: request.extra[k] for k in _PASSTHROUGH if k in request.extra}
        if isinstance(options.get("temperature"), list):  # JSON has no tuples
            options["temperature"] = tuple(options["temperature"])
        with _MLX_LOCK, mx.stream(self._device):
            mx.random.seed(SAMPLING_SEED)  # the temperature fallback's sampling: the same transcript every run
            # transcribe() takes the model from this cache, keyed by path: hand it ours, loaded in our dtype.
            ModelHolder.model, ModelHolder.model_path = self._model, self.model_dir
            if self._language is None:  # the first speech windows vote (pipeline.asr.detect), else the next chunk's
                windows = detect.speech_windows(detect.speech_spans(audio), request.language_detection_segments)
                self._language = detect.vote(windows, self._score)
            result = mlx_whisper.transcribe(
                audio,
                path_or_hf_repo=self.model_dir,
                verbose=None,
                language=self._language,
                task=request.task,
                word_timestamps=request.word_timestamps,
                initial_prompt=_prompt(request),
                fp16=self.compute_type == "float16",
                # The guards, mlx-whisper's spelling (pipeline.asr.guards).
                no_speech_threshold=request.no_speech_threshold,
                logprob_threshold=request.log_prob_threshold,
                compression_ratio_threshold=request.compression_ratio_threshold,
                condition_on_previous_text=request.condition_on_previous_text,
                hallucination_silence_threshold=request.hallucination_silence_threshold or None,
                **options,
            )
        for segment in result["segments"]:
            text = segment["text"].strip()
            if not text:  # mlx-whisper blanks zero-length and hallucinated segments instead of dropping them
                continue
            self._language = self._language or result["language"]  # words where Silero heard none
            words = tuple(
                Word(
                    start=float(w["start"]),
                    end=float(w["end"]),
                    text=w["word"],
                    probability=float(w["probability"]),
                )
                for w in segment.get("words", ())
            )
            start, end = float(segment["start"]), float(segment["end"])
            if words:  # mlx-whisper may time a segment's last word past its end: the segment holds its words
                start, end = min(start, words[0].start), max(end, words[-1].end)
            yield Segment(
                start=start,
                end=end,
                text=text,
                words=words,
                avg_logprob=segment.get("avg_logprob"),
                no_speech_prob=segment.get("no_speech_prob"),
            )

    def _score(self, window: np.ndarray) -> Iterable[tuple[str, float]]:
        """Language probabilities of one speech window, from mlx-whisper's own detection (called under the lock)."""
        import mlx.core as mx
        from mlx_whisper.audio import N_FRAMES, log_mel_spectrogram, pad_or_trim
        from mlx_whisper.decoding import detect_language

        mel = log_mel_spectrogram(window, n_mels=self._model.dims.n_mels)
        mel = pad_or_trim(mel, N_FRAMES, axis=-2).astype(getattr(mx, self.compute_type))
        return detect_language(self._model, mel)[1].items()

    def detected_language(self) -> str | None:
        return self._language


def _prompt(request: AsrRequest) -> str | None:
    """mlx-whisper has no hotwords: they join the initial prompt, which is what faster-whisper makes of them too
    (both go into the decoder's previous-text context)."""
    parts = [p for p in (request.hotwords, request.initial_prompt) if p]
    return " ".join(parts) or None
