"""The ASR requests of a stage: one per link of the job's fallback chain, from the job's settings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.asr import AsrRequest
from pipeline.config import Config
from pipeline.hardware import Choice


def build_requests(
    links: Sequence[tuple[Choice, str]], config: Config, audio: Path, task: str, language: str | None
) -> list[AsrRequest]:
    """A request per (chain link, its model folder), in the chain's order."""
    return [
        AsrRequest(
            backend=choice.backend,
            model_dir=model_dir,
            device=choice.device,
            compute_type=choice.compute_type,
            audio=str(audio),
            language=language,
            task=task,
            beam_size=config.beam_size,
            batch_size=choice.batch_size,
            vad=config.vad,
            word_timestamps=config.word_timestamps,
            # The prompt is written in the spoken language's script; it would pull a translation back into it.
            initial_prompt=(config.initial_prompt or None) if task == "transcribe" else None,
            chunk_seconds=choice.chunk_seconds,
            threads=config.threads,
            align_model_dir=config.align_model_dir,
            # Names and jargon are said in the spoken language: a hint to transcribe them, not to translate.
            hotwords=(config.hotwords or None) if task == "transcribe" else None,
            **choice.guards,  # WHISPER_* guards, the profile's where auto (hardware.resolve_guards)
        )
        for choice, model_dir in links
    ]
