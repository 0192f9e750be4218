"""The pipeline's working audio: 16 kHz mono 16-bit PCM WAV, read in bounded chunks.

Long media must not cost memory in proportion to its length, so ASR sees the audio one chunk at a time.
A chunk ends at the quietest 20 ms frame near its nominal end, so that a cut rarely splits a word.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where samples are read: the CLI process only asks for durations
    import numpy as np


SAMPLE_RATE = 16_000
_FRAME = SAMPLE_RATE // 50  # 20 ms
_SEARCH_SECONDS = 10.0  # how far back from a chunk's nominal end to look for a quiet cut


@dataclass(frozen=True, slots=True)
class Chunk:
    offset: float  # seconds from the start of the audio
    samples: np.ndarray  # float32 in [-1, 1]

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def duration(path: str | Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def _check(wav: wave.Wave_read, path: str | Path) -> None:
    if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, 2):
        raise ValueError(
            f"{path}: expected 16 kHz mono 16-bit PCM, got {wav.getframerate()} Hz, "
            f"{wav.getnchannels()} channel(s), {8 * wav.getsampwidth()}-bit"
        )


def read_all(path: str | Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        _check(wav, path)
        return _samples(wav.readframes(wav.getnframes()))


def _samples(raw: bytes) -> np.ndarray:
    """16-bit little-endian PCM bytes as float32 in [-1, 1]."""
    import numpy as np

    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def _quietest_cut(samples: np.ndarray, search_from: int) -> int:
    """Index (a frame boundary at or after `search_from`) where 20 ms RMS energy is lowest."""
    import numpy as np

    region = samples[search_from:]
    frames = len(region) // _FRAME
    if frames < 2:
        return len(samples)
    energy = np.square(region[: frames * _FRAME].reshape(frames, _FRAME)).mean(axis=1)
    return search_from + (int(np.argmin(energy)) + 1) * _FRAME


def chunks(path: str | Path, chunk_seconds: float) -> Iterator[Chunk]:
    """Yield consecutive chunks of about `chunk_seconds` that together cover the whole file exactly once.

    A tail shorter than half a chunk joins the last chunk (which may then reach 1.5 chunks): a short piece
    would cost a part-filled window of its own, and a file just over one chunk would be split for nothing."""
    import numpy as np

    target = max(int(chunk_seconds * SAMPLE_RATE), 2 * int(_SEARCH_SECONDS * SAMPLE_RATE))
    search = int(_SEARCH_SECONDS * SAMPLE_RATE)
    with wave.open(str(path), "rb") as wav:
        _check(wav, path)
        total = wav.getnframes()
        carry = np.zeros(0, dtype=np.float32)
        position = 0  # samples already yielded
        while position < total:
            want = target - len(carry)
            raw = wav.readframes(max(want, 0))
            fresh = _samples(raw)
            buffer = np.concatenate([carry, fresh]) if len(carry) else fresh
            if len(buffer) == 0:
                break
            remaining = total - position - len(buffer)
            if 0 < remaining < target // 2:
                buffer = np.concatenate([buffer, _samples(wav.readframes(remaining))])
                remaining = 0
            last = remaining <= 0
            cut = len(buffer) if last else _quietest_cut(buffer, len(buffer) - search)
            yield Chunk(offset=position / SAMPLE_RATE, samples=buffer[:cut])
            carry = buffer[cut:]
            position += cut
