"""diarization: the speakers stage's cost next to the transcription's, and its memory from 1 to 20 minutes.

`pipeline transcribe CLIP -s en --speakers auto` with the profile's defaults, on 1, 10 and 20 min of real speech
(benchmarks.clips: the LibriVox reader and Kennedy, looped). Both stages run in the same job, so their wall times
share the same machine load: the figure is the speakers stage's wall time over the transcribe stage's (goal: at most
0.5x on the cpu profile). CPU: the diarization worker's (its chunk processes included) over the rest of the
job's, nearly all transcription: the same comparison without the machine's load. Memory: the diarization worker's
peak (manifest): the highest RSS sum of the worker and the chunk processes it runs side by side (one per core),
or the kernel's peak of the largest if higher. 1 min is one chunk, 10 and 20 min run as many at once as there are
cores: 20 over 10 min is the flatness, 20 over 1 min shows the parallelism's price. `--quick`: 1, 4, 8 min.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from benchmarks import clips
from benchmarks.harness import Context, Run, pipeline_transcribe, read_job, stage_breakdown
from benchmarks.memory import measured

NAME = "diarization"
SHARE_GOAL = 0.5  # speakers stage wall / transcribe stage wall, cpu profile
FLAT = 1.10


def job_facts(run: Run, ctx: Context, duration: float) -> dict[str, Any]:
    manifest = read_job(run, ctx.out_root)
    stages = manifest["stages"]
    speakers, transcribe = stages["speakers"], stages["transcribe"]
    return {
        "stages": stage_breakdown(manifest),
        "transcribe_wall_s": transcribe.get("wall_s"),
        "speakers_wall_s": speakers.get("wall_s"),
        "speakers_state": speakers.get("state"),
        "speakers_found": speakers.get("speakers"),
        "speakers_worker_peak_rss_mb": speakers.get("worker_peak_rss_mb"),
        "speakers_worker_cpu_s": speakers.get("worker_cpu_s"),
        "rest_cpu_s": round(run.cpu_s - (speakers.get("worker_cpu_s") or 0.0), 2),
        "speakers_stage_peak_rss_mb": speakers.get("peak_rss_mb"),
        "asr_worker_peak_rss_mb": transcribe.get("worker_peak_rss_mb"),
        "speakers_rtf": round(speakers.get("wall_s", 0) / duration, 3),
        "transcribe_rtf": round(transcribe.get("wall_s", 0) / duration, 3),
    }


def run(ctx: Context) -> dict[str, Any]:
    lengths = {"short": 60, "mid": 240 if ctx.quick else 600, "long": 480 if ctx.quick else 1200}
    points = {label: clips.speech(seconds) for label, seconds in lengths.items()}
    runs: dict[str, Run] = {}
    discarded: list[Run] = []
    for label, clip in points.items():
        command = pipeline_transcribe(clip.path, None, None, ctx.out_root, "-s", "en", "--speakers", "auto")
        made = measured(ctx, f"speakers {label}", command, partial(job_facts, ctx=ctx, duration=clip.duration_s))
        runs[label], discarded = made[-1], discarded + made[:-1]
        facts = runs[label].facts
        ctx.say(
            f"  {label:<6} {clip.duration_s:6.0f} s audio: transcribe {facts['transcribe_wall_s']:.1f} s, speakers "
            f"{facts['speakers_wall_s']:.1f} s ({facts['speakers_found']} found), diarization worker peak "
            f"{facts['speakers_worker_peak_rss_mb']:.0f} MB"
        )
    long, mid, short = runs["long"].facts, runs["mid"].facts, runs["short"].facts
    long_min, mid_min, short_min = (f"{points[label].duration_s / 60:g} min" for label in ("long", "mid", "short"))
    share = round(long["speakers_wall_s"] / long["transcribe_wall_s"], 3)
    growth = round(long["speakers_worker_peak_rss_mb"] / mid["speakers_worker_peak_rss_mb"], 3)
    parallel = round(long["speakers_worker_peak_rss_mb"] / short["speakers_worker_peak_rss_mb"], 3)
    cpu_share = round(long["speakers_worker_cpu_s"] / long["rest_cpu_s"], 3) if long["speakers_worker_cpu_s"] else None
    summary = [
        {
            "metric": f"speakers stage wall / transcribe stage wall, {long_min} (same job)",
            "pipeline": f"{long['speakers_wall_s']:.0f} s",
            "peer": f"{long['transcribe_wall_s']:.0f} s (transcribe)",
            "ratio": share,
            "goal": f"<= {SHARE_GOAL}",
            "verdict": "met" if share <= SHARE_GOAL else "missed",
        },
        {
            "metric": f"diarization CPU s / the rest of the job's CPU s (transcription), {long_min}",
            "pipeline": f"{long['speakers_worker_cpu_s']} s",
            "peer": f"{long['rest_cpu_s']:.0f} s (rest)",
            "ratio": cpu_share,
            "goal": "",
            "verdict": "",
        },
        {
            "metric": f"diarization peak RSS MB (worker + chunk processes at once), {long_min} / {mid_min}",
            "pipeline": f"{long['speakers_worker_peak_rss_mb']:.0f} / {mid['speakers_worker_peak_rss_mb']:.0f}",
            "peer": "",
            "ratio": growth,
            "goal": f"<= {FLAT} (flat)",
            "verdict": "flat" if growth <= FLAT else "grows",
        },
        {
            "metric": f"the same, {long_min} / {short_min} (one chunk: one process)",
            "pipeline": f"{long['speakers_worker_peak_rss_mb']:.0f} / {short['speakers_worker_peak_rss_mb']:.0f}",
            "peer": "",
            "ratio": parallel,
            "goal": "",
            "verdict": "",
        },
        {
            "metric": f"speakers found, {long_min} / {short_min} (two real voices looped)",
            "pipeline": f"{long['speakers_found']} / {short['speakers_found']}",
            "peer": "",
            "ratio": None,
            "goal": "",
            "verdict": "",
        },
    ]
    return {
        "clips": {label: clip.to_dict() for label, clip in points.items()},
        "share_long": share,
        "memory_growth": growth,
        "memory_long_over_short": parallel,
        "cpu_share_long": cpu_share,
        "summary": summary,
        "runs": [r.to_dict() for r in runs.values()],
        "discarded_runs": [r.to_dict() for r in discarded],
    }
