"""What the job machinery needs of diarization without importing the stages: where the `speakers` stage goes in a
workflow, its checks at prepare, the worker's request from the settings, and labelling a later track with the
turns. The stage itself is pipeline.stages.speakers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError
from pipeline.speakers import DiarizationRequest, Transcript, assign, read_turns

if TYPE_CHECKING:
    from pipeline.config import Config

STAGE = "speakers"
TURNS = "speakers.json"  # in the job's work folder


def stages(names: Sequence[str], diarization: bool) -> list[str]:
    """A workflow's stages, with `speakers` right after `transcribe` when diarization is on."""
    out = list(names)
    if diarization and STAGE not in out and "transcribe" in out:
        out.insert(out.index("transcribe") + 1, STAGE)
    return out


def check(config: Config) -> None:
    """At prepare: settings that contradict each other, and models that are not there, are one-line errors."""
    if config.diarization == "off":
        return
    low, high = config.diarization_min_speakers, config.diarization_max_speakers
    if low > high:
        raise PipelineError(
            f"DIARIZATION_MIN_SPEAKERS={low} is above DIARIZATION_MAX_SPEAKERS={high}; allowed: min <= max"
        )
    import importlib.util

    for module, dist in (("sherpa_onnx", "sherpa-onnx"), ("onnxruntime", "onnxruntime")):
        if importlib.util.find_spec(module) is None:
            raise PipelineError(f"DIARIZATION={config.diarization} needs {dist}: pip install 'pipeline[speakers]'")
    from pipeline.models import speakers as speaker_models

    speaker_models.resolve(config.diarization_model_dir)


def request(config: Config, audio: Path) -> DiarizationRequest:
    from pipeline.models import speakers as speaker_models

    segmentation, embedding = speaker_models.resolve(config.diarization_model_dir)
    return DiarizationRequest(
        audio=str(audio),
        segmentation=str(segmentation),
        embedding=str(embedding),
        num_speakers=None if config.diarization == "auto" else int(config.diarization),
        threshold=config.diarization_threshold,
        min_speakers=config.diarization_min_speakers,
        max_speakers=config.diarization_max_speakers,
        threads=config.threads,
    )


def label_track(work: Path, transcript: Transcript) -> Transcript:
    """A track made from the speech after the speakers stage ran (Whisper's own translation to English) gets the
    same turns' speakers; without turns it is returned as it is."""
    turns = work / TURNS
    return assign(transcript, read_turns(turns)) if turns.is_file() else transcript
