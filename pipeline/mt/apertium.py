"""Apertium (rule-based, Debian packages) through its `apertium` command, one process per batch.

Segments go in as paragraphs separated by a blank line. Apertium's text deformatter turns a blank line
into a sentence end plus a "superblank" that every stage passes through untouched, so no transfer rule
reorders words across it (a single newline is no barrier: "a red\\ncar" comes out "un coche\\nrojo").
Paragraph i of the output is therefore the translation of segment i; tests/mt checks that on generated text.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from functools import cache

from pipeline.errors import PipelineError
from pipeline.mt import translate_nonblank

# "eng-spa", "en-gl", "eng-hbs_HR"; not "en-eo-bytecode" (a debugging mode) nor "Cyrl-Latn" (transliteration).
_MODE = re.compile(r"^([a-z]{2,3})-([a-z]{2,3})(?:_([A-Za-z]+))?$")
# Mode variants that are languages of their own. Other variants (eng-cat_valencia, spa-eng_US) are spelling
# choices: the plain mode is used.
_VARIANTS = {("sh", "HR"): "hr", ("sh", "SR"): "sr", ("sh", "BS"): "bs"}
# Apertium's Serbo-Croatian analyser reads the Latin-script standards too (Serbian speech is usually written
# in Cyrillic, which hbs-eng passes through untranslated, so sr is not claimed).
_SOURCE_ALIASES = {"sh": ("hr", "bs")}
_PARAGRAPH = re.compile(r"\n\s*\n")


@cache
def _iso(code: str) -> str:
    """ISO 639-1 where one exists (eng -> en, hbs -> sh), else the code Apertium uses."""
    if len(code) == 2:
        return code
    import pycountry

    language = pycountry.languages.get(alpha_3=code)
    return getattr(language, "alpha_2", None) or code


@cache
def list_modes(binary: str) -> tuple[str, ...]:
    """`apertium -l`: the installed translation modes (cached: it does not change while we run)."""
    try:
        result = subprocess.run([binary, "-l"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        raise PipelineError(f"cannot list Apertium modes with '{binary} -l': {error}") from None
    return tuple(line.strip() for line in result.stdout.splitlines() if line.strip())


def modes_by_pair(modes: Sequence[str]) -> dict[tuple[str, str], str]:
    """Our (src, tgt) codes -> the Apertium mode that translates them; plain modes win over variants."""
    plain: dict[tuple[str, str], str] = {}
    variant: dict[tuple[str, str], str] = {}
    for mode in modes:
        match = _MODE.match(mode)
        if not match:
            continue
        src, tgt, suffix = _iso(match[1]), _iso(match[2]), match[3]
        if suffix is None:
            for alias in (src, *_SOURCE_ALIASES.get(src, ())):
                plain.setdefault((alias, tgt), mode)
        elif (tgt, suffix) in _VARIANTS:
            variant.setdefault((src, _VARIANTS[tgt, suffix]), mode)
    return {**variant, **plain}


def _initial_case_like(source: str, translated: str) -> str:
    """Apertium capitalises every paragraph; a Whisper segment that continues a sentence starts lowercase."""
    first_src = next((c for c in source if c.isalpha()), "")
    for i, char in enumerate(translated):
        if char.isalpha():
            if first_src.islower() and char.isupper():
                return translated[:i] + char.lower() + translated[i + 1 :]
            break
    return translated


class ApertiumEngine:
    name = "apertium"

    def __init__(self, binary: str = "apertium", timeout: float | None = None) -> None:
        path = shutil.which(binary)
        if path is None:
            raise PipelineError(
                f"Apertium is not installed ({binary!r} not found); install e.g. apertium-eng-spa (Debian)"
            )
        self.binary = path
        self.timeout = timeout  # None: scaled to the batch, see _run

    def _modes(self) -> dict[tuple[str, str], str]:
        return modes_by_pair(list_modes(self.binary))

    def pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset(self._modes())

    def mode(self, src: str, tgt: str) -> str:
        modes = self._modes()
        if (src, tgt) not in modes:
            have = ", ".join(f"{s}->{t}" for s, t in sorted(modes)) or "none"
            raise PipelineError(f"Apertium has no {src}->{tgt} mode installed; installed pairs: {have}")
        return modes[src, tgt]

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        mode = self.mode(src, tgt)
        return translate_nonblank(texts, lambda batch: self._run(mode, batch))

    def _run(self, mode: str, batch: list[str]) -> list[str]:
        payload = "\n\n".join(batch) + "\n"
        # Apertium does thousands of words a second; allow a generous multiple of that for a loaded machine.
        timeout = self.timeout or 60 + len(payload) / 500
        try:
            result = subprocess.run(
                [self.binary, "-u", mode],
                input=payload,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise PipelineError(
                f"apertium {mode} timed out after {timeout:.0f} s on {len(batch)} segments"
            ) from None
        except OSError as error:
            raise PipelineError(f"cannot run apertium {mode}: {error}") from None
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise PipelineError(f"apertium {mode} failed (exit {result.returncode}): {detail}")
        paragraphs = _PARAGRAPH.split(result.stdout.strip())
        if len(paragraphs) != len(batch):
            raise PipelineError(
                f"apertium {mode} returned {len(paragraphs)} paragraphs for {len(batch)} segments; "
                "cannot align its output with the segments"
            )
        return [
            _initial_case_like(text, " ".join(out.split()))
            for text, out in zip(batch, paragraphs, strict=True)
        ]
