"""What every benchmark shares: fresh-process runs measured from outside, A/B alternation, machine facts.

A run is one child process in a session of its own: wall time from spawn to reap, CPU seconds and the
kernel's peak RSS (`ru_maxrss`, the largest single process of the tree, what `/usr/bin/time -v` prints) from
`wait4`, and the peak RSS of the whole tree (the pipeline, its ASR worker, ffmpeg) from polling psutil every
0.5 s (a poll lists every process on the machine, ~2 ms: polling more often takes CPU from the run it measures).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pipeline.versions import ffmpeg_version, library_versions

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".cache" / "benchmarks"  # clips, converted models, job folders: gitignored, reused across runs
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Run:
    """One fresh process, measured from outside."""

    label: str
    argv: list[str]
    wall_s: float
    cpu_s: float  # user + system of the whole tree (reaped descendants included)
    max_rss_mb: float  # kernel ru_maxrss: the largest single process in the tree
    tree_peak_rss_mb: float  # psutil: the highest sum over the tree seen
    exit_code: int
    load_1m: float  # load average just before the run: how busy the shared machine was
    steal_s: float | None  # CPU time the hypervisor gave to other guests meanwhile (Linux), all CPUs
    stdout: str = field(default="", repr=False)
    stderr: str = field(default="", repr=False)
    facts: dict[str, Any] = field(default_factory=dict)  # what the benchmark read from the run's outputs
    discarded: bool = False  # its round was run again (`alternate`): in the record, in no comparison

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("stdout")
        data.pop("stderr")
        if self.exit_code != 0:
            data["stderr_tail"] = self.stderr[-2000:]
        return data


class _TreeSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.interval, self.peak_mb = pid, interval, 0.0
        self._done = threading.Event()

    def run(self) -> None:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.pid)
            while not self._done.is_set():
                total = 0
                with contextlib.suppress(psutil.Error):
                    for process in [root, *root.children(recursive=True)]:
                        with contextlib.suppress(psutil.Error):
                            total += process.memory_info().rss
                self.peak_mb = max(self.peak_mb, total / 2**20)
                self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()


class BenchmarkFailed(RuntimeError):
    pass


def env(**extra: str) -> dict[str, str]:
    """The environment of every measured process: offline, and blind to the project's own config file."""
    base = dict(os.environ)
    empty = WORK / "empty.env.pipeline"  # a config file that sets nothing: defaults, flags and nothing else
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.touch()
    base.update(
        HF_HUB_OFFLINE="1",
        PYANNOTE_METRICS_ENABLED="false",
        PIPELINE_CONFIG=str(empty),
        PIPELINE_USER="bench",
    )
    base.update(extra)
    return base


def measure(
    label: str,
    argv: Sequence[str],
    *,
    environ: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> Run:
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = f"{label}-{time.time_ns()}"
    out_path, err_path = logs / f"{stamp}.out", logs / f"{stamp}.err"
    load = os.getloadavg()[0]
    steal_before = _steal_s()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=environ or clean_env(),
            cwd=cwd or ROOT,
            # Its own session, hence its own scheduler autogroup (Linux): every measured process, like the
            # pipeline's ASR worker (isolation starts it so), gets the same CPU share on a shared machine.
            start_new_session=True,
        )
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        sampler.stop()
    steal = None if steal_before is None else round((_steal_s() or 0.0) - steal_before, 2)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    run = Run(
        label=label,
        argv=[str(a) for a in argv],
        wall_s=round(wall, 3),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
        max_rss_mb=round(usage.ru_maxrss / 1024, 1),
        tree_peak_rss_mb=round(sampler.peak_mb, 1),
        exit_code=code,
        load_1m=round(load, 2),
        steal_s=steal,
        stdout=stdout,
        stderr=stderr,
    )
    out_path.unlink()
    err_path.unlink()
    if check and code != 0:
        raise BenchmarkFailed(f"{label} exited {code}: {' '.join(run.argv)}\n{stderr[-2000:]}")
    return run


def _steal_s() -> float | None:
    """Seconds of steal time since boot, summed over CPUs (/proc/stat); None where there is no such file.
    On a VM this is the part of the noise that comes from other guests: time our runs waited for a real CPU."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


STEAL_LIMIT = 0.02  # a round whose run lost more than 2 % of its wall time to other guests is run again
ROUND_RETRIES = 2


def stolen(run: Run) -> bool:
    return run.steal_s is not None and run.steal_s > STEAL_LIMIT * run.wall_s


def alternate(pairs: int, sides: Sequence[tuple[str, Callable[[int], Run]]], say: Callable[[str], None]) -> list[Run]:
    """`pairs` rounds of every side, the order reversed each round (A B, B A, ...) so drift in the machine's
    load falls on both sides alike. A round in which the hypervisor stole a run's CPU (`stolen`) is run again,
    up to ROUND_RETRIES times; its runs stay in the list, marked `discarded`, and count in no comparison."""
    runs: list[Run] = []
    for index in range(pairs):
        order = sides if index % 2 == 0 else list(reversed(sides))
        for retry in range(ROUND_RETRIES + 1):
            this_round = []
            for label, fn in order:
                run = fn(index)
                say(
                    f"  {label:<24} round {index + 1}/{pairs}: {run.wall_s:7.2f} s wall, {run.cpu_s:7.2f} s cpu, "
                    f"tree peak {run.tree_peak_rss_mb:6.0f} MB, load {run.load_1m:.1f}, steal {run.steal_s} s"
                )
                this_round.append(run)
            runs.extend(this_round)
            if retry == ROUND_RETRIES or not any(map(stolen, this_round)):
                break
            for run in this_round:
                run.discarded = True
            say(f"  round {index + 1}/{pairs} again: steal above {STEAL_LIMIT:.0%} of a run's wall time")
    return runs


def median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def counted(runs: Sequence[Run], label: str) -> list[Run]:
    """The runs of one side that count: in round order, without the discarded ones."""
    return [run for run in runs if run.label == label and not run.discarded]


def side(runs: Sequence[Run], label: str, key: str = "wall_s") -> list[float]:
    return [getattr(r, key) if hasattr(r, key) else r.facts[key] for r in counted(runs, label)]


def paired_ratios(runs: Sequence[Run], a: str, b: str, key: str = "wall_s") -> list[float]:
    """a/b within each round: robust to load that changes between rounds."""
    return [round(x / y, 4) for x, y in zip(side(runs, a, key), side(runs, b, key), strict=True) if y]


def compare(runs: Sequence[Run], a: str, b: str, key: str = "wall_s") -> dict[str, Any]:
    """Medians of both sides, the ratio of the medians and the median of the per-round ratios."""
    ma, mb = median(side(runs, a, key)), median(side(runs, b, key))
    pairs = paired_ratios(runs, a, b, key)
    return {
        "metric": key,
        a: ma,
        b: mb,
        "ratio_of_medians": round(ma / mb, 4) if mb else None,
        "median_paired_ratio": median(pairs) if pairs else None,
        "paired_ratios": pairs,
        "discarded_runs": sum(run.discarded for run in runs if run.label in (a, b)),
    }


# --- pipeline jobs -----------------------------------------------------------------------------------------


def pipeline_argv() -> list[str]:
    """The `pipeline` console script of this interpreter's environment, as a user runs it."""
    script = Path(sys.executable).with_name("pipeline")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline"]


def pipeline_transcribe(clip: Path, backend: str | None, model: Path | None, out_root: Path, *extra: str) -> list[str]:
    """`pipeline transcribe CLIP --backend B --model M --out OUT [EXTRA]`: the command every benchmark times.
    A backend or model of None is left to the profile (the default a user gets)."""
    chosen = [*(["--backend", backend] if backend else []), *(["--model", str(model)] if model else [])]
    return [*pipeline_argv(), "transcribe", str(clip), *chosen, "--out", str(out_root), *extra]


def read_job(run: Run, out_root: Path, *, keep: bool = False) -> dict[str, Any]:
    """The manifest of the job a one-shot command made (its id is the first line it prints), and its text.

    The job folder is removed afterwards unless `keep`: a 20-minute job holds a 38 MB WAV.
    """
    from pipeline import jobs

    job_id = run.stdout.strip().splitlines()[0].strip()
    folder = jobs.locate(job_id, out_root)
    manifest = jobs.Manifest.load(folder).data
    language = manifest.get("language", "")
    txt = next(folder.glob(f"*.{language}.txt"), None)
    manifest["_text"] = txt.read_text(encoding="utf-8") if txt else ""
    manifest["_folder"] = str(folder)
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    return manifest


def stage_breakdown(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    keys = ("state", "wall_s", "peak_rss_mb", "worker_peak_rss_mb", "backend", "device", "compute_type")
    breakdown = {name: {k: stage[k] for k in keys if k in stage} for name, stage in manifest["stages"].items()}
    if attempts := manifest["stages"].get("transcribe", {}).get("attempts"):
        used = attempts[-1]
        breakdown["transcribe"]["worker"] = {k: used.get(k) for k in ("wall_s", "load_s", "ahead_s", "outcome")}
    return breakdown


def parse_importtime(stderr: str, top: int = 8) -> tuple[list[str], list[tuple[int, str]]]:
    """From `python -X importtime` output: every module imported, and the `top` slowest top-level imports
    (cumulative microseconds, nested imports included)."""
    names, roots = [], []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        if not cumulative.strip().isdigit():
            continue  # the header line
        names.append(name.strip())
        if not name[1:].startswith(" "):  # nesting is shown by indentation after "| "
            roots.append((int(cumulative), name.strip()))
    return names, sorted(roots, reverse=True)[:top]


# --- comparing outputs -------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def text_similarity(a: str, b: str) -> float:
    """Word-level similarity of two transcripts (1.0: same words): did both sides do the same work?"""
    return round(difflib.SequenceMatcher(None, words(a), words(b), autojunk=False).ratio(), 4)


# --- the machine -------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")},
    }


def versions() -> dict[str, str]:
    found = library_versions()
    if ffmpeg := ffmpeg_version():
        found["ffmpeg"] = ffmpeg
    return found


def busy_processes(limit: int = 5) -> list[str]:
    """The other processes using the CPU right now, to say what the runs competed with."""
    procs = list(psutil.process_iter(["pid", "name", "cmdline"]))
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(1.0)
    usage = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            percent = p.cpu_percent(None)
            if percent >= 5 and p.pid != os.getpid():
                cmd = " ".join(p.info["cmdline"] or [p.info["name"] or "?"])[:80]
                usage.append((percent, f"{percent:.0f}% {cmd}"))
    return [text for _, text in sorted(usage, reverse=True)[:limit]]


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_result(directory: Path, name: str, data: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# --- what a benchmark is given -----------------------------------------------------------------------------


@dataclass
class Context:
    quick: bool
    model: str  # a model name the pipeline resolves (base) or a CTranslate2 folder
    say: Callable[[str], None] = print

    @property
    def out_root(self) -> Path:
        return WORK / "out"

    def model_dir(self) -> Path:
        """The CTranslate2 folder of `model`, resolved as the pipeline does (assembled once if packaged)."""
        from pipeline import models

        return models.resolve(self.model, models.CT2)

    def scratch(self, name: str) -> Path:
        folder = WORK / "scratch" / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder


def pipeline_settings(backend: str | None) -> dict[str, Any]:
    """The pipeline's defaults (pipeline.config) and the device/compute type it resolves for `backend` (None: the
    profile's own) here: what the peer must be given to do exactly the same work."""
    from pipeline import config, hardware
    from pipeline.profiles import load_matrix

    cfg = config.build([("benchmark", {"WHISPER_BACKEND": backend} if backend else {})])
    hw = hardware.detect()
    profile = hardware.resolve_profile(cfg, load_matrix(), hw)
    choice = hardware.resolve_chain(cfg, profile, hw)[0]
    return {
        "profile": profile.name,
        "model": profile.runtime.model,
        "backend": choice.backend,
        "device": choice.device,
        "compute_type": choice.compute_type,
        "beam_size": cfg.beam_size,
        "batch_size": choice.batch_size,
        "vad": cfg.vad,
        "word_timestamps": cfg.word_timestamps,
        "threads": cfg.threads,
        "chunk_seconds": choice.chunk_seconds,
        "source_language": cfg.source_language,
    }


def clean_env(**extra: str) -> dict[str, str]:
    """`env()` without any pipeline config key inherited from the caller's shell: flags decide, and the peer
    gets exactly the same values."""
    from pipeline.config import BY_NAME

    return {k: v for k, v in env(**extra).items() if k not in BY_NAME or k in extra}
