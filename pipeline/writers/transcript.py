"""Transcript files: JSON (segments, words when the backend gave them, speakers when found) and plain text
(speaker turns under a name heading), written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import groupby
from typing import Any

from pipeline.asr import Transcript
from pipeline.atomic import write_json, write_text
from pipeline.subtitles.speakers import display_names


def transcript_dict(
    transcript: Transcript, extra: dict[str, Any] | None = None, names: Sequence[str] = ()
) -> dict[str, Any]:
    """The JSON document, which `Transcript.from_dict` reads back; `extra` adds top-level facts (model...).
    Where segments have speakers, `speakers` lists each label with the name the other outputs show."""
    data: dict[str, Any] = {
        "language": transcript.language,
        "task": transcript.task,
        "duration": transcript.duration,
        "backend": transcript.backend,
        "text": transcript.text,
    }
    if clash := sorted((set(data) | {"segments", "speech", "speakers"}) & set(extra or {})):
        raise ValueError(f"extra keys {clash} would overwrite the transcript's own")
    data |= extra or {}
    segments = []
    for segment in transcript.to_dict()["segments"]:
        if not segment["words"]:  # most tracks (translations, backends without word timing) have none
            del segment["words"]
        segments.append(segment)
    if shown := display_names(transcript.segments, names):
        data["speakers"] = [{"id": label, "name": name} for label, name in shown.items()]
    data["segments"] = segments
    if transcript.speech:  # where Silero heard speech: what the subtitles' cue edges snap to
        data["speech"] = [list(region) for region in transcript.speech]
    return data


def write_transcript_json(
    transcript: Transcript,
    path: str | os.PathLike[str],
    extra: dict[str, Any] | None = None,
    names: Sequence[str] = (),
) -> None:
    write_json(path, transcript_dict(transcript, extra, names))


def write_transcript_txt(transcript: Transcript, path: str | os.PathLike[str], names: Sequence[str] = ()) -> None:
    """One segment per line (its whitespace, newlines included, collapsed to single spaces). With speakers, each
    turn is headed by its speaker's name and a colon, turns separated by a blank line."""
    shown = display_names(transcript.segments, names)
    lines = [(segment.speaker, " ".join(segment.text.split())) for segment in transcript.segments]
    lines = [(speaker, line) for speaker, line in lines if line]
    if not shown:
        write_text(path, "".join(f"{line}\n" for _, line in lines))
        return
    turns = []
    for speaker, turn in groupby(lines, key=lambda pair: pair[0]):
        heading = f"{shown[speaker]}:\n" if speaker is not None else ""
        turns.append(heading + "".join(f"{line}\n" for _, line in turn))
    write_text(path, "\n".join(turns))
