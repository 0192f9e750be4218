"""The stages of a job, in order: probe -> extract -> transcribe -> translate -> subtitles -> mux.

Each stage reads what earlier stages left in the job folder, writes its own outputs atomically, and returns the
facts the manifest records. A workflow is a prefix-free selection of these stages; nothing runs that does nothing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import audio, media
from pipeline.asr import AsrRequest, Transcript
from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.hardware import Choice
from pipeline.jobs import Manifest
from pipeline.progress import format_seconds, say, stage_bar

if TYPE_CHECKING:
    from pipeline.asr.isolation import WarmStart
    from pipeline.mt.routing import Route

WORKFLOW_STAGES: dict[str, tuple[str, ...]] = {
    "transcribe": ("probe", "extract", "transcribe", "subtitles"),
    "translate": ("probe", "extract", "transcribe", "translate", "subtitles"),
    "subtitle": ("probe", "extract", "transcribe", "translate", "subtitles", "mux"),
}


@dataclass(frozen=True)
class Context:
    job_dir: Path
    config: Config
    manifest: Manifest
    chain: tuple[Choice, ...]
    model: str  # the model name or folder the user asked for; resolved per backend format
    log_path: Path
    warm: WarmStart | None = None  # the transcribe stage's first worker, started early (`warm_start`)
    force: bool = False  # `run --force`: redo every stage, reuse nothing an earlier run left

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
        return self.manifest.data.get("language") or self.config.source_language


_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")  # ISO 639 (en, yue, und), optional subtags
_EXTENSION = re.compile(r"[a-z0-9]{1,8}")


def probe(ctx: Context) -> dict[str, Any]:
    info = media.probe(ctx.media)
    ctx.manifest.data["media_info"] = info.to_dict()
    return {
        "duration": info.duration,
        "audio_streams": info.audio_streams,
        "video_streams": info.video_streams,
    }


def extract(ctx: Context) -> dict[str, Any]:
    duration = ctx.manifest.data["media_info"]["duration"]
    ctx.work.mkdir(exist_ok=True)
    with stage_bar("extract audio", duration, "s") as bar:
        media.extract_audio(ctx.media, ctx.audio, duration=duration, on_progress=bar.update_to)
    seconds = audio.duration(ctx.audio)
    if seconds <= 0:
        raise PipelineError(f"the audio stream of {ctx.media} decoded to nothing (truncated file?)")
    return {"outputs": [str(ctx.audio.relative_to(ctx.job_dir))], "audio_seconds": round(seconds, 3)}


def _requests(ctx: Context, task: str, language: str | None) -> list[AsrRequest]:
    from pipeline import models

    config = ctx.config
    requests = []
    for choice in ctx.chain:
        fmt = models.MLX if choice.backend == "mlx" else models.CT2
        try:
            folder = models.resolve(ctx.model, fmt, allow_download=config.allow_download)
        except PipelineError:
            if choice is ctx.chain[0]:
                raise
            continue  # a fallback without its model is no fallback; the primary's error is the one to show
        requests.append(
            AsrRequest(
                backend=choice.backend,
                model_dir=str(folder),
                device=choice.device,
                compute_type=choice.compute_type,
                audio=str(ctx.audio),
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
        )
    return requests


def _spoken_language(ctx: Context) -> str | None:
    return None if ctx.config.source_language == "auto" else ctx.config.source_language


def warm_start(ctx: Context) -> WarmStart | None:
    """Start the transcribe stage's first worker now, so that its interpreter and model load (about a second)
    overlap the audio extraction instead of following it. None where there is nothing to start: a missing model
    is the transcribe stage's error to report, in its turn."""
    from pipeline.asr.isolation import WarmStart

    try:
        first = _requests(ctx, "transcribe", _spoken_language(ctx))[0]
    except PipelineError:
        return None
    return WarmStart(first, ctx.work / "transcribe", log_path=ctx.log_path)


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
    used = outcome.used
    facts = {
        "backend": used.backend,
        "model": Path(used.model_dir).name,
        "model_dir": used.model_dir,
        "device": used.device,
        "compute_type": used.compute_type,
        "attempts": [attempt.to_dict() for attempt in outcome.attempts],
        "crashes": outcome.crashes,
        "salvaged": int(outcome.salvaged),
        "reused": int(outcome.reused),
        "fallbacks": outcome.fallbacks,
        "worker_peak_rss_mb": used.peak_rss_mb,
        "chunk_seconds": outcome.worker.get("chunk_seconds"),  # the backend's own limit may be shorter
        "versions": dict(outcome.worker.get("versions", {})),
        "notices": [n for c in ctx.chain for n in c.notices],
        # What the guards took out (pipeline.asr.guards), of a transcription or a speech translation alike.
        "removed_segments": len(outcome.transcript.removed),
        "removed": [asdict(r) for r in outcome.transcript.removed],
    }
    return outcome.transcript, facts


def _write_transcript(ctx: Context, transcript: Transcript) -> list[str]:
    from pipeline.writers import write_transcript_json, write_transcript_txt

    language = transcript.language
    write_transcript_json(transcript, ctx.output(language, "json"))
    write_transcript_txt(transcript, ctx.output(language, "txt"))
    return [ctx.output(language, "json").name, ctx.output(language, "txt").name]


def _read_transcript(path: Path) -> Transcript:
    return Transcript.from_dict(json.loads(path.read_text(encoding="utf-8")))


def transcribe(ctx: Context) -> dict[str, Any]:
    language = _spoken_language(ctx)
    transcript, facts = _speech(ctx, "transcribe", language, "transcribe")
    speech = bool(transcript.segments)
    if not transcript.language or not (speech or language):
        # No speech to name a language after (a guess from noise is no language): ISO 639-2 "undetermined".
        transcript = replace(transcript, language=language or "und")
    ctx.manifest.data["language"] = transcript.language
    if not speech:
        # Not an error: the job is done and its subtitles are empty, as the media's speech is. But say so.
        invented = f"; {len(transcript.removed)} invented segment(s) removed" if transcript.removed else ""
        say(f"transcribe  no speech found in {ctx.media.name} ({format_seconds(transcript.duration)}{invented})")
    return facts | {
        "language": transcript.language,
        "segments": len(transcript.segments),
        "speech": speech,
        "outputs": _write_transcript(ctx, transcript),
    }


def translate(ctx: Context) -> dict[str, Any]:
    """Every target track, from the transcript (text MT) or the speech (Whisper translate); resumable per target.

    Routes run side by side, each waiting only for a track that another route makes (a pivot). An Apertium pair
    spends 0.2-0.56 CPU s on 143 s of speech, most of it loading its dictionaries whatever the text: eight
    targets took 3.2 s one after another, 2.7 s side by side on two cores."""
    from pipeline.mt.routing import Route

    routes = [Route.from_dict(r) for r in ctx.manifest.data["routes"]]
    source = _read_transcript(ctx.output(ctx.source_language, "json"))
    facts: dict[str, Any] = {}
    # Each track once: made by the first route whose hop reaches its language, awaited by the others.
    tracks: dict[str, Future[Transcript]] = {source.language: _resolved(source)}
    done = []
    for route in routes:
        earlier = ctx.output(route.target, "json")
        if earlier.is_file() and not ctx.force:  # an earlier run's: never redo (or lose) it, unless forced
            tracks.setdefault(route.target, _resolved(_read_transcript(earlier)))
            done.append(route.target)
    plans = []
    for route in routes:
        if route.target in done:
            continue
        made: dict[str, Future[Transcript]] = {}
        for hop in route.hops:
            if hop.tgt not in tracks:
                tracks[hop.tgt] = made[hop.tgt] = Future()
        plans.append((route, made))
    for route, made in plans:
        for hop in route.hops:
            if hop.engine == "whisper" and hop.tgt in made:
                # Speech -> English runs an ASR worker (pipeline.asr.isolation): here in the stage's own thread,
                # where Ctrl-C stops it at once, before the text routes that start from its track.
                track, facts["speech_translation"] = _speech(ctx, "translate", hop.src, "speech -> en")
                track = _speakers_of(ctx, track)
                made.pop(hop.tgt).set_result(replace(track, language=hop.tgt, task="translate"))
    with stage_bar("translate", len(routes), "tracks") as bar, ThreadPoolExecutor(_MT_THREADS) as pool:
        bar.update_to(len(done))
        running = [pool.submit(_follow, ctx, route, source, tracks, made) for route, made in plans]
        failures, finished = [], len(done)
        try:
            for future in as_completed(running):
                if error := future.exception():  # the other routes go on: a re-run redoes only this one
                    failures.append(error)
                else:
                    finished += 1
                    bar.update_to(finished)
        except BaseException:  # Ctrl-C: no new route starts; those running finish and keep their outputs
            for future in running:
                future.cancel()
            raise
    if failures:
        raise failures[0]
    facts["targets"] = {r.target: [h.engine for h in r.hops] for r in routes if r.target not in done}
    facts["resumed"] = done
    facts["outputs"] = [ctx.output(r.target, ext).name for r in routes for ext in ("json", "txt")]
    return facts


def speakers(ctx: Context) -> dict[str, Any]:
    from pipeline.speakers.stage import run

    return run(ctx)  # who spoke when (DIARIZATION), labelled in the source transcript


def _speakers_of(ctx: Context, track: Transcript) -> Transcript:
    from pipeline.speakers.stage import label_track

    return label_track(ctx.work, track)  # the speakers stage's turns, where it ran


_MT_THREADS = min(8, max(2, os.cpu_count() or 1))  # a route per core: Apertium and CTranslate2 are CPU-bound


def _resolved(transcript: Transcript) -> Future[Transcript]:
    future: Future[Transcript] = Future()
    future.set_result(transcript)
    return future


def _follow(
    ctx: Context,
    route: Route,
    source: Transcript,
    tracks: dict[str, Future[Transcript]],
    made: dict[str, Future[Transcript]],
) -> None:
    """One route's text hops, in a pool thread: the tracks it was given to make (`made`) it makes and publishes;
    the others it waits for. Whatever it fails to make fails the routes waiting for it too."""
    from pipeline.mt import get_engine

    current = source
    try:
        for hop in route.hops:
            if hop.tgt not in made:
                current = tracks[hop.tgt].result()
                continue
            engine = get_engine(hop.engine, mt_model_dir=ctx.config.mt_model_dir or None)
            texts = engine.translate([s.text for s in current.segments], hop.src, hop.tgt)
            current = replace(
                current,
                language=hop.tgt,
                task="translate",
                backend=hop.engine,
                segments=tuple(replace(s, text=t, words=()) for s, t in zip(current.segments, texts, strict=True)),
            )
            made[hop.tgt].set_result(current)
    except BaseException as error:
        for future in made.values():
            if not future.done():
                future.set_exception(error)
        raise
    _write_transcript(ctx, current)


def _languages(ctx: Context) -> list[str]:
    routes = ctx.manifest.data.get("routes", [])
    return [ctx.source_language, *(r["target"] for r in routes if r["target"] != ctx.source_language)]


def subtitles(ctx: Context) -> dict[str, Any]:
    from pipeline.writers import ReadingRules, build_cues, write_subtitles

    config = ctx.config
    rules = ReadingRules(max_line_chars=config.max_line_chars, max_lines=config.max_lines, max_cps=config.max_cps)
    outputs = []
    cues_per_language = {}
    # Every language's cues are timed against the speech of the spoken audio, which the ASR worker found.
    speech = _read_transcript(ctx.output(ctx.source_language, "json")).speech
    for language in _languages(ctx):
        transcript = _read_transcript(ctx.output(language, "json"))
        cues = build_cues(transcript.segments, rules, duration=transcript.duration, speech=speech)
        cues_per_language[language] = len(cues)
        for fmt in config.subtitle_formats:
            write_subtitles(cues, ctx.output(language, fmt), fmt)
            outputs.append(ctx.output(language, fmt).name)
    return {"cues": cues_per_language, "outputs": outputs}


def mux(ctx: Context) -> dict[str, Any]:
    info = ctx.manifest.data["media_info"]
    if ctx.config.mux == "off":
        return {"state": "skipped", "reason": "SUBTITLE_MUX=off"}
    if not info["video_streams"]:
        return {"state": "skipped", "reason": "the media has no video stream"}
    container = media.mux_container(ctx.media, ctx.config.mux)
    target = ctx.job_dir / f"{ctx.stem}.subtitled.{container}"
    tracks = []
    for language in _languages(ctx):
        srt = ctx.output(language, "srt")
        if not srt.is_file():  # SUBTITLE_FORMATS without srt: write the track just for muxing
            from pipeline.writers import read_subtitles, write_subtitles

            srt = ctx.work / f"{language}.srt"
            write_subtitles(read_subtitles(ctx.output(language, "vtt")), srt, "srt")
        tracks.append((language, srt))
    with stage_bar("mux subtitles", info["duration"], "s") as bar:
        media.mux_subtitles(ctx.media, tracks, target, duration=info["duration"], on_progress=bar.update_to)
    return {
        "outputs": [target.name],
        "container": container,
        "tracks": [lang for lang, _ in tracks],
        "subtitle_codec": media.SUBTITLE_CODECS[container],
    }


STAGES: dict[str, Callable[[Context], dict[str, Any]]] = {
    "probe": probe,
    "extract": extract,
    "transcribe": transcribe,
    "speakers": speakers,
    "translate": translate,
    "subtitles": subtitles,
    "mux": mux,
}
