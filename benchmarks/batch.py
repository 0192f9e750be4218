"""batch-8-clips: `pipeline batch` of 8 short real clips on a local Ray instance, with 2 and with 1 device actor,
against a shell loop of `pipeline transcribe` over the same clips, alternated round by round. Every side starts
from an empty output root (a batch skips finished jobs), and the batch's wall time includes starting and stopping
its Ray instance. Goal: the 2-actor batch within 0.6x the loop's wall time on 2 cores.

Throughput is media seconds per wall second. The job manifests say what the ASR workers cost: how many times a
model was loaded (`asr_loads`: each actor's served worker loads once and transcribes its files in turn, the
manifest's `served` record; a loop's file loads its own), the spawn-to-loaded time of each load (`load_s`) and
how far ahead of its audio a worker started (`ahead_s`).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from benchmarks import clips
from benchmarks.harness import (
    ROOT,
    Context,
    Run,
    alternate,
    clean_env,
    compare,
    counted,
    measure,
    median,
    pipeline_argv,
)

NAME = "batch-8-clips"
GOAL = 0.6


def clip_set() -> list[clips.Clip]:
    """The five LibriVox recordings, jfk.wav, the JFK video of examples/ (MP4) and 20 s of them looped."""
    found = [clips.whole(path) for path in clips.sources()]
    found.append(clips.whole(ROOT / "examples" / "JFK Inaugural Address.mp4"))
    found.append(clips.speech(20))
    return found


def _jobs(out_root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out_root.glob("*/*/*/*/job-*/manifest.json"))]


def _facts(out_root: Path) -> dict[str, Any]:
    jobs = _jobs(out_root)
    transcribed = [j["stages"]["transcribe"] for j in jobs if j["stages"]["transcribe"].get("attempts")]
    attempts = [t["attempts"][-1] for t in transcribed]
    served = {t["served"]["pid"] for t in transcribed if t.get("served")}
    return {
        "jobs": len(jobs),
        "done": sum(all(s["state"] in ("done", "skipped") for s in j["stages"].values()) for j in jobs),
        "asr_loads": len(served) + sum(not t.get("served") for t in transcribed),
        "asr_served": sum(bool(t.get("served")) for t in transcribed),
        "asr_load_s": [a.get("load_s") for a in attempts],
        "asr_ahead_s": [a.get("ahead_s") for a in attempts],
        "stage_s": {
            name: round(sum(j["stages"][name].get("wall_s", 0.0) for j in jobs), 3)
            for name in ("extract", "transcribe", "subtitles")
        },
    }


def run(ctx: Context) -> dict[str, Any]:
    chosen = clip_set()
    media = sum(c.duration_s for c in chosen)
    pairs = 1 if ctx.quick else 3  # the median of three: one round disturbed by the shared machine does not decide
    model_dir = str(ctx.model_dir())
    options = ["-s", "en", "--model", model_dir]
    pipeline = " ".join(shlex.quote(a) for a in pipeline_argv())
    ctx.say(f"{NAME}: {len(chosen)} clips, {media:.1f} s of speech, {pairs} rounds")

    def side(label: str, workers: int | None):
        def go(index: int) -> Run:
            out_root = ctx.scratch(f"{NAME}-{label}-{index}")
            if workers is None:  # the loop a user writes today
                files = " ".join(shlex.quote(str(c.path)) for c in chosen)
                quoted = " ".join(shlex.quote(a) for a in [*options, "--out", str(out_root)])
                argv = ["sh", "-c", f'for f in {files}; do {pipeline} transcribe "$f" {quoted} || exit 1; done']
            else:
                argv = [*pipeline_argv(), "batch", *(str(c.path) for c in chosen), "-w", "transcribe", *options]
                argv += ["--out", str(out_root), "--workers", str(workers)]
            result = measure(label, argv, environ=clean_env() | {"RAY_USAGE_STATS_ENABLED": "0"})
            result.facts = _facts(out_root)
            if result.facts["done"] != len(chosen):
                raise RuntimeError(f"{label}: {result.facts['done']} of {len(chosen)} jobs done")
            return result

        return go

    runs = alternate(
        pairs, [("loop", side("loop", None)), ("batch-2", side("batch-2", 2)), ("batch-1", side("batch-1", 1))], ctx.say
    )
    wall2, wall1 = compare(runs, "batch-2", "loop"), compare(runs, "batch-1", "loop")
    throughput = {
        label: round(media / median([r.wall_s for r in counted(runs, label)]), 3)
        for label in ("loop", "batch-1", "batch-2")
    }
    loads = [s for r in counted(runs, "batch-2") for s in r.facts["asr_load_s"] if s is not None]
    ratio = wall2["median_paired_ratio"]
    return {
        "settings": {"model_dir": model_dir, "workflow": "transcribe", "source": "en"},
        "clips": {f"clip{i}": c.to_dict() for i, c in enumerate(chosen)},
        "commands": {r.label: r.argv for r in runs[:3]},
        "comparison": {"wall_2_workers": wall2, "wall_1_worker": wall1},
        "throughput_media_s_per_wall_s": throughput,
        "summary": [
            {
                "metric": f"wall s, 8 clips ({media:.0f} s of speech), 2 actors",
                "pipeline": wall2["batch-2"],
                "peer": wall2["loop"],
                "peer_name": "shell loop of pipeline transcribe",
                "ratio": wall2["ratio_of_medians"],
                "paired_ratio": ratio,
                "goal": f"<= {GOAL}",
                "verdict": "ok" if ratio <= GOAL else "over goal",
            },
            {
                "metric": "wall s, 1 actor",
                "pipeline": wall1["batch-1"],
                "peer": wall1["loop"],
                "peer_name": "shell loop",
                "ratio": wall1["ratio_of_medians"],
                "paired_ratio": wall1["median_paired_ratio"],
            },
            {
                "metric": "throughput, media s / wall s, 2 actors",
                "pipeline": throughput["batch-2"],
                "peer": throughput["loop"],
            },
            {
                "metric": "throughput, media s / wall s, 1 actor",
                "pipeline": throughput["batch-1"],
                "peer": throughput["loop"],
            },
            {
                "metric": f"ASR model loads for {len(chosen)} files, 2 actors (median)",
                "pipeline": median([r.facts["asr_loads"] for r in counted(runs, "batch-2")]),
                "peer": median([r.facts["asr_loads"] for r in counted(runs, "loop")]),
            },
            {"metric": "ASR worker spawn-to-loaded s per load (median)", "pipeline": median(loads) if loads else None},
        ],
    }
