"""SRT, WebVTT and ASS files, formatted by pysubs2 and written atomically as UTF-8.

Speakers (a cue's `speakers`, labels mapped to display names by `names`): SRT shows only the cue layout's dialogue
dashes (the subtitling convention: no names on screen); WebVTT wraps each speaker's lines in a voice span
(`<v Ravi>...</v>`); ASS gives each speaker a style of its own (pipeline.writers.ass).
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping, Sequence
from itertools import groupby
from pathlib import Path

import pysubs2

from pipeline.atomic import atomic_open
from pipeline.config_values import SUBTITLE_FORMATS
from pipeline.errors import PipelineError
from pipeline.subtitles.cues import Cue
from pipeline.writers.ass import AssOptions, ass_file
from pipeline.writers.ass import cues as ass_cues

_VOICE = re.compile(r"<v(?:\.[^\s>]*)?[ \t]+([^>]*)>")


def _check(fmt: str) -> None:
    if fmt not in SUBTITLE_FORMATS:
        raise PipelineError(f"subtitle format {fmt!r} is not supported; use one of: {', '.join(SUBTITLE_FORMATS)}")


def _vtt_text(cue: Cue, names: Mapping[str, str]) -> str:
    # WebVTT cue text is markup: a bare "<" would open a tag, "-->" end the cue; pysubs2 does not escape.
    lines = [html.escape(line, quote=False) for line in cue.lines]
    if not cue.speakers:
        return r"\N".join(lines)
    runs = []
    for speaker, run in groupby(zip(cue.speakers, lines, strict=True), key=lambda pair: pair[0]):
        text = r"\N".join(line for _, line in run)
        if speaker is None:
            runs.append(text)
        else:
            runs.append(f"<v {html.escape(names.get(speaker, speaker), quote=False)}>{text}</v>")
    return r"\N".join(runs)


def write_subtitles(
    cues: Sequence[Cue],
    path: str | os.PathLike[str],
    fmt: str,
    names: Mapping[str, str] | None = None,
    ass: AssOptions | None = None,
) -> None:
    """`names`: speaker label -> the name shown (pipeline.subtitles.speakers.display_names); `ass`: fonts etc."""
    _check(fmt)
    names = names or {}
    if fmt == "ass":
        subs = ass_file(cues, names, ass or AssOptions())
    else:
        subs = pysubs2.SSAFile()
        for cue in cues:
            text = _vtt_text(cue, names) if fmt == "vtt" else r"\N".join(cue.lines)
            start, end = round(cue.start * 1000), round(cue.end * 1000)
            subs.append(pysubs2.SSAEvent(start=start, end=end, text=text))
    with atomic_open(path, "w", encoding="utf-8") as handle:
        # keep_ssa_tags: write the text as it is; else a "{...}" in speech would vanish as an ASS override.
        handle.write(subs.to_string(fmt, keep_ssa_tags=True))


def _vtt_cue(event: pysubs2.SSAEvent) -> Cue:
    lines, speakers, voice = [], [], None
    for line in event.text.split(r"\N"):
        if match := _VOICE.match(line):
            voice = html.unescape(match.group(1)).strip()
            line = line[match.end() :]
        speakers.append(voice)
        if line.endswith("</v>"):
            line, voice = line[: -len("</v>")], None
        lines.append(html.unescape(line))
    return Cue(event.start / 1000, event.end / 1000, tuple(lines), tuple(speakers) if any(speakers) else ())


def read_subtitles(path: str | os.PathLike[str]) -> list[Cue]:
    """Cues of an SRT, VTT or ASS file (format recognised from the content), e.g. to check or convert one. A
    cue's speakers are the names the file shows (VTT voices, ASS styles); SRT has none."""
    text = Path(path).read_text(encoding="utf-8-sig")
    if not text.strip():  # what write_subtitles makes of no cues in SRT; nothing for pysubs2 to recognise
        return []
    if text.lstrip().startswith("[Script Info]"):
        return ass_cues(pysubs2.SSAFile.from_string(text))
    # pysubs2's SRT/VTT reader drops the last cue's last line when it is only a number (it takes it for the
    # index of a following cue); a trailing index line that belongs to no cue absorbs that.
    subs = pysubs2.SSAFile.from_string(text + "\n\n0\n", keep_html_tags=True)
    _check(subs.format or "unrecognised")
    if subs.format == "vtt":
        return [_vtt_cue(event) for event in subs if not event.is_comment]
    return [
        Cue(event.start / 1000, event.end / 1000, tuple(event.text.split(r"\N")))
        for event in subs
        if not event.is_comment
    ]
