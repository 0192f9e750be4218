"""peers-whisperx and peers-mlx: the pipeline against the tools people would otherwise run, same model, same
settings, fresh processes, alternated.

- whisperx: its own CLI (`whisperx AUDIO --model DIR --no_align ...`, offline: a local model folder, its
  bundled pyannote VAD, no alignment model) against `pipeline transcribe --backend whisperx`.
- mlx: mlx-whisper's Python API against `pipeline transcribe --backend mlx`, both on the same MLX weights
  (converted from the CTranslate2 model by pipeline.models.convert, in the dtype the pipeline computes in),
  on a short clip: mlx's Linux CPU build is slow.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from benchmarks import clips
from benchmarks.harness import (
    WORK,
    Context,
    Run,
    alternate,
    clean_env,
    compare,
    counted,
    measure,
    pipeline_settings,
    pipeline_transcribe,
    read_job,
    stage_breakdown,
    text_similarity,
)

RAW_MLX = Path(__file__).with_name("raw_mlx_whisper.py")


def _pipeline_side(ctx: Context, command: list[str], environ: dict[str, str] | None = None):
    def go(index: int) -> Run:
        run = measure("pipeline", command, environ=environ)
        manifest = read_job(run, ctx.out_root)
        stages = stage_breakdown(manifest)
        run.facts = {
            "stages": stages,
            "text": manifest["_text"],
            "worker_load_s": stages["transcribe"]["worker"]["load_s"],
            "backend": stages["transcribe"].get("backend"),
            "device": stages["transcribe"].get("device"),
            "compute_type": stages["transcribe"].get("compute_type"),
        }
        return run

    return go


def _result(
    name: str,
    peer_name: str,
    runs: list[Run],
    clip: clips.Clip,
    settings: dict[str, Any],
    commands: dict[str, list[str]],
    goal: float | None = None,
) -> dict[str, Any]:
    wall = compare(runs, "pipeline", "peer")
    cpu = compare(runs, "pipeline", "peer", "cpu_s")
    rss = compare(runs, "pipeline", "peer", "tree_peak_rss_mb")
    similarity = min(
        text_similarity(p.facts["text"], q.facts["text"])
        for p, q in zip(counted(runs, "pipeline"), counted(runs, "peer"), strict=True)
    )
    for run in runs:
        run.facts.pop("text", None)
    ratio = wall["ratio_of_medians"]
    return {
        "settings": settings,
        "clips": {"speech": clip.to_dict()},
        "commands": commands,
        "comparison": {"wall": wall, "cpu": cpu, "tree_peak_rss": rss},
        "text_similarity_min": similarity,
        "summary": [
            {
                "metric": f"wall s, {clip.duration_s:.0f} s speech",
                "pipeline": wall["pipeline"],
                "peer": wall["peer"],
                "peer_name": peer_name,
                "ratio": ratio,
                "paired_ratio": wall["median_paired_ratio"],
                "goal": f"<= {goal}" if goal else "",
                "verdict": ("ok" if ratio <= goal else "over") if goal else "",
            },
            {
                "metric": "cpu s",
                "pipeline": cpu["pipeline"],
                "peer": cpu["peer"],
                "peer_name": peer_name,
                "ratio": cpu["ratio_of_medians"],
                "paired_ratio": cpu["median_paired_ratio"],
                "goal": "",
                "verdict": "",
            },
            {
                "metric": "peak RSS MB (tree)",
                "pipeline": rss["pipeline"],
                "peer": rss["peer"],
                "peer_name": peer_name,
                "ratio": rss["ratio_of_medians"],
                "paired_ratio": rss["median_paired_ratio"],
                "goal": "",
                "verdict": "",
            },
            {
                "metric": "transcript similarity (words)",
                "pipeline": similarity,
                "peer": "",
                "ratio": "",
                "goal": ">= 0.95",
                "verdict": "same work" if similarity >= 0.95 else "outputs differ",
            },
        ],
        "runs": [r.to_dict() for r in runs],
    }


def run_whisperx(ctx: Context) -> dict[str, Any]:
    name = "peers-whisperx"
    clip = clips.whole(clips.jfk()) if ctx.quick else clips.speech(71)
    pairs = 1 if ctx.quick else 3
    settings = pipeline_settings("whisperx")
    model_dir = ctx.model_dir()
    scratch = ctx.scratch(name)
    cli = Path(sys.executable).with_name("whisperx")
    if not cli.is_file():
        raise FileNotFoundError(f"{cli} not found: install the whisperx extra")
    # Both told the language: the whisperx CLI is usually run that way, and detection is not what is measured.
    pipeline_cmd = pipeline_transcribe(clip.path, "whisperx", model_dir, ctx.out_root, "-s", "en")
    threads = settings["threads"]  # 0: both then give CTranslate2 4 threads and leave torch at its default
    peer_cmd = [
        str(cli),
        str(clip.path),
        "--model",
        str(model_dir),
        "--model_cache_only",
        "True",
        "--device",
        settings["device"],
        "--compute_type",
        settings["compute_type"],
        "--language",
        "en",
        "--batch_size",
        str(settings["batch_size"]),
        "--beam_size",
        str(settings["beam_size"]),
        "--vad_method",
        "pyannote",
        "--no_align",
        "--threads",
        str(threads),
        "--output_format",
        "all",
        "--output_dir",
        str(scratch),
    ]
    ctx.say(f"{name}: {clip.duration_s:g} s clip, {pairs} rounds")

    def peer(index: int) -> Run:
        for old in scratch.iterdir():
            old.unlink()
        run = measure("peer", peer_cmd)
        run.facts = {"text": (scratch / f"{clip.path.stem}.txt").read_text(encoding="utf-8")}
        return run

    # The same work as `--no_align`: the pipeline's whisperx would otherwise time words (cross-attention).
    same_work = clean_env(WHISPER_WORD_TIMESTAMPS="false")
    runs = alternate(pairs, [("pipeline", _pipeline_side(ctx, pipeline_cmd, same_work)), ("peer", peer)], ctx.say)
    return _result(
        name,
        "whisperx CLI",
        runs,
        clip,
        settings | {"model_dir": str(model_dir)},
        {"pipeline": pipeline_cmd, "peer": peer_cmd},
    )


def mlx_model(model_dir: Path, dtype: str) -> Path:
    """MLX weights of the CTranslate2 `model_dir` in `dtype`, converted once by the pipeline's converter."""
    from pipeline.models.convert import convert_ct2_to_mlx

    target = WORK / "models" / f"{model_dir.name}-mlx-{dtype}"
    if not (target / "config.json").is_file():
        shutil.rmtree(target, ignore_errors=True)
        convert_ct2_to_mlx(model_dir, target, dtype=dtype)
    return target


def run_mlx(ctx: Context) -> dict[str, Any]:
    name = "peers-mlx"
    clip = clips.whole(clips.jfk())
    pairs = 1  # one mlx-whisper run of base costs ~3 CPU-minutes here (mlx CPU build), whatever the clip
    settings = pipeline_settings("mlx")
    fp16 = settings["compute_type"] == "float16"
    # Weights already in the compute dtype: plain mlx_whisper.transcribe(fp16=...) then computes exactly as
    # the pipeline's backend does (it casts the weights to its compute type).
    weights = mlx_model(ctx.model_dir(), "float16" if fp16 else "float32")
    scratch = ctx.scratch(name)
    pipeline_cmd = pipeline_transcribe(clip.path, "mlx", weights, ctx.out_root)
    peer_cmd = [
        sys.executable,
        str(RAW_MLX),
        str(clip.path),
        "--model",
        str(weights),
        "--output",
        str(scratch / "mlx.json"),
        "--fp16",
        str(int(fp16)),
        "--word-timestamps",
        str(int(settings["word_timestamps"])),
    ]
    if settings["source_language"] != "auto":
        peer_cmd += ["--language", settings["source_language"]]
    ctx.say(f"{name}: {clip.duration_s:g} s clip, {pairs} rounds, {settings['device']}/{settings['compute_type']}")

    def peer(index: int) -> Run:
        run = measure("peer", peer_cmd)
        run.facts = json.loads(run.stdout.strip().splitlines()[-1])
        return run

    runs = alternate(pairs, [("pipeline", _pipeline_side(ctx, pipeline_cmd)), ("peer", peer)], ctx.say)
    return _result(
        name,
        "mlx-whisper API",
        runs,
        clip,
        settings | {"mlx_weights": str(weights)},
        {"pipeline": pipeline_cmd, "peer": peer_cmd},
    )
