"""Word times from every CTranslate2 backend, offline: faster-whisper's own, whisperx's through Whisper's
cross-attention on the encoder output it decoded from, and whisperx's wav2vec2 aligner from ALIGN_MODEL_DIR."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline import audio
from pipeline.asr import AsrRequest, Segment, load_backend_class
from pipeline.errors import PipelineError

MakeRequest = Callable[..., AsrRequest]
JFK = Path(__file__).parent.parent / "fixtures" / "jfk.wav"


def assert_timed(segments: list[Segment], duration: float) -> None:
    """Every segment has words; they are in order, inside their segment and the audio, and spell its text."""
    assert segments and all(s.words for s in segments), segments
    for segment in segments:
        for word in segment.words:
            assert segment.start <= word.start <= word.end <= segment.end, (segment, word)
        assert "".join(w.text for w in segment.words).split() == segment.text.split()
    words = [w for s in segments for w in s.words]
    starts = [w.start for w in words]
    assert starts == sorted(starts) and starts[0] >= 0 and words[-1].end <= duration + 0.05


@pytest.mark.parametrize("backend", ["faster-whisper", "whisperx"])
def test_words_on_jfk(request_for: MakeRequest, backend: str) -> None:
    request = request_for(backend, audio=str(JFK), word_timestamps=True)
    model = load_backend_class(backend)(request)
    segments = list(model.transcribe_chunks(audio.chunks(JFK, request.chunk_seconds)))
    assert_timed(segments, audio.duration(JFK))
    words = [w for s in segments for w in s.words]
    said = [w.text.strip(" ,.").lower() for w in words]
    assert said[:5] == ["and", "so", "my", "fellow", "americans"]
    # JFK starts at about 0.3 s and says "country" last, at about 10 s (faster-whisper's and whisperx's
    # cross-attention agree within a few tenths; a window mapped to the wrong place would be seconds off).
    assert words[0].start < 1.0 and said[-1] == "country" and 9.0 < words[-1].start < 11.0


def test_whisperx_words_cross_chunks_and_windows(request_for: MakeRequest, speech: Path) -> None:
    """34.5 s in 20 s chunks: several windows and chunks, each window's words placed at its own offset."""
    request = request_for("whisperx", word_timestamps=True)
    model = load_backend_class("whisperx")(request)
    segments = list(model.transcribe_chunks(audio.chunks(speech, request.chunk_seconds)))
    assert_timed(segments, audio.duration(speech))
    asks = [w.start for s in segments for w in s.words if w.text.strip(" ,.").lower() == "ask"]
    # JFK's 11 s said three times, 0.5 s apart: the same word recurs every 11.5 s.
    assert len(asks) == 6 and asks[2] - asks[0] == pytest.approx(11.5, abs=0.5)
    assert asks[4] - asks[0] == pytest.approx(23.0, abs=0.5)


def test_whisperx_without_words_asks_for_none(request_for: MakeRequest) -> None:
    model = load_backend_class("whisperx")(request_for("whisperx", audio=str(JFK), word_timestamps=False))
    segments = list(model.transcribe_chunks(audio.chunks(JFK, 20.0)))
    assert segments and not any(s.words for s in segments)


# --- ALIGN_MODEL_DIR: no aligner can be downloaded here, so what is tested is every way a folder can be wrong
# (whisperx's own loading call included) and that none of them reaches the network. Untested: alignment itself.


def test_aligner_folder_without_the_torchaudio_checkpoint(request_for: MakeRequest, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"ALIGN_MODEL_DIR=.* has no wav2vec2_fairseq_base_ls960_asr_ls960\.pth"):
        load_backend_class("whisperx")(request_for("whisperx", word_timestamps=True, align_model_dir=str(tmp_path)))


def test_aligner_folder_without_punkt_tab(request_for: MakeRequest, tmp_path: Path, monkeypatch) -> None:
    import nltk

    monkeypatch.setattr(nltk.data, "path", [])  # only the folder: no punkt_tab anywhere else to find
    request = request_for("whisperx", language="nl", word_timestamps=True, align_model_dir=str(tmp_path))
    with pytest.raises(PipelineError, match=r"ALIGN_MODEL_DIR=.*no tokenizers/punkt_tab"):
        load_backend_class("whisperx")(request)


def test_aligner_folder_without_the_hugging_face_model(request_for: MakeRequest, tmp_path: Path, monkeypatch) -> None:
    """whisperx's load_align_model runs for real on a folder that holds punkt_tab but no wav2vec2 model: it must
    fail from the cache alone (model_cache_only), and say which model the folder lacks."""
    import nltk

    monkeypatch.setattr(nltk.data, "path", [])
    (tmp_path / "tokenizers" / "punkt_tab" / "dutch").mkdir(parents=True)
    request = request_for("whisperx", language="nl", word_timestamps=True, align_model_dir=str(tmp_path))
    with pytest.raises(PipelineError, match=r"ALIGN_MODEL_DIR=.*'nl' \(jonatasgrosman/wav2vec2-large-xlsr-53-dutch\)"):
        load_backend_class("whisperx")(request)


def test_a_damaged_torchaudio_checkpoint_is_read_from_the_folder(
    request_for: MakeRequest, tmp_path: Path, monkeypatch
) -> None:
    """With the checkpoint's file in the folder, torchaudio reads it there instead of fetching it: a damaged one is
    a one-line error naming the key, not a download."""
    import nltk

    monkeypatch.setattr(nltk.data, "path", [])
    (tmp_path / "tokenizers" / "punkt_tab" / "english").mkdir(parents=True)
    (tmp_path / "wav2vec2_fairseq_base_ls960_asr_ls960.pth").write_bytes(b"not a checkpoint")
    request = request_for("whisperx", word_timestamps=True, align_model_dir=str(tmp_path))
    with pytest.raises(PipelineError, match=r"ALIGN_MODEL_DIR=.*cannot load .*'en' \(WAV2VEC2_ASR_BASE_960H\)") as err:
        load_backend_class("whisperx")(request)
    assert "\n" not in str(err.value)


def test_a_language_without_an_aligner_gets_cross_attention_words(request_for: MakeRequest, tmp_path: Path) -> None:
    from pipeline.asr.whisperx_words import load_aligner

    assert load_aligner(str(tmp_path), "sw", "cpu") is None  # whisperx has no aligner for Swahili
