"""Where the audio has speech, to time cues by: Silero VAD (the ONNX model faster-whisper ships), a chunk at a time.

The ASR's own VAD pads its speech generously (so that Whisper hears every onset); cue timing wants the edges
themselves, so this pass runs Silero again with its own reference padding. Silero is small next to Whisper, and
the pass holds one chunk at a time.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.audio import SAMPLE_RATE, chunks

CHUNK_SECONDS = 60.0  # Silero's memory grows with the audio it is handed at once
# Silero's reference padding (30 ms, about one of its windows: it reports the first window it is sure of);
# pauses shorter than the ASR path's 160 ms are not pauses a cue could start in.
_VAD = {"speech_pad_ms": 30, "min_silence_duration_ms": 160}


def speech_regions(path: str | Path) -> list[tuple[float, float]] | None:
    """(start, end) seconds of speech in a 16 kHz mono WAV, in order; None where no VAD is installed or the
    audio is gone (a resumed job whose work folder was cleared): the cues then keep the ASR's times."""
    if not os.path.isfile(path):
        return None
    try:
        from faster_whisper.vad import VadOptions, get_speech_timestamps
    except ImportError:  # an install without faster-whisper (mlx alone)
        return None
    options = VadOptions(**_VAD)
    regions: list[tuple[float, float]] = []
    for chunk in chunks(path, CHUNK_SECONDS):
        for stamp in get_speech_timestamps(chunk.samples, options):
            start, end = chunk.offset + stamp["start"] / SAMPLE_RATE, chunk.offset + stamp["end"] / SAMPLE_RATE
            if regions and start <= regions[-1][1]:  # speech across a chunk boundary is one region
                regions[-1] = (regions[-1][0], max(end, regions[-1][1]))
            else:
                regions.append((start, end))
    return regions
