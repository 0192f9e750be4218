"""A test double of the speakers stage (issue 14), named as one: it does no diarization.

It stands where the real stage (pipeline.speakers, its own E2E suite) runs, between transcription and translation,
so that the outputs can be exercised on a real transcript: it splits each segment of a job's spoken transcript at
its clause ends (by the segment's real word times) and labels the pieces in turn SPEAKER_00, SPEAKER_01, ... as if
two people took turns at every comma and full stop. The interface is the real stage's: one speaker per segment,
the same label on its words, labels numbered in order of first appearance.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.asr import Transcript
from pipeline.jobs import Manifest
from pipeline.writers import transcript_dict, write_transcript_json, write_transcript_txt

_CLAUSE_END = (",", ".", "?", "!", ";")


def _pieces(segment: dict) -> list[dict]:
    words = segment.get("words") or []
    if not words:
        return [dict(segment)]
    pieces, current = [], []
    for word in words:
        current.append(word)
        if word["text"].strip().endswith(_CLAUSE_END):
            pieces.append(current)
            current = []
    if current:
        pieces.append(current)
    return [
        {
            **{k: v for k, v in segment.items() if k not in ("words", "text", "start", "end")},
            "start": piece[0]["start"],
            "end": piece[-1]["end"],
            "text": "".join(w["text"] for w in piece).strip(),
            "words": piece,
        }
        for piece in pieces
    ]


def take_turns(transcript_json: Path, names: tuple[str, ...] = (), speakers: int = 2) -> list[str]:
    """Rewrite the transcript (its JSON and TXT, through the writers, as the real stage does) as turns of
    `speakers` people; returns each new segment's label."""
    data = json.loads(transcript_json.read_text(encoding="utf-8"))
    segments = [piece for segment in data["segments"] for piece in _pieces(segment)]
    for index, segment in enumerate(segments):
        label = f"SPEAKER_{index % speakers:02d}"
        segment["speaker"] = label
        for word in segment.get("words", ()):
            word["speaker"] = label
    data["segments"] = segments
    transcript = Transcript.from_dict(data)
    extra = {k: v for k, v in data.items() if k not in transcript_dict(transcript)}
    write_transcript_json(transcript, transcript_json, extra=extra, names=names)
    write_transcript_txt(transcript, transcript_json.with_suffix(".txt"), names=names)
    return [segment["speaker"] for segment in segments]


def rerun_after_transcription(job: Path, stem: str) -> None:
    """Put the job back where it is when the speakers stage has just finished: the stages after transcription
    pending, and no translated track yet (the translate stage keeps the tracks it finds)."""
    manifest = Manifest.load(job)
    names = manifest.stage_names
    for name in names[names.index("transcribe") + 1 :]:
        manifest.data["stages"][name] = {"state": "pending"}  # as Manifest.create leaves a stage not yet run
    manifest.save()
    for route in manifest.routes:
        (job / f"{stem}.{route.target}.json").unlink()
