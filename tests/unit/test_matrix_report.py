"""`pipeline matrix report`: results files from several profiles and workers -> one table and one page."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from pipeline.matrix import cli
from pipeline.matrix.report import aggregate, write_report
from pipeline.matrix.results import CaseResult, RunResults


def _run(profile: str, worker: str, cases: list[CaseResult]) -> RunResults:
    return RunResults(
        profile=profile,
        model="base",
        run_id="20261124T100000Z-abcdef",
        worker=worker,
        started="2026-11-24T10:00:00Z",
        host={"hostname": "ci", "system": "Linux", "machine": "x86_64", "cpus": 2},
        versions={"whisperx": "3.8.6", "ctranslate2": "4.6.0"},
        cases=cases,
    )


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    # cpu, split over two xdist workers; one case fell back to faster-whisper after a crash.
    _run(
        "cpu",
        "gw0",
        [
            CaseResult("transcribe", "jfk", wer=0.0, rtf=0.10, peak_rss_mb=340, backend="whisperx"),
            CaseResult(
                "transcribe",
                "librivox",
                outcome="failed",
                wer=0.30,
                rtf=0.14,
                peak_rss_mb=360,
                backend="whisperx",
                message="AssertionError: WER 0.30 > 0.20",
            ),
        ],
    ).write(folder / "results-cpu")
    _run(
        "cpu",
        "gw1",
        [
            CaseResult(
                "transcribe",
                "spanish",
                wer=0.1,
                rtf=0.30,
                peak_rss_mb=500,
                backend="faster-whisper",
                fallbacks=["whisperx"],
                crashes=[{"backend": "whisperx", "signal": 11}],
                salvaged=1,
            ),
            CaseResult("translate", "jfk-es", recall=0.8, rtf=0.12, peak_rss_mb=420, backend="whisperx"),
            CaseResult("subtitle", "hindi", outcome="skipped", backend="whisperx"),
            CaseResult("subtitle", "english", coverage=0.95, rtf=0.11, peak_rss_mb=410, backend="whisperx"),
            CaseResult(
                "subtitle",
                "cue-timing-real",
                cue_start_median_s=0.05,
                cue_start_max_s=0.4,
                cue_end_median_s=0.1,
                backend="whisperx",
            ),
            CaseResult(
                "subtitle",
                "cue-timing-synthetic",
                outcome="failed",
                cue_start_median_s=0.15,
                cue_start_max_s=1.2,
                cue_end_median_s=0.2,
                backend="whisperx",
            ),
            CaseResult(
                "speakers",
                "sample",
                backend="sherpa-onnx",
                extra={"der": 0.04, "speakers_expected": 2, "speakers_found": 2},
            ),
            CaseResult(
                "speakers",
                "three-people",
                outcome="failed",
                backend="sherpa-onnx",
                extra={"der": 0.02, "speakers_expected": 3, "speakers_found": 2},
            ),
        ],
    ).write(folder / "results-cpu")
    _run(
        "mps",
        "main",
        [
            CaseResult("transcribe", "jfk", wer=0.05, rtf=2.5, peak_rss_mb=900, backend="mlx"),
            CaseResult("transcribe", "librivox", outcome="error", message="OSError: no ffmpeg"),
        ],
    ).write(folder / "results-mps")
    return folder


def _row(markdown: str, *cells: str) -> list[str]:
    prefix = "| " + " | ".join(cells) + " |"
    [line] = [line for line in markdown.split("## Runs")[0].splitlines() if line.startswith(prefix)]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_table_per_profile_backend_suite(results: Path, tmp_path: Path) -> None:
    markdown, written = write_report([results], tmp_path / "report")
    assert written == [tmp_path / "report" / "report.md", tmp_path / "report" / "report.html"]
    assert (tmp_path / "report" / "report.md").read_text() == markdown
    assert "3 results file(s), 12 cases, 7 passed." in markdown
    # profile, backend, suite, cases, pass rate, WER, recall, coverage, cue start, cue end, DER, speaker counts
    # right, RTF, peak MB,
    # crashes, salvaged, fallbacks, error rate
    assert _row(markdown, "cpu", "whisperx", "transcribe") == [
        "cpu",
        "whisperx",
        "transcribe",
        "2",
        "50%",
        "0.150",
        "–",
        "–",
        "–",
        "–",
        "–",
        "–",
        "0.120",
        "360",
        "0",
        "0",
        "0",
        "0%",
    ]
    assert _row(markdown, "cpu", "faster-whisper", "transcribe") == [
        "cpu",
        "faster-whisper",
        "transcribe",
        "1",
        "100%",
        "0.100",
        "–",
        "–",
        "–",
        "–",
        "–",
        "–",
        "0.300",
        "500",
        "1",
        "1",
        "1",
        "100%",
    ]
    # the skipped case counts as a case but not in the rates
    assert _row(markdown, "cpu", "whisperx", "subtitle")[3:6] == ["4", "67%", "–"]
    assert _row(markdown, "cpu", "whisperx", "subtitle")[7] == "0.95"
    # cue timing: the mean of the cases' medians, and the worst start of any case
    assert _row(markdown, "cpu", "whisperx", "subtitle")[8:10] == ["0.10 (max 1.20)", "0.15"]
    # diarization: the mean DER, and the cases whose speaker count was right
    assert _row(markdown, "cpu", "sherpa-onnx", "speakers")[10:12] == ["0.030", "1/2"]
    assert _row(markdown, "mps", "unknown", "transcribe")[3:5] == ["1", "0%"]
    assert _row(markdown, "mps", "unknown", "transcribe")[-1] == "100%"
    assert "| cpu | whisperx | transcribe | librivox | failed | AssertionError: WER 0.30 > 0.20 |" in markdown
    assert "| mps | unknown | transcribe | librivox | error | OSError: no ffmpeg |" in markdown


def test_html_is_self_contained_with_plots(results: Path, tmp_path: Path) -> None:
    write_report([results], tmp_path / "report")
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<td>faster-whisper</td>" in page and "OSError: no ffmpeg" in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing fetched from elsewhere
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert [alt for alt, _ in images] == [
        "Processing time and memory by profile / backend",
        "Success and error rates by profile / backend",
        "Quality by suite and profile / backend",
    ]
    for _, data in images:
        png = base64.b64decode(data)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_aggregate_keys_rows_by_backend_actually_used(results: Path) -> None:
    from pipeline.matrix.results import collect

    rows = aggregate(run for _, run in collect([results]))
    assert [(r.profile, r.backend, r.suite) for r in rows] == [
        ("cpu", "faster-whisper", "transcribe"),
        ("cpu", "sherpa-onnx", "speakers"),
        ("cpu", "whisperx", "subtitle"),
        ("cpu", "whisperx", "transcribe"),
        ("cpu", "whisperx", "translate"),
        ("mps", "mlx", "transcribe"),
        ("mps", "unknown", "transcribe"),
    ]


def test_cli_report(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(results), "-o", str(tmp_path / "out")]) == 0
    assert "| cpu | whisperx | translate | 1 | 100% |" in capsys.readouterr().out
    assert (tmp_path / "out" / "report.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["report", str(empty)]) == 2
    assert f"no results files (pipeline.matrix.results/1) in {empty}" in capsys.readouterr().err
