"""Where the audio has speech, to time cues by: Silero VAD (the ONNX model faster-whisper ships), run by the ASR
worker over each chunk it streams, so that the audio is read once and onnxruntime stays out of the pipeline's
own process (it writes telemetry files wherever it is imported; the worker turns that off).

The ASR's own VAD pads its speech generously (so that Whisper hears every onset); cue timing wants the edges
themselves, so this pass runs Silero again with its reference padding. Silero is small next to Whisper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.audio import SAMPLE_RATE

if TYPE_CHECKING:
    from pipeline.audio import Chunk

# Silero's reference padding (30 ms, about one of its windows: it reports the first window it is sure of);
# pauses shorter than the ASR path's 160 ms are not pauses a cue could start in.
_VAD = {"speech_pad_ms": 30, "min_silence_duration_ms": 160}


class SpeechRegions:
    """(start, end) seconds of speech, in order, gathered chunk by chunk. Empty where no VAD is installed (an
    install without faster-whisper): the cues then keep the ASR's times."""

    def __init__(self) -> None:
        self.regions: list[tuple[float, float]] = []
        try:
            from faster_whisper.vad import VadOptions
        except ImportError:
            self._options = None
        else:
            self._options = VadOptions(**_VAD)

    def add(self, chunk: Chunk) -> None:
        if self._options is None:
            return
        from faster_whisper.vad import get_speech_timestamps

        for stamp in get_speech_timestamps(chunk.samples, self._options):
            start = round(chunk.offset + stamp["start"] / SAMPLE_RATE, 3)
            end = round(chunk.offset + stamp["end"] / SAMPLE_RATE, 3)
            if self.regions and start <= self.regions[-1][1]:  # speech across a chunk boundary is one region
                self.regions[-1] = (self.regions[-1][0], max(end, self.regions[-1][1]))
            else:
                self.regions.append((start, end))
