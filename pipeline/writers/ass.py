"""Advanced SubStation Alpha (ASS) subtitles through pysubs2: a style per speaker in a colour of its own, the cue
layout's lines and times kept, and an optional karaoke style (`\\k` tags from word times).

Text is escaped for libass: a backslash is followed by an invisible word joiner (so no `\\N`, `\\h` or tag is read
into speech) and braces are `\\{`, `\\}` (so none opens an override block). `cues` reverses both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pysubs2

from pipeline.subtitles.cues import DIALOGUE_DASH, Cue

_JOINER = "\u2060"
_OVERRIDE = re.compile(r"(?<!\\)\{[^}]*\}")  # an override block; "\{" is an escaped brace, not one
_STYLE_UNSAFE = re.compile(r"[,{}\\]")  # a comma ends a field of the Styles table; the rest end a `\r` tag
# Speaker colours (r, g, b): white first, as unstyled subtitles are, then hues far apart that read on video.
PALETTE = (
    (255, 255, 255),
    (255, 225, 90),
    (90, 210, 255),
    (140, 240, 140),
    (255, 150, 200),
    (255, 170, 80),
    (180, 160, 255),
    (200, 200, 200),
)
DEFAULT_STYLE = "Default"


@dataclass(frozen=True)
class AssOptions:
    font: str = "DejaVu Sans"
    size: int = 56  # at PlayResY 1080; scaled with the video's height
    karaoke: bool = False  # highlight each word as it is said (\k), from the cue's word times
    width: int = 1920  # PlayResX/PlayResY: the script's coordinate space (the video's size for a burn-in)
    height: int = 1080


def escape(text: str) -> str:
    return text.replace("\\", "\\" + _JOINER).replace("{", r"\{").replace("}", r"\}")


def unescape(text: str) -> str:
    return _OVERRIDE.sub("", text).replace(r"\{", "{").replace(r"\}", "}").replace("\\" + _JOINER, "\\")


def style_name(name: str) -> str:
    return _STYLE_UNSAFE.sub("_", name).strip() or "_"


def _style(options: AssOptions, colour: tuple[int, int, int]) -> pysubs2.SSAStyle:
    scale = options.height / 1080
    primary = pysubs2.Color(*colour)
    return pysubs2.SSAStyle(
        fontname=options.font,
        fontsize=round(options.size * scale),
        primarycolor=primary,
        # Karaoke: words not yet said are drawn in the secondary colour, a darker shade of the speaker's.
        secondarycolor=pysubs2.Color(*(c * 5 // 10 for c in colour)) if options.karaoke else primary,
        outlinecolor=pysubs2.Color(0, 0, 0),
        backcolor=pysubs2.Color(0, 0, 0, 128),
        outline=max(1.0, round(3 * scale, 1)),
        shadow=0,
        alignment=pysubs2.Alignment.BOTTOM_CENTER,
        marginl=round(60 * scale),
        marginr=round(60 * scale),
        marginv=round(50 * scale),
    )


def _karaoke(cue: Cue) -> list[str]:
    """The cue's lines with a `\\k` (centiseconds) before each word: its time until the next word starts."""
    words = list(cue.words)
    out: list[str] = []
    cursor, index = round(cue.start * 100), 0
    for line in cue.lines:
        dash = DIALOGUE_DASH if len(set(cue.speakers)) > 1 and line.startswith(DIALOGUE_DASH) else ""
        parts = []
        for position, _ in enumerate(line[len(dash) :].split(" ")):
            word = words[index]
            index += 1
            start = max(cursor, round(word.start * 100))
            end = round(words[index].start * 100) if index < len(words) else round(cue.end * 100)
            if start > cursor:  # the pause before a word: nothing is highlighted during it
                parts.append(rf"{{\k{start - cursor}}}")
            lead = dash if position == 0 else ""
            parts.append(rf"{{\k{max(0, end - start)}}}{escape(lead + word.text)}")
            cursor = max(start, end)
        out.append(" ".join(parts))
    return out


def ass_file(cues: Iterable[Cue], names: Mapping[str, str], options: AssOptions = AssOptions()) -> pysubs2.SSAFile:
    """An ASS document of `cues`; `names` maps speaker labels to what the outputs show (a style each)."""
    cues = list(cues)
    subs = pysubs2.SSAFile()
    subs.info.update({"PlayResX": str(options.width), "PlayResY": str(options.height), "ScaledBorderAndShadow": "yes"})
    subs.styles = {DEFAULT_STYLE: _style(options, PALETTE[0])}
    styles: dict[str, str] = {}
    for speaker in (s for cue in cues for s in cue.speakers if s is not None):
        if speaker not in styles:
            styles[speaker] = style_name(names.get(speaker, speaker))
            subs.styles[styles[speaker]] = _style(options, PALETTE[(len(styles) - 1) % len(PALETTE)])
    for cue in cues:
        karaoke = options.karaoke and len(cue.words) == sum(
            len(line.removeprefix(DIALOGUE_DASH if len(set(cue.speakers)) > 1 else "").split(" ")) for line in cue.lines
        )
        lines = _karaoke(cue) if karaoke else [escape(line) for line in cue.lines]
        speakers = [s or "" for s in cue.speakers] or [""] * len(lines)  # "": no speaker, the Default style
        text = lines[0]
        for previous, who, line in zip(speakers, speakers[1:], lines[1:], strict=False):
            # A dialogue cue's second speaker: `\r` switches to that speaker's style for the rest of the text.
            switch = rf"{{\r{styles[who]}}}" if who != previous and who in styles else ""
            text += r"\N" + switch + line
        first = styles.get(speakers[0], DEFAULT_STYLE)
        name = names.get(speakers[0], speakers[0])
        subs.append(
            pysubs2.SSAEvent(
                start=round(cue.start * 1000),
                end=round(cue.end * 1000),
                text=text,
                style=first,
                name=style_name(name) if name else "",
            )
        )
    return subs


_RESET = re.compile(r"(?<!\\)\{[^}]*\\r([^\\}]*)[^}]*\}")


def cues(subs: pysubs2.SSAFile) -> list[Cue]:
    """The cues of an ASS document: lines unescaped, tags dropped, each line's speaker from its style."""
    out = []
    for event in subs:
        if event.is_comment:
            continue
        style = event.style if event.style != DEFAULT_STYLE else None
        lines, speakers = [], []
        for raw in event.text.split(r"\N"):
            if reset := _RESET.search(raw):
                style = reset.group(1) or None
            lines.append(unescape(raw))
            speakers.append(style)
        out.append(Cue(event.start / 1000, event.end / 1000, tuple(lines), tuple(speakers) if any(speakers) else ()))
    return out
