"""The results plugin, run inside real pytest sessions (pytester), with and without xdist."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.matrix.results import SCHEMA, CaseResult, RunResults, collect, load

pytest_plugins = ["pytester"]

SUITE = textwrap.dedent(
    """
    import pytest

    def test_jfk(record_result):
        record_result(suite="transcribe", case="jfk", wer=0.0, audio_seconds=11.0, wall_s=4.2, rtf=0.12,
                      peak_rss_mb=350.5, backend="whisperx", fallbacks=[], crashes=[], salvaged=0,
                      extra={"device": "cpu"})

    def test_gate_missed(record_result):
        record_result(suite="transcribe", case="librivox", wer=0.31, backend="faster-whisper",
                      fallbacks=["whisperx"], crashes=[{"backend": "whisperx", "signal": 11}], salvaged=2)
        assert 0.31 <= 0.20, "WER 0.31 above the gate 0.20"

    def test_died_before_recording(record_result):
        raise RuntimeError("pipeline exited 1")

    @pytest.fixture
    def broken():
        raise OSError("no ffmpeg")

    def test_setup_error(broken, record_result):
        pass

    def test_skipped(record_result):
        pytest.skip("no GPU here")

    def test_without_fixture():
        pass
    """
)


@pytest.fixture
def session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(test_transcribe=SUITE)
    monkeypatch.setenv("PIPELINE_PROFILE", "cpu")
    monkeypatch.setenv("PIPELINE_TEST_MODEL", "tiny.en")
    monkeypatch.setenv("PIPELINE_RESULTS_DIR", "out/results")
    return pytester


def _files(pytester: pytest.Pytester) -> list[Path]:
    return sorted((pytester.path / "out" / "results").glob("*.json"))


def test_one_file_with_every_verdict(session: pytest.Pytester) -> None:
    result = session.runpytest_subprocess("-p", "pipeline.matrix.pytest_results")
    result.assert_outcomes(passed=2, failed=2, errors=1, skipped=1)
    [path] = _files(session)
    result.stdout.fnmatch_lines([f"matrix results: {path}"])
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA and data["profile"] == "cpu" and data["model"] == "tiny.en"
    assert path.name == f"cpu-{data['run_id']}-main.json"
    assert data["host"]["cpus"] and data["versions"]["pipeline"]
    cases = {c["case"]: c for c in data["cases"]}
    assert set(cases) == {"jfk", "librivox", "test_died_before_recording", "test_setup_error", "test_skipped"}
    jfk = cases["jfk"]
    assert (jfk["outcome"], jfk["wer"], jfk["rtf"], jfk["peak_rss_mb"], jfk["backend"]) == (
        "passed",
        0.0,
        0.12,
        350.5,
        "whisperx",
    )
    assert jfk["extra"] == {"device": "cpu"} and jfk["nodeid"] == "test_transcribe.py::test_jfk"
    gate = cases["librivox"]
    assert gate["outcome"] == "failed" and gate["wer"] == 0.31  # the numbers survive the failure
    assert "WER 0.31 above the gate 0.20" in gate["message"]
    assert gate["fallbacks"] == ["whisperx"] and gate["crashes"][0]["signal"] == 11 and gate["salvaged"] == 2
    died = cases["test_died_before_recording"]
    assert (died["suite"], died["outcome"]) == ("transcribe", "failed")
    assert "pipeline exited 1" in died["message"]
    assert (
        cases["test_setup_error"]["outcome"] == "error"
        and "no ffmpeg" in cases["test_setup_error"]["message"]
    )
    assert cases["test_skipped"]["outcome"] == "skipped"
    assert all(c["duration_s"] is not None for c in data["cases"])


def test_xdist_workers_write_their_own_files_of_one_run(session: pytest.Pytester) -> None:
    result = session.runpytest_subprocess("-p", "pipeline.matrix.pytest_results", "-n", "2")
    result.assert_outcomes(passed=2, failed=2, errors=1, skipped=1)
    files = _files(session)
    runs = [json.loads(p.read_text()) for p in files]
    assert 1 <= len(files) <= 2
    assert {r["worker"] for r in runs} <= {"gw0", "gw1"}
    assert len({r["run_id"] for r in runs}) == 1  # the controller handed its run id to both workers
    assert sorted(c["case"] for r in runs for c in r["cases"]) == sorted(
        ["jfk", "librivox", "test_died_before_recording", "test_setup_error", "test_skipped"]
    )
    for path in files:
        result.stdout.fnmatch_lines([f"matrix results: {path}"])


def test_no_file_when_no_test_records(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_RESULTS_DIR", "out/results")
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    pytester.runpytest_subprocess("-p", "pipeline.matrix.pytest_results").assert_outcomes(passed=1)
    assert not (pytester.path / "out").exists()


def test_bad_values_fail_the_test_that_records_them(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_RESULTS_DIR", "out/results")
    pytester.makepyfile(
        test_bad=textwrap.dedent("""
        def test_unknown_field(record_result):
            record_result(suite="s", case="c", werr=0.1)

        def test_not_json(record_result):
            record_result(suite="s", case="c", extra={"path": object()})
    """)
    )
    result = pytester.runpytest_subprocess("-p", "pipeline.matrix.pytest_results")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*unknown field(s)*werr*", "*values must be JSON-serialisable*"])


def test_collect_reads_folders_recursively_and_skips_other_json(tmp_path: Path) -> None:
    run = RunResults(
        profile="cuda",
        model="base",
        run_id="20261124T000000Z-aaaaaa",
        worker="gw1",
        started="2026-11-24T00:00:00Z",
        cases=[CaseResult(suite="subtitle", case="hindi", coverage=0.9)],
    )
    written = run.write(tmp_path / "results-cuda")
    (tmp_path / "junit.json").write_text('{"not": "ours"}')
    [(path, loaded)] = collect([tmp_path])
    assert path == written and loaded == run
    assert load(tmp_path / "junit.json") is None


def test_collect_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="no results files"):
        collect([tmp_path])
    with pytest.raises(PipelineError, match="no such results file or folder"):
        collect([tmp_path / "missing"])
    (tmp_path / "cpu-x-main.json").write_text('{"schema": "' + SCHEMA + '", "cases": [')
    with pytest.raises(PipelineError, match=r"cannot read results file .*cpu-x-main.json"):
        collect([tmp_path])
