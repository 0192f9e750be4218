"""Media without speech, made with sox for the tests that need it: instrumental music, white noise, silence; and
clips joined from real speech and those (a plain module, as subtitle_checks is: conftest is not importable)."""

from __future__ import annotations

import subprocess
from pathlib import Path

RATE = ["-r", "16000", "-c", "1", "-b", "16"]
# Plucked triads over a bass note, four beats a chord (C, Am, F, G): music with rhythm and harmony, no voice.
CHORDS = (("C3", "E3", "G3"), ("A2", "C3", "E3"), ("F2", "A2", "C3"), ("G2", "B2", "D3"))


def sox(*args: str) -> None:
    # -R: repeatable (sox seeds its noise generator the same way every run).
    subprocess.run(["sox", "-R", "-q", *args], check=True)


def music(target: Path, seconds: float) -> Path:
    notes = []
    for index, chord in enumerate(CHORDS):
        for beat in range(4):
            note = target.with_name(f"{target.stem}-note{index}{beat}.wav")
            bass = chord[0][:-1] + "1"
            plucks = [arg for tone in chord for arg in ("pluck", tone)]
            sox("-n", *RATE, str(note), "synth", "0.5", *plucks, "sine", bass, "remix", "-", "fade", "0", "0.5", "0.3",
                "norm", "-6")
            notes.append(str(note))
    bar = target.with_name(f"{target.stem}-bar.wav")
    sox(*notes, str(bar))
    repeats = int(seconds // 8) + 1
    sox(str(bar), *RATE, str(target), "repeat", str(repeats), "trim", "0", str(seconds))
    for path in (*notes, bar):
        Path(path).unlink()
    return target


def silence(target: Path, seconds: float) -> Path:
    sox("-n", *RATE, str(target), "trim", "0", str(seconds))
    return target


def noise(target: Path, seconds: float) -> Path:
    sox("-n", *RATE, str(target), "synth", str(seconds), "whitenoise", "vol", "0.3")
    return target


def join(target: Path, *parts: Path | str) -> Path:
    sox(*map(str, parts), *RATE, str(target))
    return target


def duration(path: Path | str) -> float:
    return float(subprocess.run(["soxi", "-D", str(path)], capture_output=True, text=True, check=True).stdout)
