"""pytest plugin that turns E2E tests into matrix results files.

A test asks for the `record_result` fixture and calls it once per case it judged:

    record_result(suite="transcribe", case="jfk", wer=wer, audio_seconds=duration, wall_s=wall, rtf=wall / duration,
                  peak_rss_mb=peak, backend=asr["backend"], fallbacks=[], crashes=[], salvaged=0, extra={})

The verdict (passed / failed / error / skipped) is filled in from the test's outcome, so a case that misses
its quality gate is recorded with its numbers and marked failed; a test that asked for the fixture but died
before recording still appears, as one case named after the test. At the end of the session each process (each
xdist worker) writes `$PIPELINE_RESULTS_DIR/<profile>-<run id>-<worker>.json` (default ./results). The run id
is shared by the workers of one run. Load it from the top-level conftest:

    pytest_plugins = ["pipeline.matrix.pytest_results"]

"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from pipeline.matrix.results import CaseResult, RunResults, host_info, new_run_id, now, versions

_MEASUREMENTS = frozenset(CaseResult.__dataclass_fields__) - {
    "suite",
    "case",
    "outcome",
    "nodeid",
    "duration_s",
    "message",
}
_CASES = pytest.StashKey[list[CaseResult]]()  # on the item: what the test recorded
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()  # on the item: setup/call/teardown reports
_RUN = pytest.StashKey[RunResults]()  # on the config: this process's run


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)  # set by xdist on a worker
    config.stash[_RUN] = RunResults(
        profile="",
        model="",
        run_id=workerinput["pipeline_run_id"] if workerinput else new_run_id(),
        worker=workerinput["workerid"] if workerinput else "main",
        started=now(),
    )


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: give every worker this run's id, so their files are one run."""
    node.workerinput["pipeline_run_id"] = node.config.stash[_RUN].run_id


@pytest.fixture
def record_result(request: pytest.FixtureRequest) -> Callable[..., None]:
    cases = request.node.stash.setdefault(_CASES, [])

    def record(*, suite: str, case: str, **measurements: Any) -> None:
        unknown = set(measurements) - _MEASUREMENTS
        if unknown:
            raise TypeError(
                f"record_result: unknown field(s) {sorted(unknown)}; known: {sorted(_MEASUREMENTS)}"
            )
        try:  # fail in the test that passed it, not at session end where every other result would be lost
            json.dumps(measurements)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"record_result: values must be JSON-serialisable: {exc}") from None
        cases.append(CaseResult(suite=suite, case=case, nodeid=request.node.nodeid, **measurements))

    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if "record_result" in getattr(item, "fixturenames", ()):
        reports = item.stash.setdefault(_REPORTS, {})
        reports[report.when] = report
        if report.when == "teardown":
            item.config.stash[_RUN].cases.extend(_finish(item, reports))
    return report


def _finish(item: pytest.Item, reports: dict[str, pytest.TestReport]) -> list[CaseResult]:
    outcome, failed = _verdict(reports)
    cases = item.stash.get(_CASES, [])
    if not cases:
        stem = Path(str(item.path)).stem
        cases = [CaseResult(suite=stem.removeprefix("test_"), case=item.name, nodeid=item.nodeid)]
    duration = round(sum(r.duration for r in reports.values()), 3)
    message = _first_line(failed) if failed is not None else ""
    for case in cases:
        case.outcome, case.duration_s, case.message = outcome, duration, message
    return cases


def _verdict(reports: dict[str, pytest.TestReport]) -> tuple[str, pytest.TestReport | None]:
    setup, call, teardown = reports.get("setup"), reports.get("call"), reports.get("teardown")
    if setup is not None and setup.failed:
        return "error", setup
    if setup is not None and setup.skipped:
        return "skipped", setup
    if call is not None and call.failed:
        return "failed", call
    if call is not None and call.skipped:
        return "skipped", call
    if teardown is not None and teardown.failed:
        return "error", teardown
    return "passed", None


def _first_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0][:500] if lines else ""


def _results_dir(config: pytest.Config) -> Path:
    return config.invocation_params.dir / os.environ.get("PIPELINE_RESULTS_DIR", "results")


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(_RUN, None)
    if run is None or not run.cases:
        return
    from pipeline.profiles import load_matrix

    matrix = load_matrix()
    run.profile = os.environ.get("PIPELINE_PROFILE") or matrix.defaults["profile"]
    run.model = os.environ.get("PIPELINE_TEST_MODEL") or matrix.defaults["test_model"]
    run.finished, run.host, run.versions = now(), host_info(), versions()
    run.write(_results_dir(session.config))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Name this run's files; under xdist the controller names those its workers wrote."""
    if (run := config.stash.get(_RUN, None)) is None or getattr(config, "workerinput", None):
        return
    for path in sorted(_results_dir(config).glob(f"*-{run.run_id}-*.json")):
        terminalreporter.write_line(f"matrix results: {path}")
