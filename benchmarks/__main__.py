"""`python -m benchmarks [--quick] [--only NAME] [--list]`: run benchmarks, print tables, write results.

A full run writes benchmarks/results/<name>.json and refreshes the figures table in benchmarks/README.md;
`--quick` (short clips, fewer rounds: a CI smoke test of the benchmarks themselves) writes its results under
.cache/benchmarks/results-quick/ and leaves the committed figures alone.
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from benchmarks import report
from benchmarks.harness import RESULTS, ROOT, WORK, Context, busy_processes, machine, now, versions, write_result

# Name -> module:function, in the order they run: the cheap and the essential first.
BENCHMARKS = {
    "default-vs-faster-whisper": "benchmarks.headline:run",  # the headline: what a user gets by default
    "startup": "benchmarks.startup:run",
    "overhead-faster-whisper": "benchmarks.overhead:run",
    "memory-vs-length": "benchmarks.memory:run",
    "overhead-faster-whisper-20min": "benchmarks.overhead:run_long",
    "subtitle-8-targets": "benchmarks.subtitle_targets:run",
    "peers-whisperx": "benchmarks.peers:run_whisperx",
    "peers-mlx": "benchmarks.peers:run_mlx",
    "diarization": "benchmarks.diarization:run",  # issue 14: the speakers stage next to transcribe
    "batch-8-clips": "benchmarks.batch:run",  # pipeline batch on Ray against a shell loop (issue 15)
}


def _say(message: str) -> None:
    print(message, flush=True)


# Left out of `--quick` unless named with --only: one mlx-whisper run of base on mlx's Linux CPU build costs
# about 3 CPU-minutes, however short the clip (it decodes 30 s windows), which alone exceeds the quick budget.
NOT_QUICK = ("peers-mlx",)


def select(only: list[str] | None, quick: bool = False) -> list[str]:
    """Benchmarks named by --only: exact names, or a prefix (`peers` runs both peers benchmarks)."""
    if not only:
        return [name for name in BENCHMARKS if not (quick and name in NOT_QUICK)]
    wanted = [part.strip() for item in only for part in item.split(",") if part.strip()]
    chosen = [name for name in BENCHMARKS if any(name == w or name.startswith(w) for w in wanted)]
    unknown = [w for w in wanted if not any(name == w or name.startswith(w) for name in BENCHMARKS)]
    if unknown:
        raise SystemExit(f"benchmarks: unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short clips and fewer rounds (CI smoke, < 3 min)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only these (repeatable or comma-separated; a prefix matches)",
    )
    parser.add_argument("--model", default="base", help="Whisper model name or CTranslate2 folder (default base)")
    parser.add_argument("--results", type=Path, help="where to write results JSON (default: see above)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(BENCHMARKS))
        return 0
    names = select(args.only, args.quick)
    mode = "quick" if args.quick else "full"
    results_dir = args.results or (WORK / "results-quick" if args.quick else RESULTS)
    ctx = Context(quick=args.quick, model=args.model, say=_say)
    # The pipeline as installed: pip byte-compiles a package, and an editable install writes its bytecode on
    # first use, unless PYTHONDONTWRITEBYTECODE is set (as on our CI machines), when every run would compile
    # the whole package again (~0.1 s of start-up a real install never pays).
    compileall.compile_dir(ROOT / "pipeline", quiet=1)
    common = {"mode": mode, "machine": machine(), "versions": versions()}
    failures = []
    started_all = time.perf_counter()
    for name in names:
        module_name, _, function = BENCHMARKS[name].partition(":")
        _say(f"\n== {name} ({mode})")
        contention = {
            "load_start": [round(x, 2) for x in os.getloadavg()],
            "busy_processes_start": busy_processes(),
        }
        started, clock = now(), time.perf_counter()
        try:
            result = getattr(importlib.import_module(module_name), function)(ctx)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failures.append(name)
            result = {"error": f"{type(exc).__name__}: {exc}"[:2000], "summary": []}
        contention["load_end"] = [round(x, 2) for x in os.getloadavg()]
        data = {
            "benchmark": name,
            "started": started,
            "finished": now(),
            "duration_s": round(time.perf_counter() - clock, 1),
            **common,
            "contention": contention,
            **result,
        }
        path = write_result(results_dir, name, data)
        _say(report.table([data]))
        _say(f"{name}: {data['duration_s']:g} s; results in {path}")
    _say(f"\nall: {time.perf_counter() - started_all:.0f} s")
    if results_dir == RESULTS:
        report.update_readme(RESULTS)
        _say(f"figures table refreshed in {report.README}")
    if failures:
        _say(f"benchmarks failed: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
