"""Checks that a subtitle file is well formed, readable, and covers the speech."""

from __future__ import annotations

from pathlib import Path

from pipeline.audio import read_all
from pipeline.subtitles import ReadingRules
from pipeline.writers import read_subtitles

RULES = ReadingRules()


def assert_readable(path: Path, rules: ReadingRules = RULES) -> list:
    cues = read_subtitles(path)
    assert cues, f"{path.name} has no cues"
    previous_end = 0.0
    for cue in cues:
        assert cue.end > cue.start >= previous_end - 1e-3, f"{path.name}: overlapping or unordered cue {cue}"
        assert cue.end - cue.start <= rules.max_duration + 1e-3, f"{path.name}: cue longer than 7 s: {cue}"
        assert 1 <= len(cue.lines) <= rules.max_lines, f"{path.name}: {len(cue.lines)} lines in {cue}"
        assert all(len(line) <= rules.max_line_chars for line in cue.lines), (
            f"{path.name}: long line in {cue}"
        )
        assert all(line.strip() for line in cue.lines), f"{path.name}: empty line in {cue}"
        previous_end = cue.end
    return cues


def speech_intervals(wav: Path) -> list[tuple[float, float]]:
    """Where there is speech, by Silero VAD (an independent judge, not the ASR's own segments)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    audio = read_all(wav)
    stamps = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=300))
    return [(s["start"] / 16000, s["end"] / 16000) for s in stamps]


def coverage(cues: list, speech: list[tuple[float, float]]) -> float:
    """Share of speech time during which a cue is on screen."""
    total = sum(end - start for start, end in speech)
    covered = 0.0
    for start, end in speech:
        for cue in cues:
            covered += max(0.0, min(end, cue.end) - max(start, cue.start))
    return covered / total if total else 1.0
