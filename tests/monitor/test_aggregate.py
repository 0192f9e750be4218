"""Monitoring figures from the manifests of real jobs (tests/monitor/recorded/, recorded by scenarios.py): states,
crash kinds, fallbacks, rates, distributions, the Prometheus text, corrupt manifests and a live lock."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import cli, jobs
from pipeline.errors import PipelineError
from pipeline.monitor import aggregate, prometheus, records
from pipeline.reporting import distribution


def _by_media(root: Path) -> dict[str, records.Job]:
    return {job.media.removesuffix(".wav"): job for job in records.scan(root)}


def test_states_backends_and_crash_kinds(recorded: Path) -> None:
    found = _by_media(recorded)
    assert {name: (j.state, j.stage, j.backend) for name, j in found.items()} == {
        "good": ("done", None, "faster-whisper"),
        "salvaged": ("done", None, "faster-whisper"),
        "fallback": ("done", None, "whisperx"),
        "exhausted": ("failed", "transcribe", "whisperx"),
        "bad-input": ("failed", "extract", "faster-whisper"),
        "interrupted": ("interrupted", "transcribe", "faster-whisper"),
    }
    kinds = {name: [(a.backend, a.crash) for a in j.attempts] for name, j in found.items()}
    assert kinds["salvaged"] == [("faster-whisper", "segfault")]
    assert kinds["fallback"] == [("faster-whisper", "abort"), ("whisperx", None)]
    assert kinds["exhausted"] == [("faster-whisper", "kill"), ("whisperx", "hang")]
    assert [n for n, j in found.items() if j.fallback] == ["fallback"]
    assert [n for n, j in found.items() if j.salvaged] == ["salvaged"]
    assert [n for n, j in found.items() if j.troubled] == ["salvaged", "fallback", "exhausted", "bad-input"]
    assert "ffmpeg could not decode" in (found["bad-input"].error or "")


def test_crash_kind_of_a_signal_without_its_name() -> None:
    """Older records carry only the exit code; a signal the kinds do not name is reported by its own name."""
    assert records.crash_kind({"exit_code": -11, "signal": None}) == "segfault"
    assert records.crash_kind({"exit_code": -7, "signal": None}) == "sigbus"
    assert records.crash_kind({"exit_code": 1, "signal": None}) is None


def test_a_live_lock_makes_running_and_a_free_one_interrupted(recorded: Path) -> None:
    folder = _by_media(recorded)["interrupted"].folder
    with jobs.locked(folder):
        assert records.read_job(folder).state == "running"
    assert records.read_job(folder).state == "interrupted"


def test_groups_and_workers(recorded: Path) -> None:
    found = records.scan(recorded)
    groups = {(g.profile, g.backend): g for g in aggregate.groups(found)}
    fw, wx = groups["cpu", "faster-whisper"], groups["cpu", "whisperx"]
    assert (len(fw.jobs), fw.done, fw.failed, fw.crashes, fw.salvaged, fw.fallbacks) == (3, 2, 1, 1, 1, 0)
    assert (len(wx.jobs), wx.done, wx.failed, wx.crashes, wx.salvaged, wx.fallbacks) == (2, 1, 1, 3, 0, 1)
    assert fw.success_rate == pytest.approx(2 / 3) and fw.error_rate == pytest.approx(2 / 3)
    assert wx.success_rate == 0.5 and wx.error_rate == 1.0
    by_media = _by_media(recorded)
    assert fw.rtfs == [by_media["good"].rtf, by_media["salvaged"].rtf]  # done jobs only
    assert wx.peaks_mb == [by_media["fallback"].peak_rss_mb, by_media["exhausted"].peak_rss_mb]
    workers = {(w.profile, w.backend): w for w in aggregate.workers(found)}
    assert dict(workers["cpu", "faster-whisper"].crashes) == {"segfault": 1, "abort": 1, "kill": 1}
    assert dict(workers["cpu", "whisperx"].crashes) == {"hang": 1}
    assert workers["cpu", "faster-whisper"].attempts == 4 and workers["cpu", "whisperx"].fallbacks == 1


def test_distribution() -> None:
    assert distribution([]) is None
    assert distribution([2.0]) == (2.0, 2.0, 2.0)
    median, p90, top = distribution([float(v) for v in range(1, 11)])  # type: ignore[misc]
    assert (median, top) == (5.5, 10.0) and p90 == pytest.approx(9.1)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_prometheus_text_parses_with_help_type_and_escaped_labels(recorded: Path) -> None:
    manifest = next(recorded.glob("*/*/*/*/job-*/manifest.json"))
    data = json.loads(manifest.read_text())
    data["profile"] = 'lab "A"\\east\nrack'  # what a hand-edited or hostile manifest may hold
    manifest.write_text(json.dumps(data))
    text = prometheus.render(records.scan(recorded), now=1.0)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("pipeline_jobs_total", "pipeline_asr_crashes", "pipeline_asr_fallbacks", "pipeline_asr_salvaged"):
        assert families[name].type in ("gauge", "counter") and families[name].documentation
    assert families["pipeline_job_rtf"].type == "summary"
    assert families["pipeline_job_peak_memory_bytes"].type == "summary"
    assert text.count("# HELP ") == text.count("# TYPE ") == 8
    profiles = {dict(s.labels).get("profile") for f in families.values() for s in f.samples}
    assert 'lab "A"\\east\nrack' in profiles  # escaped in the file, the same value once parsed
    assert '\\"A\\"\\\\east\\nrack' in text
    samples = _samples(text)
    assert samples["pipeline_jobs_report_timestamp_seconds", ()] == 1.0


def test_prometheus_file_is_replaced_whole(recorded: Path, tmp_path: Path) -> None:
    target = tmp_path / "textfile" / prometheus.FILE_NAME
    target.parent.mkdir()
    target.write_text("# an older file\n")
    prometheus.write(target, records.scan(recorded))
    assert (
        _samples(target.read_text())["pipeline_asr_salvaged_total", (("backend", "faster-whisper"), ("profile", "cpu"))]
        == 1
    )
    assert [p.name for p in target.parent.iterdir()] == [prometheus.FILE_NAME]


def test_a_corrupt_manifest_is_listed_as_such(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _by_media(recorded)["good"].folder
    (folder / "manifest.json").write_text('{"job_id": "job-2026')  # cut short
    stray = recorded / "2026/12/01/monitor/job-20261201-monitor-0099"
    stray.mkdir()  # a folder a prepare was creating
    found = {job.job_id: job for job in records.scan(recorded)}
    assert found[folder.name].state == "corrupt" and "cannot read job manifest" in (found[folder.name].error or "")
    assert found[stray.name].state == "corrupt"
    assert cli.main(["jobs", "--out", str(recorded), "--state", "corrupt"]) == 0
    shown = capsys.readouterr()
    assert shown.err == "" and folder.name in shown.out and stray.name in shown.out
    assert "Traceback" not in shown.out
    assert cli.main(["report", "jobs", str(recorded), "--out", str(recorded.parent / "report")]) == 0
    assert "## Manifests that cannot be read" in capsys.readouterr().out


def test_selection() -> None:
    with pytest.raises(PipelineError, match="allowed: an ISO date"):
        records.parse_since("last week")
    assert records.parse_since("2026-12-01") == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def test_an_unknown_backend_is_refused(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["jobs", "--out", str(recorded), "--backend", "faster_whisper"]) == 2
    assert capsys.readouterr().err == (
        "pipeline: error: --backend 'faster_whisper' is not a backend; allowed: whisperx, faster-whisper, mlx\n"
    )


def test_no_output_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["jobs", "--out", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith(f"pipeline: error: no output root at {tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    assert cli.main(["jobs", "--out", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out == "no jobs\n"
