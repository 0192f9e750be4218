"""Where the audio has speech, for cue timing: Silero's own edges, found chunk by chunk as the worker streams."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from cue_timing import JFK, speech_bounds

from pipeline.asr.speech import SpeechRegions
from pipeline.audio import chunks, read_all


def _regions(path: Path, seconds: float) -> list[tuple[float, float]]:
    finder = SpeechRegions()
    for chunk in chunks(path, seconds):
        finder.add(chunk)
    return finder.regions


def test_speech_regions_of_real_speech(speech):
    regions = _regions(JFK, 60.0)
    assert all(a < b <= c < d for (a, b), (c, d) in itertools.pairwise(regions))
    assert len(regions) >= 4  # Kennedy pauses between "Americans", "ask not", "what your country"...
    onset, _ = speech_bounds(read_all(JFK))
    assert abs(regions[0][0] - onset) < 0.1  # the edge itself, not the ASR's padded one
    # A chunk at a time (memory): the same speech as one whole-file pass, in order, across boundaries.
    whole, chunked = _regions(speech, 3600.0), _regions(speech, 10.0)
    assert len(chunked) == len(whole) and all(
        abs(a - c) < 0.1 and abs(b - d) < 0.1 for (a, b), (c, d) in zip(chunked, whole, strict=True)
    )


def test_the_worker_hands_its_speech_regions_to_the_subtitles(request_for, tmp_path):
    """The ASR worker finds the speech as it streams the source (one read of the audio, onnxruntime in the worker
    only); the transcript carries it for the subtitles stage. A speech translation needs none of its own."""
    from pipeline.asr.isolation import run_isolated

    outcome = run_isolated([request_for()], tmp_path / "work")
    seconds = outcome.record.worker["chunk_seconds"]
    assert outcome.transcript.speech == tuple(_regions(Path(request_for().audio), seconds))
    assert outcome.transcript.speech and json.loads(json.dumps(outcome.transcript.to_dict()))["speech"]
