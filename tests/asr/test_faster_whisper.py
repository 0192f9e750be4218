"""The faster-whisper backend's stream: windows packed across chunk boundaries decode as one whole-file call."""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline import audio
from pipeline.asr import AsrRequest, load_backend_class
from pipeline.models import CT2, resolve

JFK = Path(__file__).resolve().parents[1] / "fixtures" / "jfk.wav"

MakeRequest = Callable[..., AsrRequest]


def test_stream_decodes_the_windows_of_a_whole_file_call(request_for: MakeRequest, speech: Path) -> None:
    from faster_whisper import BatchedInferencePipeline

    backend = load_backend_class("faster-whisper")(request_for())
    chunks = list(audio.chunks(speech, 20.0))
    streamed = list(backend.transcribe_chunks(iter(chunks)))
    # faster-whisper itself, handed the whole file at once (what the stream must reproduce). With words: the stream
    # always asks for them, to split a window's segment where VAD cut a long pause out of it (so its times are the
    # words' edges, not the speech spans').
    whole, _ = BatchedInferencePipeline(backend.model).transcribe(
        audio.read_all(speech), batch_size=2, language="en", beam_size=5, word_timestamps=True
    )
    whole = list(whole)
    assert [s.text for s in streamed] == [s.text.strip() for s in whole]
    times = [t for s in streamed for t in (s.start, s.end)]
    assert times == pytest.approx([t for s in whole for t in (s.start, s.end)], abs=0.1)
    # The fixture is made so that a window crosses a chunk boundary: chunk by chunk would decode one more.
    boundaries = [c.offset for c in chunks[1:]]
    assert len(chunks) >= 2 and any(s.start < b < s.end for s in streamed for b in boundaries)


def test_words_carry_times_in_the_whole_audio(request_for: MakeRequest, speech: Path) -> None:
    backend = load_backend_class("faster-whisper")(request_for(word_timestamps=True))
    segments = list(backend.transcribe_chunks(audio.chunks(speech, 20.0)))
    words = [w for s in segments for w in s.words]
    assert [w.text.strip() for w in words[:3]] == ["And", "so", "my"]
    starts = [w.start for w in words]
    assert starts == sorted(starts) and 0 <= starts[0] < 1 and 33 < words[-1].end <= audio.duration(speech)
    # The third "ask not" (2 x 11.5 s in) is where JFK's own first one is, plus the two copies before it.
    asks = [w.start for w in words if w.text.strip().lower() == "ask"]
    assert len(asks) == 6 and asks[4] - asks[0] == pytest.approx(23.0, abs=0.3)


def test_silence_names_no_language(request_for: MakeRequest, tmp_path: Path) -> None:
    """The language is voted from speech (pipeline.asr.detect): where there is none, nothing is named (the stage
    writes "und"), rather than whatever Whisper makes of 30 s of silence."""
    clip = tmp_path / "silence.wav"
    with wave.open(str(clip), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(audio.SAMPLE_RATE)
        wav.writeframes(np.zeros(5 * audio.SAMPLE_RATE, dtype="<i2").tobytes())
    base = resolve("base", CT2)
    for batch_size in (2, 1):  # the batched stream and the sequential path
        request = request_for(model_dir=str(base), audio=str(clip), language=None, batch_size=batch_size)
        backend = load_backend_class("faster-whisper")(request)
        assert list(backend.transcribe_chunks(audio.chunks(clip, 20.0))) == []
        assert backend.detected_language() is None


def test_no_segment_runs_across_a_pause_vad_cut_out(request_for: MakeRequest, tmp_path: Path) -> None:
    """JFK, 8 s of silence, JFK: one 30 s window of speech, whose one segment would run across the silence."""
    with wave.open(str(JFK), "rb") as wav:
        params, frames = wav.getparams(), wav.readframes(wav.getnframes())
    clip = tmp_path / "pause.wav"
    with wave.open(str(clip), "wb") as out:
        out.setparams(params)
        out.writeframes(frames + np.zeros(8 * audio.SAMPLE_RATE, dtype="<i2").tobytes() + frames)
    for words in (True, False):  # words are asked for either way; kept only when wanted
        backend = load_backend_class("faster-whisper")(request_for(audio=str(clip), word_timestamps=words))
        segments = list(backend.transcribe_chunks(audio.chunks(clip, 60.0)))
        assert len(segments) >= 2 and all(s.end <= 12.0 or s.start >= 18.0 for s in segments), segments
        assert all(bool(s.words) == words for s in segments)
        assert " ".join(s.text for s in segments).count("country") == 4
