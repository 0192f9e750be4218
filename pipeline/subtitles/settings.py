"""The settings of speaker-aware and styled subtitles (issue 14) as `pipeline.config` parses them, and the reading
rules and ASS options a job's config gives. Light: the config imports it at start-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.subtitles.cues import ReadingRules
    from pipeline.writers.ass import AssOptions

MAX_NAME_CHARS = 40


def parse_names(raw: str) -> tuple[str, ...]:
    """SPEAKER_NAMES: comma-separated names; each non-empty, one line, at most MAX_NAME_CHARS characters."""
    if not raw.strip():
        return ()
    names = tuple(part.strip() for part in raw.split(","))
    allowed = f"allowed: comma-separated names of 1 to {MAX_NAME_CHARS} characters, e.g. Ravi,Asha"
    for name in names:
        if not name:
            raise ValueError(f"an empty name; {allowed}")
        if len(name) > MAX_NAME_CHARS:
            raise ValueError(f"{name[:MAX_NAME_CHARS]!r}... has {len(name)} characters; {allowed}")
        if not name.isprintable():  # a newline or a control character would break every format's lines
            raise ValueError(f"{name!r} holds a control character; {allowed}")
    return names


def parse_burn_in(raw: str) -> str:
    """BURN_IN: off (""), source (the spoken language, detected or given), or a language code."""
    from pipeline.errors import PipelineError
    from pipeline.languages import check_language

    value = raw.strip()
    if value.lower() in ("", "off", "false", "no", "0"):
        return ""
    if value.lower() in ("source", "on", "true", "yes", "1"):
        return "source"
    try:
        return check_language(value.lower(), allow_auto=False)
    except PipelineError as exc:
        raise ValueError(f"{exc}; or off, or source (the spoken language)") from None


def reading_rules(config: Config) -> ReadingRules:
    from pipeline.subtitles.cues import ReadingRules

    return ReadingRules(
        max_line_chars=config.max_line_chars,
        max_lines=config.max_lines,
        max_cps=config.max_cps,
        dialogue=config.dialogue,
    )


def ass_options(config: Config, width: int = 1920, height: int = 1080) -> AssOptions:
    from pipeline.writers.ass import AssOptions

    return AssOptions(
        font=config.subtitle_font,
        size=config.subtitle_font_size,
        karaoke=config.ass_karaoke,
        width=width,
        height=height,
    )
