"""memory-vs-length: peak RSS of `pipeline transcribe` on 1 and 20 min of speech, per CTranslate2 backend.

The ASR worker reads the audio a chunk at a time and decodes a batch of 30 s windows at a time; both sizes are
the profile's (matrix/profiles.toml), so peak memory should be reached by a short file and stay there: the
20 min / 1 min ratio should be about 1. Each backend runs with the pipeline's own defaults (no overrides).
Peaks come from the job manifest (each stage's sampled process-tree peak, the worker's kernel peak) and from
outside (psutil tree polling; ru_maxrss as /usr/bin/time -v reports it). The peer: faster-whisper called
directly on the whole long file. `--quick`: 1 vs 4 min, faster-whisper only.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from benchmarks import clips
from benchmarks.harness import (
    Context,
    Run,
    alternate,
    clean_env,
    measure,
    pipeline_settings,
    pipeline_transcribe,
    read_job,
    stage_breakdown,
)
from benchmarks.overhead import raw_argv

NAME = "memory-vs-length"
FLAT = 1.10  # long/short peak ratio that still counts as flat
BACKENDS = ("whisperx", "faster-whisper")


def job_facts(run: Run, ctx: Context, duration: float) -> dict[str, Any]:
    manifest = read_job(run, ctx.out_root)
    stages = stage_breakdown(manifest)
    transcribe = manifest["stages"]["transcribe"]
    return {
        "stages": stages,
        "job_peak_rss_mb": max(s.get("peak_rss_mb", 0.0) for s in stages.values()),
        "transcribe_stage_peak_rss_mb": transcribe.get("peak_rss_mb"),
        "worker_peak_rss_mb": transcribe.get("worker_peak_rss_mb"),
        "segments": transcribe.get("segments"),
        "rtf": round(run.wall_s / duration, 3),
    }


def measured(
    ctx: Context, label: str, argv: list[str], facts: Callable[[Run], dict[str, Any]] | None = None
) -> list[Run]:
    """One run, as a round of one (`alternate`): made again while the hypervisor stole more than STEAL_LIMIT of
    its wall time. Peaks do not move with steal, but the wall times and RTFs reported beside them do. The last
    run counts; those before it are marked discarded."""

    def once(_: int) -> Run:
        run = measure(label, argv, environ=clean_env())
        run.facts = facts(run) if facts else {}
        return run

    return alternate(1, [(label, once)], ctx.say)


def run(ctx: Context) -> dict[str, Any]:
    discarded: list[Run] = []
    backends = BACKENDS[1:] if ctx.quick else BACKENDS
    lengths = {"short": 60, "long": 240 if ctx.quick else 1200}
    model_dir = ctx.model_dir()
    points = {label: clips.speech(seconds) for label, seconds in lengths.items()}
    settings = {backend: pipeline_settings(backend) for backend in backends}
    runs: dict[str, dict[str, Run]] = {}
    for backend in backends:
        chosen = settings[backend]
        ctx.say(
            f"{NAME}: {backend}, {', '.join(f'{c.duration_s:g} s' for c in points.values())}, "
            f"batch {chosen['batch_size']}, chunk {chosen['chunk_seconds']:g} s (the profile's)"
        )
        for label, clip in points.items():
            command = pipeline_transcribe(clip.path, backend, model_dir, ctx.out_root)
            made = measured(ctx, f"{backend} {label}", command, partial(job_facts, ctx=ctx, duration=clip.duration_s))
            run, discarded = made[-1], discarded + made[:-1]
            ctx.say(
                f"  {label:<6} {clip.duration_s:6.0f} s audio: {run.wall_s:7.1f} s wall, job peak "
                f"{run.facts['job_peak_rss_mb']:.0f} MB, worker {run.facts['worker_peak_rss_mb']:.0f} MB, "
                f"outside tree {run.tree_peak_rss_mb:.0f} MB, max single {run.max_rss_mb:.0f} MB"
            )
            runs.setdefault(backend, {})[label] = run

    # The peer: faster-whisper called directly on the whole long file, as a user's own script would.
    raw = None
    if "faster-whisper" in runs:
        scratch = ctx.scratch(NAME)
        argv = raw_argv(points["long"].path, model_dir, scratch / "raw-long.json", settings["faster-whisper"])
        made = measured(ctx, "raw faster-whisper long", argv)
        raw, discarded = made[-1], discarded + made[:-1]
        ctx.say(
            f"  raw faster-whisper on {points['long'].duration_s:.0f} s: {raw.wall_s:.1f} s wall, "
            f"{raw.cpu_s:.1f} s CPU, peak {raw.max_rss_mb:.0f} MB"
        )

    def value(run: Run, key: str) -> float:
        return run.facts[key] if key in run.facts else getattr(run, key)

    long_min, short_min = (f"{points[label].duration_s / 60:g} min" for label in ("long", "short"))
    metrics = {
        "job peak RSS MB (manifest, all stages)": "job_peak_rss_mb",
        "ASR worker peak RSS MB (manifest)": "worker_peak_rss_mb",
        "process-tree peak RSS MB (psutil, outside)": "tree_peak_rss_mb",
        "largest process RSS MB (ru_maxrss, outside)": "max_rss_mb",
    }
    figures: dict[str, dict[str, Any]] = {}
    summary = []
    for backend, pair in runs.items():
        for index, (name, key) in enumerate(metrics.items()):
            short, long = value(pair["short"], key), value(pair["long"], key)
            ratio = round(long / short, 3) if short else None
            figures[f"{backend}: {name}, {long_min} / {short_min}"] = {"short": short, "long": long, "ratio": ratio}
            summary.append(
                {
                    "metric": f"{backend}: {name}, {long_min} / {short_min}",
                    "pipeline": f"{long:.0f} / {short:.0f}",
                    "peer": "",
                    "ratio": ratio,
                    "goal": f"<= {FLAT} (flat)" if index == 0 else "",
                    "verdict": ("flat" if ratio <= FLAT else "grows") if ratio is not None else "n/a",
                }
            )
        summary.append(
            {
                "metric": f"{backend}: wall s, {long_min} / {short_min} "
                f"(RTF {pair['long'].facts['rtf']} / {pair['short'].facts['rtf']})",
                "pipeline": f"{pair['long'].wall_s:.0f} / {pair['short'].wall_s:.0f}",
                "peer": "",
                "ratio": round(pair["long"].wall_s / pair["short"].wall_s, 2),
                "goal": "",
                "verdict": "",
            }
        )
    if raw is not None:
        pipeline_long = runs["faster-whisper"]["long"]
        for metric, key in (("largest process RSS MB", "max_rss_mb"), ("cpu s", "cpu_s"), ("wall s", "wall_s")):
            mine, theirs = getattr(pipeline_long, key), getattr(raw, key)
            summary.append(
                {
                    "metric": f"faster-whisper: {metric}, {long_min} in one job vs the whole file in one call",
                    "pipeline": f"{mine:.0f}",
                    "peer": f"{theirs:.0f} (faster-whisper script)",
                    "ratio": round(mine / theirs, 3),
                    "goal": "",
                    "verdict": "",
                }
            )
    flat = {
        backend: all(
            figures[f"{backend}: {name}, {long_min} / {short_min}"]["ratio"] <= FLAT for name in list(metrics)[:2]
        )
        for backend in runs
    }
    return {
        "settings": {backend: chosen | {"model_dir": str(model_dir)} for backend, chosen in settings.items()},
        "clips": {label: clip.to_dict() for label, clip in points.items()},
        "figures": figures,
        "flat_long_vs_short": flat,
        "summary": summary,
        "runs": [r.to_dict() for pair in runs.values() for r in pair.values()] + ([raw.to_dict()] if raw else []),
        "discarded_runs": [r.to_dict() for r in discarded],
    }
