"""The spoken language, from speech: Silero VAD's first speech windows, each scored by the backend's own model,
voted by probability weighted by seconds of speech.

Whisper's own detection looks at the first 30 s of what it is handed: a file that opens on music, applause or
silence is named after its intro. Every backend detects here instead, before it decodes anything, so nothing is
decoded in the wrong language. Silero runs on onnxruntime (faster-whisper's bundled model): no torch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import TYPE_CHECKING

from pipeline.asr.windows import Speech, windows
from pipeline.audio import SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np

WINDOW_SAMPLES = 30 * SAMPLE_RATE
# BatchedInferencePipeline's own VAD settings when it finds speech itself (vad_filter=True, no parameters): the
# spans the faster-whisper backend decodes, and those the language is detected from.
VAD = {"max_speech_duration_s": 30, "min_silence_duration_ms": 160}
# Probabilities of each language for one window (Whisper's language tokens).
Score = Callable[["np.ndarray"], Iterable[tuple[str, float]]]


def speech_spans(samples: np.ndarray, offset: int = 0) -> list[Speech]:
    """Silero's speech spans in `samples` (copies, so the caller's buffer can go); `offset` in samples."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    stamps = get_speech_timestamps(samples, VadOptions(**VAD))
    return [Speech(offset + s["start"], samples[s["start"] : s["end"]].copy()) for s in stamps]


def speech_windows(spans: Iterable[Speech], count: int) -> list[np.ndarray]:
    """The first `count` 30 s windows of speech, packed as the batched decoder packs them."""
    import numpy as np

    return [np.concatenate([s.samples for s in window]) for window in islice(windows(spans, WINDOW_SAMPLES), count)]


def vote(windows_: Sequence[np.ndarray], score: Score) -> str | None:
    """The language with the highest probability summed over `windows_`, each weighted by its length (a second
    of speech that Silero let through weighs less than 30 s of it); None without speech."""
    totals: defaultdict[str, float] = defaultdict(float)
    for window in windows_:
        for language, probability in score(window):
            totals[language] += probability * len(window)
    return max(totals, key=totals.__getitem__) if totals else None


def ct2_scorer(model: object) -> Score:
    """Window scores from a faster-whisper `WhisperModel` (whisperx's model is one too)."""

    def score(window: np.ndarray) -> list[tuple[str, float]]:
        return model.detect_language(audio=window)[2]  # type: ignore[attr-defined]

    return score
