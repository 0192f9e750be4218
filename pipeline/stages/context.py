"""What every stage is given (`Context`: the job folder, its settings, manifest and plan) and gives back (a
`StageResult`: the facts the manifest records), and the names of the job's outputs."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.asr import Transcript
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.hardware import Choice
from pipeline.jobs import Finished, Manifest
from pipeline.plan import JobPlan

if TYPE_CHECKING:
    from pipeline.asr.isolation import WarmStart
    from pipeline.asr.served import ServedWorker


@dataclass(frozen=True)
class Context:
    job_dir: Path
    config: Config
    manifest: Manifest
    plan: JobPlan  # what the manifest says runs: profile, ASR chain and model folders, routes
    log_path: Path
    # The transcribe stage's first worker, started early (`warm_start`), or a batch actor's served worker
    warm: WarmStart | ServedWorker | None = None
    force: bool = False  # `run --force`: redo every stage, reuse nothing an earlier run left

    @property
    def chain(self) -> tuple[Choice, ...]:
        return self.plan.chain

    @property
    def work(self) -> Path:
        return self.job_dir / "work"

    @property
    def media(self) -> Path:
        return Path(self.config.media)

    @property
    def stem(self) -> str:
        return self.media.stem

    @property
    def audio(self) -> Path:
        return self.work / "audio.wav"

    def output(self, language: str, ext: str) -> Path:
        """`<stem>.<language>.<ext>` in the job folder. The language comes from the manifest (detected, routes),
        which is input like any file: a value that is no language code, or a name that would leave the job
        folder, is refused."""
        if not _LANGUAGE_CODE.fullmatch(language):
            raise PipelineError(
                f"language {language!r} cannot name an output file; allowed: a language code such as en, pt, yue, "
                "sr-Latn"
            )
        if not _EXTENSION.fullmatch(ext):
            raise PipelineError(f"output extension {ext!r} is not allowed; allowed: letters and digits, e.g. srt")
        path = self.job_dir / f"{self.stem}.{language}.{ext}"
        if path.parent != self.job_dir:
            raise PipelineError(f"output name {path.name!r} would leave the job folder {self.job_dir}")
        return path

    @property
    def source_language(self) -> str:
        """The spoken language: as configured, or as detected by the transcribe stage."""
        return self.manifest.language or self.config.source_language

    @property
    def languages(self) -> list[str]:
        """Every track's language: the spoken one, then the plan's targets."""
        source = self.source_language
        return [source, *(r.target for r in self.plan.routes if r.target != source)]


_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")  # ISO 639 (en, yue, und), optional subtags
_EXTENSION = re.compile(r"[a-z0-9]{1,8}")


@dataclass(frozen=True)
class StageResult:
    """What a stage returns: the facts its manifest record gets, in field order (`facts`)."""

    state: ClassVar[Finished] = "done"

    @property
    def detail(self) -> str:
        """Shown after the stage's one-line summary."""
        return ""

    def facts(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Skipped(StageResult):
    reason: str
    state: ClassVar[Finished] = "skipped"

    @property
    def detail(self) -> str:
        return f" ({self.reason})"


def read_transcript(path: Path) -> Transcript:
    return Transcript.from_dict(json.loads(path.read_text(encoding="utf-8")))


def write_transcript(ctx: Context, transcript: Transcript) -> list[str]:
    """`<stem>.<language>.json` and `.txt`; their names."""
    from pipeline.writers import write_transcript_json, write_transcript_txt

    language, names = transcript.language, ctx.config.speaker_names  # names: issue 14
    write_transcript_json(transcript, ctx.output(language, "json"), names=names)
    write_transcript_txt(transcript, ctx.output(language, "txt"), names=names)
    return [ctx.output(language, "json").name, ctx.output(language, "txt").name]
