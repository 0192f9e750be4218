"""The mux stage: every track as a soft, language-tagged subtitle stream in a copy of the video."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import media
from pipeline.progress import stage_bar
from pipeline.stages.context import Context, Skipped, StageResult


@dataclass(frozen=True)
class Muxed(StageResult):
    outputs: list[str]
    container: str
    tracks: list[str]  # their languages, in stream order
    subtitle_codec: str


def mux(ctx: Context) -> Muxed | Skipped:
    info = ctx.manifest.media_info
    if ctx.config.mux == "off":
        return Skipped("SUBTITLE_MUX=off")
    if not info.video_streams:
        return Skipped("the media has no video stream")
    container = media.mux_container(ctx.media, ctx.config.mux)
    target = ctx.job_dir / f"{ctx.stem}.subtitled.{container}"
    tracks = []
    for language in ctx.languages:
        srt = ctx.output(language, "srt")
        if not srt.is_file():  # SUBTITLE_FORMATS without srt: write the track just for muxing
            from pipeline.writers import read_subtitles, write_subtitles

            srt = ctx.work / f"{language}.srt"
            write_subtitles(read_subtitles(ctx.output(language, "vtt")), srt, "srt")
        tracks.append((language, srt))
    with stage_bar("mux subtitles", info.duration, "s") as bar:
        media.mux_subtitles(ctx.media, tracks, target, duration=info.duration, on_progress=bar.update_to)
    return Muxed([target.name], container, [lang for lang, _ in tracks], media.SUBTITLE_CODECS[container])
