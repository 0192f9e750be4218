"""A FAKE ASR backend, for tests only: no model, no library, a canned transcript that says it is fake.

It exists so that the isolation machinery (the worker protocol, markers, crash forensics, fallbacks, process
groups) can be tested in a second rather than with a model load per worker. It runs inside the real worker
(`pipeline.asr.worker`, started by tests/faults/faulty_worker.py, the only place that can load it): the real
request, chunked audio, progress events, guards, atomic result and marker. It is not a backend: it is not in
`pipeline.asr.BACKENDS`, the matrix or any config choice, and a request naming "fake" fails in the real worker.
Tests of what a real backend does (text, words, languages, real crashes of a real library) keep the real one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from pipeline.asr import AsrRequest, Segment, Word

if TYPE_CHECKING:
    from pipeline.audio import Chunk

NAME = "fake"
SEGMENT_SECONDS = 5.0  # one canned segment per 5 s of audio: several per chunk, so progress is per segment


class FakeAsr:
    """Canned segments over the audio it is fed: "FAKE TRANSCRIPT <start>-<end>", one word per segment."""

    name = NAME
    tune_heap = False
    max_chunk_seconds: float | None = None

    def __init__(self, request: AsrRequest) -> None:
        self.request = request
        self.device = "cpu"  # what the worker records as run on
        self.compute_type = "none"

    def transcribe_chunks(self, chunks: Iterable[Chunk]) -> Iterator[Segment]:
        for chunk in chunks:  # taken one at a time, as a real backend does: a fault after chunk N is midway
            start, end = chunk.offset, chunk.offset + chunk.duration
            while start < end - 1e-6:
                stop = min(start + SEGMENT_SECONDS, end)
                text = f"FAKE TRANSCRIPT {start:.2f}-{stop:.2f}"
                yield Segment(round(start, 3), round(stop, 3), text, (Word(round(start, 3), round(stop, 3), text),))
                start = stop

    def detected_language(self) -> str | None:
        return self.request.language or "en"
