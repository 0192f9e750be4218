"""What this machine can run, and how a profile's wishes become a concrete backend/device/compute type.

Detection is the only place that asks the hardware (`detect`, `ct2_compute_types`); everything else is pure, so the
cuda and mps paths are tested on any machine by passing a `Hardware` value.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.profiles import Matrix, Profile

CT2_BACKENDS = ("whisperx", "faster-whisper")
MLX_COMPUTE_TYPES = frozenset({"float16", "float32"})


@dataclass(frozen=True)
class Hardware:
    system: str  # platform.system(): Linux, Darwin, Windows
    machine: str  # platform.machine(): x86_64, arm64, aarch64
    cuda_devices: int
    metal: bool  # MLX can use the Apple GPU
    ct2_compute_types: dict[str, frozenset[str]]  # device -> what CTranslate2 supports there

    def supports(self, device: str) -> bool:
        return device == "cpu" or (device == "cuda" and self.cuda_devices > 0) or (device == "mps" and self.metal)


@cache
def detect() -> Hardware:
    """Ask the machine. Imports ctranslate2/mlx only when installed; never torch."""
    import importlib.util

    cuda = 0
    types: dict[str, frozenset[str]] = {}
    if importlib.util.find_spec("ctranslate2") is not None:
        import ctranslate2

        cuda = ctranslate2.get_cuda_device_count()
        types["cpu"] = frozenset(ctranslate2.get_supported_compute_types("cpu"))
        if cuda:
            types["cuda"] = frozenset(ctranslate2.get_supported_compute_types("cuda"))
    elif shutil.which("nvidia-smi"):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
        cuda = sum(line.startswith("GPU ") for line in listing.splitlines())
    metal = False
    if platform.system() == "Darwin" and importlib.util.find_spec("mlx") is not None:
        import mlx.core as mx

        metal = bool(mx.metal.is_available())
    return Hardware(platform.system(), platform.machine(), cuda, metal, types)


@dataclass(frozen=True)
class Choice:
    """One concrete way to run ASR: a link of the fallback chain."""

    backend: str
    device: str
    compute_type: str
    batch_size: int
    chunk_seconds: float
    notices: tuple[str, ...] = ()
    guards: dict[str, Any] = field(default_factory=dict, compare=False)  # WHISPER_* guards, auto resolved


GUARDS = (
    "no_speech_threshold",
    "log_prob_threshold",
    "compression_ratio_threshold",
    "condition_on_previous_text",
    "hallucination_silence_threshold",
    "repetition_filter",
    "language_detection_segments",
)


def resolve_guards(config: Config, profile: Profile) -> dict[str, Any]:
    """The guard keys' values: the config's, or for auto (None) the profile's from the matrix file."""
    values = {}
    for name in GUARDS:
        value = getattr(config, name)
        if value is None:
            if name not in profile.runtime.guards:
                raise PipelineError(f"matrix: no [guards] value {name!r} for profile {profile.name!r}")
            value = profile.runtime.guards[name]
        values[name] = value
    return values


def resolve_profile(config: Config, matrix: Matrix, hw: Hardware) -> Profile:
    if config.profile != "auto":
        return matrix.profile(config.profile)
    if hw.cuda_devices and "cuda" in matrix.profiles:
        return matrix.profile("cuda")
    if hw.system == "Darwin" and hw.machine == "arm64" and "mps" in matrix.profiles:
        return matrix.profile("mps")
    return matrix.profile("cpu")


def _compute_type_for(backend: str, device: str, wanted: str, hw: Hardware) -> tuple[str, str | None]:
    """(compute type to use, notice or None). Never lets a library raise its ValueError on an unsupported type."""
    if backend == "mlx":
        if wanted in MLX_COMPUTE_TYPES:
            return wanted, None
        chosen = "float16" if "16" in wanted else "float32"
        return chosen, f"MLX has no {wanted} kernels; using {chosen}"
    supported = hw.ct2_compute_types.get(device)
    if not supported or wanted in supported:
        return wanted, None
    # Keep the user's intent: a quantised request stays quantised, a float request keeps float precision.
    preferences = ("int8", "int8_float32", "float32") if wanted.startswith("int8") else ("float32", "int8")
    chosen = next((c for c in preferences if c in supported), sorted(supported)[0])
    return (
        chosen,
        f"CTranslate2 on {device} does not support {wanted}; using {chosen} (supported: "
        + ", ".join(sorted(supported))
        + ")",
    )


def _device_for(backend: str, wanted: str, explicit: bool, hw: Hardware) -> tuple[str, str | None]:
    if backend in CT2_BACKENDS and wanted == "mps":
        return "cpu", f"CTranslate2 ({backend}) has no MPS support; {backend} runs on the CPU"
    if backend == "mlx":
        # mlx-whisper runs on Metal where there is one and on mlx's CPU build elsewhere (Linux).
        if wanted == "cuda":
            return "cpu", "MLX has no CUDA support; mlx runs on the CPU"
        if wanted == "mps" and not hw.metal:
            return "cpu", "no Metal GPU here; mlx runs on its CPU build"
        return wanted, None
    if wanted == "cuda" and not hw.cuda_devices:
        if explicit:
            raise PipelineError("WHISPER_DEVICE=cuda but no CUDA device is visible; allowed here: auto, cpu")
        return "cpu", "no CUDA device is visible; running on the CPU"
    return wanted, None


def resolve_chain(config: Config, profile: Profile, hw: Hardware) -> list[Choice]:
    """The backends to try, in order, each with its device and compute type resolved against `hw`."""
    runtime = profile.runtime
    first = runtime.backend if config.backend == "auto" else config.backend
    backends = [first, *(b for b in runtime.chain if b != first)]
    batch = config.batch_size or runtime.batch_size
    chunk = config.chunk_seconds or runtime.chunk_seconds
    guards = resolve_guards(config, profile)
    choices = []
    for index, backend in enumerate(backends):
        primary = backend == runtime.backend
        explicit_device = config.device != "auto"
        device: str  # the profile's text, then what the hardware can do
        compute: str
        if explicit_device:
            device = config.device
        else:
            device = runtime.device if primary else (runtime.fallback_device or runtime.device)
        if config.compute_type != "auto" and index == 0:
            compute = config.compute_type
        else:
            compute = runtime.compute_type if primary else (runtime.fallback_compute_type or runtime.compute_type)
        notices = []
        device, notice = _device_for(backend, device, explicit_device and index == 0, hw)
        notices += [notice] if notice else []
        compute, notice = _compute_type_for(backend, device, compute, hw)
        notices += [notice] if notice else []
        choices.append(Choice(backend, device, compute, batch, chunk, tuple(notices), guards))
    return choices
