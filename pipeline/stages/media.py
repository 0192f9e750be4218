"""The probe and extract stages: what the media holds, and its audio as 16 kHz mono PCM for ASR."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import audio, media
from pipeline.errors import PipelineError
from pipeline.progress import stage_bar
from pipeline.stages.context import Context, StageResult


@dataclass(frozen=True)
class Probed(StageResult):
    duration: float
    audio_streams: int
    video_streams: int


@dataclass(frozen=True)
class Extracted(StageResult):
    outputs: list[str]
    audio_seconds: float


def probe(ctx: Context) -> Probed:
    # `prepare` probes the media and records this stage done; it runs only for a manifest that says otherwise.
    info = media.probe(ctx.media)
    ctx.manifest.record_media_info(info)
    return Probed(info.duration, info.audio_streams, info.video_streams)


def extract(ctx: Context) -> Extracted:
    duration = ctx.manifest.media_info.duration
    ctx.work.mkdir(exist_ok=True)
    with stage_bar("extract audio", duration, "s") as bar:
        media.extract_audio(ctx.media, ctx.audio, duration=duration, on_progress=bar.update_to)
    seconds = audio.duration(ctx.audio)
    if seconds <= 0:
        raise PipelineError(f"the audio stream of {ctx.media} decoded to nothing (truncated file?)")
    return Extracted([str(ctx.audio.relative_to(ctx.job_dir))], round(seconds, 3))
