"""Hard subtitles: one language's cues, styled as the ASS output is (a colour per speaker), rendered into the
video by ffmpeg's libass (its `subtitles` filter) as `<stem>.<lang>.burned.mp4`, written atomically.

The ASS document is made for the video's own size (PlayResX/Y), so the font size setting means the same on any
video. ffmpeg runs in the job's work folder and names the ASS file relative to it: a job folder's path may hold
characters a filtergraph would read as syntax (`:`, `'`, `,`, `[`), a language code never does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import atomic, media
from pipeline.asr import Transcript
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.stages.context import Context

# Audio an MP4 holds as it is; anything else (Opus, Vorbis, PCM...) is encoded to AAC.
_MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac"})


def libass_available() -> bool:
    """Whether this ffmpeg was built with libass (its `subtitles` filter)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return False
    listing = subprocess.run([ffmpeg, "-hide_banner", "-filters"], capture_output=True, text=True, check=False)
    return any(line.split()[1:2] == ["subtitles"] for line in listing.stdout.splitlines())


def check(burn_in: str, *, workflow: str, video_streams: int, media_path: str, languages: Sequence[str]) -> None:
    """Refuse at prepare time a burn-in that cannot be made: the one-line errors of issue 14."""
    if not burn_in:
        return
    if workflow != "subtitle":
        raise PipelineError(
            f"BURN_IN={burn_in} needs the subtitle workflow, not {workflow}; allowed: BURN_IN=off here, or "
            "`pipeline subtitle ... --burn-in`"
        )
    if not video_streams:
        raise PipelineError(
            f"BURN_IN={burn_in}: {media_path} has no video stream to burn subtitles into; allowed: a video file, "
            "or BURN_IN=off"
        )
    if burn_in != "source" and burn_in not in languages:
        raise PipelineError(
            f"BURN_IN={burn_in} is not a language of this job; allowed: source or one of {', '.join(languages)}"
        )
    if not libass_available():
        raise PipelineError(
            "BURN_IN needs ffmpeg built with libass (no `subtitles` filter in `ffmpeg -filters`); allowed: "
            "BURN_IN=off, or an ffmpeg with libass (Debian's has it)"
        )


def video_size(path: Path) -> tuple[int, int]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "json",
         str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    streams = json.loads(result.stdout or "{}").get("streams") or [{}]
    width, height = streams[0].get("width"), streams[0].get("height")
    if result.returncode != 0 or not width or not height:
        raise PipelineError(f"cannot read the video size of {path}; allowed: media with a video stream")
    return int(width), int(height)


def burn(
    source: Path,
    ass: Path,
    target: Path,
    *,
    duration: float,
    audio_codec: str | None,
    on_progress: Callable[[float], None] | None = None,
) -> None:
    """Render `ass` onto the first video stream of `source`, with its first audio stream, into MP4 `target`."""
    audio = ["-c:a", "copy"] if audio_codec in _MP4_AUDIO else ["-c:a", "aac", "-b:a", "192k"]
    partial = atomic.partial_path(target)
    # H.264 in 4:2:0 (what every player decodes) needs even sides: an odd one gets a pixel of padding.
    video_filter = f"subtitles=f={ass.name},pad=ceil(iw/2)*2:ceil(ih/2)*2"
    try:
        media._run_ffmpeg(
            ["-y", "-i", str(source.absolute()), "-map", "0:v:0", "-map", "0:a:0", "-vf", video_filter,
             "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", *audio,
             "-movflags", "+faststart", "-f", "mp4", str(partial.absolute())],
            duration,
            on_progress,
            f"burn subtitles into {target.name}",
            cwd=ass.parent,
        )  # fmt: skip
        atomic.commit_file(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _read(path: Path) -> Transcript:
    return Transcript.from_dict(json.loads(path.read_text(encoding="utf-8")))


def burn_in(ctx: Context) -> dict[str, Any]:
    """The mux stage's burn-in: BURN_IN's language (source: the spoken one) burned into the video."""
    from pipeline.progress import stage_bar
    from pipeline.subtitles import build_cues, display_names
    from pipeline.subtitles.settings import ass_options, reading_rules
    from pipeline.writers.subtitles import write_subtitles

    config, info = ctx.config, ctx.manifest.media_info
    language = ctx.source_language if config.burn_in == "source" else config.burn_in
    if language not in ctx.languages:  # a run's --set BURN_IN=... is not checked at prepare
        raise PipelineError(
            f"BURN_IN={config.burn_in} is not a language of this job; allowed: source or one of "
            f"{', '.join(ctx.languages)}"
        )
    source = _read(ctx.output(ctx.source_language, "json"))
    transcript = source if language == ctx.source_language else _read(ctx.output(language, "json"))
    width, height = video_size(ctx.media)
    # Laid out as the subtitle files are (same rules, speech and names), styled for this video's size.
    cues = build_cues(transcript.segments, reading_rules(config), duration=transcript.duration, speech=source.speech)
    ass = ctx.work / f"burn.{language}.ass"
    names = display_names(source.segments, config.speaker_names)
    write_subtitles(cues, ass, "ass", names, ass_options(config, width, height))
    target = ctx.output(language, "mp4").with_suffix(".burned.mp4")
    with stage_bar(f"burn {language} subtitles", info.duration, "s") as bar:
        burn(ctx.media, ass, target, duration=info.duration, audio_codec=info.audio_codec, on_progress=bar.update_to)
    return {
        "output": target.name,
        "language": language,
        "cues": len(cues),
        "size": [width, height],
        "font": [config.subtitle_font, config.subtitle_font_size],
    }
