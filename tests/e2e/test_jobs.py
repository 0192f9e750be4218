"""Jobs through the real CLI: prepare / run / status, resume after a failure and after a real SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import MODEL, PROFILE

pytestmark = pytest.mark.e2e


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def test_prepare_status_run_and_rerun(pipeline_cli, clips):
    prepared = pipeline_cli("prepare", clips["jfk"]["path"], "--workflow", "transcribe", "-s", "en")
    job_id = prepared.job_id
    assert job_id.startswith("job-") and len(prepared.result.stdout.split()) == 1
    folder = prepared.folder
    env_file = (folder / ".env.pipeline").read_text(encoding="utf-8")
    assert "WORKFLOW='transcribe'" in env_file and f"WHISPER_MODEL='{MODEL}'" in env_file
    status = pipeline_cli("status", job_id)
    assert "extract" in status.result.stdout and "pending" in status.result.stdout
    pipeline_cli("run", job_id)
    first = _manifest(folder)
    assert all(s["state"] == "done" for s in first["stages"].values())
    # The ASR worker was started before the extract, and loaded its model meanwhile.
    assert first["stages"]["transcribe"]["attempts"][0]["ahead_s"] >= first["stages"]["extract"]["wall_s"]
    again = pipeline_cli("run", job_id)  # nothing left to do: no stage is redone
    assert _manifest(folder)["stages"] == first["stages"]
    assert "done in" not in again.result.stderr
    pipeline_cli("run", job_id, "--force")
    forced = _manifest(folder)["stages"]
    assert forced["transcribe"]["finished"] >= first["stages"]["transcribe"]["finished"]
    assert (
        forced["extract"]["started"] != first["stages"]["extract"]["started"]
        or forced["extract"]["finished"] >= first["stages"]["extract"]["finished"]
    )
    as_json = json.loads(pipeline_cli("status", str(folder), "--json").result.stdout)
    assert as_json["job_id"] == job_id and as_json["profile"] == PROFILE.name


def test_failed_stage_resumes_without_redoing_finished_ones(pipeline_cli, clips, tmp_path):
    prepared = pipeline_cli(
        "prepare", clips["jfk"]["path"], "--workflow", "translate", "-s", "en", "-t", "es"
    )
    failed = pipeline_cli(
        "run", prepared.job_id, "--set", f"WHISPER_MODEL={tmp_path}/no-such-model", check=False
    )
    assert failed.result.returncode == 1
    assert "stage transcribe failed" in failed.result.stderr and "resume with" in failed.result.stderr
    manifest = _manifest(prepared.folder)
    assert manifest["stages"]["extract"]["state"] == "done"
    assert manifest["stages"]["transcribe"]["state"] == "failed"
    assert pipeline_cli("status", prepared.job_id, check=False).result.returncode == 1
    extract_done = manifest["stages"]["extract"]["finished"]
    pipeline_cli("run", prepared.job_id)
    resumed = _manifest(prepared.folder)
    assert resumed["stages"]["extract"]["finished"] == extract_done
    assert all(s["state"] == "done" for s in resumed["stages"].values())
    assert (prepared.folder / "jfk.es.srt").is_file()


def test_sigterm_mid_transcription_then_resume(pipeline_cli, clips):
    """A real SIGTERM to `pipeline run` while the ASR worker runs: the job is marked interrupted, no worker is
    left behind, and the next run finishes it."""
    prepared = pipeline_cli("prepare", clips["jfk"]["path"], "--workflow", "transcribe", "-s", "en")
    env = os.environ | {
        "PIPELINE_OUT": str(prepared.out_root),
        "PIPELINE_PROFILE": PROFILE.name,
        "WHISPER_MODEL": MODEL,
        "HF_HUB_OFFLINE": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", prepared.job_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if _manifest(prepared.folder)["stages"]["transcribe"]["state"] == "running":
            break
        time.sleep(0.05)
    time.sleep(1.0)  # let the worker start loading
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert _manifest(prepared.folder)["stages"]["transcribe"]["state"] == "interrupted"
    # Job ids restart at 0001 in every out root, so look for this job's own folder in the worker's arguments.
    folder = str(prepared.folder)
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if any(folder in a for a in p.info["cmdline"] or ())]
    assert not leftovers, "an ASR worker outlived its job"
    pipeline_cli("run", prepared.job_id)
    assert _manifest(prepared.folder)["stages"]["transcribe"]["state"] == "done"


def test_a_terminal_gets_a_bar_with_eta_per_stage_and_logs_get_lines(pipeline_cli, clips):
    shown = pipeline_cli("transcribe", clips["jfk"]["path"], "-s", "en", terminal=True).result.stderr
    bars = [line for line in re.split(r"[\r\n]+", shown) if "%|" in line]
    # tqdm's "[elapsed<remaining]": the ETA, for each stage that ran.
    finished = {line.split("100%|")[0].strip() for line in bars if "100%|" in line and re.search(r"\[\S+<\S+", line)}
    assert {"extract audio", "transcribe"} <= finished, shown
    assert "transcribe  done in" in shown
    logged = pipeline_cli("transcribe", clips["jfk"]["path"], "-s", "en").result.stderr
    assert "%|" not in logged and "transcribe  done in" in logged
