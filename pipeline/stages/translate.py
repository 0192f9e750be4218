"""The translate stage: every target track of the plan's routes, from the transcript (text MT) or the speech
(Whisper's translate task), side by side (pipeline.mt.scheduler); resumable per target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.asr import Transcript
from pipeline.mt.routing import Hop
from pipeline.progress import stage_bar
from pipeline.stages.context import Context, StageResult, read_transcript, write_transcript
from pipeline.stages.speech import speech_translation


@dataclass(frozen=True)
class Translated(StageResult):
    targets: dict[str, list[str]]  # target -> the engines of its hops, for the targets made by this run
    resumed: list[str]  # targets an earlier run made, kept
    outputs: list[str]
    speech_translation: dict[str, Any] | None = None  # the ASR record of Whisper's speech -> English, if it ran

    def facts(self) -> dict[str, Any]:
        made = {"speech_translation": self.speech_translation} if self.speech_translation is not None else {}
        return made | {"targets": self.targets, "resumed": self.resumed, "outputs": self.outputs}


def translate(ctx: Context) -> Translated:
    from pipeline.mt import get_engine
    from pipeline.mt.scheduler import Schedule

    routes = ctx.plan.routes
    source = read_transcript(ctx.output(ctx.source_language, "json"))
    ready: dict[str, Transcript] = {}
    for route in routes:
        earlier = ctx.output(route.target, "json")
        if earlier.is_file() and not ctx.force:  # an earlier run's: never redo (or lose) it, unless forced
            ready.setdefault(route.target, read_transcript(earlier))
    spoken: list[dict[str, Any]] = []

    def speak(hop: Hop) -> Transcript:
        track, record = speech_translation(ctx, hop.src)
        spoken.append(record)
        return track

    todo = [r for r in routes if r.target not in ready]
    schedule = Schedule(todo, source, ready)
    schedule.speak(speak)  # in this thread, where Ctrl-C stops its ASR worker at once; before the text routes
    with stage_bar("translate", len(routes), "tracks") as bar:
        finished = len(routes) - len(todo)
        bar.update_to(finished)

        def one_more() -> None:
            nonlocal finished
            finished += 1
            bar.update_to(finished)

        schedule.run(
            lambda name: get_engine(name, mt_model_dir=ctx.config.mt_model_dir or None),
            lambda track: write_transcript(ctx, track),
            one_more,
        )
    return Translated(
        targets={r.target: [h.engine for h in r.hops] for r in todo},
        resumed=[r.target for r in routes if r.target in ready],
        outputs=[ctx.output(r.target, ext).name for r in routes for ext in ("json", "txt")],
        speech_translation=spoken[0] if spoken else None,
    )
