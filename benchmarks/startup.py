"""startup: `pipeline --help` wall time beside a bare interpreter (`python -c pass`), alternated; and proof
from `python -X importtime` that the CLI imports no heavy library (torch, ctranslate2, mlx, ...) for --help.

Goal: median < 0.3 s, and none of the heavy modules imported.
"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks.harness import Context, alternate, compare, measure, parse_importtime, pipeline_argv

NAME = "startup"
GOAL_S = 0.3
HEAVY = (
    "torch",
    "ctranslate2",
    "mlx",
    "mlx_whisper",
    "whisperx",
    "faster_whisper",
    "onnxruntime",
    "av",
    "transformers",
    "pyannote",
)


def imported_modules(argv: list[str]) -> tuple[list[str], list[tuple[int, str]]]:
    """Every module `argv` imports (via -X importtime), and the slowest top-level ones (cumulative µs)."""
    return parse_importtime(measure("importtime", [sys.executable, "-X", "importtime", *argv]).stderr)


def run(ctx: Context) -> dict[str, Any]:
    rounds = 5 if ctx.quick else 20
    cli = pipeline_argv()
    ctx.say(f"{NAME}: {' '.join(cli)} --help, {rounds} rounds")
    runs = alternate(
        rounds,
        [
            ("pipeline --help", lambda i: measure("pipeline --help", [*cli, "--help"])),
            ("python -c pass", lambda i: measure("python -c pass", [sys.executable, "-c", "pass"])),
        ],
        ctx.say,
    )
    wall = compare(runs, "pipeline --help", "python -c pass")
    script = cli[-1] if len(cli) == 1 else "-m"
    argv = [script, "--help"] if script != "-m" else ["-m", "pipeline", "--help"]
    names, top = imported_modules(argv)
    heavy = sorted({n for n in names if n.split(".")[0] in HEAVY})
    median_s = wall["pipeline --help"]
    ok = median_s < GOAL_S and not heavy
    return {
        "comparison": {"wall": wall},
        "modules_imported": len(names),
        "heavy_imported": heavy,
        "numpy_imported": "numpy" in names,
        "slowest_imports_us": top,
        "summary": [
            {
                "metric": "`pipeline --help` wall s",
                "pipeline": median_s,
                "peer": wall["python -c pass"],
                "peer_name": "python -c pass",
                "ratio": wall["ratio_of_medians"],
                "paired_ratio": wall["median_paired_ratio"],
                "goal": f"< {GOAL_S} s",
                "verdict": "ok" if ok else "over",
            },
            {
                "metric": "heavy modules imported by --help",
                "pipeline": ", ".join(heavy) or "none",
                "peer": "",
                "goal": "none",
                "verdict": "ok" if not heavy else "imports heavy",
            },
        ],
        "runs": [r.to_dict() for r in runs],
    }
