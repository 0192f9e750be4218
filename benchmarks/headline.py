"""default-vs-faster-whisper, the headline: what a user gets from `pipeline transcribe -s en` on the default
profile (its backend, batch, chunk and VAD; word timestamps on, the default) against faster-whisper's own
batched pipeline called directly from a plain script with the same model, compute type and threads and
otherwise faster-whisper's defaults (BatchedInferencePipeline's batch size, Silero VAD with its parameters, its
beam, no word timestamps), on 20 minutes of speech, 3 rounds alternated (`--quick`: 143 s, 2 rounds).

Goals: wall time <= 1.05x of the script and peak memory <= 1.1x, judged on the medians of the per-round ratios
(the machine's speed drifts between rounds). The pipeline does more work than its peer (words), on purpose:
that is the default a user gets. Flat memory from 1 to 20 minutes is `memory-vs-length`'s to show.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from benchmarks import clips
from benchmarks.harness import (
    Context,
    Run,
    alternate,
    compare,
    counted,
    measure,
    pipeline_settings,
    pipeline_transcribe,
    read_job,
    stage_breakdown,
    text_similarity,
)
from benchmarks.overhead import raw_argv

NAME = "default-vs-faster-whisper"
WALL_GOAL = 1.05
MEMORY_GOAL = 1.10


def raw_default_argv(audio: Path, model_dir: Path, output: Path, settings: dict[str, Any]) -> list[str]:
    """The script with what must be the same (model, device, compute type, threads, language) and nothing else."""
    same = {key: settings[key] for key in ("device", "compute_type", "threads")}
    return raw_argv(audio, model_dir, output, same | {"word_timestamps": False, "source_language": "en"})


def job_facts(run: Run, ctx: Context) -> dict[str, Any]:
    """Which backend ran, on what, and how many words it timed (read from the job's JSON transcript)."""
    manifest = read_job(run, ctx.out_root, keep=True)
    folder = Path(manifest["_folder"])
    segments = json.loads(next(folder.glob("*.en.json")).read_text(encoding="utf-8"))["segments"]
    shutil.rmtree(folder, ignore_errors=True)
    transcribe = stage_breakdown(manifest)["transcribe"]
    return {
        "text": manifest["_text"],
        "backend": transcribe.get("backend"),
        "device": transcribe.get("device"),
        "compute_type": transcribe.get("compute_type"),
        "worker_peak_rss_mb": manifest["stages"]["transcribe"].get("worker_peak_rss_mb"),
        "segments": len(segments),
        "words": sum(len(s.get("words", ())) for s in segments),
    }


def run(ctx: Context) -> dict[str, Any]:
    seconds, pairs = (143, 2) if ctx.quick else (1200, 3)
    clip = clips.speech(seconds)
    settings = pipeline_settings(None)
    model_dir = ctx.model_dir()
    scratch = ctx.scratch(NAME)
    # The profile's own model unless the benchmark was given another (--model).
    chosen = None if ctx.model == settings["model"] else model_dir
    pipeline_cmd = pipeline_transcribe(clip.path, None, chosen, ctx.out_root, "-s", "en")
    ctx.say(f"{NAME}: {clip.duration_s:g} s clip, {pairs} rounds, the default profile's settings {settings}")

    def pipeline_side(index: int) -> Run:
        run = measure("pipeline", pipeline_cmd)
        run.facts = job_facts(run, ctx)
        return run

    def raw_side(index: int) -> Run:
        run = measure("raw", raw_default_argv(clip.path, model_dir, scratch / f"raw-{index}.json", settings))
        run.facts = json.loads(run.stdout.strip().splitlines()[-1])
        return run

    runs = alternate(pairs, [("pipeline", pipeline_side), ("raw", raw_side)], ctx.say)
    wall = compare(runs, "pipeline", "raw")
    cpu = compare(runs, "pipeline", "raw", "cpu_s")
    tree = compare(runs, "pipeline", "raw", "tree_peak_rss_mb")
    largest = compare(runs, "pipeline", "raw", "max_rss_mb")
    similarity = min(
        text_similarity(p.facts["text"], r.facts["text"])
        for p, r in zip(counted(runs, "pipeline"), counted(runs, "raw"), strict=True)
    )
    words = min(r.facts["words"] for r in counted(runs, "pipeline"))
    used = sorted({(r.facts["backend"], r.facts["device"], r.facts["compute_type"]) for r in counted(runs, "pipeline")})
    for row in runs:
        row.facts.pop("text", None)
    peer = "faster-whisper batched, its defaults"

    def row(metric: str, data: dict[str, Any], goal: float | None) -> dict[str, Any]:
        paired = data["median_paired_ratio"]
        return {
            "metric": metric,
            "pipeline": data["pipeline"],
            "peer": data["raw"],
            "peer_name": peer,
            "ratio": data["ratio_of_medians"],
            "paired_ratio": paired,
            "goal": f"<= {goal}" if goal else "",
            "verdict": ("ok" if paired <= goal else "over") if goal else "",
        }

    return {
        "settings": settings | {"model_dir": str(model_dir), "pipeline_used": [list(u) for u in used]},
        "clips": {"speech": clip.to_dict()},
        "commands": {
            "pipeline": pipeline_cmd,
            "raw": raw_default_argv(clip.path, model_dir, scratch / "raw-N.json", settings),
        },
        "comparison": {"wall": wall, "cpu": cpu, "tree_peak_rss": tree, "max_rss": largest},
        "text_similarity_min": similarity,
        "summary": [
            row(f"wall s, {clip.duration_s:.0f} s speech, defaults ({used[0][0]}, words on)", wall, WALL_GOAL),
            row("cpu s", cpu, None),
            row("peak RSS MB (tree)", tree, MEMORY_GOAL),
            row("peak RSS MB (largest process, ru_maxrss)", largest, None),
            {
                "metric": "words timed (pipeline) / transcript similarity",
                "pipeline": words,
                "peer": similarity,
                "peer_name": "",
                "ratio": None,
                "paired_ratio": None,
                "goal": "words > 0",
                "verdict": "ok" if words > 0 else "no words",
            },
        ],
        "runs": [r.to_dict() for r in runs],
    }
