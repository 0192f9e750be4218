"""Hardware profiles, read from the matrix file (`matrix/profiles.toml`), the only place they are defined.

A profile's facts come in two kinds, kept apart so that a reader can tell which one it depends on: `Runtime`
(what hardware resolution and the stages read to run ASR) and `Packaging` (how CI, tox and the images build
and gate the profile; nothing at run time reads them).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError


def matrix_path() -> Path:
    """The matrix file: $PIPELINE_MATRIX, else the repository's `matrix/profiles.toml`, else the installed copy."""
    if env := os.environ.get("PIPELINE_MATRIX"):
        return Path(env)
    repo = Path(__file__).resolve().parent.parent / "matrix" / "profiles.toml"
    if repo.is_file():
        return repo
    return Path(__file__).resolve().parent / "data" / "profiles.toml"


@dataclass(frozen=True)
class Runtime:
    """How a job on this profile runs ASR: read by `pipeline.hardware` and the stages."""

    backend: str
    fallback: tuple[str, ...]
    device: str
    compute_type: str
    model: str
    batch_size: int  # ASR windows decoded together (WHISPER_BATCH_SIZE=auto)
    chunk_seconds: float  # audio per ASR call, the memory bound (ASR_CHUNK_SECONDS=auto)
    fallback_device: str | None = None  # where fallbacks run when not on `device` (mps -> faster-whisper on cpu)
    fallback_compute_type: str | None = None
    guards: dict[str, Any] = field(default_factory=dict)  # WHISPER_* guard keys' auto values ([guards])

    @property
    def chain(self) -> tuple[str, ...]:
        """Backends in the order they are tried."""
        return (self.backend, *self.fallback)


@dataclass(frozen=True)
class Packaging:
    """How CI, tox and the images build, run and gate this profile: read by `pipeline.matrix` and the tests."""

    python: str
    extras: tuple[str, ...]
    pins: dict[str, str]
    image: str  # "pipeline:cpu", or "native" for a profile that runs on the host (mps)
    base_image: str | None
    runner: tuple[str, ...]
    container: bool
    gpus: bool
    suites: tuple[str, ...]
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def pip_pins(self) -> list[str]:
        """The pins as pip requirement specifiers: `4.6.*` means ==4.6.*, `>=1,<2` stays as it is."""
        return [f"{name}{value}" if value[:1] in "<>=!~" else f"{name}=={value}" for name, value in self.pins.items()]


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    runtime: Runtime
    ci: Packaging

    def threshold(self, model: str, key: str) -> float:
        """The quality gate for `key` with `model` on this profile (tests/e2e assert against it)."""
        try:
            return self.ci.thresholds[model][key]
        except KeyError:
            known = ", ".join(sorted(self.ci.thresholds)) or "none"
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

    def default_profile(self) -> Profile:
        """The profile `make test`, CI's main job and E2E runs without PIPELINE_PROFILE use."""
        name = self.defaults.get("profile")
        if name is None:
            raise PipelineError(f"matrix: [defaults] in {self.path} lacks profile (the profile `make test` runs)")
        return self.profile(name)


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


def _profile(name: str, spec: dict[str, Any], thresholds: dict[str, Any], guards: dict[str, Any]) -> Profile:
    runtime = Runtime(
        backend=spec["backend"],
        fallback=tuple(spec.get("fallback", ())),
        device=spec["device"],
        compute_type=spec["compute_type"],
        model=spec["model"],
        batch_size=int(spec["batch_size"]),
        chunk_seconds=float(spec["chunk_seconds"]),
        fallback_device=spec.get("fallback_device"),
        fallback_compute_type=spec.get("fallback_compute_type"),
        guards=guards,
    )
    ci = Packaging(
        python=spec["python"],
        extras=tuple(spec.get("extras", ())),
        pins=dict(spec.get("pins", {})),
        image=spec["image"],
        base_image=spec.get("base_image"),
        runner=tuple(spec["runner"]),
        container=bool(spec.get("container", spec["image"] != "native")),
        gpus=bool(spec.get("gpus", False)),
        suites=tuple(spec["suites"]),
        thresholds={model: dict(values) for model, values in thresholds.items()},
    )
    return Profile(name=name, description=spec.get("description", ""), runtime=runtime, ci=ci)


@cache
def _load(path: Path) -> Matrix:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"matrix file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PipelineError(f"matrix file {path} is not valid TOML: {exc}") from None
    thresholds = raw.get("thresholds", {})
    guards = raw.get("guards", {})
    shared_guards = {k: v for k, v in guards.items() if not isinstance(v, dict)}
    profiles: dict[str, Profile] = {}
    for name, spec in raw.get("profiles", {}).items():
        missing = [key for key in _REQUIRED if key not in spec]
        if missing:
            raise PipelineError(f"matrix: profile {name!r} in {path} lacks {', '.join(missing)}")
        profiles[name] = _profile(name, spec, thresholds.get(name, {}), shared_guards | guards.get(name, {}))
    return Matrix(
        path=path,
        profiles=profiles,
        defaults=dict(raw.get("defaults", {})),
        system=dict(raw.get("system", {})),
    )


def load_matrix(path: str | os.PathLike[str] | None = None) -> Matrix:
    return _load(Path(path) if path else matrix_path())
