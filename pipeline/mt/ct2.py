"""A user-supplied NLLB-200 or M2M100 model in CTranslate2 format (ct2-transformers-converter output).

The folder must hold `model.bin`, its vocabulary and the model's SentencePiece file (convert with
`--copy_files sentencepiece.bpe.model`). The family and its languages are read from the vocabulary's
language tokens (NLLB `spa_Latn`, M2M100 `__es__`), so the engine offers exactly what the model knows.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.mt import translate_nonblank

_M2M100_TOKEN = re.compile(r"^__([a-z]{2,3})__$")
_NLLB_TOKEN = re.compile(r"^([a-z]{3})_([A-Z][a-z]{3})$")
# NLLB names the individual language where ISO 639-1 names the macrolanguage (Standard Arabic `arb` is
# Whisper's `ar`), and Whisper calls Norwegian `no`. pycountry maps every other ISO 639-3 code.
_NLLB_MACRO = {
    "arb": "ar", "ayr": "ay", "azj": "az", "gaz": "om", "khk": "mn", "knc": "kr", "lvs": "lv", "nob": "no",
    "npi": "ne", "ory": "or", "pbt": "ps", "pes": "fa", "plt": "mg", "quy": "qu", "als": "sq", "swh": "sw",
    "uzn": "uz", "ydd": "yi", "zsm": "ms",
}  # fmt: skip
_WHISPER_SPELLING = {"jv": "jw"}  # Whisper kept the old code for Javanese
# A language NLLB writes in two scripts: the one Whisper transcribes; otherwise Latin, else the first.
_NLLB_SCRIPT = {"zho": "Hans"}
_SENTENCEPIECE = "sentencepiece.bpe.model"


@cache
def _iso(code: str) -> str:
    if len(code) == 3:
        import pycountry

        code = (
            _NLLB_MACRO.get(code) or getattr(pycountry.languages.get(alpha_3=code), "alpha_2", None) or code
        )
    return _WHISPER_SPELLING.get(code, code)


@dataclass(frozen=True)
class ModelFolder:
    path: Path
    family: str  # "nllb" or "m2m100"
    tokens: dict[str, str]  # our language code -> the model's language token
    sentencepiece: Path


def _read_vocabulary(path: Path) -> list[str] | None:
    for name in (path.with_suffix(".json"), path.with_suffix(".txt")):
        if name.is_file():
            if name.suffix == ".json":
                return [str(token) for token in json.loads(name.read_text(encoding="utf-8"))]
            return name.read_text(encoding="utf-8").splitlines()
    return None


def inspect_model_dir(model_dir: str | Path) -> ModelFolder:
    """Validate a CTranslate2 NLLB/M2M100 folder and read its languages; PipelineError if it is not one."""
    path = Path(model_dir).expanduser()
    what = "expected a CTranslate2 NLLB-200 or M2M100 translation model folder"
    if not path.is_dir():
        raise PipelineError(f"MT model folder {str(path)!r} does not exist; {what}")
    if not (path / "model.bin").is_file():
        raise PipelineError(f"{path}: no model.bin; {what} (convert with ct2-transformers-converter)")
    shared = _read_vocabulary(path / "shared_vocabulary")
    source, target = (
        _read_vocabulary(path / "source_vocabulary"),
        _read_vocabulary(path / "target_vocabulary"),
    )
    if shared is None and (source is None or target is None):
        raise PipelineError(f"{path}: no shared_vocabulary.json or source/target vocabulary; {what}")
    vocabulary = set(shared) if shared is not None else set(source or ()) & set(target or ())

    m2m100 = {m[1]: token for token in vocabulary if (m := _M2M100_TOKEN.match(token))}
    nllb: dict[str, list[tuple[str, str]]] = {}
    for token in vocabulary:
        if m := _NLLB_TOKEN.match(token):
            nllb.setdefault(m[1], []).append((m[2], token))
    if m2m100:
        family, tokens = "m2m100", {_iso(code): token for code, token in sorted(m2m100.items())}
    elif nllb:
        family, tokens = "nllb", {}
        for code, scripts in sorted(nllb.items()):
            by_script = dict(scripts)
            script = _NLLB_SCRIPT.get(code) or ("Latn" if "Latn" in by_script else min(by_script))
            tokens.setdefault(_iso(code), by_script.get(script, by_script[min(by_script)]))
    else:
        raise PipelineError(
            f"{path}: its vocabulary has no NLLB (eng_Latn) or M2M100 (__en__) language tokens; {what}"
        )

    spm = path / _SENTENCEPIECE
    if not spm.is_file():
        spm = next(iter(sorted(path.glob("*.model"))), spm)
    if not spm.is_file():
        raise PipelineError(
            f"{path}: no SentencePiece tokenizer ({_SENTENCEPIECE}); convert with "
            f"ct2-transformers-converter --copy_files {_SENTENCEPIECE}"
        )
    return ModelFolder(path, family, tokens, spm)


class CT2Engine:
    name = "ct2"

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "auto",
        compute_type: str = "default",
        beam_size: int = 4,
        batch_size: int = 32,
        max_decoding_length: int = 256,
    ) -> None:
        self.folder = inspect_model_dir(model_dir)
        self.device, self.compute_type = device, compute_type
        self.beam_size, self.batch_size, self.max_decoding_length = beam_size, batch_size, max_decoding_length
        self._translator: Any = None
        self._lock = threading.Lock()
        import sentencepiece

        try:
            self._sp = sentencepiece.SentencePieceProcessor(model_file=str(self.folder.sentencepiece))
        except (OSError, RuntimeError) as error:
            raise PipelineError(f"{self.folder.sentencepiece}: not a SentencePiece model ({error})") from None

    @property
    def family(self) -> str:
        return self.folder.family

    def pairs(self) -> frozenset[tuple[str, str]]:
        codes = self.folder.tokens
        return frozenset((src, tgt) for src in codes for tgt in codes if src != tgt)

    def token(self, code: str) -> str:
        try:
            return self.folder.tokens[code]
        except KeyError:
            raise PipelineError(
                f"the {self.family} model in {self.folder.path} has no language {code!r}; "
                f"it knows: {', '.join(sorted(self.folder.tokens))}"
            ) from None

    def _load(self) -> Any:
        with self._lock:
            if self._translator is None:
                import ctranslate2

                try:
                    self._translator = ctranslate2.Translator(
                        str(self.folder.path), device=self.device, compute_type=self.compute_type
                    )
                except (RuntimeError, ValueError) as error:
                    raise PipelineError(f"cannot load the MT model in {self.folder.path}: {error}") from None
            return self._translator

    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        src_token, tgt_token = self.token(src), self.token(tgt)
        return translate_nonblank(texts, lambda batch: self._run(batch, src_token, tgt_token))

    def _run(self, batch: list[str], src_token: str, tgt_token: str) -> list[str]:
        # Both families read "<src_lang> pieces </s>" and are steered by a forced first target token.
        sources = [[src_token, *self._sp.encode(text, out_type=str), "</s>"] for text in batch]
        translator = self._load()
        try:
            results = translator.translate_batch(
                sources,
                target_prefix=[[tgt_token]] * len(sources),
                beam_size=self.beam_size,
                max_batch_size=self.batch_size,
                max_decoding_length=self.max_decoding_length,
            )
        except (RuntimeError, ValueError) as error:  # e.g. out of memory on the device
            raise PipelineError(f"MT model in {self.folder.path} failed: {error}") from None
        return [self._detokenize(result.hypotheses[0]) for result in results]

    def _detokenize(self, tokens: list[str]) -> str:
        # Language tokens, </s> and padding words are not SentencePiece pieces: drop them with the controls.
        ids = [self._sp.piece_to_id(token) for token in tokens]
        unk = self._sp.unk_id()
        return self._sp.decode([i for i in ids if i != unk and not self._sp.is_control(i)]).strip()
