"""Speech spans -> Whisper's 30 s windows -> batches, streamed across chunk boundaries.

faster-whisper's batched pipeline finds speech over the whole file, packs consecutive speech into windows of at
most 30 s (the silence between spans dropped) and decodes a batch of windows at a time. Handed the whole file, it
holds the whole file; handed one chunk at a time, it closes a part-filled window at every chunk's end and decodes
more windows than the speech needs. The same packing over a stream of spans, found chunk by chunk, lets windows
and batches cross chunk boundaries while only one batch's speech is held.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import numpy as np

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Speech:
    """One span of speech: its first sample's index in the whole audio, and its samples."""

    start: int
    samples: np.ndarray

    @property
    def end(self) -> int:
        return self.start + len(self.samples)


def windows(spans: Iterable[Speech], max_samples: int) -> Iterator[list[Speech]]:
    """Consecutive spans packed greedily, in order: a window closes when the next span would take its speech past
    `max_samples` (faster_whisper.vad.collect_chunks' rule). A span longer than that is a window of its own."""
    window: list[Speech] = []
    size = 0
    for span in spans:
        if window and size + len(span.samples) > max_samples:
            yield window
            window, size = [], 0
        window.append(span)
        size += len(span.samples)
    if window:
        yield window


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` consecutive items (the last may be shorter), taken lazily."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
