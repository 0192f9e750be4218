"""Transcript files: JSON (segments, words when the backend gave them) and plain text, written atomically."""

from __future__ import annotations

import os
from typing import Any

from pipeline.asr import Transcript
from pipeline.atomic import write_json, write_text


def transcript_dict(transcript: Transcript, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document, which `Transcript.from_dict` reads back; `extra` adds top-level facts (model...)."""
    data: dict[str, Any] = {
        "language": transcript.language,
        "task": transcript.task,
        "duration": transcript.duration,
        "backend": transcript.backend,
        "text": transcript.text,
    }
    if clash := sorted((set(data) | {"segments", "speech"}) & set(extra or {})):
        raise ValueError(f"extra keys {clash} would overwrite the transcript's own")
    data |= extra or {}
    segments = []
    for segment in transcript.to_dict()["segments"]:
        if not segment["words"]:  # most tracks (translations, backends without word timing) have none
            del segment["words"]
        segments.append(segment)
    data["segments"] = segments
    if transcript.speech:  # where Silero heard speech: what the subtitles' cue edges snap to
        data["speech"] = [list(region) for region in transcript.speech]
    return data


def write_transcript_json(
    transcript: Transcript, path: str | os.PathLike[str], extra: dict[str, Any] | None = None
) -> None:
    write_json(path, transcript_dict(transcript, extra))


def write_transcript_txt(transcript: Transcript, path: str | os.PathLike[str]) -> None:
    """One segment per line (its whitespace, newlines included, collapsed to single spaces)."""
    lines = (" ".join(segment.text.split()) for segment in transcript.segments)
    write_text(path, "".join(f"{line}\n" for line in lines if line))
