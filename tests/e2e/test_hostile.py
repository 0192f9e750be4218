"""A hostile user through the real CLI: exported variables against flags, `${VAR}` and `$(...)` in names and
prompts, crafted job folders, killed and hung-up runs, unwritable roots, full disks, undecodable names."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import PROFILE

pytestmark = pytest.mark.e2e

FAST = "tiny.en"  # the fastest English model: these tests are about the job, not the transcript


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def _one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipeline: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _leftover_processes(folder: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(folder) in arg for arg in process.info["cmdline"] or ()):
                found.append(process)
    return found


def _wait_for_state(folder: Path, stage: str, state: str, process: subprocess.Popen, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError, ValueError):  # between the atomic rename and our read
            if _manifest(folder)["stages"][stage]["state"] == state:
                return
        time.sleep(0.05)
    pytest.fail(f"stage {stage} never became {state} (exit {process.poll()})")


def _spawn_run(prepared, **env: str) -> subprocess.Popen:
    environ = os.environ | {
        "PIPELINE_OUT": str(prepared.out_root),
        "PIPELINE_PROFILE": PROFILE.name,
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", prepared.job_id],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=prepared.out_root.parent,
        start_new_session=True,
    )


# --- 3. the environment must not beat command-line flags -----------------------------------------------------


def test_flags_beat_exported_variables_on_the_oneshot_and_every_later_run(pipeline_cli, clips):
    """`WHISPER_MODEL=base` exported, `--model tiny.en` given: tiny.en runs, now and on every re-run, and the
    job file, the manifest and the worker's request all say so."""
    env = {"WHISPER_MODEL": "base", "WHISPER_BEAM_SIZE": "4"}
    done = pipeline_cli("transcribe", clips["jfk"]["path"], "-s", "en", "--model", FAST, "--beam-size", "1", env=env)
    folder = done.folder
    job_file = (folder / ".env.pipeline").read_text(encoding="utf-8")
    assert f"WHISPER_MODEL='{FAST}'" in job_file and "WHISPER_BEAM_SIZE='1'" in job_file
    manifest = _manifest(folder)
    assert manifest["stages"]["transcribe"]["model"] == FAST and manifest["model"] == FAST
    assert manifest["flags"]["WHISPER_MODEL"] == FAST and manifest["run_overrides"] == {}
    requests = [json.loads(p.read_text()) for p in (folder / "work" / "transcribe").rglob("request.json")]
    assert requests and all(r["beam_size"] == 1 and r["model_dir"].endswith(FAST) for r in requests)
    # A later run, the variables still exported and one more: flags still win; what differs is recorded.
    pipeline_cli("run", done.job_id, "--force", env=env | {"WHISPER_VAD": "false"})
    again = _manifest(folder)
    assert again["stages"]["transcribe"]["model"] == FAST
    assert again["run_overrides"] == {"WHISPER_VAD": {"value": "false", "from": "environment", "job_file": "true"}}


# --- 4. `${VAR}` is not expanded; job files are inert when sourced -------------------------------------------


def test_dollar_names_and_prompts_are_kept_verbatim_and_no_secret_is_written(pipeline_cli, clips, tmp_path):
    media = tmp_path / "a ${HOME} b $(touch PWNED) `id`.wav"
    shutil.copy(clips["jfk"]["path"], media)
    secret = "s3cr3t-4f7a9c"
    done = pipeline_cli(
        "transcribe",
        str(media),
        "-s",
        "en",
        "--model",
        FAST,
        "--initial-prompt",
        "${API_TOKEN}",
        env={"API_TOKEN": secret},
    )
    folder = done.folder
    assert all(s["state"] == "done" for s in _manifest(folder)["stages"].values())
    assert (folder / f"{media.stem}.en.srt").is_file()
    leaked = [p for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaked, f"the secret was written to {leaked}"
    requests = [json.loads(p.read_text()) for p in (folder / "work" / "transcribe").rglob("request.json")]
    assert requests and all(r["initial_prompt"] == "${API_TOKEN}" for r in requests)
    # `set -a; . .env.pipeline`, as users load env files: nothing runs, the values come back as written.
    sourced = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", f'set -a; . "{folder}/.env.pipeline"; printf %s "$MEDIA"'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "API_TOKEN": secret},
        check=True,
    )
    assert sourced.stdout == str(media)
    assert not list(tmp_path.rglob("PWNED")) and not list(Path.cwd().glob("PWNED"))


# --- 5. a crafted job folder cannot write outside it ---------------------------------------------------------


def test_a_crafted_manifest_language_is_refused_and_nothing_is_written_outside(pipeline_cli, clips, tmp_path):
    prepared = pipeline_cli("prepare", clips["jfk"]["path"], "--workflow", "transcribe", "-s", "en")
    folder = prepared.folder
    data = _manifest(folder)
    data["language"] = "en/../../x"
    for stage in ("extract", "transcribe"):
        data["stages"][stage]["state"] = "done"
    (folder / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    # What the subtitles stage would read: a real transcript at the crafted path.
    (folder / "jfk.en").mkdir()
    (folder / "x.json").write_text(json.dumps({"language": "en", "duration": 1.0, "segments": []}))
    before = _tree(tmp_path)
    line = _one_line_error(pipeline_cli("run", prepared.job_id, check=False).result)
    assert "language='en/../../x'" in line and "manifest" in line
    inside = str(folder.relative_to(tmp_path))
    assert {p for p in _tree(tmp_path) - before if not p.startswith(inside)} == set(), "wrote outside its job"


# --- 6. orphaned runs: kill -9, SIGHUP --------------------------------------------------------------------------


def test_kill_9_of_a_run_is_reported_as_runner_gone(pipeline_cli, clips):
    prepared = pipeline_cli("prepare", clips["jfk"]["path"], "--workflow", "transcribe", "-s", "en")
    process = _spawn_run(prepared)
    try:
        _wait_for_state(prepared.folder, "transcribe", "running", process)
        process.kill()
        process.communicate(timeout=60)
    finally:
        for leftover in _leftover_processes(prepared.folder):  # ours: the worker of the run we killed
            with contextlib.suppress(psutil.Error):
                leftover.kill()
    status = pipeline_cli("status", prepared.job_id, check=False)
    assert status.result.returncode == 1, status.result.stdout
    row = next(line for line in status.result.stdout.splitlines() if line.startswith("transcribe"))
    assert "interrupted (runner gone)" in row and f"pipeline run {prepared.job_id}" in row
    as_json = json.loads(pipeline_cli("status", prepared.job_id, "--json", check=False).result.stdout)
    assert as_json["stages"]["transcribe"]["runner_gone"] is True
    assert _manifest(prepared.folder)["stages"]["transcribe"]["state"] == "running"  # status only reports


def test_sighup_stops_a_run_like_sigterm_and_names_the_job(pipeline_cli, clips):
    prepared = pipeline_cli("prepare", clips["jfk"]["path"], "--workflow", "transcribe", "-s", "en")
    process = _spawn_run(prepared)
    _wait_for_state(prepared.folder, "transcribe", "running", process)
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert _manifest(prepared.folder)["stages"]["transcribe"]["state"] == "interrupted"
    assert f"resume with `pipeline run {prepared.job_id}`" in stderr and "Traceback" not in stderr
    deadline = time.monotonic() + 30
    while _leftover_processes(prepared.folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _leftover_processes(prepared.folder), "the ASR worker outlived its hung-up run"
    status = pipeline_cli("status", prepared.job_id, check=False)
    assert status.result.returncode == 1 and "runner gone" not in status.result.stdout


# --- 8. one line, not a traceback, when the system refuses ------------------------------------------------------


def test_an_out_root_under_a_file(pipeline_cli, clips, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run = pipeline_cli(
        "prepare", clips["jfk"]["path"], "-w", "transcribe", "-s", "en", "--out", str(blocker / "out"), check=False
    )
    assert "cannot create a job folder" in _one_line_error(run.result) and blocker.read_text() == "not a folder"


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs of our own: a disk that really fills up, a mount that is really read-only."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(size: str, name: str = "disk") -> Path:
        point = tmp_path / name
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], check=True)
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_an_out_root_on_a_read_only_mount(pipeline_cli, clips, tmpfs):
    root = tmpfs("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
    run = pipeline_cli(
        "prepare", clips["jfk"]["path"], "-w", "transcribe", "-s", "en", "--out", str(root / "out"), check=False
    )
    assert "Read-only file system" in _one_line_error(run.result)


def test_a_full_disk_is_one_line_then_the_job_resumes(pipeline_cli, clips, tmpfs):
    root = tmpfs("2m")
    out = root / "out"
    prepared = pipeline_cli(
        "prepare", clips["jfk"]["path"], "-w", "transcribe", "-s", "en", "--model", FAST, "--out", str(out)
    )
    filler = root / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as handle:  # ENOSPC ends it: the disk is full
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    run = pipeline_cli("run", prepared.job_id, "--out", str(out), check=False)
    line = _one_line_error(run.result)
    assert (
        "No space left on device" in line
        and f"free some disk space, then resume with `pipeline run {prepared.job_id}`" in line
    )
    status = pipeline_cli("status", prepared.job_id, "--out", str(out), check=False)
    assert "Traceback" not in status.result.stderr and "running" not in status.result.stdout
    filler.unlink()
    pipeline_cli("run", prepared.job_id, "--out", str(out))
    folder = next(out.glob(f"*/*/*/*/{prepared.job_id}"))
    assert all(s["state"] == "done" for s in _manifest(folder)["stages"].values())


def test_a_media_name_that_is_not_utf8(pipeline_cli, clips, tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9 \xff.wav"  # Latin-1 bytes, as an old camera or archive names them
    shutil.copy(clips["jfk"]["path"], raw)
    before = _tree(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "prepare", raw, "-w", "transcribe", "-s", "en"],
        capture_output=True,
        text=True,
        env=os.environ | {"PIPELINE_OUT": str(tmp_path / "out")},
        cwd=tmp_path,
        check=False,
    )
    line = _one_line_error(result)
    assert "MEDIA=b'" in line and "\\xff" in line and "not valid UTF-8" in line
    assert _tree(tmp_path) == before


def test_a_job_id_longer_than_a_file_name(pipeline_cli):
    for command in ("run", "status"):
        line = _one_line_error(pipeline_cli(command, "job-20251203-me-" + "7" * 300, check=False).result)
        assert "invalid job id" in line


def test_models_dir_pointing_at_a_file(pipeline_cli, clips, tmp_path):
    not_a_folder = tmp_path / "models.txt"
    not_a_folder.write_text("x")
    env = {"PIPELINE_MODELS_DIR": str(not_a_folder)}
    for args in (
        ("prepare", clips["jfk"]["path"], "-w", "transcribe", "-s", "en", "--model", FAST),
        ("models", "list"),
    ):
        line = _one_line_error(pipeline_cli(*args, check=False, env=env).result)
        assert f"PIPELINE_MODELS_DIR={not_a_folder} is not a folder" in line


# --- 9. nothing silent, nothing misleading ---------------------------------------------------------------------


def test_a_malformed_project_config_line_is_an_error_naming_file_and_line(pipeline_cli, clips, tmp_path):
    project = tmp_path / "project.env"
    project.write_text("WHISPER_BEAM_SIZE=3\n# the quote below is never closed\nWHISPER_MODEL='large-v3\n")
    run = pipeline_cli(
        "transcribe", clips["jfk"]["path"], "-s", "en", check=False, env={"PIPELINE_CONFIG": str(project)}
    )
    line = _one_line_error(run.result)
    assert str(project) in line and "line 3" in line
    missing = pipeline_cli(
        "transcribe", clips["jfk"]["path"], check=False, env={"PIPELINE_CONFIG": str(tmp_path / "no.env")}
    )
    assert "no such config file" in _one_line_error(missing.result)


def test_an_empty_model_is_its_own_error(pipeline_cli, clips):
    line = _one_line_error(pipeline_cli("transcribe", clips["jfk"]["path"], "--model", "", check=False).result)
    assert "WHISPER_MODEL=''" in line and "empty" in line and "folder ." not in line


def test_a_resume_is_advised_only_where_one_can_help(pipeline_cli, clips, tmp_path):
    media = tmp_path / "clip.wav"
    shutil.copy(clips["jfk"]["path"], media)
    truncated = pipeline_cli("prepare", str(media), "-w", "transcribe", "-s", "en", "--model", FAST)
    gone = pipeline_cli("prepare", str(media), "-w", "transcribe", "-s", "en", "--model", FAST)
    with media.open("r+b") as handle:  # the header stays, the samples go: a copy cut short
        handle.truncate(44)
    line = _one_line_error(pipeline_cli("run", truncated.job_id, check=False).result, code=1)
    assert "changed since the job was prepared" in line and "resume with" not in line
    media.unlink()
    line = _one_line_error(pipeline_cli("run", gone.job_id, check=False).result, code=1)
    assert "put it back, then resume with" in line and gone.job_id in line


# --- 1. names no file system can hold are refused at prepare -----------------------------------------------------


def test_a_media_name_too_long_for_its_outputs(pipeline_cli, clips, tmp_path):
    media = tmp_path / ("é" * 125 + ".wav")  # 254 bytes: the file exists, <stem>.en.json (258) could not
    shutil.copy(clips["jfk"]["path"], media)
    before = _tree(tmp_path)
    line = _one_line_error(pipeline_cli("prepare", str(media), "-w", "transcribe", "-s", "en", check=False).result)
    assert "too long for its outputs" in line and "250 bytes" in line
    assert _tree(tmp_path) == before


def test_a_disk_that_fills_during_a_stage_leaves_it_running_and_status_says_so(pipeline_cli, clips, tmpfs):
    """The disk fills while the ASR stage runs: its outputs and then its own record cannot be written. One line;
    the manifest keeps `running` (the last state it could write); `status` shows the runner is gone."""
    root = tmpfs("3m")
    out = root / "out"
    prepared = pipeline_cli(
        "prepare", clips["jfk"]["path"], "-w", "transcribe", "-s", "en", "--model", FAST, "--out", str(out)
    )
    folder = next(out.glob(f"*/*/*/*/{prepared.job_id}"))
    process = _spawn_run(prepared, PIPELINE_OUT=str(out))
    _wait_for_state(folder, "transcribe", "running", process)
    filler = root / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as handle:
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1 and "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("pipeline: error:")]
    assert len(errors) == 1 and stderr.rstrip().endswith(errors[0]), stderr  # after the progress lines
    line = errors[0]
    assert "No space left on device" in line and "free some disk space, then resume with" in line
    assert _manifest(folder)["stages"]["transcribe"]["state"] == "running"
    status = pipeline_cli("status", prepared.job_id, "--out", str(out), check=False)
    assert status.result.returncode == 1 and "interrupted (runner gone)" in status.result.stdout
    filler.unlink()
    pipeline_cli("run", prepared.job_id, "--out", str(out))
    assert all(s["state"] == "done" for s in _manifest(folder)["stages"].values())
