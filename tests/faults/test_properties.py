"""Property over crash points x ways to die: a completed result is never lost, an unpinned one never used.

The worker is the real one with the test-only fake backend (no model): what is tested is what the parent makes of
a worker that dies at any point, whatever its backend; tests/faults/test_faults.py crashes real backends."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.asr import AsrRequest
from pipeline.asr.attempts import AsrFailed, AsrOutcome
from pipeline.asr.isolation import run_isolated

from .harness import JFK, TIMEOUT, alive, faulty_argv, group_members

DEATHS = ("segv", "abort", "kill", "exit", "raise")  # how a worker can end, with no damage to files
DAMAGE = {  # what a dying worker can leave behind, by the point where it can leave it
    "before_result_write": ("half", "forge"),
    "after_marker": ("tamper", "bad_marker"),
}
POINTS = ("after_load", "after_chunk", "before_result_write", "after_result_before_marker", "after_marker")


@st.composite
def faults(draw: st.DrawFn) -> tuple[str, str]:
    point = draw(st.sampled_from(POINTS))
    return point, draw(st.sampled_from(DEATHS + DAMAGE.get(point, ())))


@settings(max_examples=24, deadline=None)
@given(fault=faults())
def test_completed_result_is_never_lost_and_unpinned_output_never_used(
    fake_request_for: Callable[..., AsrRequest], fake_jfk_reference: AsrOutcome, fault: tuple[str, str]
) -> None:
    point, action = fault
    with tempfile.TemporaryDirectory() as tmp:
        pidfile = Path(tmp) / "pids.json"
        argv = faulty_argv(point=point, action=action, pidfile=str(pidfile))
        try:
            outcome = run_isolated([fake_request_for(audio=str(JFK))], Path(tmp), timeout=TIMEOUT, worker_argv=argv)
        except AsrFailed as failed:
            outcome, attempt = None, failed.attempts[0]
        else:
            attempt = outcome.used

        pids = json.loads(pidfile.read_text())  # the fault really fired
        assert not alive(pids["pid"]) and group_members(pids["pgid"]) == []

        completed = point == "after_marker" and action in DEATHS
        if completed:  # the marker was on disk before the worker died: the result must survive, exactly
            assert outcome is not None and attempt.outcome == "salvaged"
            assert outcome.transcript == fake_jfk_reference.transcript
            assert attempt.exit_code != 0 and attempt.stage == "teardown"
        else:  # nothing pinned by a matching marker may be used, however complete it looks
            assert outcome is None, f"{point}/{action} produced {attempt.outcome}"
            expected = "corrupt" if action in DAMAGE["after_marker"] else "crashed" if attempt.signal else "failed"
            assert attempt.outcome == expected and not attempt.produced
        assert attempt.error is None or "\n" not in attempt.error


def test_the_fake_backend_exists_only_in_the_test_worker(
    fake_request_for: Callable[..., AsrRequest], tmp_path: Path
) -> None:
    """The production worker has no fake: a request naming it fails there, as any unknown backend does."""
    with pytest.raises(AsrFailed) as failed:
        run_isolated([fake_request_for(audio=str(JFK))], tmp_path, timeout=TIMEOUT)
    [attempt] = failed.value.attempts
    assert attempt.outcome == "failed" and "KeyError: 'fake'" in (attempt.error or ""), attempt
