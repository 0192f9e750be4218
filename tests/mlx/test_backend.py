"""MlxBackend on real speech with real converted weights, on mlx's CPU build here (Metal on a Mac).

Parity: the same weights through faster-whisper (CTranslate2, float32, beam 1 because mlx-whisper has no beam
search) must give the same words. The device and compute type come from the `mps` profile in the matrix.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import jiwer
import numpy as np
import pytest
from mlx_speech import JFK, JFK_TEXT, librivox, normalise, quantized_copy

from pipeline.asr import AsrRequest, Segment, load_backend_class
from pipeline.audio import read_all
from pipeline.errors import PipelineError
from pipeline.profiles import load_matrix

JFK_WER_MAX = 0.10  # against the reference transcript
PARITY_WER_MAX = 0.05  # mlx against faster-whisper, same weights
PROFILE = load_matrix().profile("mps")


def request(model_dir: Path, **changes) -> AsrRequest:
    base = AsrRequest(
        backend=PROFILE.runtime.backend,
        model_dir=str(model_dir),
        device=PROFILE.runtime.device,
        compute_type=PROFILE.runtime.compute_type,
        audio="",
        language=None,
        batch_size=PROFILE.runtime.batch_size,
        chunk_seconds=PROFILE.runtime.chunk_seconds,
        beam_size=1,
    )
    return replace(base, **changes)


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalise(reference), normalise(hypothesis))


def text(segments: list[Segment]) -> str:
    return " ".join(s.text for s in segments)


class Runs:
    """One loaded backend per model and settings, and its segments per clip, computed once (mlx is slow)."""

    def __init__(self) -> None:
        self.backends: dict = {}
        self.results: dict = {}

    def mlx(self, model_dir: Path, clip: Path | None, **changes) -> list[Segment]:
        """Segments of `clip` (None: no audio at all)."""
        key = (model_dir, tuple(sorted(changes.items())))
        if key not in self.backends:
            self.backends[key] = load_backend_class("mlx")(request(model_dir, **changes))
        if (key, clip) not in self.results:
            audio = read_all(clip) if clip else np.zeros(0, dtype=np.float32)
            self.results[key, clip] = list(self.backends[key].transcribe(audio))
        return self.results[key, clip]

    def faster_whisper(self, ct2_dir: Path, clip: Path) -> str:
        from faster_whisper import WhisperModel

        if ct2_dir not in self.backends:
            self.backends[ct2_dir] = WhisperModel(
                str(ct2_dir), device="cpu", compute_type="float32", local_files_only=True
            )
        segments, _ = self.backends[ct2_dir].transcribe(read_all(clip), beam_size=1, vad_filter=False)
        return " ".join(s.text.strip() for s in segments)


@pytest.fixture(scope="module")
def runs() -> Runs:
    return Runs()


def test_backend_reports_what_mlx_ran_on(runs: Runs, mlx_models: dict[str, Path]) -> None:
    import mlx.core as mx

    runs.mlx(mlx_models["tiny.en"], JFK, word_timestamps=True)
    backend = runs.backends[mlx_models["tiny.en"], (("word_timestamps", True),)]
    # The `mps` profile means Metal where mlx has it (macOS); mlx's Linux build has only the CPU.
    assert backend.device == ("mps" if mx.metal.is_available() else "cpu")
    assert backend.compute_type == PROFILE.runtime.compute_type
    assert backend.name == "mlx"


def test_jfk_matches_the_reference(runs: Runs, mlx_models: dict[str, Path]) -> None:
    segments = runs.mlx(mlx_models["tiny.en"], JFK, word_timestamps=True)
    assert wer(JFK_TEXT, text(segments)) < JFK_WER_MAX, text(segments)
    assert runs.backends[mlx_models["tiny.en"], (("word_timestamps", True),)].detected_language() == "en"


def test_word_timestamps_are_present_and_monotonic(runs: Runs, mlx_models: dict[str, Path]) -> None:
    segments = runs.mlx(mlx_models["tiny.en"], JFK, word_timestamps=True)
    words = [w for s in segments for w in s.words]
    assert all(s.words for s in segments)
    assert "".join(w.text for w in words).split() == text(segments).split()
    assert all(0 <= w.start <= w.end <= 11.1 for w in words)
    assert all(a.start <= b.start and a.end <= b.end for a, b in itertools.pairwise(words))
    assert all(0 < w.probability <= 1 for w in words)
    assert all(s.start <= w.start <= w.end <= s.end for s in segments for w in s.words)  # inside their segment


def test_parity_with_faster_whisper_on_jfk(
    runs: Runs, ct2_models: dict[str, Path], mlx_models: dict[str, Path]
) -> None:
    mlx_text = text(runs.mlx(mlx_models["tiny.en"], JFK, word_timestamps=True))
    assert wer(runs.faster_whisper(ct2_models["tiny.en"], JFK), mlx_text) < PARITY_WER_MAX


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "clip"),
    [
        ("tiny.en", "sense_and_sensibility_01_austen_64kb-0890"),
        ("base", "sense_and_sensibility_01_austen_64kb-0880"),  # multilingual: detects the language first
    ],
)
def test_parity_with_faster_whisper_on_librivox(
    model: str, clip: str, runs: Runs, ct2_models: dict[str, Path], mlx_models: dict[str, Path]
) -> None:
    wav, reference = librivox(clip)
    mlx_text = text(runs.mlx(mlx_models[model], wav))
    assert wer(runs.faster_whisper(ct2_models[model], wav), mlx_text) < PARITY_WER_MAX
    assert wer(reference, mlx_text) < 0.2, mlx_text
    assert runs.backends[mlx_models[model], ()].detected_language() == "en"


@pytest.mark.slow
def test_int8_ct2_model_converts_with_parity(runs: Runs, tmp_path: Path, ct2_models: dict[str, Path]) -> None:
    """An int8 CTranslate2 model (quantized by ctranslate2 itself) converts to MLX weights that say what
    CTranslate2 says with the same weights (int8 costs tiny.en a word: "ill-disposed" -> "old-sposed")."""
    from pipeline.models.convert import convert_ct2_to_mlx

    int8 = quantized_copy(ct2_models["tiny.en"], tmp_path / "ct2-int8", "int8")
    wav, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    mlx_text = text(runs.mlx(convert_ct2_to_mlx(int8, tmp_path / "mlx"), wav))
    assert wer(runs.faster_whisper(int8, wav), mlx_text) < PARITY_WER_MAX


def test_empty_audio_gives_no_segments(runs: Runs, mlx_models: dict[str, Path]) -> None:
    assert runs.mlx(mlx_models["tiny.en"], None) == []


# --- what a user gets wrong -------------------------------------------------------------------------------


def test_ct2_folder_is_refused_with_the_convert_command(ct2_models: dict[str, Path]) -> None:
    with pytest.raises(PipelineError, match=r"run `pipeline models convert .*tiny.en --to mlx`"):
        load_backend_class("mlx")(request(ct2_models["tiny.en"]))


def test_folder_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="holds no MLX Whisper model"):
        load_backend_class("mlx")(request(tmp_path))


def test_cuda_is_not_an_mlx_device(mlx_models: dict[str, Path]) -> None:
    with pytest.raises(PipelineError, match="the mlx backend runs on mps, cpu, auto, not 'cuda'"):
        load_backend_class("mlx")(request(mlx_models["tiny.en"], device="cuda"))


def test_translate_needs_a_multilingual_model(mlx_models: dict[str, Path]) -> None:
    with pytest.raises(PipelineError, match="is English-only; translate needs a multilingual model"):
        load_backend_class("mlx")(request(mlx_models["tiny.en"], task="translate"))


def test_importing_the_backends_loads_no_heavy_library() -> None:
    code = (
        "import sys, pipeline.asr, pipeline.asr.mlx_backend, pipeline.models.convert\n"
        "print(sorted({'mlx', 'mlx_whisper', 'ctranslate2', 'faster_whisper', 'torch'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
