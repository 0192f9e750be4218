"""The speakers stage (after transcribe, on every workflow when DIARIZATION is not off).

It diarizes the job's audio in an isolated worker (pipeline.speakers.isolation), writes the turns to
work/speakers.json, then rewrites the source transcript with a speaker per word and segment: later stages
(translate, subtitles) read the speakers from there. A failed diarization fails this stage only: the transcript
stays as the transcribe stage wrote it, and a resume starts here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.progress import stage_bar
from pipeline.speakers import assign, relabel, speakers, write_turns
from pipeline.speakers.job import STAGE, TURNS, request
from pipeline.stages.context import Context, Skipped, StageResult, read_transcript, write_transcript


@dataclass(frozen=True)
class Diarized(StageResult):
    speakers: int  # distinct speakers labelled (one where there is speech but no turn)
    turns: int
    segments: int  # of the labelled transcript: a segment is split where its speaker changes
    worker_exit_code: int | None  # None: an earlier run's result, reused
    salvaged: int  # the worker crashed after writing its result
    reused: int
    worker_peak_rss_mb: float | None
    worker_cpu_s: float | None = None
    versions: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    @property
    def detail(self) -> str:
        return f" ({self.speakers} speaker(s))"


def diarize(ctx: Context) -> StageResult:
    from pipeline.speakers.isolation import run_diarization

    if ctx.config.diarization == "off":
        return Skipped("DIARIZATION=off")
    transcript = read_transcript(ctx.output(ctx.source_language, "json"))
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
    written = write_transcript(ctx, labelled)
    found = speakers(turns) or (["SPEAKER_00"] if transcript.segments else [])
    return Diarized(
        speakers=len(found),
        turns=len(turns),
        segments=len(labelled.segments),
        worker_exit_code=outcome.exit_code,
        salvaged=int(outcome.salvaged),
        reused=int(outcome.exit_code is None),
        worker_peak_rss_mb=outcome.peak_rss_mb,
        worker_cpu_s=outcome.cpu_s,
        versions=outcome.versions,
        outputs=[str((ctx.work / TURNS).relative_to(ctx.job_dir)), *written],
    )
