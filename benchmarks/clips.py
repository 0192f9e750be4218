"""Real speech of any length: the five LibriVox clips (Debian's pocketsphinx-testdata) and jfk.wav, looped.

One "round" is the six recordings back to back (35.7 s, 16 kHz mono); a clip of N seconds loops rounds and
cuts at N. Clips are made once with ffmpeg and kept under .cache/benchmarks/clips.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import ROOT, WORK

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
_JFK = (ROOT / "tests" / "fixtures" / "jfk.wav", ROOT.parent / "shared" / "fixtures" / "jfk.wav")
CLIPS = WORK / "clips"


@dataclass(frozen=True)
class Clip:
    path: Path
    duration_s: float
    description: str

    def to_dict(self) -> dict[str, object]:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return {"path": str(path), "duration_s": self.duration_s, "description": self.description}


def jfk() -> Path:
    for path in _JFK:
        if path.is_file():
            return path
    raise FileNotFoundError(f"jfk.wav not found in {' or '.join(map(str, _JFK))}")


def sources() -> list[Path]:
    librivox = sorted(LIBRIVOX.glob("*.wav"))
    if not librivox:
        raise FileNotFoundError(f"no LibriVox clips in {LIBRIVOX}: apt-get install pocketsphinx-testdata")
    return [*librivox, jfk()]


def _ffmpeg(args: list[str], target: Path) -> Path:
    """Run ffmpeg into a temporary name, then rename: a clip is complete or absent, whoever else runs."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.{os.getpid()}.part{target.suffix}")
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args, str(partial)], check=True)
    os.replace(partial, target)
    return target


def duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return round(float(out.strip()), 3)


def speech_round() -> Path:
    target = CLIPS / "round.wav"
    if target.is_file():
        return target
    inputs = sources()
    args = [arg for path in inputs for arg in ("-i", str(path))]
    streams = "".join(f"[{i}:a]" for i in range(len(inputs)))
    args += [
        "-filter_complex",
        f"{streams}concat=n={len(inputs)}:v=0:a=1[out]",
        "-map",
        "[out]",
        "-ar",
        "16000",
        "-ac",
        "1",
        "-c:a",
        "pcm_s16le",
    ]
    return _ffmpeg(args, target)


def speech(seconds: float, *, video: bool = False) -> Clip:
    """`seconds` of looped real speech: a 16 kHz WAV, or an MP4 (H.264 still frames + AAC) with `video`."""
    name = f"speech-{seconds:g}s" + (".mp4" if video else ".wav")
    target = CLIPS / name
    round_wav = speech_round()
    if not target.is_file():
        loop = ["-stream_loop", "-1", "-i", str(round_wav)]
        if video:
            args = [
                "-f",
                "lavfi",
                "-i",
                "color=c=navy:s=320x180:r=5",
                *loop,
                "-map",
                "0:v",
                "-map",
                "1:a",
                "-t",
                f"{seconds:g}",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "stillimage",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "96k",
                "-movflags",
                "+faststart",
            ]
        else:
            args = [*loop, "-t", f"{seconds:g}", "-c:a", "pcm_s16le"]
        _ffmpeg(args, target)
    kind = "MP4 (H.264 320x180 still + AAC)" if video else "WAV 16 kHz mono"
    return Clip(target, duration(target), f"{kind}: LibriVox x5 + jfk looped ({duration(round_wav):g} s a round)")


def whole(path: Path) -> Clip:
    return Clip(path, duration(path), path.name)
