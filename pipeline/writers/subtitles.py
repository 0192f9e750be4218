"""SRT and WebVTT files, formatted by pysubs2 and written atomically as UTF-8."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import pysubs2

from pipeline.atomic import atomic_open
from pipeline.config_values import SUBTITLE_FORMATS
from pipeline.errors import PipelineError
from pipeline.writers.cues import Cue


def _check(fmt: str) -> None:
    if fmt not in SUBTITLE_FORMATS:
        raise PipelineError(
            f"subtitle format {fmt!r} is not supported; use one of: {', '.join(SUBTITLE_FORMATS)}"
        )


def write_subtitles(cues: Sequence[Cue], path: str | os.PathLike[str], fmt: str) -> None:
    _check(fmt)
    subs = pysubs2.SSAFile()
    for cue in cues:
        # WebVTT cue text is markup: a bare "<" would open a tag, "-->" end the cue; pysubs2 does not escape.
        lines = [html.escape(line, quote=False) for line in cue.lines] if fmt == "vtt" else cue.lines
        start, end = round(cue.start * 1000), round(cue.end * 1000)
        subs.append(pysubs2.SSAEvent(start=start, end=end, text=r"\N".join(lines)))
    with atomic_open(path, "w", encoding="utf-8") as handle:
        # keep_ssa_tags: write the text as it is; else a "{...}" in speech would vanish as an ASS override.
        handle.write(subs.to_string(fmt, keep_ssa_tags=True))


def read_subtitles(path: str | os.PathLike[str]) -> list[Cue]:
    """Cues of an SRT or VTT file (format recognised from the content), e.g. to check or convert one."""
    text = Path(path).read_text(encoding="utf-8-sig")
    if not text.strip():  # what write_subtitles makes of no cues in SRT; nothing for pysubs2 to recognise
        return []
    # pysubs2's SRT/VTT reader drops the last cue's last line when it is only a number (it takes it for the
    # index of a following cue); a trailing index line that belongs to no cue absorbs that.
    subs = pysubs2.SSAFile.from_string(text + "\n\n0\n", keep_html_tags=True)
    _check(subs.format or "unrecognised")
    unescape = html.unescape if subs.format == "vtt" else str
    return [
        Cue(event.start / 1000, event.end / 1000, tuple(unescape(line) for line in event.text.split(r"\N")))
        for event in subs
        if not event.is_comment
    ]
