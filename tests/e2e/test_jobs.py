"""Jobs through the real CLI: prepare / run / status, resume after a failure and after a real SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import MODEL, PROFILE

pytestmark = pytest.mark.e2e


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def _worker(folder, task="transcribe"):
    """The `worker` block of the result the ASR worker of this job wrote (pid, versions, wall time)."""
    (result,) = (folder / "work" / task).glob("attempt-*/result.json")
    return json.loads(result.read_text(encoding="utf-8"))["worker"]


def _processes_of(folder):
    """Live processes whose arguments name this job's folder: its ASR workers (job ids restart at 0001 in every
    out root, so the folder, not the id, tells this job's from another test's)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(folder) in a for a in proc.info["cmdline"] or ()) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def _edit_manifest(folder, **fields):
    path = folder / "manifest.json"
    path.write_text(json.dumps(_manifest(folder) | fields), encoding="utf-8")


def test_prepare_status_run_and_rerun(pipeline_cli, clips, tmp_path):
    prepared = pipeline_cli("prepare", clips["jfk"]["path"], "--workflow", "transcribe", "-s", "en")
    job_id = prepared.job_id
    assert job_id.startswith("job-") and len(prepared.result.stdout.split()) == 1
    folder = prepared.folder
    env_file = (folder / ".env.pipeline").read_text(encoding="utf-8")
    assert "WORKFLOW='transcribe'" in env_file and f"WHISPER_MODEL='{MODEL}'" in env_file
    status = pipeline_cli("status", job_id)
    assert "extract" in status.result.stdout and "pending" in status.result.stdout
    # The run follows the plan prepare recorded, resolving nothing again: given another folder of the same model
    # (a link, which a fresh resolution would never name), its worker loads that one.
    plan = _manifest(folder)
    assert plan["chain"][0]["backend"] == PROFILE.backend and Path(plan["model_dirs"][0]).name == MODEL
    linked = tmp_path / "linked-model"
    linked.symlink_to(plan["model_dirs"][0], target_is_directory=True)
    _edit_manifest(folder, model_dirs=[str(linked), *plan["model_dirs"][1:]])
    pipeline_cli("run", job_id)
    first = _manifest(folder)
    assert all(s["state"] == "done" for s in first["stages"].values())
    assert first["stages"]["transcribe"]["model_dir"] == str(linked) and first["model_dirs"][0] == str(linked)
    assert first["stages"]["transcribe"]["backend"] == first["chain"][0]["backend"]
    # The ASR worker was started before the extract, and loaded its model meanwhile.
    assert first["stages"]["transcribe"]["attempts"][0]["ahead_s"] >= first["stages"]["extract"]["wall_s"]
    again = pipeline_cli("run", job_id)  # nothing left to do: no stage is redone
    assert _manifest(folder)["stages"] == first["stages"]
    assert "done in" not in again.result.stderr
    outputs = ("work/audio.wav", "jfk.en.json", "jfk.en.srt")
    written = {path: path.stat().st_ino for path in (folder / name for name in outputs)}
    worker_pid = _worker(folder)["pid"]
    pipeline_cli("run", job_id, "--force")
    forced = _manifest(folder)["stages"]
    # Every stage really ran again: each output is a new file (an atomic write is a new inode), by a new worker.
    assert {path: path.stat().st_ino for path in written} != written
    assert all(path.stat().st_ino != inode for path, inode in written.items())
    assert _worker(folder)["pid"] != worker_pid
    assert [a["outcome"] for a in forced["transcribe"]["attempts"]] == ["ok"] and forced["transcribe"]["reused"] == 0
    as_json = json.loads(pipeline_cli("status", str(folder), "--json").result.stdout)
    assert as_json["job_id"] == job_id and as_json["profile"] == PROFILE.name


def test_failed_stage_resumes_without_redoing_finished_ones(pipeline_cli, clips, tmp_path):
    prepared = pipeline_cli("prepare", clips["jfk"]["path"], "--workflow", "translate", "-s", "en", "-t", "es")
    planned = _manifest(prepared.folder)
    # A run's setting that changes the plan is resolved before anything runs: a model that is not there is one
    # line, exit 2, and the job as it was.
    missing = pipeline_cli("run", prepared.job_id, "--set", f"WHISPER_MODEL={tmp_path}/no-such-model", check=False)
    assert missing.result.returncode == 2 and "no-such-model does not exist" in missing.result.stderr
    assert _manifest(prepared.folder) == planned
    # A model folder that holds a broken model: the new plan is recorded, every backend of its chain fails.
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"not a model")
    failed = pipeline_cli("run", prepared.job_id, "--set", f"WHISPER_MODEL={broken}", check=False)
    assert failed.result.returncode == 1
    assert "stage transcribe failed" in failed.result.stderr and "resume with" in failed.result.stderr
    manifest = _manifest(prepared.folder)
    assert manifest["model_dirs"][0] == str(broken) and manifest["plan_settings"]["WHISPER_MODEL"] == str(broken)
    assert manifest["stages"]["extract"]["state"] == "done"
    assert manifest["stages"]["transcribe"]["state"] == "failed"
    assert pipeline_cli("status", prepared.job_id, check=False).result.returncode == 1
    extract_done = manifest["stages"]["extract"]["finished"]
    pipeline_cli("run", prepared.job_id)  # without the --set: the job's own model, planned again
    resumed = _manifest(prepared.folder)
    assert resumed["model_dirs"] == planned["model_dirs"] and resumed["plan_settings"] == planned["plan_settings"]
    assert resumed["stages"]["transcribe"]["model_dir"] == planned["model_dirs"][0]
    assert resumed["stages"]["extract"]["finished"] == extract_done
    assert all(s["state"] == "done" for s in resumed["stages"].values())
    assert (prepared.folder / "jfk.es.srt").is_file()
    # --force redoes every stage, a finished translation included (it used to be kept and called "resumed").
    track = prepared.folder / "jfk.es.json"
    inode = track.stat().st_ino
    pipeline_cli("run", prepared.job_id, "--force")
    assert _manifest(prepared.folder)["stages"]["translate"]["resumed"] == [] and track.stat().st_ino != inode


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
    assert not _processes_of(prepared.folder), "an ASR worker outlived its job"
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


def test_a_finished_transcription_survives_a_failed_transcript_write(pipeline_cli, clips, tmp_path):
    """The worker's result is valid, writing the transcript fails (here: a folder where `<stem>.en.json` goes; a
    full disk does the same): the resume writes the transcript from that result, starting no worker. The stem
    is 240 bytes, legal, and the transcript's name (248) leaves no room for a long temporary name."""
    media = tmp_path / ("Energy Demand in AI, a talk " * 9)[:240]
    media = media.with_name(media.name + ".wav")
    media.write_bytes(Path(clips["jfk"]["path"]).read_bytes())
    prepared = pipeline_cli("prepare", str(media), "--workflow", "transcribe", "-s", "en")
    blocker = prepared.folder / f"{media.stem}.en.json"
    blocker.mkdir()
    failed = pipeline_cli("run", prepared.job_id, check=False)
    assert failed.result.returncode == 1 and "stage transcribe failed" in failed.result.stderr
    assert "Is a directory" in _manifest(prepared.folder)["stages"]["transcribe"]["error"]
    result = prepared.folder / "work/transcribe/attempt-1/result.json"
    finished, worker = result.read_bytes(), _worker(prepared.folder)
    log = (prepared.folder / "pipeline.log").read_text(encoding="utf-8")
    blocker.rmdir()  # the cause is fixed
    pipeline_cli("run", prepared.job_id)
    stage = _manifest(prepared.folder)["stages"]["transcribe"]
    assert stage["state"] == "done" and stage["reused"] == 1
    assert [(a["outcome"], a["reused"]) for a in stage["attempts"]] == [("reused", "attempt-1/result.json")]
    assert result.read_bytes() == finished and _worker(prepared.folder) == worker  # no worker ran again
    resumed_log = (prepared.folder / "pipeline.log").read_text(encoding="utf-8")
    assert resumed_log.count("== asr attempt") == log.count("== asr attempt")
    assert "result of an earlier run reused (attempt-1/result.json); no worker started" in resumed_log
    text = (prepared.folder / f"{media.stem}.en.txt").read_text(encoding="utf-8")
    assert "ask not what your country can do for you" in text.lower()


def test_kill_9_of_the_cli_kills_its_asr_worker(clips, tmp_path):
    """`kill -9` of a real `pipeline transcribe` while its worker transcribes: the worker's group dies with it.

    We hold the worker's stdout and stderr pipes open for reading meanwhile, as its dead parent no longer does,
    so that its writes still succeed: its parent's death must be what ends it (tiny.en's next progress write,
    a second away, would end an orphan too; a large model's can be minutes away, all that time at full CPU)."""
    long = tmp_path / "long.wav"
    listing = tmp_path / "list.txt"
    listing.write_text(f"file '{clips['jfk']['path']}'\n" * 12)
    ffmpeg = ["ffmpeg", "-nostdin", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing)]
    subprocess.run([*ffmpeg, "-c", "copy", str(long)], check=True)
    out_root = tmp_path / "out"
    env = os.environ | {
        "PIPELINE_OUT": str(out_root),
        "PIPELINE_PROFILE": PROFILE.name,
        "WHISPER_MODEL": MODEL,
        "HF_HUB_OFFLINE": "1",
    }
    cli = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "transcribe", str(long), "-s", "en"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    held, workers = [], []
    try:
        deadline = time.monotonic() + 300
        while not workers or not _reading_audio(workers[0]):  # started, told "go", transcribing
            assert time.monotonic() < deadline and cli.poll() is None, "the CLI never got its worker transcribing"
            time.sleep(0.05)
            workers = workers or [
                w
                for f in out_root.glob("*/*/*/*/job-*")
                for w in _processes_of(f)
                if "pipeline.asr.worker" in w.info["cmdline"]
            ]
        (worker,) = workers
        for fd in os.listdir(f"/proc/{worker.pid}/fd"):
            with contextlib.suppress(OSError):
                if fd != "0" and os.readlink(f"/proc/{worker.pid}/fd/{fd}").startswith("pipe:"):
                    held.append(os.open(f"/proc/{worker.pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK))
        assert held, "found none of the worker's pipes"
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait(timeout=60)
        deadline = time.monotonic() + 60  # generous under load; the worker dies within milliseconds
        while _group(worker.pid):
            assert time.monotonic() < deadline, "the ASR worker's group outlived its pipeline"
            time.sleep(0.05)
        (attempt,) = out_root.glob("*/*/*/*/job-*/work/transcribe/attempt-1")
        assert not (attempt / "result.json").exists(), "the worker finished its file: nothing stopped it"
    finally:
        for fd in held:
            os.close(fd)
        for proc in workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(cli.pid, signal.SIGKILL)


def _reading_audio(proc):
    with contextlib.suppress(OSError):
        return any(
            os.readlink(f"/proc/{proc.pid}/fd/{fd}").endswith("/work/audio.wav")
            for fd in os.listdir(f"/proc/{proc.pid}/fd")
        )
    return False


def _group(pgid):
    """Live processes of process group `pgid`."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
    return found


@pytest.mark.parametrize(
    "backend, workflow",
    [("faster-whisper", ("subtitle", "-s", "en", "-t", "es,pt")), ("whisperx", ("transcribe", "-s", "en"))],
)
def test_a_job_leaves_nothing_outside_its_folder(pipeline_cli, clips, tmp_path, backend, workflow):
    """Temporary folders, caches, telemetry ids: none in the temp dir or the home folder (the model store aside,
    given here as PIPELINE_MODELS_DIR), none left in the job's work folder. Workers used to leave torch's
    `tmpXXXX/_remote_module_non_scriptable.py`, onnxruntime's ~/.cache/Microsoft (faster-whisper's Silero VAD),
    torch's and matplotlib's caches (whisperx); the MT engines run in the pipeline's own process."""
    home, temp = tmp_path / "home", tmp_path / "temp"
    home.mkdir()
    temp.mkdir()
    from pipeline.models import models_dir

    env = {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "TMPDIR": str(temp),
        "PIPELINE_MODELS_DIR": str(models_dir()),
        "WHISPER_BACKEND": backend,
    }
    run = pipeline_cli(workflow[0], clips["jfk"]["path"], *workflow[1:], env=env)
    assert run.manifest["stages"]["transcribe"]["backend"] == backend
    assert sorted(str(p.relative_to(tmp_path)) for p in (*home.rglob("*"), *temp.rglob("*"))) == []
    assert list(run.folder.glob("work/transcribe/attempt-*/tmp")) == []
