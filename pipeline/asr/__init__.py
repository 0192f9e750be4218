"""Speech recognition: one segment type for every backend, and the request a backend worker receives.

Backends run in a worker subprocess (see `pipeline.asr.worker`), never in the pipeline's own process:
a backend that crashes during teardown (MLX's SIGSEGV) or leaks memory cannot take finished work with it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # numpy loads in the worker; the CLI process never needs it for ASR
    import numpy as np

    from pipeline.audio import Chunk


@dataclass(frozen=True, slots=True)
class Word:
    start: float
    end: float
    text: str
    probability: float | None = None
    speaker: str | None = None  # "SPEAKER_00"...: who said it, when the speakers stage ran (issue 14)


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    # What the decoder said of the segment's window, where the backend tells: read by pipeline.asr.guards in the
    # worker, then dropped (None) before the transcript is written.
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    speaker: str | None = None  # "SPEAKER_00", "SPEAKER_01"... in order of first appearance; None: not known

    def shifted(self, offset: float) -> Segment:
        words = tuple(replace(w, start=w.start + offset, end=w.end + offset) for w in self.words)
        return replace(self, start=self.start + offset, end=self.end + offset, words=words)


@dataclass(frozen=True, slots=True)
class Removed:
    """A segment the guards took out of the transcript, and why (recorded in the job's manifest)."""

    start: float
    end: float
    text: str
    reason: str


@dataclass(frozen=True)
class Transcript:
    language: str
    segments: tuple[Segment, ...]
    duration: float
    task: str = "transcribe"  # "translate" when Whisper translated the speech into English
    backend: str = ""
    removed: tuple[Removed, ...] = ()  # what the guards took out (pipeline.asr.guards)
    # (start, end) of speech by Silero's own edges, for cue timing (pipeline.asr.speech); empty: not known
    speech: tuple[tuple[float, float], ...] = ()

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for segment in data["segments"]:  # scores only where a backend left them (the worker drops them)
            for key in ("avg_logprob", "no_speech_prob"):
                if segment[key] is None:
                    del segment[key]
            for item in (segment, *segment["words"]):  # a speaker only where the speakers stage gave one
                if item.get("speaker", "") is None:
                    del item["speaker"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        segments = tuple(
            Segment(
                start=float(s["start"]),
                end=float(s["end"]),
                text=str(s["text"]),
                words=tuple(Word(**w) for w in s.get("words", ())),
                avg_logprob=s.get("avg_logprob"),
                no_speech_prob=s.get("no_speech_prob"),
                speaker=s.get("speaker"),
            )
            for s in data["segments"]
        )
        return cls(
            language=data["language"],
            segments=segments,
            duration=float(data["duration"]),
            task=data.get("task", "transcribe"),
            backend=data.get("backend", ""),
            removed=tuple(Removed(**r) for r in data.get("removed", ())),
            speech=tuple((float(a), float(b)) for a, b in data.get("speech", ())),
        )


@dataclass(frozen=True)
class AsrRequest:
    """Everything a backend worker needs; JSON-serialisable so it crosses the process boundary."""

    backend: str
    model_dir: str
    device: str
    compute_type: str
    audio: str  # 16 kHz mono PCM WAV made by the extract stage
    language: str | None
    batch_size: int  # the profile's (matrix) unless WHISPER_BATCH_SIZE says otherwise
    chunk_seconds: float  # audio per backend call: bounds the worker's memory whatever the media's length
    task: str = "transcribe"
    beam_size: int = 5
    vad: bool = True
    word_timestamps: bool = False
    initial_prompt: str | None = None
    threads: int = 0  # 0: the library's default
    align_model_dir: str = ""  # whisperx: wav2vec2 aligner folder (ALIGN_MODEL_DIR); empty: cross-attention words
    # Guards against invented text (WHISPER_* keys, the profile's values for auto); pipeline.asr.guards says how
    # each backend honours them. None: the library's default / off.
    no_speech_threshold: float | None = 0.6
    log_prob_threshold: float | None = -1.0
    compression_ratio_threshold: float | None = 2.4
    condition_on_previous_text: bool = False
    hallucination_silence_threshold: float | None = None
    hotwords: str | None = None
    repetition_filter: bool = True
    language_detection_segments: int = 3  # speech windows that vote on the language when it is not given
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """A loaded model, created inside the worker, fed the file's audio as a stream of chunks."""

    name: str
    tune_heap: bool  # the worker pins glibc's malloc for a flat peak before loading (pipeline.asr.worker)
    max_chunk_seconds: float | None  # the longest chunk this backend wants, if shorter than the request's

    def __init__(self, request: AsrRequest) -> None: ...

    def transcribe_chunks(self, chunks: Iterable[Chunk]) -> Iterator[Segment]:
        """Segments of the whole stream, times from the start of the audio. A backend takes the next chunk
        only when it is done with the previous one's samples, so at most one chunk is held at a time."""
        ...

    def detected_language(self) -> str | None: ...


class ChunkByChunk:
    """For backends that transcribe each chunk on its own (`transcribe`: times relative to the chunk)."""

    max_chunk_seconds: float | None = None  # the request's chunks: their length trades memory for CPU

    def transcribe(self, audio: np.ndarray) -> Iterator[Segment]:
        raise NotImplementedError

    def transcribe_chunks(self, chunks: Iterable[Chunk]) -> Iterator[Segment]:
        for chunk in chunks:
            for segment in self.transcribe(chunk.samples):
                yield segment.shifted(chunk.offset)


# Whisper's temperature fallback samples when a greedy/beam decode fails its guards; a fixed seed makes a job's
# transcript the same on every run of it (CTranslate2's sampler here; mlx's in the mlx backend).
SAMPLING_SEED = 1


def seed_ctranslate2() -> None:
    import ctranslate2

    ctranslate2.set_random_seed(SAMPLING_SEED)


# Import paths, so that naming a backend never imports its heavy library.
BACKENDS: dict[str, str] = {
    "whisperx": "pipeline.asr.whisperx_backend:WhisperXBackend",
    "faster-whisper": "pipeline.asr.faster_whisper_backend:FasterWhisperBackend",
    "mlx": "pipeline.asr.mlx_backend:MlxBackend",
}


def load_backend_class(name: str) -> type[Backend]:
    module_name, _, attr = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)
