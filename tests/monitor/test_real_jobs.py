"""`pipeline jobs` and `pipeline report jobs` over real jobs: tiny.en on JFK through the CLI, one good, one
salvaged after a segfault, one saved by the fallback backend after an abort, one whose every backend crashed or
hung, one bad input, one whose CLI was killed (scenarios.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Jobs
from .scenarios import cli

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"


def _listing(root: Path, *args: str) -> list[dict]:
    done = cli("jobs", "--out", str(root), "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_jobs_lists_each_job_with_its_state_and_backend(real_jobs: Jobs) -> None:
    listed = {job["media"].removesuffix(".wav"): job for job in _listing(real_jobs.root)}
    assert {name: listed[name]["job_id"] for name in listed} == real_jobs.ids
    seen = {name: (j["state"], j["stage"], j["backend"]) for name, j in listed.items()}
    assert seen == {
        "good": ("done", None, "faster-whisper"),
        "salvaged": ("done", None, "faster-whisper"),
        "fallback": ("done", None, "whisperx"),
        "exhausted": ("failed", "transcribe", "whisperx"),
        "bad-input": ("failed", "extract", "faster-whisper"),
        "interrupted": ("interrupted", "transcribe", "faster-whisper"),
    }
    crashes = {name: [(a["backend"], a["outcome"], a["crash"]) for a in j["attempts"]] for name, j in listed.items()}
    assert crashes["salvaged"] == [("faster-whisper", "salvaged", "segfault")]
    assert crashes["fallback"] == [("faster-whisper", "crashed", "abort"), ("whisperx", "ok", None)]
    assert crashes["exhausted"] == [("faster-whisper", "crashed", "kill"), ("whisperx", "timeout", "hang")]
    assert listed["fallback"]["fallback"] and listed["salvaged"]["salvaged"]
    good = listed["good"]
    assert good["media_s"] == pytest.approx(11.0, abs=0.1) and good["workflow"] == "transcribe"
    assert good["rtf"] == pytest.approx(good["wall_s"] / good["media_s"], rel=1e-3)
    assert good["peak_rss_mb"] > 50 and good["profile"] == "cpu"


def test_jobs_filters_and_table(real_jobs: Jobs) -> None:
    root = real_jobs.root
    assert {j["media"] for j in _listing(root, "--state", "failed")} == {"exhausted.wav", "bad-input.wav"}
    assert {j["media"] for j in _listing(root, "--backend", "whisperx")} == {"fallback.wav", "exhausted.wav"}
    assert _listing(root, "--since", "2999-01-01") == []
    assert len(_listing(root, "--since", "2000-01-01")) == 6
    table = cli("jobs", "--out", str(root))
    assert table.returncode == 0 and table.stderr == ""
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["job", "created", "(UTC)"] and len(lines) == 7
    interrupted = next(line for line in lines if real_jobs.ids["interrupted"] in line)
    assert "interrupted (transcribe)" in interrupted
    bad = next(line for line in lines if real_jobs.ids["bad-input"] in line)
    assert "failed (extract)" in bad and "ffmpeg could not decode" in bad
    wrong = cli("jobs", "--out", str(root), "--since", "yesterday")
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert wrong.stderr.startswith("pipeline: error: --since 'yesterday' is not a date; allowed:")
    assert len(wrong.stderr.splitlines()) == 1


def test_report_jobs_over_real_jobs(real_jobs: Jobs, tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = cli("report", "jobs", str(real_jobs.root), "--out", str(out))
    assert done.returncode == 0, done.stderr
    markdown = (out / "jobs.md").read_text()
    assert done.stdout == markdown
    assert "6 job(s) under" in markdown and ": 3 done, 2 failed, 1 interrupted." in markdown
    rows = {
        tuple(cells[:2]): cells
        for line in markdown.split("## ASR")[0].splitlines()
        if (cells := [c.strip() for c in line.strip("|").split("|")])[0] == "cpu"
    }
    # jobs, done, failed, success rate, error rate, crashes, salvaged, fallbacks
    assert rows["cpu", "faster-whisper"][2:10] == ["3", "2", "1", "67%", "67%", "1", "1", "0"]
    assert rows["cpu", "whisperx"][2:10] == ["2", "1", "1", "50%", "100%", "3", "0", "1"]
    workers = {
        tuple(cells[:2]): cells
        for line in markdown.split("## ASR")[1].splitlines()
        if (cells := [c.strip() for c in line.strip("|").split("|")])[0] == "cpu"
    }
    # attempts, produced, segfault, abort, kill, hang, other signals, fallbacks, salvaged
    assert workers["cpu", "faster-whisper"][2:] == ["4", "2", "1", "1", "1", "0", "0", "0", "1"]
    assert workers["cpu", "whisperx"][2:] == ["2", "1", "0", "0", "0", "1", "0", "1", "0"]
    assert real_jobs.ids["bad-input"] in markdown.split("## Failed jobs")[1]

    page = (out / "jobs.html").read_text()
    assert page.count('<img alt="') == 3 and "<td>whisperx</td>" in page
    plots = sorted(out.glob("*.png"))
    assert len(plots) == 3 and all(p.read_bytes().startswith(PNG) and p.stat().st_size > 10_000 for p in plots)

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families((out / "pipeline_jobs.prom").read_text())
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[name, tuple(sorted(labels.items()))]

    fw, wx = {"profile": "cpu", "backend": "faster-whisper"}, {"profile": "cpu", "backend": "whisperx"}
    assert value("pipeline_asr_crashes_total", **fw, kind="segfault") == 1
    assert value("pipeline_asr_crashes_total", **fw, kind="abort") == 1
    assert value("pipeline_asr_crashes_total", **fw, kind="kill") == 1
    assert value("pipeline_asr_crashes_total", **wx, kind="hang") == 1
    assert value("pipeline_asr_crashes_total", **wx, kind="segfault") == 0  # present at zero: alerts see a rise
    assert value("pipeline_asr_fallbacks_total", **wx) == 1 and value("pipeline_asr_fallbacks_total", **fw) == 0
    assert value("pipeline_asr_salvaged_total", **fw) == 1
    assert value("pipeline_jobs_total", **fw, state="done") == 2
    assert value("pipeline_jobs_total", **fw, state="failed") == 1
    assert value("pipeline_jobs_total", **fw, state="interrupted") == 1
    assert value("pipeline_jobs_total", **wx, state="failed") == 1
    assert value("pipeline_job_rtf_count", **fw) == 2 and value("pipeline_job_rtf_count", **wx) == 1
    listed = {j["media"]: j for j in _listing(real_jobs.root)}
    fw_peaks = [listed[m]["peak_rss_mb"] for m in ("good.wav", "salvaged.wav")]
    assert value("pipeline_job_peak_memory_bytes", **fw, quantile="1") == round(max(fw_peaks) * 2**20)
    assert value("pipeline_job_peak_memory_bytes_count", **fw) == 2  # the bad input's extract recorded no peak
    assert not list(out.glob(".*")), "a temporary file was left behind"
