"""A user's pyannote `speaker-diarization-community-1` folder, converted once into the ONNX pair sherpa-onnx runs.

The folder is what pyannote.audio's `Pipeline.from_pretrained(DIR)` loads: a `config.yaml` naming `$model/segmentation`,
`$model/embedding` (a WeSpeaker ResNet34) and `$model/plda`, each a subfolder. The conversion loads the two models
through pyannote.audio in a subprocess (pipeline.speakers.export: it needs torch) and exports them like the packaged
ones, into a store entry of its own, `<models>/speakers-community-1-<hash>`, keyed by the sha256 of the folder's files:
the same folder is converted once, whether through `pipeline models install speakers --from DIR` or
`DIARIZATION_MODEL_DIR=DIR` (at prepare). The PLDA is checked but not used: sherpa-onnx clusters the embeddings itself.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import zipfile
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.models import _sha256, models_dir

CONFIG = "config.yaml"
WEIGHTS = ("segmentation/pytorch_model.bin", "embedding/pytorch_model.bin", "plda/xvec_transform.npz", "plda/plda.npz")
FILES = (CONFIG, *WEIGHTS)
PREFIX = "speakers-community-1-"
EXPECTED = f"a pyannote speaker-diarization-community-1 folder ({', '.join(FILES)})"
LICENCE = "the source folder's (pyannote speaker-diarization-community-1: CC-BY-4.0)"


def is_community(folder: Path) -> bool:
    """Whether `folder` is meant as a pyannote pipeline folder (it has a config.yaml); its contents are checked by
    `install`."""
    return (folder / CONFIG).is_file()


def layout_problem(folder: Path) -> str | None:
    """What keeps `folder` from being a community-1 folder, in a few words; None when its layout is right. Cheap
    checks only (no torch): whether pyannote.audio can load the weights is found when they are converted."""
    if not (folder / CONFIG).is_file():
        return f"no {CONFIG}"
    if missing := [name for name in WEIGHTS if not (folder / name).is_file()]:
        return f"{', '.join(missing)} missing"
    text = (folder / CONFIG).read_text(encoding="utf-8", errors="replace")
    wanted = ("SpeakerDiarization", "$model/segmentation", "$model/embedding")
    if absent := [word for word in wanted if word not in text]:
        return f"{CONFIG} names no {', '.join(absent)}"
    # PyTorch checkpoints (since torch 1.6) and .npz files are zip archives: a truncated or foreign file is not one.
    if damaged := [name for name in WEIGHTS if not zipfile.is_zipfile(folder / name)]:
        return f"{', '.join(damaged)} damaged (not a PyTorch checkpoint or NumPy archive)"
    return None


def install(folder: Path, *, reinstall: bool = False) -> Path:
    """The store entry converted from `folder` (converting it now if it is not there or damaged)."""
    from pipeline.models import speakers

    folder = folder.resolve()
    if not folder.is_dir():
        raise PipelineError(f"{folder} is not a folder; expected {EXPECTED}")
    if problem := layout_problem(folder):
        raise PipelineError(f"{folder}: {problem}; expected {EXPECTED}")
    inputs = {name: _sha256(folder / name) for name in FILES}
    key = hashlib.sha256("".join(f"{name} {digest}\n" for name, digest in inputs.items()).encode()).hexdigest()
    target = models_dir() / f"{PREFIX}{key[:16]}"
    if target.is_dir() and not reinstall:
        try:
            speakers.check(target)
            return target
        except PipelineError:
            pass  # damaged or partial: convert again
    speakers.need_export_tools()
    print(f"pipeline: converting the pyannote models in {folder} to ONNX in {target} (once)", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "name": target.name,
        "from": str(folder),
        "layout": "pyannote speaker-diarization-community-1",
        "folder_sha256": key,
        "licence": LICENCE,
        "inputs": {name: {"file": name, "sha256": digest} for name, digest in inputs.items()},
    }
    with tempfile.TemporaryDirectory(prefix=".speakers-build.", dir=target.parent) as scratch:
        return speakers.build(target, ["community", str(folder)], record, Path(scratch), [], reinstall)
