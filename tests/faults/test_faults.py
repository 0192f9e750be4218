"""Real faults in the real ASR worker (faster-whisper, tiny.en, real speech): what survives, what not."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jiwer
import pytest

from pipeline import audio
from pipeline.asr import AsrRequest
from pipeline.asr.attempts import AsrFailed, AsrOutcome, AsrRecord
from pipeline.asr.isolation import run_isolated
from pipeline.errors import StageFailed

from .harness import JFK, ROOT, TIMEOUT, alive, faulty_argv, group_members

MakeRequest = Callable[..., AsrRequest]
HANG_TIMEOUT = 10.0  # must exceed interpreter start + model load on a busy machine


def test_clean_run_is_ok_and_shifts_chunk_times(reference: AsrOutcome) -> None:
    attempt = reference.used
    assert (attempt.outcome, attempt.exit_code, attempt.signal, attempt.error) == ("ok", 0, None, None)
    record = reference.record
    assert (record.crashes, record.fallbacks, record.salvaged, record.chain) == (0, 0, False, ("faster-whisper",))
    assert attempt.peak_rss_mb and attempt.peak_rss_mb > 50
    assert attempt.load_s and 0 < attempt.load_s < attempt.wall_s
    assert record.worker["versions"]["faster-whisper"] and record.worker["versions"]["ctranslate2"]
    text = reference.transcript.text.lower()
    assert text.count("ask not what your country can do for you") == 3
    # Two 20 s-ish chunks: segments of the second carry its offset, so times run on to the end of the audio.
    starts = [s.start for s in reference.transcript.segments]
    assert starts == sorted(starts) and reference.transcript.segments[-1].end > 30


def test_progress_reaches_the_end(request_for: MakeRequest, tmp_path: Path) -> None:
    seen: list[tuple[float, float]] = []
    outcome = run_isolated(
        [request_for()], tmp_path, timeout=TIMEOUT, on_progress=lambda done, total: seen.append((done, total))
    )
    assert outcome.used.outcome == "ok"
    done = [d for d, _ in seen]
    assert done == sorted(done) and {total for _, total in seen} == {audio.duration(request_for().audio)}
    assert done[-1] == seen[-1][1] and len(done) > 3  # per segment, not just per chunk


def test_segv_after_the_result_is_salvaged(request_for: MakeRequest, reference: AsrOutcome, tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    argv = faulty_argv(point="after_marker", action="segv")
    outcome = run_isolated([request_for()], tmp_path, timeout=TIMEOUT, log_path=log, worker_argv=argv)
    attempt = outcome.used
    assert (attempt.outcome, attempt.signal, attempt.exit_code, attempt.stage) == (
        "salvaged",
        "SIGSEGV",
        -signal.SIGSEGV,
        "teardown",
    )
    record = outcome.record
    assert attempt.crashed and record.salvaged and record.crashes == 1 and record.fallbacks == 0
    assert "Fatal Python error: Segmentation fault at __init__.py" in attempt.error  # ctypes.string_at(0)
    assert "string_at" in attempt.error
    assert outcome.transcript == reference.transcript
    text = log.read_text()
    assert "Fatal Python error: Segmentation fault" in text and "faster-whisper salvaged SIGSEGV" in text


@pytest.mark.parametrize("action, sig", [("segv", "SIGSEGV"), ("kill", "SIGKILL")])
def test_crash_midway_falls_back(
    request_for: MakeRequest, reference: AsrOutcome, tmp_path: Path, action: str, sig: str
) -> None:
    argv = faulty_argv(point="after_chunk", index=0, action=action, once=str(tmp_path / "fired"))
    chain = [request_for(), request_for(threads=1)]
    outcome = run_isolated(chain, tmp_path / "work", timeout=TIMEOUT, worker_argv=argv)
    first, second = outcome.attempts
    assert (first.outcome, first.signal, first.stage) == ("crashed", sig, "transcribe")
    # Died after taking in its first chunk, with the rest of the file to go.
    assert first.progress_s < audio.duration(chain[0].audio)
    assert second.outcome == "ok" and outcome.used is second
    assert (outcome.record.crashes, outcome.record.fallbacks, outcome.record.salvaged) == (1, 1, False)
    assert outcome.transcript.text == reference.transcript.text


@pytest.mark.slow
def test_segv_midway_falls_back_to_whisperx(request_for: MakeRequest, reference: AsrOutcome, tmp_path: Path) -> None:
    """The profile's kind of chain: one backend crashes, a different library finishes the job."""
    argv = faulty_argv(point="after_chunk", index=0, action="segv", once=str(tmp_path / "fired"))
    chain = [request_for(), request_for("whisperx", threads=2)]
    outcome = run_isolated(chain, tmp_path / "work", timeout=300, worker_argv=argv)
    assert [(a.backend, a.outcome, a.signal) for a in outcome.attempts] == [
        ("faster-whisper", "crashed", "SIGSEGV"),
        ("whisperx", "ok", None),
    ]
    assert outcome.transcript.backend == "whisperx"
    assert jiwer.wer(reference.transcript.text.lower(), outcome.transcript.text.lower()) < 0.2


def test_hang_times_out_and_leaves_no_process(request_for: MakeRequest, tmp_path: Path) -> None:
    """A worker that ignores SIGTERM and has started a child: SIGKILL for its whole group, then fallback."""
    pidfile = tmp_path / "pids.json"
    argv = faulty_argv(
        point="after_load",
        action="hang",
        ignore_term=True,
        orphan=True,
        pidfile=str(pidfile),
        once=str(tmp_path / "fired"),
    )
    outcome = run_isolated([request_for(), request_for()], tmp_path / "work", timeout=HANG_TIMEOUT, worker_argv=argv)
    first = outcome.attempts[0]
    assert (first.outcome, first.timed_out, first.signal) == ("timeout", True, "SIGKILL")
    assert first.stage == "transcribe"
    assert not first.crashed and outcome.record.crashes == 0 and outcome.record.fallbacks == 1
    assert first.error.startswith(f"no progress for {HANG_TIMEOUT:g} s during transcribe")
    assert outcome.used.outcome == "ok"
    pids = json.loads(pidfile.read_text())
    assert not alive(pids["pid"]) and not alive(pids["child"]), "the worker or its child outlived the timeout"
    assert group_members(pids["pgid"]) == []
    # Killed one timeout after its last event (loaded), plus the SIGTERM grace it ignored.
    assert HANG_TIMEOUT <= first.wall_s - first.load_s < HANG_TIMEOUT + 5 + 3


def test_hang_reports_where_it_hung(request_for: MakeRequest, tmp_path: Path) -> None:
    """SIGTERM first: faulthandler dumps the stack, so the manifest says where the worker was stuck."""
    argv = faulty_argv(point="after_chunk", index=0, action="hang")
    with pytest.raises(AsrFailed) as failed:
        run_isolated([request_for()], tmp_path, timeout=HANG_TIMEOUT, worker_argv=argv)
    (attempt,) = failed.value.attempts
    assert (attempt.outcome, attempt.signal) == ("timeout", "SIGTERM")
    assert "hung at faulty_worker.py:" in attempt.error and "_fault" in attempt.error


@pytest.mark.parametrize(
    "point, action, outcome",
    [
        ("before_result_write", "half", "crashed"),  # half the bytes, no marker
        ("before_result_write", "forge", "crashed"),  # a complete, different result, no marker
        ("after_result_before_marker", "segv", "crashed"),  # the whole result, but never pinned
        ("after_marker", "tamper", "corrupt"),  # replaced after its marker: sha256 differs
        ("after_marker", "bad_marker", "corrupt"),  # marker pins other bytes
    ],
)
def test_unpinned_or_corrupt_results_are_never_used(
    request_for: MakeRequest,
    jfk_reference: AsrOutcome,
    tmp_path: Path,
    point: str,
    action: str,
    outcome: str,
) -> None:
    argv = faulty_argv(point=point, action=action, once=str(tmp_path / "fired"))
    chain = [request_for(audio=str(JFK)), request_for(audio=str(JFK))]
    result = run_isolated(chain, tmp_path / "work", timeout=TIMEOUT, worker_argv=argv)
    first, second = result.attempts
    assert first.outcome == outcome and second.outcome == "ok"
    assert "CORRUPTED" not in result.transcript.text
    assert result.transcript == jfk_reference.transcript
    # The refused file really was there: whole, half, or saying something else.
    leftover = (tmp_path / "work/attempt-1/result.json").read_bytes()
    if action in ("forge", "tamper"):
        assert b"CORRUPTED" in leftover
    if action == "half":
        with pytest.raises(ValueError):
            json.loads(leftover)


def test_a_backend_error_is_failed_and_falls_back(request_for: MakeRequest, tmp_path: Path) -> None:
    """No injected fault: a model folder that holds no model. The worker's own words become the reason."""
    empty = tmp_path / "no-model"
    empty.mkdir()
    chain = [request_for(model_dir=str(empty)), request_for()]
    outcome = run_isolated(chain, tmp_path / "work", timeout=TIMEOUT)
    first = outcome.attempts[0]
    assert (first.outcome, first.exit_code, first.signal, first.stage) == ("failed", 1, None, "load")
    assert first.error.startswith("exited 1: ") and "\n" not in first.error
    assert not first.crashed and outcome.used.outcome == "ok"


def test_chain_exhausted_is_one_line_stage_failure(request_for: MakeRequest, tmp_path: Path) -> None:
    argv = faulty_argv(point="after_chunk", index=0, action="segv")
    log = tmp_path / "job.log"
    with pytest.raises(StageFailed) as failed:
        run_isolated([request_for(), request_for(threads=1)], tmp_path, timeout=TIMEOUT, log_path=log, worker_argv=argv)
    message = str(failed.value)
    assert "\n" not in message and message.startswith("ASR failed with every backend in the chain: ")
    assert message.count("faster-whisper (cpu/int8): crashed SIGSEGV") == 2 and str(log) in message
    assert isinstance(failed.value, AsrFailed) and len(failed.value.attempts) == 2
    assert failed.value.exit_code == 1


def test_stale_result_from_an_earlier_run_is_never_used(request_for: MakeRequest, tmp_path: Path) -> None:
    """A valid result + marker left by a previous run must not pass for this run's, which crashes early."""
    run_isolated([request_for(audio=str(JFK))], tmp_path, timeout=TIMEOUT)
    assert (tmp_path / "attempt-1/result.json.ok").exists()
    argv = faulty_argv(point="after_load", action="kill")
    with pytest.raises(AsrFailed) as failed:
        run_isolated([request_for(audio=str(JFK))], tmp_path, timeout=TIMEOUT, worker_argv=argv)
    assert failed.value.attempts[0].outcome == "crashed"


# SIGINT at its default, as a shell leaves it for a foreground command (the only kind a Ctrl-C reaches): a
# suite started as a background job (`make test &` from a script) inherits it ignored, and Python then installs
# no KeyboardInterrupt, so our SIGINT would do nothing at all.
_CTRL_C_PARENT = """
import json, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
from pipeline import audio
from pipeline.asr import AsrRequest
from pipeline.asr.isolation import run_isolated
request, workdir, argv = json.loads(sys.argv[1])
run_isolated([AsrRequest(**request)], Path(workdir), timeout=600, worker_argv=argv)
"""


def test_ctrl_c_stops_the_worker_group_and_reraises(request_for: MakeRequest, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids.json"
    argv = faulty_argv(point="after_load", action="hang", orphan=True, pidfile=str(pidfile))
    parent = subprocess.Popen(
        [sys.executable, "-c", _CTRL_C_PARENT, json.dumps([asdict(request_for()), str(tmp_path / "w"), argv])],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids = _pids_once_loaded(pidfile, parent)
    try:
        parent.send_signal(signal.SIGINT)  # what Ctrl-C sends; the worker, in its own session, gets nothing
        _, stderr = parent.communicate(timeout=60)  # generous under load: it takes a fraction of a second
    finally:
        parent.kill()
        for pid in group_members(pids["pgid"]):
            os.kill(pid, signal.SIGKILL)
    # An uncaught KeyboardInterrupt ends Python by SIGINT (so that shells see a Ctrl-C), after the traceback.
    assert parent.returncode == -signal.SIGINT and stderr.rstrip().endswith("KeyboardInterrupt")
    assert not alive(pids["pid"]) and not alive(pids["child"]) and group_members(pids["pgid"]) == []


@pytest.mark.parametrize("warm", [False, True])
def test_kill_9_of_the_parent_kills_the_worker_group(request_for: MakeRequest, tmp_path: Path, warm: bool) -> None:
    """The pipeline is killed with SIGKILL (or dies of SIGHUP) while its worker hangs, writing nothing that could
    fail: the worker and its child die with the parent, at once, not at their next write (or never)."""
    pidfile = tmp_path / "pids.json"
    argv = faulty_argv(point="after_load", action="hang", orphan=True, pidfile=str(pidfile))
    code = _KILL_9_PARENT_WARM if warm else _CTRL_C_PARENT
    parent = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps([asdict(request_for()), str(tmp_path / "w"), argv])],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    pids = _pids_once_loaded(pidfile, parent)
    try:
        parent.kill()
        assert parent.wait(timeout=60) == -signal.SIGKILL
        deadline = time.monotonic() + 60  # generous under load: the worker's watch acts within milliseconds
        while alive(pids["pid"]) or alive(pids["child"]) or group_members(pids["pgid"]):
            assert time.monotonic() < deadline, "the worker's group outlived its parent"
            time.sleep(0.05)
    finally:
        for pid in group_members(pids["pgid"]):
            os.kill(pid, signal.SIGKILL)


# A warm worker that was told "go" and then hangs: the parent still holds its stdin, then dies.
_KILL_9_PARENT_WARM = """
import json, sys
from pathlib import Path
from pipeline.asr import AsrRequest
from pipeline.asr.isolation import WarmStart, run_isolated
request, workdir, argv = json.loads(sys.argv[1])
with WarmStart(AsrRequest(**request), Path(workdir), worker_argv=argv) as warm:
    run_isolated([AsrRequest(**request)], Path(workdir), timeout=600, worker_argv=argv, warm=warm)
"""


def _pids_once_loaded(pidfile: Path, parent: subprocess.Popen[Any]) -> dict[str, int]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads(pidfile.read_text()))
        assert time.monotonic() < deadline and parent.poll() is None, "the parent never started the worker"
        time.sleep(0.1)


def test_an_exhausted_chain_is_recorded_in_the_manifest_in_the_shape_of_a_success(tmp_path: Path) -> None:
    """A real job through the CLI whose model folder holds no loadable model: every backend of the profile's chain
    fails to load it, and the transcribe stage records its ASR record with the keys a successful one has."""
    model = tmp_path / "broken-model"
    model.mkdir()
    for part in (Path.home() / ".cache/pipeline/models/tiny.en").iterdir():
        (model / part.name).symlink_to(part)
    (model / "model.bin").unlink()
    (model / "model.bin").write_bytes(b"not a model")
    env = os.environ | {
        "PIPELINE_PROFILE": "cpu",
        "WHISPER_MODEL": str(model),
        "PIPELINE_OUT": str(tmp_path / "out"),
        "HF_HUB_OFFLINE": "1",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pipeline", *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)

    job = cli("prepare", str(JFK), "--workflow", "transcribe", "-s", "en").stdout.strip()
    run = cli("run", job)
    assert run.returncode == 1 and "stage transcribe failed: ASR failed with every backend" in run.stderr
    (manifest_path,) = (tmp_path / "out").rglob("manifest.json")
    stage = json.loads(manifest_path.read_text(encoding="utf-8"))["stages"]["transcribe"]
    assert stage["state"] == "failed" and stage["error"].startswith("ASR failed with every backend in the chain")
    assert AsrRecord((), ()).to_manifest().keys() <= stage.keys()  # one record, whatever became of the chain
    assert stage["chain"] == ["faster-whisper", "whisperx"]
    assert [(a["backend"], a["outcome"], a["stage"]) for a in stage["attempts"]] == [
        ("faster-whisper", "failed", "load"),
        ("whisperx", "failed", "load"),
    ]
    assert (stage["backend"], stage["model"], stage["crashes"], stage["fallbacks"]) == (None, None, 0, 1)
    assert "ASR failed with every backend" in cli("status", job).stdout  # the status display reads the record
