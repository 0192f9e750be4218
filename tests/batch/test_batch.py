"""`pipeline batch` on a local Ray instance: the same jobs as single runs, a bad file reported, a killed worker's
file retried with nothing finished lost, Ctrl-C leaving every job resumable, and a re-run that skips what is done."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from .harness import (
    LIBRIVOX,
    TIMEOUT,
    actor_running_a_job,
    manifests,
    our_commands,
    pipeline,
    rows,
    running,
    system_tmp,
    wait_for,
)

pytestmark = pytest.mark.slow  # a real Ray instance per test: the full suite, not `make check`

OPTIONS = ("-w", "transcribe", "-s", "en", "--model", "tiny.en")


def _done(manifest: dict) -> bool:
    return all(s["state"] in ("done", "skipped") for s in manifest["stages"].values())


def test_a_batch_makes_the_jobs_single_runs_make_reports_a_bad_file_and_skips_them_when_run_again(
    clips: Path, tmp_path: Path
) -> None:
    (clips / "broken.wav").write_bytes(b"not a RIFF header, nor any media\n" * 128)  # a media name, not media
    truncated = clips / "truncated.wav"  # a real WAV header, the samples cut off
    truncated.write_bytes((LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav").read_bytes()[:44])
    silent = clips / "no-audio.mp4"  # a real video without an audio stream
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=navy:s=64x64:r=5", "-t", "1", "-an", str(silent)],
        check=True,
    )
    notes = tmp_path / "notes.txt"  # named explicitly: taken, and reported
    notes.write_text("not media\n")
    out = tmp_path / "out"

    first = pipeline("batch", str(clips), str(notes), *OPTIONS, "--out", str(out), "--json", check=1)
    table = rows(first)
    assert set(table) == {
        "austen-0920.wav",
        "jfk.wav",
        "sense_and_sensibility_01_austen_64kb-0870.wav",
        "sense_and_sensibility_01_austen_64kb-0890.wav",
        "broken.wav",
        "truncated.wav",
        "no-audio.mp4",
        "notes.txt",
    }, "a folder gives its media files (not its poster), an explicit file is taken whatever its name"
    for bad in ("broken.wav", "truncated.wav", "no-audio.mp4", "notes.txt"):
        assert table[bad]["state"] == "failed" and not table[bad]["job_id"], table[bad]
        assert "\n" not in table[bad]["error"] and bad in table[bad]["error"], table[bad]["error"]
    assert "not a media file" in table["broken.wav"]["error"]
    assert "audio" in table["no-audio.mp4"]["error"], table["no-audio.mp4"]["error"]
    good = [name for name, row in table.items() if row["state"] == "done"]
    assert len(good) == 4
    for name in good:
        row = table[name]
        assert row["backend"] == "faster-whisper" and row["rtf"] > 0 and row["peak_mb"] > 0, row
    assert first.stderr.endswith("pipeline: error: 4 of 8 file(s) failed (see the table)\n")
    # Nothing outside the output root: the actors' served ASR workers had their folders there, removed with them.
    assert list(system_tmp().iterdir()) == [] and not list(out.glob(".served-*"))

    # The same jobs as `pipeline transcribe` one by one: same files, same bytes.
    batch_jobs = manifests(out)
    assert set(batch_jobs) == set(good), "a bad file leaves no job folder"
    # The model loaded once per actor (2 on 2 cores, or fewer): each actor's served worker took its files in turn.
    served = [m["stages"]["transcribe"]["served"] for m in batch_jobs.values()]
    by_worker: dict[int, list[int]] = {}
    for record in served:
        by_worker.setdefault(record["pid"], []).append(record["request"])
    assert 1 <= len(by_worker) <= 2 and len(by_worker) < len(served), served
    assert all(sorted(numbers) == list(range(1, len(numbers) + 1)) for numbers in by_worker.values()), served
    for data in batch_jobs.values():
        (attempt,) = data["stages"]["transcribe"]["attempts"]
        assert (attempt["load_s"] is not None) == (data["stages"]["transcribe"]["served"]["request"] == 1), attempt
    single = tmp_path / "single"
    for name in ("jfk.wav", "austen-0920.wav"):
        pipeline("transcribe", str(clips / name), *OPTIONS[2:], "--out", str(single), check=0)
    for name, data in manifests(single).items():
        ours, theirs = Path(batch_jobs[name]["folder"]), Path(data["folder"])
        listing = sorted(p.name for p in ours.iterdir() if p.is_file() and not p.name.startswith("."))
        assert listing == sorted(p.name for p in theirs.iterdir() if p.is_file() and not p.name.startswith("."))
        for output in (
            p for p in theirs.iterdir() if p.suffix in (".json", ".txt", ".srt", ".vtt") and p.name != "manifest.json"
        ):
            assert (ours / output.name).read_bytes() == output.read_bytes(), output.name

    # Run again: nothing is run again, no job is added, the bad files are reported again.
    before = {name: json.dumps(m["stages"], sort_keys=True) for name, m in batch_jobs.items()}
    again = pipeline("batch", str(clips), str(notes), *OPTIONS, "--out", str(out), "--json", check=1)
    table = rows(again)
    assert all(table[name]["state"] == "done" and table[name]["earlier"] for name in good), table
    assert all(table[bad]["state"] == "failed" for bad in ("broken.wav", "truncated.wav", "no-audio.mp4", "notes.txt"))
    assert "started" not in again.stderr
    after = manifests(out)
    assert {name: json.dumps(m["stages"], sort_keys=True) for name, m in after.items()} == before


def test_a_killed_worker_loses_no_finished_job_and_its_file_is_retried(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running("batch", str(clips), *OPTIONS, "--out", str(out), "--workers", "1", "--json") as batch:
        # One job finished, the actor busy with the next: kill -9 its process (a Ray worker dying mid-file).
        one_done = lambda: any(_done(m) for m in manifests(out).values()) or batch.poll() is not None  # noqa: E731
        wait_for(one_done, what="a finished job")
        finished = {n: json.dumps(m["stages"], sort_keys=True) for n, m in manifests(out).items() if _done(m)}
        victim = None

        def busy() -> bool:
            nonlocal victim
            victim = actor_running_a_job(batch.pid)
            return victim is not None or batch.poll() is not None

        wait_for(busy, what="the actor running the next job")
        assert victim is not None, "the batch ended before a worker could be killed"
        # The local instance is Ray's head without the processes a batch never uses (`cluster._lean_head`).
        commands = our_commands()
        assert any("gcs_server" in c for c in commands) and any("raylet" in c for c in commands), commands
        unused = [c for c in commands if any(n in c for n in ("dashboard/dashboard.py", "/monitor.py", "log_monitor"))]
        assert not unused, unused
        victim.send_signal(signal.SIGKILL)
        stdout, stderr = batch.communicate(timeout=TIMEOUT)
    assert batch.returncode == 0, stderr
    table = rows(stdout)
    assert all(r["state"] == "done" for r in table.values()), table
    assert max(r["attempts"] for r in table.values()) == 2, "the killed worker's file ran again"
    assert "died; retrying" in stderr
    now = {n: json.dumps(m["stages"], sort_keys=True) for n, m in manifests(out).items()}
    for name, stages in finished.items():
        assert now[name] == stages, f"{name} was finished before the kill and must be untouched"
    assert all(_done(m) for m in manifests(out).values())
    # The killed actor's served worker went with it, and so did its folder in the output root.
    wait_for(lambda: not list(out.glob(".served-*")), timeout=30, what="the served workers' folders removed")


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_stops_the_batch_and_the_next_run_resumes_it(clips: Path, tmp_path: Path, how: str) -> None:
    """Ctrl-C reaches the terminal's foreground group; SIGTERM (kill, systemd) only the driver."""
    out = tmp_path / "out"
    shutil.copy(clips / "jfk.wav", clips / "jfk-again.wav")  # five files: some are still to do at Ctrl-C
    with running("batch", str(clips), *OPTIONS, "--out", str(out), "--workers", "1", "--json") as batch:
        wait_for(lambda: actor_running_a_job(batch.pid) is not None or batch.poll() is not None, what="a running job")
        if how == "ctrl-c":
            os.killpg(batch.pid, signal.SIGINT)
        else:
            os.kill(batch.pid, signal.SIGTERM)
        stdout, stderr = batch.communicate(timeout=TIMEOUT)
    assert batch.returncode == 130, stderr
    assert "interrupted" in stderr.splitlines()[-1] and "Traceback" not in stderr
    table = rows(stdout)
    assert any(r["state"] == "interrupted" for r in table.values()), table
    states = [s["state"] for m in manifests(out).values() for s in m["stages"].values()]
    assert "running" not in states, "a stopped job records where it stopped"

    again = pipeline("batch", str(clips), *OPTIONS, "--out", str(out), "--json", check=0)
    table = rows(again)
    assert len(table) == 5 and all(r["state"] == "done" for r in table.values()), table
    assert len(manifests(out)) == 5, "the interrupted jobs were resumed, not prepared again"


def test_two_batches_over_one_folder_run_each_job_once(clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("batch", str(clips), *OPTIONS, "--out", str(out), "--workers", "1", "--json")
    with running(*args) as first, running(*args) as second:
        both = [first, second]
        results = [batch.communicate(timeout=TIMEOUT) for batch in both]
    for batch, (stdout, stderr) in zip(both, results, strict=True):
        assert batch.returncode == 0, stderr
        table = rows(stdout)
        assert len(table) == 4 and all(r["state"] == "done" for r in table.values()), table
    jobs = manifests(out)
    assert len(jobs) == 4, "both batches mapped each file to the same job"
    for name, data in jobs.items():
        log = (Path(data["folder"]) / "pipeline.log").read_text()
        assert log.count("stage transcribe started") == 1, f"{name} was transcribed more than once"
        assert len(data["stages"]["transcribe"]["attempts"]) == 1
