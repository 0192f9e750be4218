"""Who speaks, as users see it: display names for the speakers stage's labels (SPEAKER_00, SPEAKER_01 ...).

Names come from `--speaker-names "Ravi,Asha"` (SPEAKER_NAMES) in order of first appearance; speakers beyond the
names given are "Speaker N", names beyond the speakers found are ignored. Labels are numbered in order of first
appearance in the spoken transcript, so every track of a job (translations keep the segments, and with them the
labels) maps the same label to the same name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pipeline.asr import Segment

_LABEL = re.compile(r"SPEAKER_(\d+)")


def labels(segments: Iterable[Segment]) -> list[str]:
    """The speakers of `segments` (segments' and words'), each once, in order of first appearance."""
    seen: dict[str, None] = {}
    for segment in segments:
        for speaker in (segment.speaker, *(w.speaker for w in segment.words)):
            if speaker is not None:
                seen.setdefault(speaker)
    return list(seen)


def display_names(segments: Iterable[Segment], names: Sequence[str] = ()) -> dict[str, str]:
    """label -> what the outputs show: the user's name for it, else "Speaker N" (N from 1).

    SPEAKER_<k> is the k-th speaker (the speakers stage numbers them in order of first appearance), whether or
    not the speakers before it speak in this track: a translation that drops a speaker's only line still names
    the others as the source does. Other labels follow, in order of first appearance."""
    found = labels(segments)
    numbered = {label: int(m.group(1)) for label in found if (m := _LABEL.fullmatch(label))}
    after = max(numbered.values(), default=-1) + 1
    index = numbered | {label: after + i for i, label in enumerate(x for x in found if x not in numbered)}
    return {
        label: names[i] if i < len(names) else f"Speaker {i + 1}"
        for label, i in sorted(index.items(), key=lambda p: p[1])
    }


def carry(segments: Sequence[Segment], source: Sequence[Segment]) -> tuple[Segment, ...]:
    """`segments` (a track with its own segmentation: Whisper's speech translation) labelled with the speaker of
    the `source` segment each overlaps most in time; unchanged when the source has no speakers."""
    from dataclasses import replace

    turns = [(s.start, s.end, s.speaker) for s in source if s.speaker is not None]
    if not turns:
        return tuple(segments)
    out = []
    for segment in segments:
        if segment.speaker is not None:
            out.append(segment)
            continue

        def overlap(turn: tuple[float, float, str | None], seg: Segment = segment) -> tuple[float, float]:
            start, end, _ = turn
            # Ties (no overlap at all): the nearest turn.
            return (min(end, seg.end) - max(start, seg.start), -abs((start + end) / 2 - (seg.start + seg.end) / 2))

        out.append(replace(segment, speaker=max(turns, key=overlap)[2]))
    return tuple(out)
