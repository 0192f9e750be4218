"""A worker started ahead of its audio (WarmStart): the real worker, real processes, real signals."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.asr import AsrRequest
from pipeline.asr.attempts import AsrOutcome
from pipeline.asr.isolation import WarmStart, run_isolated

from .harness import JFK, TIMEOUT, alive, faulty_argv, group_members

MakeRequest = Callable[..., AsrRequest]


def _loaded(pidfile: Path) -> dict[str, Any]:
    """The worker's pids, once its `after_load` hook ran (action "report"): its model is loaded."""
    deadline = time.monotonic() + TIMEOUT
    while not (pidfile.exists() and pidfile.read_text()):
        assert time.monotonic() < deadline, "the warm worker never loaded"
        time.sleep(0.05)
    return json.loads(pidfile.read_text())


def test_a_warm_worker_loads_before_its_audio_exists_then_transcribes_it(
    request_for: MakeRequest, jfk_reference: AsrOutcome, tmp_path: Path
) -> None:
    audio = tmp_path / "audio.wav"  # what the extract stage will write
    request = request_for(audio=str(audio))
    argv = faulty_argv(point="after_load", action="report", pidfile=str(tmp_path / "pids.json"))
    with WarmStart(request, tmp_path / "work", worker_argv=argv) as warm:
        _loaded(tmp_path / "pids.json")
        assert not audio.exists()
        shutil.copy(JFK, audio)
        outcome = run_isolated([request], tmp_path / "work", timeout=TIMEOUT, worker_argv=argv, warm=warm)
    attempt = outcome.used
    assert (attempt.outcome, attempt.exit_code, len(outcome.attempts)) == ("ok", 0, 1)
    assert outcome.transcript == jfk_reference.transcript
    # Loaded before its audio was there: the pipeline did not wait for the model.
    assert attempt.load_s and attempt.load_s < attempt.ahead_s < attempt.wall_s
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["asr.log", "attempt-1"]


def test_a_warm_worker_nobody_takes_is_killed_and_writes_nothing(request_for: MakeRequest, tmp_path: Path) -> None:
    """The extract failed or the user pressed Ctrl-C: leaving the block kills the loaded, waiting worker."""
    argv = faulty_argv(point="after_load", action="report", pidfile=str(tmp_path / "pids.json"), orphan=True)
    with WarmStart(request_for(audio=str(tmp_path / "never.wav")), tmp_path / "work", worker_argv=argv):
        pids = _loaded(tmp_path / "pids.json")
        assert alive(pids["pid"])
    assert not alive(pids["pid"]) and not alive(pids["child"]) and group_members(pids["pgid"]) == []
    assert sorted(p.name for p in (tmp_path / "work/attempt-1").iterdir()) == ["request.json"]
    assert (tmp_path / "work/asr.log").read_text().splitlines()[-1].endswith("faster-whisper not used")


def test_a_warm_worker_for_another_request_is_replaced(request_for: MakeRequest, tmp_path: Path) -> None:
    argv = faulty_argv(point="after_load", action="report", pidfile=str(tmp_path / "pids.json"))
    warm = WarmStart(request_for(audio=str(JFK), threads=1), tmp_path / "work", worker_argv=argv)
    pids = _loaded(tmp_path / "pids.json")
    outcome = run_isolated(
        [request_for(audio=str(JFK))], tmp_path / "work", timeout=TIMEOUT, worker_argv=argv, warm=warm
    )
    assert not alive(pids["pid"])
    assert outcome.used.outcome == "ok" and len(outcome.attempts) == 1 and outcome.used.ahead_s == 0
    assert "not used: the stage asked for another first attempt" in (tmp_path / "work/asr.log").read_text()


def test_a_warm_worker_that_crashes_while_waiting_falls_back(request_for: MakeRequest, tmp_path: Path) -> None:
    argv = faulty_argv(point="after_load", action="segv", once=str(tmp_path / "fired"))
    chain = [request_for(audio=str(JFK)), request_for(audio=str(JFK), threads=1)]
    with WarmStart(chain[0], tmp_path / "work", worker_argv=argv) as warm:
        deadline = time.monotonic() + TIMEOUT
        while not (tmp_path / "fired").exists():  # it crashes on its own, before anyone says go
            assert time.monotonic() < deadline
            time.sleep(0.05)
        outcome = run_isolated(chain, tmp_path / "work", timeout=TIMEOUT, worker_argv=argv, warm=warm)
    first, second = outcome.attempts
    assert (first.outcome, first.signal, first.stage) == ("crashed", "SIGSEGV", "transcribe")
    assert "Fatal Python error: Segmentation fault" in (first.error or "")
    assert second.outcome == "ok" and outcome.record.fallbacks == 1
