"""memory-vs-length: peak RSS of `pipeline transcribe --backend faster-whisper` on 1 and 20 min of speech.

The ASR worker reads the audio ASR_CHUNK_SECONDS at a time, so peak memory should not grow with the length of
the media: the 20 min / 1 min ratio should be about 1. Peaks come from the job manifest (each stage's sampled
process-tree peak, the worker's kernel peak) and from outside (psutil tree polling; ru_maxrss as
/usr/bin/time -v reports it). `--quick` uses 30 s and 3 min with 30 s chunks: the same question, smaller.
"""

from __future__ import annotations

from typing import Any

from benchmarks import clips
from benchmarks.harness import (
    Context,
    Run,
    clean_env,
    measure,
    pipeline_settings,
    pipeline_transcribe,
    read_job,
    stage_breakdown,
)

NAME = "memory-vs-length"
FLAT = 1.10  # long/short peak ratio that still counts as flat
MMAP_FIX = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}


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


def run(ctx: Context) -> dict[str, Any]:
    settings = pipeline_settings("faster-whisper")
    chunk = 30.0 if ctx.quick else settings["chunk_seconds"]
    # "mid" is one whole chunk: past it, a chunk's VAD windows fill a whole batch (batch_size x 30 s), so
    # long/mid isolates growth with length from the batch filling up, which a 1-minute file never does.
    lengths = {"short": 30, "long": 180} if ctx.quick else {"short": 60, "mid": chunk, "long": 1200}
    model_dir = ctx.model_dir()
    points = {label: clips.speech(seconds) for label, seconds in lengths.items()}
    ctx.say(f"{NAME}: {', '.join(f'{c.duration_s:g} s' for c in points.values())}, ASR_CHUNK_SECONDS={chunk:g}")
    runs: dict[str, Run] = {}
    # The same mid and long files again with glibc's mmap threshold pinned at 1 MiB: glibc otherwise raises
    # the threshold after freeing big buffers, serves the next chunk's from its heap and keeps the fragments,
    # so the worker's peak climbs chunk after chunk. Pinned, big buffers go back to the system when freed.
    variants = [(label, clip, {}) for label, clip in points.items()]
    if not ctx.quick:
        variants += [(f"{label}-mmap1M", points[label], MMAP_FIX) for label in ("mid", "long")]
    for label, clip, extra_env in variants:
        command = [
            *pipeline_transcribe(clip.path, "faster-whisper", model_dir, ctx.out_root),
            "--set",
            f"ASR_CHUNK_SECONDS={chunk:g}",
        ]
        run = measure(label, command, environ=clean_env(**extra_env))
        run.facts = job_facts(run, ctx, clip.duration_s) | {"env": extra_env}
        ctx.say(
            f"  {label:<13} {clip.duration_s:7.0f} s audio: {run.wall_s:7.1f} s wall, job peak "
            f"{run.facts['job_peak_rss_mb']:.0f} MB, worker {run.facts['worker_peak_rss_mb']:.0f} MB, "
            f"outside tree {run.tree_peak_rss_mb:.0f} MB, max single {run.max_rss_mb:.0f} MB"
        )
        runs[label] = run

    def value(label: str, key: str) -> float:
        return runs[label].facts[key] if key in runs[label].facts else getattr(runs[label], key)

    def ratio(key: str, base: str = "short", long: str = "long") -> dict[str, Any]:
        a, b = value(base, key), value(long, key)
        return {base: a, "long": b, "ratio": round(b / a, 3) if a else None}

    def minutes(label: str) -> str:
        return f"{points[label].duration_s / 60:g} min"

    metrics = {
        "job peak RSS MB (manifest, all stages)": "job_peak_rss_mb",
        "ASR worker peak RSS MB (manifest)": "worker_peak_rss_mb",
        "process-tree peak RSS MB (psutil, outside)": "tree_peak_rss_mb",
        "largest process RSS MB (ru_maxrss, outside)": "max_rss_mb",
    }
    figures = {f"{name}, {minutes('long')} / {minutes('short')}": ratio(key) for name, key in metrics.items()}
    if "mid" in runs:
        for name in list(metrics)[:2]:
            figures[f"{name}, {minutes('long')} / {minutes('mid')}"] = ratio(metrics[name], "mid")
    if "long-mmap1M" in runs:
        for name in list(metrics)[:2]:
            figures[f"{name} with MALLOC_MMAP_THRESHOLD_=1 MiB, {minutes('long')} / {minutes('mid')}"] = ratio(
                metrics[name], "mid-mmap1M", "long-mmap1M"
            )
    summary = []
    for index, (name, f) in enumerate(figures.items()):
        base = next(key for key in f if key not in ("long", "ratio"))
        summary.append(
            {
                "metric": name,
                "pipeline": f"{f['long']:.0f} / {f[base]:.0f}",
                "peer": "",
                "ratio": f["ratio"],
                "goal": f"<= {FLAT} (flat)" if index == 0 or (base != "short" and "worker" not in name) else "",
                "verdict": ("flat" if f["ratio"] <= FLAT else "grows") if f["ratio"] is not None else "n/a",
            }
        )
    summary.append(
        {
            "metric": f"wall s, {minutes('long')} / {minutes('short')} "
            f"(RTF {runs['long'].facts['rtf']} / {runs['short'].facts['rtf']})",
            "pipeline": f"{runs['long'].wall_s:.0f} / {runs['short'].wall_s:.0f}",
            "peer": "",
            "ratio": round(runs["long"].wall_s / runs["short"].wall_s, 2),
            "goal": "",
            "verdict": "",
        }
    )
    return {
        "settings": settings | {"asr_chunk_seconds": chunk, "model_dir": str(model_dir)},
        "clips": {label: clip.to_dict() for label, clip in points.items()},
        "figures": figures,
        "flat_long_vs_short": all(f["ratio"] is not None and f["ratio"] <= FLAT for f in list(figures.values())[:2]),
        "summary": summary,
        "runs": [r.to_dict() for r in runs.values()],
    }
