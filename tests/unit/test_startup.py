"""Startup stays light: the CLI and the public package import no ML library (backends load in their workers)."""

import subprocess
import sys

HEAVY = ("torch", "ctranslate2", "mlx", "faster_whisper", "whisperx", "transformers", "onnxruntime", "numpy")


def test_help_and_package_import_no_ml_library():
    probe = (
        "import sys, contextlib, io, pipeline, pipeline.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    pipeline.cli.main(['--help'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_help_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, check=True)
    for command in ("prepare", "run", "status", "transcribe", "translate", "subtitle", "models", "matrix"):
        assert command in result.stdout
