"""Clips with known speech onsets, and how far subtitle cues fall from them (the E2E and MLX timing suites).

A clip is sentences laid end to end with silences of known length between them. A sentence's true onset and
offset are its place in the clip plus where speech starts and ends inside its own source file, which
`speech_bounds` measures from the samples (an energy detector with hysteresis): recordings carry their own
lead-in, room noise and breath, so nothing here is a guessed constant.

Scoring: cues are assigned to the sentence whose stretch of the clip (up to the middle of the silences either
side) holds the cue's midpoint. A sentence's start error is its first cue's start minus its onset; its end error
is its last cue's end minus the speech's end, except that a cue the reading rules keep on screen longer (at
least `min_duration`, at most `max_cps` characters a second, never onto the next cue) is judged against the
later of the speech's end and the end those rules give it from its start: lingering there is the rule, not a
timing error, while a cue that ends late beyond it, or early, counts.
"""

from __future__ import annotations

import itertools
import math
import shutil
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import numpy as np

from pipeline.audio import SAMPLE_RATE, read_all
from pipeline.subtitles import Cue, ReadingRules

REPO = Path(__file__).resolve().parent.parent
JFK = REPO / "tests" / "fixtures" / "jfk.wav"
JFK_TEXT = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
_FRAME = SAMPLE_RATE // 100  # 10 ms


@dataclass(frozen=True)
class Source:
    path: Path  # 16 kHz mono 16-bit WAV
    text: str
    voice: str


@dataclass(frozen=True)
class Sentence:
    text: str
    voice: str
    onset: float  # seconds from the start of the clip
    offset: float


@dataclass(frozen=True)
class Clip:
    path: Path
    sentences: tuple[Sentence, ...]
    duration: float


def speech_bounds(samples: np.ndarray) -> tuple[float, float]:
    """Where speech starts and ends in `samples` (float, 16 kHz), in seconds. Frames 20 dB over the noise floor
    are surely speech; the bounds then extend over the neighbouring frames 8 dB over it (soft onsets, decays)."""
    frames = len(samples) // _FRAME
    power = np.square(samples[: frames * _FRAME].astype(np.float64)).reshape(frames, _FRAME).mean(axis=1)
    level = 10 * np.log10(power + 1e-12)
    # The floor: the quietest tenth of the file (room noise), but no lower than 60 dB under its peak, so
    # digital silence (synthetic speech) does not make every dithered sample "speech".
    floor = max(float(np.percentile(level, 10)), float(level.max()) - 60)
    loud = np.flatnonzero(level >= floor + 20)
    if not len(loud):
        raise ValueError("no speech found")
    first, last = int(loud[0]), int(loud[-1])
    while first > 0 and level[first - 1] >= floor + 8:
        first -= 1
    while last + 1 < frames and level[last + 1] >= floor + 8:
        last += 1
    return first * _FRAME / SAMPLE_RATE, (last + 1) * _FRAME / SAMPLE_RATE


def to_wav16k(source: Path, target: Path) -> Path:
    """Any audio file as 16 kHz mono 16-bit PCM (ffmpeg), the pipeline's working format."""
    args = ["-i", str(source), "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", "-map_metadata", "-1", str(target)]
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)
    return target


def espeak(text: str, voice: str, target: Path, wpm: int = 150) -> Source:
    """One sentence spoken by espeak-ng's `voice`, as a 16 kHz WAV."""
    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    raw = target.with_suffix(".22k.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True)
    return Source(to_wav16k(raw, target), text, f"espeak-ng {voice}")


def librivox(clip: str) -> Source:
    """A LibriVox clip from Debian's pocketsphinx-testdata with its transcript (lower case, no punctuation)."""
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        if line.endswith(f"({clip})"):
            text = line.split("</s>")[0].removeprefix("<s>").strip()
            return Source(LIBRIVOX / f"{clip}.wav", text, "LibriVox reader")
    raise FileNotFoundError(f"{clip} not in {LIBRIVOX}/transcription (apt-get install pocketsphinx-testdata)")


def goforward(target: Path) -> Source:
    """pocketsphinx-testdata's goforward.raw (another speaker: "go forward ten meters") as a WAV: the raw file
    is already 16 kHz mono 16-bit little-endian PCM, so it only needs a header."""
    raw = LIBRIVOX.parent / "goforward.raw"
    if not raw.is_file():
        raise FileNotFoundError(f"{raw} is missing (apt-get install pocketsphinx-testdata)")
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(raw.read_bytes())
    return Source(target, "go forward ten meters", "pocketsphinx speaker")


def build_clip(
    sources: Sequence[Source],
    silences: Sequence[float],
    target: Path,
    edge: float = 1.0,
    room_tone_db: float | None = None,
) -> Clip:
    """`sources` one after another, `silences[i]` seconds of silence between source i and i+1 and `edge`
    seconds before the first and after the last; written to `target` (16 kHz mono WAV). `room_tone_db`: white
    noise at that level (dB full scale) under the whole clip, as a room gives a recording (digital silence
    between sentences is easier than real life); seeded, so the clip is the same on every run."""
    assert len(silences) == len(sources) - 1
    pieces, sentences, at = [np.zeros(round(edge * SAMPLE_RATE), np.float32)], [], edge
    for i, source in enumerate(sources):
        samples = read_all(source.path)
        lead, tail = speech_bounds(samples)
        sentences.append(Sentence(source.text, source.voice, round(at + lead, 3), round(at + tail, 3)))
        gap = silences[i] if i < len(silences) else edge
        pieces += [samples, np.zeros(round(gap * SAMPLE_RATE), np.float32)]
        at += len(samples) / SAMPLE_RATE + gap
    audio = np.concatenate(pieces)
    if room_tone_db is not None:
        audio += np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32) * 10 ** (room_tone_db / 20)
    pcm = np.clip(np.round(audio * 32768), -32768, 32767).astype("<i2")
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return Clip(target, tuple(sentences), len(audio) / SAMPLE_RATE)


# --- scoring ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    start_errors: tuple[float, ...]  # per sentence, signed: first cue's start - speech onset
    end_errors: tuple[float, ...]  # per sentence, signed: last cue's end - the end it should have

    @property
    def start_median(self) -> float:
        return round(median(abs(e) for e in self.start_errors), 3)

    @property
    def start_max(self) -> float:
        return round(max(abs(e) for e in self.start_errors), 3)

    @property
    def end_median(self) -> float:
        return round(median(abs(e) for e in self.end_errors), 3)

    def figures(self) -> dict[str, float]:
        return {
            "cue_start_median_s": self.start_median,
            "cue_start_max_s": self.start_max,
            "cue_end_median_s": self.end_median,
        }


def _display_end(cue: Cue, following: Cue | None, rules: ReadingRules, media_end: float) -> float:
    """The earliest end the reading rules give `cue` from its start, held back by the next cue."""
    chars = sum(len(line) for line in cue.lines)
    end = cue.start + min(rules.max_duration, max(rules.min_duration, math.ceil(1000 * chars / rules.max_cps) / 1000))
    return min(end, following.start - rules.min_gap if following else media_end)


RULES = ReadingRules()  # the pipeline's default reading rules, which the CLI runs with


def score(cues: Sequence[Cue], clip: Clip, rules: ReadingRules = RULES) -> Timing:
    """Start and end errors of `cues` against the clip's sentences; AssertionError if a sentence has no cue."""
    sentences = clip.sentences
    edges = [-math.inf, *((a.offset + b.onset) / 2 for a, b in itertools.pairwise(sentences)), math.inf]
    starts, ends = [], []
    for i, sentence in enumerate(sentences):
        mine = [c for c in cues if edges[i] <= (c.start + c.end) / 2 < edges[i + 1]]
        assert mine, f"no cue for sentence {i + 1} ({sentence.onset:.2f}-{sentence.offset:.2f} s): {sentence.text}"
        first, last = mine[0], mine[-1]
        following = next((c for c in cues if c.start > last.start), None)
        expected = max(sentence.offset, _display_end(last, following, rules, clip.duration))
        starts.append(round(first.start - sentence.onset, 3))
        ends.append(round(last.end - expected, 3))
    return Timing(tuple(starts), tuple(ends))
