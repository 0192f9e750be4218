"""The transcribe stage, and Whisper's speech translation for the translate stage: ASR through isolated workers
along the plan's fallback chain (pipeline.asr.isolation), the first of them started early (`warm_start`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipeline import audio
from pipeline.asr import Transcript
from pipeline.asr.request import build_requests
from pipeline.errors import PipelineError
from pipeline.progress import format_seconds, say, stage_bar
from pipeline.stages.context import Context, StageResult, write_transcript

if TYPE_CHECKING:
    from pipeline.asr import AsrRequest
    from pipeline.asr.isolation import WarmStart
    from pipeline.asr.served import ServedWorker


@dataclass(frozen=True)
class Transcribed(StageResult):
    asr: dict[str, Any]  # the ASR record: backend, model, attempts, crashes, guards' removals (`_speech`)
    language: str
    segments: int
    speech: bool
    outputs: list[str] = field(default_factory=list)

    def facts(self) -> dict[str, Any]:
        return self.asr | {
            "language": self.language,
            "segments": self.segments,
            "speech": self.speech,
            "outputs": self.outputs,
        }


def _spoken_language(ctx: Context) -> str | None:
    return None if ctx.config.source_language == "auto" else ctx.config.source_language


def _requests(ctx: Context, task: str, language: str | None) -> list[AsrRequest]:
    links = ctx.plan.links
    if not links:  # the plan resolves the primary's model or fails: only a crafted manifest gets here
        raise PipelineError("the job's plan has no ASR backend with a model; prepare a new job")
    return build_requests(links, ctx.config, ctx.audio, task, language)


def warm_start(ctx: Context) -> WarmStart | None:
    """Start the transcribe stage's first worker now, so that its interpreter and model load (about a second)
    overlap the audio extraction instead of following it. Its model folder is the plan's: resolved (converted,
    for MLX) when the plan was made, never here."""
    from pipeline.asr.isolation import WarmStart

    try:
        first = _requests(ctx, "transcribe", _spoken_language(ctx))[0]
    except PipelineError:
        return None
    return WarmStart(first, ctx.work / "transcribe", log_path=ctx.log_path)


def serve_start(ctx: Context, served: ServedWorker) -> bool:
    """Have the batch actor's served worker ready for the transcribe stage's first request (started, loading
    during the extract, only if it has no live worker for the request's load fields); False if it cannot serve."""
    try:
        first = _requests(ctx, "transcribe", _spoken_language(ctx))[0]
    except PipelineError:
        return False
    return served.ensure(first)


def _speech(ctx: Context, task: str, language: str | None, label: str) -> tuple[Transcript, dict[str, Any]]:
    """Run ASR (or Whisper's speech translation) through isolated workers along the fallback chain."""
    from pipeline.asr.isolation import run_isolated

    total = audio.duration(ctx.audio)
    with stage_bar(label, total, "s") as bar:
        outcome = run_isolated(
            _requests(ctx, task, language),
            ctx.work / task,
            timeout=ctx.config.asr_timeout,
            on_progress=lambda done, _total: bar.update_to(done),
            log_path=ctx.log_path,
            warm=ctx.warm if task == "transcribe" else None,
            reuse=not ctx.force,  # a resumed stage takes the result its failed run's worker finished
        )
        bar.update_to(total)
    facts = outcome.record.to_manifest() | {  # a failed chain writes the same record (AsrFailed.record)
        "notices": [n for c in ctx.chain for n in c.notices],
        # What the guards took out (pipeline.asr.guards), of a transcription or a speech translation alike.
        "removed_segments": len(outcome.transcript.removed),
        "removed": [asdict(r) for r in outcome.transcript.removed],
    }
    return outcome.transcript, facts


def speech_translation(ctx: Context, source: str) -> tuple[Transcript, dict[str, Any]]:
    """Speech -> English (Whisper's translate task); the track and its ASR record. The track gets the speakers
    stage's turns, where it ran: a text translation keeps its source segments' speakers, this one is new speech."""
    from pipeline.speakers.job import label_track

    track, record = _speech(ctx, "translate", source, "speech -> en")
    return label_track(ctx.work, track), record


def transcribe(ctx: Context) -> Transcribed:
    language = _spoken_language(ctx)
    transcript, facts = _speech(ctx, "transcribe", language, "transcribe")
    speech = bool(transcript.segments)
    if not transcript.language or not (speech or language):
        # No speech to name a language after (a guess from noise is no language): ISO 639-2 "undetermined".
        transcript = replace(transcript, language=language or "und")
    ctx.manifest.record_language(transcript.language)
    if not speech:
        # Not an error: the job is done and its subtitles are empty, as the media's speech is. But say so.
        invented = f"; {len(transcript.removed)} invented segment(s) removed" if transcript.removed else ""
        say(f"transcribe  no speech found in {ctx.media.name} ({format_seconds(transcript.duration)}{invented})")
    return Transcribed(facts, transcript.language, len(transcript.segments), speech, write_transcript(ctx, transcript))
