"""The stages of a job, in order: probe -> extract -> transcribe -> translate -> subtitles -> mux.

Each stage reads what earlier stages left in the job folder, writes its own outputs atomically, and returns a
`StageResult`, the facts the manifest records. A workflow is a prefix-free selection of these stages; nothing
runs that does nothing.

    context.py    Context (what a stage is given), StageResult, output names and their checks
    media.py      probe, extract
    speech.py     transcribe, Whisper's speech translation, warm_start, serve_start
    speakers.py   speakers: who spoke when (DIARIZATION), after transcribe when on (pipeline.speakers)
    translate.py  translate (its routes' scheduling: pipeline.mt.scheduler)
    subtitles.py  subtitles
    mux.py        mux
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.stages.context import Context, Skipped, StageResult
from pipeline.stages.media import extract, probe
from pipeline.stages.mux import mux
from pipeline.stages.speakers import diarize
from pipeline.stages.speech import serve_start, transcribe, warm_start
from pipeline.stages.subtitles import subtitles
from pipeline.stages.translate import translate

WORKFLOW_STAGES: dict[str, tuple[str, ...]] = {
    "transcribe": ("probe", "extract", "transcribe", "subtitles"),
    "translate": ("probe", "extract", "transcribe", "translate", "subtitles"),
    "subtitle": ("probe", "extract", "transcribe", "translate", "subtitles", "mux"),
}

STAGES: dict[str, Callable[[Context], StageResult]] = {
    "probe": probe,
    "extract": extract,
    "transcribe": transcribe,
    "speakers": diarize,
    "translate": translate,
    "subtitles": subtitles,
    "mux": mux,
}

__all__ = [
    "STAGES",
    "WORKFLOW_STAGES",
    "Context",
    "Skipped",
    "StageResult",
    "extract",
    "mux",
    "probe",
    "serve_start",
    "subtitles",
    "transcribe",
    "translate",
    "warm_start",
]
