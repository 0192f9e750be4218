"""The diarization worker on real speech of real, different people: pyannote's two-speaker sample, a clip of three
people in turns, one speaker, silence; and its crashes. Thresholds: matrix/profiles.toml [thresholds.*.speakers]."""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.speakers import speakers

from . import clips
from .conftest import threshold

pytestmark = pytest.mark.slow
SAMPLE = clips.FIXTURES / "pyannote-sample.wav"


def test_pyannote_sample_two_speakers_unaided_within_the_der_threshold(diarize, record_speakers) -> None:  # type: ignore[no-untyped-def]
    turns = diarize(SAMPLE)
    reference = clips.read_rttm(clips.FIXTURES / "pyannote-sample.rttm")
    der = clips.der(reference, turns, collar=0.25)
    record_speakers("pyannote-sample", turns, 2, der)
    assert len(speakers(turns)) == 2
    assert der <= threshold("der_sample")


def _matched(reference: list, turns: list) -> list[tuple[float, float]]:
    """Each reference change of speaker against the diarization's, in order: (end error, start error)."""
    found, expected = clips.changes(turns), clips.changes(reference)
    assert len(found) == len(expected), f"changes of speaker: {found} for {expected}"
    return [(abs(a[0] - b[0]), abs(a[1] - b[1])) for a, b in zip(found, expected, strict=True)]


def test_three_real_people_in_turns_count_and_every_change_of_speaker(diarize, turns_clip, record_speakers) -> None:  # type: ignore[no-untyped-def]
    path, reference = turns_clip
    turns = diarize(path)
    record_speakers("three-people", turns, 3)
    assert len(speakers(turns)) == 3
    errors = _matched(reference, turns)
    assert max(max(e) for e in errors) <= threshold("turn_change_max"), errors


def test_a_known_count_and_a_maximum_are_obeyed(diarize, turns_clip) -> None:  # type: ignore[no-untyped-def]
    path, _ = turns_clip
    assert len(speakers(diarize(path, num_speakers=2))) == 2
    assert len(speakers(diarize(path, max_speakers=2))) == 2  # found 3 unaided: clustered again into 2


def test_one_speaker_is_one_speaker(diarize, record_speakers) -> None:  # type: ignore[no-untyped-def]
    turns = diarize(clips.FIXTURES / "jfk.wav")
    record_speakers("jfk", turns, 1)
    assert speakers(turns) == ["SPEAKER_00"]


def test_silence_gives_no_turns_and_no_error(diarize, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    silent = tmp_path / "silence.wav"
    with wave.open(str(silent), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(b"\0\0" * 16000 * 5)
    assert diarize(silent) == []


# The real worker, with a crash after it wrote its result (salvaged) or before it did anything (reported).
_CRASH_AFTER = "import os, sys; from pipeline.speakers.worker import main; main(sys.argv[1:]); os.abort()"
_CRASH_BEFORE = "import os; print('loading the models', file=__import__('sys').stderr); os.abort()"


def test_a_crash_after_the_result_is_salvaged(diarize) -> None:  # type: ignore[no-untyped-def]
    turns = diarize(clips.FIXTURES / "jfk.wav", argv=[sys.executable, "-c", _CRASH_AFTER])
    assert speakers(turns) == ["SPEAKER_00"]


def test_a_crash_before_the_result_is_one_line(diarize) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PipelineError) as failed:
        diarize(clips.FIXTURES / "jfk.wav", argv=[sys.executable, "-c", _CRASH_BEFORE])
    message = str(failed.value)
    assert "\n" not in message and "exit code -6" in message and "loading the models" in message


def test_long_media_in_chunks_keeps_each_voice_one_speaker(diarize, turns_clip, record_speakers) -> None:  # type: ignore[no-untyped-def]
    # 20 s chunks cut the 36 s clip in two: the speakers of each chunk are linked by their voices.
    path, reference = turns_clip
    turns = diarize(path, chunk_seconds=20)
    record_speakers("three-people-in-chunks", turns, 3)
    assert len(speakers(turns)) == 3
    assert max(max(e) for e in _matched(reference, turns)) <= threshold("turn_change_max")


def test_a_resumed_diarization_redoes_only_the_chunks_not_finished(speaker_models, turns_clip, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Each chunk is diarized by a process of its own that keeps its turns: a worker stopped after the first chunk
    # (here: the result and the second chunk's turns removed) is resumed from the second chunk.
    from pipeline.speakers import DiarizationRequest, relabel
    from pipeline.speakers.isolation import run_diarization

    path, _ = turns_clip
    segmentation, embedding = speaker_models
    request = DiarizationRequest(str(path), str(segmentation), str(embedding), chunk_seconds=20)
    workdir = tmp_path / "speakers"
    first = run_diarization(request, workdir, log_path=tmp_path / "log", timeout=600)
    done = sorted((workdir / "chunks").glob("*.json"))
    assert len(done) == 2
    (workdir / "result.json").unlink()
    done[1].unlink()
    kept = done[0].stat().st_mtime_ns
    again = run_diarization(request, workdir, log_path=tmp_path / "log", timeout=600)
    assert done[0].stat().st_mtime_ns == kept and done[1].is_file()
    assert again.exit_code == 0 and relabel(again.turns) == relabel(first.turns)


def test_a_failed_chunk_stops_its_sibling_and_leaves_no_process(speaker_models, turns_clip, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Two chunk processes at once: the first fails at once (its samples lie past the end of the file), the second
    # would diarize 6 minutes (the clip ten times; many CPU seconds). The worker reports the failed chunk and kills
    # and reaps the sibling: it never finishes, and no process is left.
    import psutil

    from pipeline.speakers import DiarizationRequest
    from pipeline.speakers.worker import _Chunks

    path, _ = turns_clip
    long = tmp_path / "long.wav"
    with wave.open(str(path), "rb") as wav, wave.open(str(long), "wb") as out:
        out.setparams(wav.getparams())
        out.writeframes(wav.readframes(wav.getnframes()) * 10)
        frames = wav.getnframes() * 10
    segmentation, embedding = speaker_models
    request_path = tmp_path / "request.json"
    request_path.write_bytes(DiarizationRequest(str(long), str(segmentation), str(embedding)).to_json())
    outputs = [tmp_path / "0000.json", tmp_path / "0001.json"]
    chunks = _Chunks(request_path, [(frames * 10, 16000), (0, frames)], outputs, None)
    with pytest.raises(SystemExit, match="chunk 1 of 2 failed"):
        chunks.run([0, 1], slots=2)
    assert not outputs[0].exists() and not outputs[1].exists()
    assert psutil.Process().children(recursive=True) == []
