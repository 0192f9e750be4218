"""Language codes: what users type (ISO 639-1, as Whisper uses them) and the ISO 639-2 tags muxers want."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError


@cache
def _iso(code: str):  # -> pycountry language record or None
    import pycountry

    if len(code) == 2:
        return pycountry.languages.get(alpha_2=code)
    if len(code) == 3:
        return pycountry.languages.get(alpha_3=code)
    return None


def check_language(code: str, *, allow_auto: bool) -> str:
    """`code` if it names a language (ISO 639-1, or 639-3 where Whisper uses it, e.g. haw, yue)."""
    if allow_auto and code == "auto":
        return code
    if code.isascii() and code.isalpha() and _iso(code) is not None:
        return code
    allowed = "ISO 639-1 codes such as en, hi, es, pt" + (", or auto" if allow_auto else "")
    raise PipelineError(f"unknown language code {code!r}; allowed: {allowed}")


def name(code: str) -> str:
    record = _iso(code)
    return record.name if record else code


def iso639_2(code: str) -> str:
    """The three-letter tag for a subtitle stream (bibliographic form where one exists, as Matroska expects)."""
    record = _iso(code)
    if record is None:
        return "und"
    return getattr(record, "bibliographic", None) or record.alpha_3


@cache
def whisper_languages() -> frozenset[str]:
    """The languages Whisper models know; read from the installed ASR library, not hand-written here."""
    if codes := _literal_from_source("faster_whisper", "tokenizer.py", "_LANGUAGE_CODES"):
        return frozenset(codes)
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES
    except ImportError:
        try:
            from mlx_whisper.tokenizer import LANGUAGES as _LANGUAGE_CODES
        except ImportError:
            return frozenset()
    return frozenset(_LANGUAGE_CODES)


def _literal_from_source(package: str, module: str, name: str) -> Any:
    """A constant of `package/module`, read from its source without importing it.

    Importing faster_whisper.tokenizer runs the package's __init__, which loads ctranslate2, av, onnxruntime and
    tokenizers, held by the CLI process for a whole job, to read one tuple of strings."""
    import ast
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        source = Path(next(iter(spec.submodule_search_locations))) / module
        for node in ast.parse(source.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
                return ast.literal_eval(node.value)
    except (OSError, SyntaxError, ValueError):
        return None
    return None


def check_speech_language(code: str) -> str:
    """A source language Whisper can transcribe (checked only when an ASR library is installed)."""
    known = whisper_languages()
    if code != "auto" and known and code not in known:
        raise PipelineError(
            f"Whisper does not transcribe {code!r} ({name(code)}); allowed: auto or one of {', '.join(sorted(known))}"
        )
    return code
