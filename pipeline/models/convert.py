"""CTranslate2 Whisper folder -> mlx-whisper weights, read straight from `model.bin` (no ctranslate2 needed).

No MLX-format Whisper weights can be installed offline, but every CTranslate2 Whisper folder holds the same
tensors under other names and layouts. `model.bin` (CTranslate2 binary version 6, little-endian) is:
u32 version, string spec name, u32 revision, u32 variable count, then per variable: string name, u8 rank,
rank x u32 dims, u8 dtype id, u32 byte count, raw data; then u32 alias count and (alias, target) string pairs.
A string is a u16 length (including a trailing NUL) and the bytes.

The result is what `mlx_whisper.load_models.load_model` reads: `config.json` holding exactly the
`ModelDimensions` fields (it passes them all to the dataclass) and `weights.safetensors`, which also carries
the word-timing `alignment_heads` (a parameter of mlx-whisper's `Whisper`, set by `Module.update`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import atomic
from pipeline.errors import PipelineError

SUPPORTED_BINARY_VERSION = 6
DTYPES = ("float16", "float32")
# CTranslate2's DataType enum order (include/ctranslate2/types.h); bfloat16 has no numpy type.
_CT2_DTYPES: dict[int, str] = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
_LAYER = re.compile(r"^(encoder|decoder)/layer_(\d+)/")
_DEFAULT_AUDIO_CTX = 1500  # 30 s of audio at 2 frames per token; Whisper's fixed encoder length


@dataclass
class Ct2Whisper:
    """The tensors of a CTranslate2 `model.bin`, memory-mapped; `take` records which were used."""

    path: Path
    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]
    used: set[str] = field(default_factory=set)

    def has(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.variables

    def raw(self, name: str) -> np.ndarray:
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise PipelineError(f"{self.path}: no tensor {name!r}; not a Whisper model CTranslate2 wrote")
        self.used.add(target)
        return self.variables[target]

    def take(self, name: str) -> np.ndarray:
        """Tensor `name` as floats (a view of the file if stored so), de-quantized from int8/int16."""
        value = self.raw(name)
        if self.has(f"{name}_zero"):
            raise PipelineError(
                f"{self.path}: {name} is 4-bit AWQ-quantized, which cannot be converted to MLX; "
                "convert a float16, float32, int8 or int16 CTranslate2 model"
            )
        if value.dtype == np.int32:
            raise PipelineError(f"{self.path}: {name} is stored as int32, which is not a Whisper weight type")
        if np.issubdtype(value.dtype, np.floating):
            return value
        if not self.has(f"{name}_scale"):
            raise PipelineError(f"{self.path}: {name} is {value.dtype} without a scale; cannot de-quantize")
        # CTranslate2 quantizes q = round(w * scale): int8 with a scale per output row, int16 with one scale.
        scale = self.raw(f"{name}_scale").astype(np.float32)
        scale = scale.reshape(scale.shape + (1,) * (value.ndim - scale.ndim))
        return value.astype(np.float32) / scale

    def scalar(self, name: str) -> int | None:
        return int(self.raw(name)) if self.has(name) else None

    def layers(self, stack: str) -> int:
        return len({m[2] for name in self.variables if (m := _LAYER.match(name)) and m[1] == stack})


def _bfloat16_to_float32(data: np.ndarray) -> np.ndarray:
    # bfloat16 is the top half of a float32.
    return (data.view("<u2").astype(np.uint32) << 16).view(np.float32)


def read_ct2(path: Path) -> Ct2Whisper:
    """Parse a CTranslate2 `model.bin`; tensors are views into a read-only memory map."""
    try:
        raw = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as exc:
        raise PipelineError(f"cannot read {path}: {exc}") from None
    offset = 0

    def unpack(fmt: str) -> tuple[int, ...]:
        nonlocal offset
        values = struct.unpack_from(fmt, raw.data, offset)  # the map as a buffer, not a copy
        offset += struct.calcsize(fmt)
        return values

    def string() -> str:
        nonlocal offset
        (length,) = unpack("<H")
        text = bytes(raw[offset : offset + length]).rstrip(b"\0").decode("utf-8")
        offset += length
        return text

    try:
        (version,) = unpack("<I")
        if version != SUPPORTED_BINARY_VERSION:
            raise PipelineError(
                f"{path}: CTranslate2 binary version {version} is not supported (only "
                f"{SUPPORTED_BINARY_VERSION}, written by ctranslate2 >= 3); re-convert the model"
            )
        spec = string()
        (revision,) = unpack("<I")
        (count,) = unpack("<I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = string()
            (rank,) = unpack("<B")
            shape = unpack(f"<{rank}I")
            (type_id,) = unpack("<B")
            (nbytes,) = unpack("<I")
            if type_id not in _CT2_DTYPES:
                raise PipelineError(f"{path}: variable {name!r} has unknown dtype id {type_id}")
            if offset + nbytes > len(raw):
                raise struct.error("variable data past the end of the file")
            data = raw[offset : offset + nbytes]
            offset += nbytes
            kind = _CT2_DTYPES[type_id]
            little_endian = np.dtype(kind).newbyteorder("<") if kind != "bfloat16" else None
            array = data.view(little_endian) if little_endian else _bfloat16_to_float32(data)
            if array.size != int(np.prod(shape)):
                raise struct.error(f"variable {name!r}: {nbytes} bytes do not hold shape {shape} of {kind}")
            variables[name] = array.reshape(shape)
        aliases: dict[str, str] = {}
        if offset < len(raw):
            (alias_count,) = unpack("<I")
            for _ in range(alias_count):
                alias = string()
                aliases[alias] = string()
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise PipelineError(f"{path} is truncated or not a CTranslate2 model file ({exc})") from None
    if spec != "WhisperSpec":
        raise PipelineError(f"{path} holds a CTranslate2 {spec!r} model; only WhisperSpec converts to MLX")
    return Ct2Whisper(path=path, spec=spec, revision=revision, variables=variables, aliases=aliases)


def _linear(model: Ct2Whisper, ct2: str, mlx: str, out: dict[str, np.ndarray]) -> None:
    out[f"{mlx}.weight"] = model.take(f"{ct2}/weight")
    if model.has(f"{ct2}/bias"):
        out[f"{mlx}.bias"] = model.take(f"{ct2}/bias")


def _layer_norm(model: Ct2Whisper, ct2: str, mlx: str, out: dict[str, np.ndarray]) -> None:
    out[f"{mlx}.weight"] = model.take(f"{ct2}/gamma")
    out[f"{mlx}.bias"] = model.take(f"{ct2}/beta")


def _fused(model: Ct2Whisper, ct2: str, mlx: str, parts: tuple[str, ...], out: dict[str, np.ndarray]) -> None:
    """Split CTranslate2's fused projection (q,k,v or k,v stacked by rows) into mlx-whisper's three/two."""
    weights = np.split(model.take(f"{ct2}/weight"), len(parts))
    biases = np.split(model.take(f"{ct2}/bias"), len(parts))
    for part, weight, bias in zip(parts, weights, biases, strict=True):
        out[f"{mlx}.{part}.weight"] = weight
        if part == "key":
            # Whisper's key projection has no bias; CTranslate2 fills its slot of the fused bias with zeros.
            if np.abs(bias).max() > 1e-6:
                raise PipelineError(f"{model.path}: {ct2} has a non-zero key bias; not a Whisper model")
        else:
            out[f"{mlx}.{part}.bias"] = bias


def _block(model: Ct2Whisper, ct2: str, mlx: str, out: dict[str, np.ndarray], cross: bool) -> None:
    _fused(model, f"{ct2}/self_attention/linear_0", f"{mlx}.attn", ("query", "key", "value"), out)
    _linear(model, f"{ct2}/self_attention/linear_1", f"{mlx}.attn.out", out)
    _layer_norm(model, f"{ct2}/self_attention/layer_norm", f"{mlx}.attn_ln", out)
    if cross:
        _linear(model, f"{ct2}/attention/linear_0", f"{mlx}.cross_attn.query", out)
        _fused(model, f"{ct2}/attention/linear_1", f"{mlx}.cross_attn", ("key", "value"), out)
        _linear(model, f"{ct2}/attention/linear_2", f"{mlx}.cross_attn.out", out)
        _layer_norm(model, f"{ct2}/attention/layer_norm", f"{mlx}.cross_attn_ln", out)
    _linear(model, f"{ct2}/ffn/linear_0", f"{mlx}.mlp1", out)
    _linear(model, f"{ct2}/ffn/linear_1", f"{mlx}.mlp2", out)
    _layer_norm(model, f"{ct2}/ffn/layer_norm", f"{mlx}.mlp_ln", out)


def mlx_weights(model: Ct2Whisper, alignment_heads: list[list[int]] | None = None) -> tuple[dict, dict]:
    """(ModelDimensions fields, weights under mlx-whisper's parameter names) of a CTranslate2 Whisper."""
    out: dict[str, np.ndarray] = {}
    for conv in ("conv1", "conv2"):
        # CTranslate2 keeps PyTorch's Conv1d layout (out, in, kernel); MLX wants (out, kernel, in).
        out[f"encoder.{conv}.weight"] = model.take(f"encoder/{conv}/weight").transpose(0, 2, 1)
        out[f"encoder.{conv}.bias"] = model.take(f"encoder/{conv}/bias")
    n_audio_layer, n_text_layer = model.layers("encoder"), model.layers("decoder")
    for i in range(n_audio_layer):
        _block(model, f"encoder/layer_{i}", f"encoder.blocks.{i}", out, cross=False)
    _layer_norm(model, "encoder/layer_norm", "encoder.ln_post", out)
    for i in range(n_text_layer):
        _block(model, f"decoder/layer_{i}", f"decoder.blocks.{i}", out, cross=True)
    _layer_norm(model, "decoder/layer_norm", "decoder.ln", out)
    out["decoder.token_embedding.weight"] = model.take("decoder/embeddings/weight")
    out["decoder.positional_embedding"] = model.take("decoder/position_encodings/encodings")

    # mlx-whisper recomputes the encoder's sinusoids; the stored ones only tell the encoder's length.
    n_audio_ctx = _DEFAULT_AUDIO_CTX
    if model.has("encoder/position_encodings/encodings"):
        n_audio_ctx = model.raw("encoder/position_encodings/encodings").shape[0]
    # The output projection is the (tied) token embedding in Whisper; mlx-whisper uses `as_linear`.
    if model.has("decoder/projection/weight"):
        tied = model.aliases.get("decoder/projection/weight") == "decoder/embeddings/weight"
        projection = model.raw("decoder/projection/weight")
        if not tied and not np.array_equal(projection, model.raw("decoder/embeddings/weight")):
            raise PipelineError(f"{model.path}: output projection is not tied to the embeddings; not Whisper")
    leftover = sorted(
        name for name, value in model.variables.items() if value.ndim > 0 and name not in model.used
    )
    if leftover:
        raise PipelineError(f"{model.path}: tensors with no MLX counterpart: {', '.join(leftover[:5])}")

    n_audio_state = out["encoder.conv1.weight"].shape[0]
    n_vocab, n_text_state = out["decoder.token_embedding.weight"].shape
    dims = {
        "n_mels": out["encoder.conv1.weight"].shape[2],
        "n_audio_ctx": n_audio_ctx,
        "n_audio_state": n_audio_state,
        # Whisper's heads are 64 wide; the spec stores the count, older specs may not.
        "n_audio_head": model.scalar("encoder/num_heads") or n_audio_state // 64,
        "n_audio_layer": n_audio_layer,
        "n_vocab": n_vocab,
        "n_text_ctx": out["decoder.positional_embedding"].shape[0],
        "n_text_state": n_text_state,
        "n_text_head": model.scalar("decoder/num_heads") or n_text_state // 64,
        "n_text_layer": n_text_layer,
    }
    if alignment_heads:
        heads = np.asarray(alignment_heads, dtype=np.int64).reshape(-1, 2)
        if (heads < 0).any() or (heads >= [n_text_layer, dims["n_text_head"]]).any():
            raise PipelineError(f"{model.path}: alignment_heads {alignment_heads} exceed the decoder's shape")
        out["alignment_heads"] = heads
    return {k: int(v) for k, v in dims.items()}, out


def _vocabulary_size(src: Path) -> int | None:
    if (src / "vocabulary.txt").is_file():
        with (src / "vocabulary.txt").open(encoding="utf-8") as handle:
            return sum(1 for _ in handle)
    if (src / "vocabulary.json").is_file():
        return len(json.loads((src / "vocabulary.json").read_text(encoding="utf-8")))
    return None


def convert_ct2_to_mlx(src: Path, dst: Path, dtype: str = "float16", *, overwrite: bool = False) -> Path:
    """Write mlx-whisper weights for the CTranslate2 Whisper folder `src` into `dst` atomically; return it.

    `dst` appears complete or not at all. If it already holds something, that is an error unless `overwrite`;
    if another process finishes the same conversion first, its result is kept.
    """
    src, dst = Path(src), Path(dst)
    if dtype not in DTYPES:
        raise PipelineError(f"MLX dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    if not (src / "model.bin").is_file():
        raise PipelineError(f"{src} is not a CTranslate2 Whisper folder (no model.bin)")
    config: dict = {}
    if (src / "config.json").is_file():
        try:
            config = json.loads((src / "config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PipelineError(f"{src / 'config.json'} is not valid JSON: {exc}") from None
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise PipelineError(f"{dst} already exists and is not empty; remove it or convert with overwrite")

    dims, weights = mlx_weights(read_ct2(src / "model.bin"), config.get("alignment_heads"))
    vocabulary = _vocabulary_size(src)
    if vocabulary is not None and vocabulary != dims["n_vocab"]:
        raise PipelineError(
            f"{src}: vocabulary has {vocabulary} tokens, the embeddings {dims['n_vocab']} rows"
        )

    try:
        import mlx.core as mx
    except ImportError:
        raise PipelineError(
            "converting to MLX needs mlx: pip install 'pipeline[mlx]' or 'pipeline[mlx-cpu]'"
        ) from None
    target = getattr(mx, dtype)
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        arrays = {}
        for name in list(weights):  # one tensor at a time, so memory peaks at the output's size
            value = mx.array(weights.pop(name))
            arrays[name] = value.astype(target) if mx.issubdtype(value.dtype, mx.floating) else value
        weights_path = staging / "weights.safetensors"
        mx.save_safetensors(str(weights_path), arrays, metadata={"format": "mlx", "source": "ctranslate2"})
        del arrays
        (staging / "config.json").write_text(json.dumps({"model_type": "whisper", **dims}, indent=2) + "\n")
        for path in (weights_path, staging / "config.json"):
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        os.chmod(staging, 0o777 & ~atomic.current_umask())  # mkdtemp makes it private; a model folder is not
        if overwrite and dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old.", dir=dst.parent))
            os.replace(dst, old / dst.name)
            os.replace(staging, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(staging, dst)  # replaces an empty directory; fails on a non-empty one
            except OSError:
                if not (dst / "weights.safetensors").is_file():
                    raise PipelineError(f"{dst} appeared while converting and is not an MLX model") from None
                shutil.rmtree(staging)  # a concurrent conversion of the same folder won the race
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dst
