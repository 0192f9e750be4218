"""Chunked audio reading: bounded memory, exact coverage, cuts at quiet points."""

import wave

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import audio


def write_wav(path, samples):
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(audio.SAMPLE_RATE)
        wav.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


@settings(max_examples=25, deadline=None)
@given(seconds=st.floats(0.1, 100), chunk=st.floats(20, 60), seed=st.integers(0, 2**16))
def test_chunks_cover_the_audio_exactly_once(tmp_path_factory, seconds, chunk, seed):
    rng = np.random.default_rng(seed)
    samples = rng.uniform(-0.5, 0.5, int(seconds * audio.SAMPLE_RATE)).astype(np.float32)
    path = tmp_path_factory.mktemp("a") / "a.wav"
    write_wav(path, samples)
    pieces = list(audio.chunks(path, chunk))
    joined = np.concatenate([p.samples for p in pieces])
    assert np.array_equal(joined, audio.read_all(path))
    offsets = [p.offset for p in pieces]
    assert offsets == sorted(offsets) and offsets[0] == 0
    size = max(chunk, 20.0)
    assert all(p.duration <= size + 1e-6 for p in pieces[:-1])
    assert pieces[-1].duration <= 1.5 * size + 1e-6  # a short tail joins the last chunk ...
    assert len(pieces) == 1 or pieces[-1].duration >= size / 2 - 1e-3  # ... so no chunk is a sliver


def test_cut_lands_in_silence(tmp_path):
    tone = 0.3 * np.sin(np.arange(50 * audio.SAMPLE_RATE) * 0.05)
    tone[int(25.0 * audio.SAMPLE_RATE) : int(25.4 * audio.SAMPLE_RATE)] = (
        0.0  # a pause inside the search window
    )
    write_wav(tmp_path / "a.wav", tone)
    first = next(audio.chunks(tmp_path / "a.wav", 30))
    assert 25.0 <= first.duration <= 25.4
