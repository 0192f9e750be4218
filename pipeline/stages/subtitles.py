"""The subtitles stage: cues for every track, timed against the speech the ASR worker found, in each format."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.stages.context import Context, StageResult, read_transcript


@dataclass(frozen=True)
class Subtitled(StageResult):
    cues: dict[str, int]  # language -> cues
    outputs: list[str]


def subtitles(ctx: Context) -> Subtitled:
    from pipeline.writers import ReadingRules, build_cues, write_subtitles

    config = ctx.config
    rules = ReadingRules(max_line_chars=config.max_line_chars, max_lines=config.max_lines, max_cps=config.max_cps)
    outputs = []
    cues_per_language = {}
    # Every language's cues are timed against the speech of the spoken audio, which the ASR worker found.
    speech = read_transcript(ctx.output(ctx.source_language, "json")).speech
    for language in ctx.languages:
        transcript = read_transcript(ctx.output(language, "json"))
        cues = build_cues(transcript.segments, rules, duration=transcript.duration, speech=speech)
        cues_per_language[language] = len(cues)
        for fmt in config.subtitle_formats:
            write_subtitles(cues, ctx.output(language, fmt), fmt)
            outputs.append(ctx.output(language, fmt).name)
    return Subtitled(cues_per_language, outputs)
