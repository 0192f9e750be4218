"""CTranslate2 -> MLX conversion of the real tiny.en and base weights, checked against the ct2 file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlx_speech import quantized_copy

from pipeline.errors import PipelineError
from pipeline.models import MLX, model_format
from pipeline.models.convert import Ct2Whisper, convert_ct2_to_mlx, mlx_weights, read_ct2

# Published Whisper dimensions (openai/whisper model card), which the converter must derive from the tensors.
DIMS = {
    "tiny.en": dict(n_audio_state=384, n_audio_head=6, n_audio_layer=4, n_vocab=51864),
    "base": dict(n_audio_state=512, n_audio_head=8, n_audio_layer=6, n_vocab=51865),
}


def load_weights(folder: Path) -> dict[str, np.ndarray]:
    import mlx.core as mx

    return {name: np.array(value) for name, value in mx.load(str(folder / "weights.safetensors")).items()}


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_dims_come_from_the_tensors(name: str, mlx_models: dict[str, Path]) -> None:
    config = json.loads((mlx_models[name] / "config.json").read_text())
    expected = DIMS[name]
    assert config == {
        "model_type": "whisper",
        "n_mels": 80,
        "n_audio_ctx": 1500,
        **expected,
        "n_text_ctx": 448,
        "n_text_state": expected["n_audio_state"],
        "n_text_head": expected["n_audio_head"],
        "n_text_layer": expected["n_audio_layer"],
    }
    assert model_format(mlx_models[name]) == MLX


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_tensors_match_the_ct2_file(name: str, ct2_models: dict[str, Path], mlx_models: dict[str, Path]) -> None:
    ct2 = read_ct2(ct2_models[name] / "model.bin").variables
    mlx = load_weights(mlx_models[name])
    n = DIMS[name]["n_audio_state"]
    qkv = ct2["encoder/layer_1/self_attention/linear_0/weight"]
    np.testing.assert_array_equal(mlx["encoder.blocks.1.attn.query.weight"], qkv[:n])
    np.testing.assert_array_equal(mlx["encoder.blocks.1.attn.key.weight"], qkv[n : 2 * n])
    np.testing.assert_array_equal(mlx["encoder.blocks.1.attn.value.weight"], qkv[2 * n :])
    np.testing.assert_array_equal(
        mlx["encoder.blocks.1.attn.value.bias"], ct2["encoder/layer_1/self_attention/linear_0/bias"][2 * n :]
    )
    assert "encoder.blocks.1.attn.key.bias" not in mlx  # Whisper's key projection has no bias
    kv = ct2["decoder/layer_0/attention/linear_1/weight"]
    np.testing.assert_array_equal(mlx["decoder.blocks.0.cross_attn.key.weight"], kv[:n])
    np.testing.assert_array_equal(mlx["decoder.blocks.0.cross_attn.value.weight"], kv[n:])
    np.testing.assert_array_equal(mlx["encoder.conv1.weight"], ct2["encoder/conv1/weight"].transpose(0, 2, 1))
    assert mlx["encoder.conv2.weight"].shape == (n, 3, n)  # MLX Conv1d: (out, kernel, in)
    np.testing.assert_array_equal(mlx["decoder.token_embedding.weight"], ct2["decoder/embeddings/weight"])
    np.testing.assert_array_equal(mlx["decoder.positional_embedding"], ct2["decoder/position_encodings/encodings"])
    np.testing.assert_array_equal(mlx["decoder.ln.weight"], ct2["decoder/layer_norm/gamma"])
    np.testing.assert_array_equal(mlx["encoder.ln_post.bias"], ct2["encoder/layer_norm/beta"])
    assert mlx["encoder.conv1.weight"].dtype == np.float16


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_alignment_heads_come_from_ct2_config(
    name: str, ct2_models: dict[str, Path], mlx_models: dict[str, Path]
) -> None:
    heads = json.loads((ct2_models[name] / "config.json").read_text())["alignment_heads"]
    assert load_weights(mlx_models[name])["alignment_heads"].tolist() == heads


def test_every_mlx_parameter_is_written(mlx_models: dict[str, Path]) -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_whisper.load_models import load_model

    model = load_model(str(mlx_models["tiny.en"]), dtype=mx.float16)
    expected = {name for name, _ in tree_flatten(model.parameters())}
    assert set(load_weights(mlx_models["tiny.en"])) == expected


def test_float32_output(ct2_models: dict[str, Path], tmp_path: Path) -> None:
    folder = convert_ct2_to_mlx(ct2_models["tiny.en"], tmp_path / "tiny.en-f32", dtype="float32")
    weights = load_weights(folder)
    assert weights["decoder.blocks.0.mlp1.weight"].dtype == np.float32
    assert weights["alignment_heads"].dtype == np.int64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.en-f32"]  # no staging folder left behind


@pytest.mark.parametrize("quantization", ["int8_float16", "int16"])
def test_quantized_ct2_models_are_dequantized(
    quantization: str, ct2_models: dict[str, Path], mlx_models: dict[str, Path], tmp_path: Path
) -> None:
    source = quantized_copy(ct2_models["tiny.en"], tmp_path / "ct2", quantization)
    stored = {str(v.dtype) for v in read_ct2(source / "model.bin").variables.values()}
    assert {"int8" if quantization.startswith("int8") else "int16"} <= stored
    exact = load_weights(mlx_models["tiny.en"])
    folder = convert_ct2_to_mlx(source, tmp_path / "mlx", dtype="float32")
    # CTranslate2 rounds w * scale to an integer: int8 keeps 127 levels per output row; int16 2**10 levels per
    # stored tensor, and a stored q,k,v tensor is split here, so bound the error by the whole module's range.
    levels = 127 if quantization.startswith("int8") else 2**10
    converted = load_weights(folder)
    module_max: dict[str, float] = {}
    for name, value in exact.items():
        module = name.rsplit(".", 2)[0]
        module_max[module] = max(module_max.get(module, 0.0), float(np.abs(value.astype(np.float32)).max()))
    for name, value in converted.items():
        reference = exact[name].astype(np.float32)
        span = np.abs(reference).max() if levels == 127 else module_max[name.rsplit(".", 2)[0]]
        assert np.abs(value - reference).max() <= 0.5 / levels * span * 1.01 + 1e-6, name


def test_heads_default_to_64_wide_without_spec_scalars(ct2_models: dict[str, Path]) -> None:
    model = read_ct2(ct2_models["tiny.en"] / "model.bin")
    for name in ("encoder/num_heads", "decoder/num_heads"):
        del model.variables[name]
    dims, _ = mlx_weights(model)
    assert (dims["n_audio_head"], dims["n_text_head"]) == (384 // 64, 384 // 64)


# --- what a user gets wrong -------------------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"is not a CTranslate2 Whisper folder \(no model.bin\)"):
        convert_ct2_to_mlx(tmp_path / "nope", tmp_path / "out")


def test_unknown_dtype(ct2_models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="MLX dtype 'int8' is not supported; use one of float16, float32"):
        convert_ct2_to_mlx(ct2_models["tiny.en"], tmp_path / "out", dtype="int8")


def _broken_copy(ct2: Path, tmp_path: Path, data: bytes) -> Path:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model.bin").write_bytes(data)
    (folder / "config.json").write_bytes((ct2 / "config.json").read_bytes())
    return folder


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda data: data[: 1 << 20], "is truncated or not a CTranslate2 model file"),
        (lambda data: b"\x05\x00\x00\x00" + data[4:], "CTranslate2 binary version 5 is not supported"),
        (
            lambda data: data.replace(b"WhisperSpec", b"WhisperSpeX", 1),
            "holds a CTranslate2 'WhisperSpeX' model",
        ),
        (lambda data: b"", "cannot read"),
    ],
    ids=["truncated", "old-version", "not-whisper", "empty"],
)
def test_broken_model_bin(edit, message: str, ct2_models: dict[str, Path], tmp_path: Path) -> None:
    source = _broken_copy(ct2_models["tiny.en"], tmp_path, edit((ct2_models["tiny.en"] / "model.bin").read_bytes()))
    with pytest.raises(PipelineError, match=message) as caught:
        convert_ct2_to_mlx(source, tmp_path / "out")
    assert "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]  # neither output nor staging left


def test_quantized_tensor_without_scale_or_awq() -> None:
    model = Ct2Whisper(Path("m.bin"), "WhisperSpec", 3, {"a/weight": np.ones((2, 2), np.int8)}, {})
    with pytest.raises(PipelineError, match="a/weight is int8 without a scale"):
        model.take("a/weight")
    model.variables["a/weight_zero"] = np.zeros(2, np.float32)
    with pytest.raises(PipelineError, match="4-bit AWQ-quantized, which cannot be converted"):
        model.take("a/weight")


def test_existing_destination_is_kept_unless_overwrite(ct2_models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PipelineError, match="already exists and is not empty"):
        convert_ct2_to_mlx(ct2_models["tiny.en"], out)
    assert (out / "notes.txt").read_text() == "mine"
    convert_ct2_to_mlx(ct2_models["tiny.en"], out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "weights.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_concurrent_conversions_of_one_folder_both_succeed(ct2_models: dict[str, Path], tmp_path: Path) -> None:
    """Two processes converting into the same place (two jobs starting at once): one result, no debris."""
    go, out = tmp_path / "go", tmp_path / "models" / "tiny.en-mlx"
    script = (
        "import sys, time, pathlib\n"
        "from pipeline.models.convert import convert_ct2_to_mlx\n"
        "import mlx.core\n"
        "print('ready', flush=True)\n"
        "while not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.005)\n"
        "print(convert_ct2_to_mlx(pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(go), str(ct2_models["tiny.en"]), str(out)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    outputs = [proc.communicate(timeout=300)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert outputs == [str(out), str(out)]
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.en-mlx"]
    assert load_weights(out)["decoder.ln.weight"].shape == (384,)
