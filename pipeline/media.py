"""Media in and out through the ffmpeg CLI: probe, extract 16 kHz mono audio, mux soft subtitles."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline import atomic
from pipeline.errors import PipelineError
from pipeline.languages import iso639_2, name

# Subtitle codecs each container carries natively: MP4 players read mov_text (3GPP timed text); Matroska carries SRT.
SUBTITLE_CODECS = {"mp4": "mov_text", "mkv": "srt"}


@dataclass(frozen=True)
class MediaInfo:
    path: str
    format: str
    duration: float
    audio_streams: int
    video_streams: int
    audio_codec: str | None

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise PipelineError(f"{name} not found on PATH; install ffmpeg (e.g. `apt-get install ffmpeg`)")
    return found


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no details"


def probe(path: Path) -> MediaInfo:
    """Check that `path` is readable media with an audio stream; one-line errors otherwise."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise PipelineError(f"media file not found: {path}") from None
    except OSError as exc:  # a name too long, a folder we may not enter
        raise PipelineError(f"cannot read media file {path}: {exc.strerror}") from None
    if not path.is_file():
        raise PipelineError(f"media path is not a file: {path}")
    if stat.st_size == 0:
        raise PipelineError(f"media file is empty (0 bytes): {path}")
    result = subprocess.run(
        [
            _tool("ffprobe"),
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    data = json.loads(result.stdout or "{}") if result.returncode == 0 else {}
    if result.returncode != 0 or "format" not in data:
        raise PipelineError(
            f"not a media file ffmpeg can read: {path} (ffprobe: {_last_line(result.stderr)}); "
            "allowed: audio or video files with an audio stream"
        )
    streams = data.get("streams", [])
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    # Cover art in an MP3 is a "video" stream with one frame; it is not a video to mux into.
    video = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    if not audio:
        raise PipelineError(f"no audio stream in {path}; allowed: media with at least one audio stream")
    duration = float(data["format"].get("duration") or audio[0].get("duration") or 0.0)
    if duration <= 0:
        raise PipelineError(f"audio stream of {path} has no duration (truncated or empty file?)")
    return MediaInfo(
        path=str(path),
        format=data["format"].get("format_name", ""),
        duration=duration,
        audio_streams=len(audio),
        video_streams=len(video),
        audio_codec=audio[0].get("codec_name"),
    )


_OUT_TIME = re.compile(r"out_time_(?:us|ms)=(\d+)")


def _run_ffmpeg(
    args: Sequence[str],
    total: float,
    on_progress: Callable[[float], None] | None,
    what: str,
    cwd: Path | None = None,  # a filter's file named relative to it needs no filtergraph escaping (burn-in)
) -> None:
    """Run ffmpeg, feeding its `-progress` output to `on_progress(seconds_done)`; one-line error on failure."""
    command = [
        _tool("ffmpeg"),
        "-nostdin",
        "-hide_banner",
        "-v",
        "error",
        "-xerror",
        "-progress",
        "pipe:1",
        *args,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    assert process.stdout is not None and process.stderr is not None
    for line in process.stdout:
        match = _OUT_TIME.match(line.strip())
        if match and on_progress:
            on_progress(min(total, int(match.group(1)) / 1e6))
    stderr = process.stderr.read()
    if process.wait() != 0:
        raise PipelineError(f"ffmpeg could not {what}: {_last_line(stderr)}")


def extract_audio(
    media: Path, target: Path, *, duration: float, on_progress: Callable[[float], None] | None = None
) -> None:
    """Decode the first audio stream to 16 kHz mono 16-bit WAV at `target`, atomically (ffmpeg streams it)."""
    partial = target.with_name(f".{target.name}.part")
    try:
        _run_ffmpeg(
            [
                "-y",
                "-i",
                str(media),
                "-map",
                "0:a:0",
                "-vn",
                "-ac",
                "1",
                "-ar",
                "16000",
                "-c:a",
                "pcm_s16le",
                "-f",
                "wav",
                str(partial),
            ],
            duration,
            on_progress,
            f"decode the audio of {media}",
        )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def mux_container(media: Path, mode: str) -> str:
    """The container to mux into: asked for, or the input's own when it is MP4/Matroska (MKV carries anything)."""
    if mode in SUBTITLE_CODECS:
        return mode
    return "mp4" if media.suffix.lower() in (".mp4", ".m4v", ".mov") else "mkv"


def mux_subtitles(
    media: Path,
    tracks: Sequence[tuple[str, Path]],
    target: Path,
    *,
    duration: float,
    on_progress: Callable[[float], None] | None = None,
) -> None:
    """Copy the video and audio of `media` into `target` with one soft-subtitle stream per (language, SRT file)."""
    container = target.suffix.lstrip(".").lower()
    codec = SUBTITLE_CODECS[container]
    args = ["-y", "-i", str(media)]
    for _, path in tracks:
        args += ["-f", "srt", "-i", str(path)]
    args += ["-map", "0:v?", "-map", "0:a"]
    for index in range(len(tracks)):
        args += ["-map", f"{index + 1}:0"]
    args += ["-c:v", "copy", "-c:a", "copy", "-c:s", codec]
    for index, (language, _) in enumerate(tracks):
        args += [
            f"-metadata:s:s:{index}",
            f"language={iso639_2(language)}",
            f"-metadata:s:s:{index}",
            f"title={name(language)}",
        ]
    partial = atomic.partial_path(target)  # fits wherever the target fits (a 240-byte stem)
    try:
        _run_ffmpeg(
            [*args, "-f", "mp4" if container == "mp4" else "matroska", str(partial)],
            duration,
            on_progress,
            f"mux subtitles into {target.name}",
        )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def subtitle_streams(path: Path) -> list[dict]:
    """The subtitle streams of a media file (codec, language tag): what tests and `status` inspect."""
    result = subprocess.run(
        [
            _tool("ffprobe"),
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-select_streams",
            "s",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [
        {"codec": s.get("codec_name"), "language": s.get("tags", {}).get("language")}
        for s in json.loads(result.stdout).get("streams", [])
    ]
