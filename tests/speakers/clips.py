"""Real multi-speaker clips for the diarization tests, and how a diarization is scored against a reference.

`turns_clip` puts recordings of three different real people in turns with pauses: the LibriVox reader of Debian's
pocketsphinx-testdata (twice), John F. Kennedy (tests/fixtures/jfk.wav) and the speaker of pocketsphinx's
goforward.raw. Built from the installed files at test time (deterministic); its reference turns are where each
recording's speech starts and ends by Silero VAD.
"""

from __future__ import annotations

import itertools
import wave
from pathlib import Path

import numpy as np

from pipeline import audio
from pipeline.speakers import Turn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TESTDATA = Path("/usr/share/pocketsphinx/test/data")
LIBRIVOX = str(TESTDATA / "librivox" / "sense_and_sensibility_01_austen_64kb-{}.wav")
PAUSE_S = 1.0

# (speaker, recording) in the order they speak
TURNS = (
    ("reader", Path(LIBRIVOX.format("0870"))),
    ("kennedy", FIXTURES / "jfk.wav"),
    ("reader", Path(LIBRIVOX.format("0890"))),
    ("goforward", TESTDATA / "goforward.raw"),
    ("reader", Path(LIBRIVOX.format("0920"))),
)


def _samples(path: Path) -> np.ndarray:
    if path.suffix == ".raw":  # headerless 16 kHz mono 16-bit little-endian PCM
        return np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.float32) / 32768.0
    return audio.read_all(path)


def _speech_edges(samples: np.ndarray) -> tuple[float, float]:
    """Where the recording's speech starts and ends, by Silero VAD (the model faster-whisper ships) with the
    padding the pipeline's cue timing uses (pipeline.asr.speech)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    stamps = get_speech_timestamps(samples, VadOptions(speech_pad_ms=30, min_silence_duration_ms=160))
    return stamps[0]["start"] / audio.SAMPLE_RATE, stamps[-1]["end"] / audio.SAMPLE_RATE


def turns_clip(target: Path) -> list[Turn]:
    """Write the clip to `target` (16 kHz mono WAV); return its reference turns."""
    missing = [str(p) for _, p in TURNS if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)}: apt-get install pocketsphinx-testdata")
    pieces, reference, at = [], [], 0.0
    pause = np.zeros(int(PAUSE_S * audio.SAMPLE_RATE), dtype=np.float32)
    for i, (speaker, path) in enumerate(TURNS):
        samples = _samples(path)
        start, end = _speech_edges(samples)
        reference.append(Turn(round(at + float(start), 3), round(at + float(end), 3), speaker))
        pieces += [samples] + ([pause] if i < len(TURNS) - 1 else [])
        at += len(samples) / audio.SAMPLE_RATE + (PAUSE_S if i < len(TURNS) - 1 else 0)
    pcm = (np.clip(np.concatenate(pieces), -1, 1) * 32767).astype("<i2")
    with wave.open(str(target), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(audio.SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())
    return reference


def changes(turns: list[Turn]) -> list[tuple[float, float]]:
    """(end of one speaker's talk, start of the next speaker's) at every change of speaker, in order."""
    merged: list[Turn] = []
    for turn in sorted(turns, key=lambda t: t.start):
        if merged and merged[-1].speaker == turn.speaker:
            merged[-1] = Turn(merged[-1].start, max(merged[-1].end, turn.end), turn.speaker)
        else:
            merged.append(turn)
    return [(a.end, b.start) for a, b in itertools.pairwise(merged)]


def read_rttm(path: Path) -> list[Turn]:
    turns = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "SPEAKER":
            start, length = float(parts[3]), float(parts[4])
            turns.append(Turn(start, start + length, parts[7]))
    return turns


def der(reference: list[Turn], hypothesis: list[Turn], collar: float = 0.25) -> float:
    """Diarization error rate: pyannote.metrics' where it is installed, else the same definition here (10 ms
    frames; a `collar` around every reference boundary, half before and half after it, not scored, as pyannote
    counts it: the stricter reading of "collar 0.25 s"; the optimal one-to-one mapping of hypothesis to reference
    speakers)."""
    try:
        from pyannote.core import Annotation, Segment
        from pyannote.metrics.diarization import DiarizationErrorRate
    except ImportError:
        return _der(reference, hypothesis, collar)
    ref, hyp = Annotation(), Annotation()
    for i, t in enumerate(reference):
        ref[Segment(t.start, t.end), i] = t.speaker
    for i, t in enumerate(hypothesis):
        hyp[Segment(t.start, t.end), i] = t.speaker
    return float(DiarizationErrorRate(collar=collar)(ref, hyp))


def _der(reference: list[Turn], hypothesis: list[Turn], collar: float) -> float:
    from scipy.optimize import linear_sum_assignment

    step = 0.01
    end = max(t.end for t in [*reference, *hypothesis])
    frames = int(end / step) + 1

    def activity(turns: list[Turn]) -> tuple[list[str], np.ndarray]:
        names = sorted({t.speaker for t in turns})
        active = np.zeros((len(names), frames), dtype=bool)
        for t in turns:
            active[names.index(t.speaker), round(t.start / step) : round(t.end / step)] = True
        return names, active

    _, ref = activity(reference)
    _, hyp = activity(hypothesis)
    scored = np.ones(frames, dtype=bool)
    for t in reference:
        for edge in (t.start, t.end):
            scored[max(0, round((edge - collar / 2) / step)) : round((edge + collar / 2) / step)] = False
    ref, hyp = ref[:, scored], hyp[:, scored]
    n_ref, n_hyp = ref.sum(axis=0), hyp.sum(axis=0)
    overlap = ref.astype(int) @ hyp.T.astype(int)  # frames where both talk, per (reference, hypothesis) pair
    rows, cols = linear_sum_assignment(-overlap)
    correct = overlap[rows, cols].sum()
    error = np.maximum(n_ref, n_hyp).sum() - correct
    return float(error / max(n_ref.sum(), 1))
