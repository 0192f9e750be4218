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


def test_preparing_a_job_imports_no_ml_library():
    """The CLI process of a job (workflow, stages, language checks) leaves ASR libraries to the worker: validating
    `-s xx` reads faster-whisper's language table from its source, audio durations need no numpy."""
    probe = (
        "import sys, pipeline.workflow, pipeline.stages\n"
        "from pipeline.languages import whisper_languages\n"
        "codes = whisper_languages()\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "from faster_whisper.tokenizer import _LANGUAGE_CODES\n"
        "print(codes == frozenset(_LANGUAGE_CODES) and len(codes) > 90)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "True"], result.stdout
