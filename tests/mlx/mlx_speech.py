"""Speech clips, references and model helpers shared by the MLX tests (a plain module: tests/mlx must not be a
package, it would shadow the `mlx` library, and `conftest` is not a unique module name to import from)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from pipeline.models.convert import read_ct2

REPO = Path(__file__).resolve().parents[2]
JFK = REPO / "tests/fixtures/jfk.wav"
JFK_TEXT = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def librivox(clip: str) -> tuple[Path, str]:
    """A LibriVox clip from Debian's pocketsphinx-testdata and its reference transcript."""
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        if line.endswith(f"({clip})"):
            return LIBRIVOX / f"{clip}.wav", line.split("</s>")[0].removeprefix("<s>").strip()
    raise LookupError(clip)


def normalise(text: str) -> str:
    """Lower case, no punctuation: "cold-hearted," and "cold hearted" are the same words."""
    return " ".join(re.sub(r"[^a-z0-9']+", " ", text.lower()).split())


def quantized_copy(src: Path, dst: Path, quantization: str) -> Path:
    """Re-save a CTranslate2 Whisper folder with ctranslate2's own spec writer and quantizer."""
    from ctranslate2.specs import model_spec, whisper_spec

    model = read_ct2(src / "model.bin")
    heads = (int(model.variables["encoder/num_heads"]), int(model.variables["decoder/num_heads"]))
    spec = whisper_spec.WhisperSpec(model.layers("encoder"), heads[0], model.layers("decoder"), heads[1])
    named = [*model.variables.items(), *((a, model.variables[t]) for a, t in model.aliases.items())]
    for name, value in named:
        scope, attr = name.rsplit("/", 1)
        layer = model_spec.index_spec(spec, scope)
        if value.ndim and hasattr(layer, attr):  # scalars are the spec's own flags
            setattr(layer, attr, np.array(value))
    spec.register_vocabulary((src / "vocabulary.txt").read_text(encoding="utf-8").splitlines())
    spec.validate()
    spec.optimize(quantization=quantization)
    dst.mkdir(parents=True)
    spec.save(str(dst))
    shutil.copy(src / "tokenizer.json", dst)
    shutil.copy(src / "config.json", dst / "config.json")  # keeps the alignment heads
    return dst
