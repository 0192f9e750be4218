"""Real jobs for the monitoring tests: tiny.en on JFK through the real CLI, with real worker faults.

    python -m tests.monitor.scenarios    (from the repository root: re-records tests/monitor/recorded/)

Each job's media file is named after its scenario:
    good         transcribed by faster-whisper
    salvaged     faster-whisper segfaults after writing its result: salvaged
    fallback     faster-whisper aborts after loading; whisperx, next in the cpu chain, produces the transcript
    exhausted    faster-whisper is SIGKILLed, whisperx makes no progress for ASR_TIMEOUT (10 s): the job fails
    bad-input    the media file is replaced by text after prepare: the extract stage fails
    interrupted  the CLI is SIGKILLed while its worker transcribes: the stage stays `running`, nobody holds the lock
The recorded manifests are those of such a run (tests/monitor/recorded/), for the fast tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.jobs import job_dir_for

ROOT = Path(__file__).resolve().parents[2]
FAULTY_CLI = Path(__file__).with_name("faulty_cli.py")
JFK = ROOT / "tests/fixtures/jfk.wav"
RECORDED = Path(__file__).with_name("recorded")
MODEL = "tiny.en"
FAULTS: dict[str, dict[str, Any]] = {
    "good": {},
    "salvaged": {"faster-whisper": {"point": "after_marker", "action": "segv"}},
    "fallback": {"faster-whisper": {"point": "after_load", "action": "abort"}},
    "exhausted": {
        "faster-whisper": {"point": "after_load", "action": "kill"},
        "whisperx": {"point": "after_load", "action": "hang"},
    },
}


def environ(faults: dict[str, Any] | None = None) -> dict[str, str]:
    return os.environ | {
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        "HF_HUB_OFFLINE": "1",
        "PYANNOTE_METRICS_ENABLED": "false",
        "PIPELINE_PROFILE": "cpu",
        "PIPELINE_TEST_FAULTS": json.dumps(faults or {}),
    }


def cli(*args: str, faults: dict[str, Any] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`pipeline ARGS` as a user runs it (through faulty_cli.py, which injects `faults`, if any)."""
    argv = [sys.executable, str(FAULTY_CLI), *args]
    return subprocess.run(argv, env=environ(faults), capture_output=True, text=True, timeout=600, cwd=cwd)


def _media(folder: Path, name: str) -> Path:
    path = folder / f"{name}.wav"
    shutil.copyfile(JFK, path)
    return path


def _job_id(stdout: str) -> str:
    return stdout.split()[0]


def run_all(out: Path, media: Path) -> dict[str, str]:
    """Every scenario, one job each, under the output root `out`; returns each scenario's job id."""
    media.mkdir(parents=True, exist_ok=True)
    ids = {}
    job = ("-s", "en", "--model", MODEL, "--out", str(out))
    for name, faults in FAULTS.items():
        extra = ("--set", "ASR_TIMEOUT=10") if name == "exhausted" else ()
        done = cli("transcribe", str(_media(media, name)), *job, *extra, faults=faults)
        assert done.returncode == (1 if name == "exhausted" else 0), done.stderr
        ids[name] = _job_id(done.stdout)

    bad = _media(media, "bad-input")
    prepared = cli("prepare", str(bad), "--workflow", "transcribe", *job)
    assert prepared.returncode == 0, prepared.stderr
    ids["bad-input"] = _job_id(prepared.stdout)
    bad.write_text("not a media file\n" * 64)
    failed = cli("run", ids["bad-input"], "--out", str(out))
    assert failed.returncode == 1 and "stage extract failed" in failed.stderr, failed.stderr

    ids["interrupted"] = _interrupted(out, _media(media, "interrupted"), job)
    return ids


def _interrupted(out: Path, media: Path, job: tuple[str, ...]) -> str:
    """kill -9 of the CLI once its worker hangs in the transcribe stage (a hang: it cannot finish first)."""
    pidfile = media.with_suffix(".pid")
    faults = {"faster-whisper": {"point": "after_load", "action": "hang", "pidfile": str(pidfile)}}
    process = subprocess.Popen(
        [sys.executable, str(FAULTY_CLI), "transcribe", str(media), *job],
        env=environ(faults),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    worker_group = None
    try:
        assert process.stdout is not None
        job_id = process.stdout.readline().strip()  # printed as soon as the job is prepared
        folder = job_dir_for(job_id, out)
        deadline = time.monotonic() + 300
        while True:
            assert time.monotonic() < deadline and process.poll() is None, "the worker never reached its hang"
            if pidfile.exists() and pidfile.read_text():
                worker_group = json.loads(pidfile.read_text())["pgid"]
                manifest = json.loads((folder / "manifest.json").read_text())
                if manifest["stages"]["transcribe"]["state"] == "running":
                    break
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        return job_id
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        if worker_group is not None:  # it ends itself when its parent's pipe closes; never leave it behind
            deadline = time.monotonic() + 60
            while _group_alive(worker_group) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _group_alive(worker_group):
                os.killpg(worker_group, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def record(target: Path = RECORDED) -> None:
    """Run every scenario and keep their manifests (only those) under `target`, in the out root's layout."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out"
        run_all(out, Path(scratch) / "media")
        shutil.rmtree(target, ignore_errors=True)
        for manifest in out.glob("*/*/*/*/job-*/manifest.json"):
            copy = target / manifest.relative_to(out)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(manifest, copy)


if __name__ == "__main__":
    record()
    print(f"recorded in {RECORDED}")
