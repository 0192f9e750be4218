"""Who spoke when: speaker turns from an offline diarization model, and a transcript's words given to them.

The diarization itself (pyannote segmentation-3.0 and 3D-Speaker CAM++, `pipeline.speakers.diarizer`) runs in a worker
subprocess (`pipeline.speakers.isolation`); this module is what the pipeline's own process needs: the turns, the
request the worker receives, and `assign`, which labels a transcript's words and segments with them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.asr import Segment, Transcript, Word


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str  # SPEAKER_00, SPEAKER_01 ... in order of first appearance


def label(index: int) -> str:
    return f"SPEAKER_{index:02d}"


def relabel(raw: Iterable[tuple[float, float, int | str]]) -> list[Turn]:
    """Turns sorted by start, their speakers renamed SPEAKER_00, 01 ... in order of first appearance (the model's
    cluster numbers carry no order a reader could use)."""
    names: dict[int | str, str] = {}
    turns = []
    for start, end, speaker in sorted(raw, key=lambda t: (t[0], t[1])):
        if end <= start:
            continue
        name = names.setdefault(speaker, label(len(names)))
        turns.append(Turn(round(float(start), 3), round(float(end), 3), name))
    return turns


@dataclass(frozen=True)
class DiarizationRequest:
    """Everything the diarization worker needs; JSON-serialisable so it crosses the process boundary."""

    audio: str  # 16 kHz mono PCM WAV made by the extract stage
    segmentation: str  # segmentation.onnx
    embedding: str  # embedding.onnx
    num_speakers: int | None = None  # known count (--speakers N); None: found by the clustering threshold
    threshold: float = 0.5
    min_speakers: int = 1
    max_speakers: int = 20
    threads: int = 0  # 0: one (THREADS=0 means all cores to ASR; onnxruntime gained nothing from more here)
    # Audio diarized at a time, each chunk by a process of its own (as many at once as cores): every process loads
    # the models again, and a chunk's own memory is small next to theirs (benchmarks/README.md)
    chunk_seconds: float = 300.0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


def write_turns(turns: Sequence[Turn], path: Path, **facts: Any) -> None:
    from pipeline.atomic import write_text

    data = {**facts, "speakers": speakers(turns), "turns": [asdict(t) for t in turns]}
    write_text(path, json.dumps(data, indent=1) + "\n")


def read_turns(path: Path) -> list[Turn]:
    return [Turn(float(t["start"]), float(t["end"]), str(t["speaker"])) for t in json.loads(path.read_text())["turns"]]


def speakers(turns: Iterable[Turn]) -> list[str]:
    return list(dict.fromkeys(t.speaker for t in turns))


def _overlaps(start: float, end: float, turns: Sequence[Turn]) -> str | None:
    """The speaker who talks longest within [start, end]; where nobody does, the nearest turn's."""
    if not turns:
        return None
    talk: dict[str, float] = {}
    for turn in turns:
        if turn.start < end and turn.end > start:
            talk[turn.speaker] = talk.get(turn.speaker, 0.0) + min(end, turn.end) - max(start, turn.start)
    if talk:
        return max(talk, key=lambda s: talk[s])  # a tie goes to the first speaker met
    middle = (start + end) / 2
    return min(turns, key=lambda t: max(t.start - middle, middle - t.end)).speaker


def _split(segment: Segment, turns: Sequence[Turn]) -> list[Segment]:
    if not segment.words:
        return [replace(segment, speaker=_overlaps(segment.start, segment.end, turns))]
    words = [replace(w, speaker=_overlaps(w.start, w.end, turns)) for w in segment.words]
    runs: list[list[Word]] = []
    for word in words:
        if runs and runs[-1][-1].speaker == word.speaker:
            runs[-1].append(word)
        else:
            runs.append([word])
    if len(runs) == 1:
        return [replace(segment, words=tuple(words), speaker=words[0].speaker)]
    return [
        replace(
            segment,
            start=run[0].start if i else segment.start,
            end=run[-1].end if i < len(runs) - 1 else segment.end,
            text="".join(w.text for w in run).strip(),
            words=tuple(run),
            speaker=run[0].speaker,
        )
        for i, run in enumerate(runs)
    ]


def assign(transcript: Transcript, turns: Sequence[Turn]) -> Transcript:
    """Each word gets the speaker who talks longest during it; a segment is split where its words' speaker changes,
    so that each segment has one speaker. A transcript with speech but no turns (diarization heard nobody where
    Whisper heard words) is one speaker's."""
    turns = sorted(turns, key=lambda t: t.start) or [Turn(0.0, max(transcript.duration, 0.001), label(0))]
    segments = tuple(part for segment in transcript.segments for part in _split(segment, turns))
    return replace(transcript, segments=segments)
