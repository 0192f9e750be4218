"""The `speakers` stage (after transcribe, on every workflow when DIARIZATION is not off), and its checks at prepare.

It diarizes the job's audio in an isolated worker, writes the turns to work/speakers.json, then rewrites the
source transcript with a speaker per word and segment; later stages (translate, subtitles) read speakers from
there. A failed diarization fails this stage only: the transcript stays as the transcribe stage wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.speakers import DiarizationRequest, Transcript, assign, read_turns, relabel, speakers, write_turns

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


def run(ctx: Any) -> dict[str, Any]:
    """The stage: `ctx` is the stages' Context (job folder, config, outputs)."""
    from pipeline.progress import stage_bar
    from pipeline.speakers.isolation import run_diarization
    from pipeline.writers import write_transcript_json, write_transcript_txt

    if ctx.config.diarization == "off":
        return {"state": "skipped", "reason": "DIARIZATION=off"}
    source = ctx.output(ctx.source_language, "json")
    transcript = Transcript.from_dict(_json(source))
    with stage_bar("speakers", 100, "%") as bar:
        outcome = run_diarization(
            request(ctx.config, ctx.audio),
            ctx.work / STAGE,
            log_path=ctx.log_path,
            timeout=ctx.config.asr_timeout,
            on_progress=lambda done, total: bar.update_to(100 * done / max(total, 1)),
            reuse=not ctx.force,
        )
    turns = relabel(outcome.turns)
    write_turns(turns, ctx.work / TURNS)
    labelled = assign(transcript, turns)
    write_transcript_json(labelled, source)
    write_transcript_txt(labelled, ctx.output(transcript.language, "txt"))
    found = speakers(turns) or (["SPEAKER_00"] if transcript.segments else [])
    return {
        "speakers": len(found),
        "turns": len(turns),
        "segments": len(labelled.segments),
        "worker_exit_code": outcome.exit_code,
        "salvaged": int(outcome.salvaged),
        "reused": int(outcome.exit_code is None),
        "worker_peak_rss_mb": outcome.peak_rss_mb,
        "versions": outcome.versions,
        "outputs": [str((ctx.work / TURNS).relative_to(ctx.job_dir)), source.name],
    }


def label_track(work: Path, transcript: Transcript) -> Transcript:
    """A track made from the speech after the speakers stage ran (Whisper's own translation to English) gets the
    same turns' speakers; without turns it is returned as it is."""
    turns = work / TURNS
    return assign(transcript, read_turns(turns)) if turns.is_file() else transcript


def _json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text(encoding="utf-8"))
