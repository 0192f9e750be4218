"""Word times for the whisperx backend, offline.

whisperx decodes each VAD window without timestamps and times words with a wav2vec2 aligner that it downloads.
Here, with ALIGN_MODEL_DIR, that aligner is loaded from the user's folder and nowhere else; without it, words are
timed the way faster-whisper times them: cross-attention alignment (CTranslate2's `align`, through
faster-whisper's `add_word_timestamps`) on the encoder output each batch was decoded from, so no second encoder
pass and no model but Whisper's.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from whisperx.asr import WhisperModel

from pipeline.asr import Segment, Word
from pipeline.audio import SAMPLE_RATE
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)
WINDOW_FRAMES = 3000  # Whisper's 30 s window in mel frames


class CrossAttentionWords(WhisperModel):
    """whisperx's batched model that also times the words of every window it decodes.

    `generate_segment_batched` only returns text, so the batch's encoder output is kept from `encode`, and each
    window's length (its padding must not be aligned to) comes from the pipeline's `preprocess`, through
    `watch`. Words are kept per window, in decoding order, which is the order of whisperx's segments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames: deque[int] = deque()  # mel frames of speech in each window preprocessed, not yet decoded
        self.words: list[list[dict[str, Any]]] = []  # per decoded window: faster-whisper's word dicts
        self._encoded: Any = None
        self.enabled = True  # False once a wav2vec2 aligner times the words instead

    def watch(self, pipeline: Any) -> None:
        """Record each window's length as whisperx's pipeline cuts it (one window at a time, in order)."""
        preprocess = pipeline.preprocess

        def measured(item: dict[str, Any]) -> dict[str, Any]:
            seconds = len(item["inputs"]) / SAMPLE_RATE
            self.frames.append(min(WINDOW_FRAMES, math.ceil(seconds) * self.frames_per_second))
            return preprocess(item)

        pipeline.preprocess = measured

    def reset(self) -> None:
        self.frames.clear()
        self.words = []

    def encode(self, features: np.ndarray) -> Any:
        self._encoded = super().encode(features)
        return self._encoded

    def generate_segment_batched(self, features: np.ndarray, tokenizer: Any, options: Any, encoder_output: Any = None):
        out = super().generate_segment_batched(features, tokenizer, options, encoder_output)
        frames = [self.frames.popleft() for _ in out["text"]]
        if not self.enabled:
            self.words.extend([] for _ in frames)
            return out
        windows = [
            [{"seek": 0, "start": 0.0, "end": n / self.frames_per_second, "tokens": _tokens(tokenizer, t)}]
            for t, n in zip(out["text"], frames, strict=True)
        ]
        if any(t.strip() for t in out["text"]):  # a window with no text aligns to no words
            self.add_word_timestamps(
                windows,
                tokenizer,
                self._encoded,
                frames,
                options.prepend_punctuations,
                options.append_punctuations,
                last_speech_timestamp=0.0,
            )
        self.words.extend(window[0].get("words", []) for window in windows)
        self._encoded = None
        return out


def _tokens(tokenizer: Any, text: str) -> list[int]:
    """The window's text as tokens again (whisperx keeps only the text): what the cross-attention is aligned to."""
    return tokenizer.encode(" " + text.strip()) if text.strip() else []


def timed_segments(segments: Iterable[dict[str, Any]], words: Sequence[list[dict[str, Any]]]) -> list[Segment]:
    """whisperx's segments (one per VAD window, times in the chunk) with the words of the same windows."""
    segments = list(segments)
    if len(segments) != len(words):  # a window decoded without its words would shift every later one
        raise RuntimeError(f"whisperx returned {len(segments)} segments for {len(words)} word-timed windows")
    out = []
    for segment, window in zip(segments, words, strict=True):
        text = segment["text"].strip()
        if not text:
            continue
        start = float(segment["start"])
        timed = tuple(
            Word(
                start=start + float(w["start"]),
                end=start + float(w["end"]),
                text=w["word"],
                probability=float(w["probability"]),
            )
            for w in window
        )
        out.append(_segment(start, float(segment["end"]), text, timed, segment.get("avg_logprob")))
    return out


def _segment(
    start: float, end: float, text: str, words: tuple[Word, ...], avg_logprob: float | None = None
) -> Segment:
    """A segment that holds its words: a word timed past the window's edge widens the segment, not the reverse.
    `avg_logprob` goes to the worker's guards (pipeline.asr.guards)."""
    if words:
        start, end = min(start, words[0].start), max(end, words[-1].end)
    return Segment(start=start, end=end, text=text, words=words, avg_logprob=avg_logprob)


# --- the wav2vec2 aligner (ALIGN_MODEL_DIR) ------------------------------------------------------------------


def load_aligner(folder: str, language: str, device: str) -> tuple[Any, dict[str, Any]] | None:
    """whisperx's aligner for `language` from `folder` only, or None where whisperx has none for the language.

    Every way it could reach the network is closed first: torchaudio fetches a checkpoint missing from
    `model_dir`, and whisperx.align fetches nltk's punkt_tab when nltk cannot find it."""
    import nltk
    import torchaudio
    from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH, load_align_model

    where = f"ALIGN_MODEL_DIR={folder}"
    if not Path(folder).is_dir():
        raise PipelineError(f"{where} is not a folder; allowed: a folder holding whisperx's aligner, or empty")
    name = DEFAULT_ALIGN_MODELS_TORCH.get(language) or DEFAULT_ALIGN_MODELS_HF.get(language)
    if name is None:
        log.info("whisperx has no aligner for %r; words from Whisper's cross-attention instead", language)
        return None
    if language in DEFAULT_ALIGN_MODELS_TORCH:
        checkpoint = Path(folder) / Path(getattr(torchaudio.pipelines, name)._path).name
        if not checkpoint.is_file():
            raise PipelineError(
                f"{where} has no {checkpoint.name} (torchaudio's {name}, whisperx's aligner for {language!r})"
            )
    if folder not in nltk.data.path:  # punkt_tab may live in the same folder (tokenizers/punkt_tab/...)
        nltk.data.path.insert(0, folder)
    try:
        nltk.data.find("tokenizers/punkt_tab")
    except LookupError:
        raise PipelineError(
            f"{where}: no tokenizers/punkt_tab in it or in nltk's data path (whisperx.align splits sentences with "
            "nltk's punkt_tab); put nltk's punkt_tab there"
        ) from None
    try:
        return load_align_model(language_code=language, device=device, model_dir=folder, model_cache_only=True)
    except Exception as exc:  # a Hugging Face model missing from the cache, a damaged checkpoint ...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise PipelineError(
            f"{where}: cannot load whisperx's aligner for {language!r} ({name}) from it "
            f"(a torchaudio checkpoint or a Hugging Face cache): {reason}"
        ) from None


def aligned_segments(result: list[dict[str, Any]]) -> list[Segment]:
    """whisperx.align's segments -> Segments. A word it could not time (no character in the aligner's alphabet,
    and no neighbour to interpolate from) takes its neighbours' edges, so that no word of the text is lost."""
    out = []
    for segment in result:
        text = str(segment["text"]).strip()
        if not text:
            continue
        start, end = float(segment["start"]), float(segment["end"])
        words, at = [], start
        for w in segment.get("words") or ():
            begin = float(w.get("start", at))
            words.append(Word(start=begin, end=max(begin, float(w.get("end", begin))), text=" " + w["word"]))
            at = words[-1].end
        out.append(_segment(start, end, text, tuple(words)))
    return out
