"""Hardware profiles, read from the matrix file (`matrix/profiles.toml`), the only place they are defined."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

SUITES = ("transcribe", "translate", "subtitle")


def matrix_path() -> Path:
    """The matrix file: $PIPELINE_MATRIX, else the repository's `matrix/profiles.toml`, else the installed copy."""
    if env := os.environ.get("PIPELINE_MATRIX"):
        return Path(env)
    repo = Path(__file__).resolve().parent.parent / "matrix" / "profiles.toml"
    if repo.is_file():
        return repo
    return Path(__file__).resolve().parent / "data" / "profiles.toml"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    backend: str
    fallback: tuple[str, ...]
    device: str
    compute_type: str
    model: str
    batch_size: int  # ASR windows decoded together (WHISPER_BATCH_SIZE=auto)
    chunk_seconds: float  # audio per ASR call, the memory bound (ASR_CHUNK_SECONDS=auto)
    python: str
    extras: tuple[str, ...]
    pins: dict[str, str]
    image: str  # "pipeline:cpu", or "native" for a profile that runs on the host (mps)
    base_image: str | None
    runner: tuple[str, ...]
    container: bool
    gpus: bool
    suites: tuple[str, ...]
    fallback_device: str | None = None  # where fallbacks run when not on `device` (mps -> faster-whisper on cpu)
    fallback_compute_type: str | None = None
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    guards: dict[str, Any] = field(default_factory=dict)  # WHISPER_* guard keys' auto values ([guards])

    @property
    def chain(self) -> tuple[str, ...]:
        """Backends in the order they are tried."""
        return (self.backend, *self.fallback)

    def threshold(self, model: str, key: str) -> float:
        """The quality gate for `key` with `model` on this profile (tests/e2e assert against it)."""
        try:
            return self.thresholds[model][key]
        except KeyError:
            known = ", ".join(sorted(self.thresholds)) or "none"
            raise PipelineError(
                f"matrix: no threshold {key!r} for model {model!r} in profile {self.name!r} "
                f"({matrix_path()}); models with thresholds: {known}"
            ) from None


@dataclass(frozen=True)
class Matrix:
    path: Path
    profiles: dict[str, Profile]
    defaults: dict[str, Any]
    system: dict[str, Any] = field(default_factory=dict)  # [system]: Debian/Homebrew packages, not per profile

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise PipelineError(
                f"unknown profile {name!r}; profiles in {self.path}: {', '.join(self.profiles)}"
            ) from None


_REQUIRED = (
    "backend",
    "device",
    "compute_type",
    "model",
    "batch_size",
    "chunk_seconds",
    "python",
    "image",
    "runner",
    "suites",
)


@cache
def _load(path: Path) -> Matrix:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"matrix file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PipelineError(f"matrix file {path} is not valid TOML: {exc}") from None
    thresholds = raw.get("thresholds", {})
    shared_guards = {k: v for k, v in raw.get("guards", {}).items() if not isinstance(v, dict)}
    profiles: dict[str, Profile] = {}
    for name, spec in raw.get("profiles", {}).items():
        missing = [key for key in _REQUIRED if key not in spec]
        if missing:
            raise PipelineError(f"matrix: profile {name!r} in {path} lacks {', '.join(missing)}")
        profiles[name] = Profile(
            name=name,
            description=spec.get("description", ""),
            backend=spec["backend"],
            fallback=tuple(spec.get("fallback", ())),
            device=spec["device"],
            compute_type=spec["compute_type"],
            model=spec["model"],
            batch_size=int(spec["batch_size"]),
            chunk_seconds=float(spec["chunk_seconds"]),
            python=spec["python"],
            extras=tuple(spec.get("extras", ())),
            pins=dict(spec.get("pins", {})),
            image=spec["image"],
            base_image=spec.get("base_image"),
            runner=tuple(spec["runner"]),
            container=bool(spec.get("container", spec["image"] != "native")),
            gpus=bool(spec.get("gpus", False)),
            suites=tuple(spec["suites"]),
            fallback_device=spec.get("fallback_device"),
            fallback_compute_type=spec.get("fallback_compute_type"),
            thresholds={model: dict(values) for model, values in thresholds.get(name, {}).items()},
            guards=shared_guards | raw.get("guards", {}).get(name, {}),
        )
    return Matrix(
        path=path,
        profiles=profiles,
        defaults=dict(raw.get("defaults", {})),
        system=dict(raw.get("system", {})),
    )


def load_matrix(path: str | os.PathLike[str] | None = None) -> Matrix:
    return _load(Path(path) if path else matrix_path())
