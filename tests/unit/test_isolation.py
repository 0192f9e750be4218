"""The parent side of worker isolation, no model: the protocol, marker validation, stderr reading, the manifest's
ASR record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import atomic
from pipeline.asr import AsrRequest, Segment, Transcript, Word, isolation
from pipeline.asr.attempts import AsrFailed, AsrRecord, Attempt
from pipeline.asr.forensics import Result, fatal_error, hang_site, last_line, read_result
from pipeline.asr.process import worker_env
from pipeline.asr.protocol import Event, Watch, event_line, marker_path, peak_rss_mb, pin, read_event, request_bytes

PIPELINE = Path(isolation.__file__).resolve().parents[1]
TRANSCRIPT = Transcript(
    language="en",
    segments=(Segment(0.0, 2.5, "ask not", (Word(0.0, 1.0, "ask", 0.9), Word(1.2, 2.5, "not", 0.8))),),
    duration=11.0,
    backend="faster-whisper",
)
REQUEST = b'{"backend": "faster-whisper"}'


def write(tmp_path: Path, payload: bytes | None = None, request: bytes = REQUEST) -> Path:
    """What the worker leaves when it completes: the result, then its marker."""
    payload = payload or json.dumps({"transcript": TRANSCRIPT.to_dict(), "worker": {}}).encode()
    result = tmp_path / "result.json"
    result.write_bytes(payload)
    marker_path(result).write_text(json.dumps(pin(payload, request)))
    return result


def attempt(backend: str = "mlx", outcome: str = "ok", sig: str | None = None, **more: object) -> Attempt:
    fields = dict(
        backend=backend,
        device="cpu",
        compute_type="int8",
        model_dir="/m",
        outcome=outcome,
        exit_code=-signal.Signals[sig].value if sig else 0,
        signal=sig,
        wall_s=1.0,
        peak_rss_mb=300.0,
        error=None,
    )
    return Attempt(**{**fields, **more})  # type: ignore[arg-type]


def test_a_pinned_result_is_valid(tmp_path: Path) -> None:
    found = read_result(write(tmp_path), REQUEST)
    assert found.status == "valid" and Transcript.from_dict(found.data["transcript"]) == TRANSCRIPT


def test_nothing_written_is_missing(tmp_path: Path) -> None:
    assert read_result(tmp_path / "result.json", REQUEST) == Result("missing")


def test_a_result_without_its_marker_is_never_valid(tmp_path: Path) -> None:
    result = write(tmp_path)
    marker_path(result).unlink()
    found = read_result(result, REQUEST)
    assert (found.status, found.data, found.reason) == ("missing", None, "result file without its marker")


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda r: r.write_bytes(r.read_bytes()[:-7]), "bytes, its marker says"),
        (lambda r: r.write_bytes(r.read_bytes().replace(b"ask not", b"ask now")), "sha256 does not match"),
        (lambda r: r.unlink(), "marker without result"),
        (lambda r: marker_path(r).write_text('{"sha256": '), "unreadable marker"),
        (lambda r: marker_path(r).write_text("{}"), "unreadable marker"),
    ],
)
def test_a_result_that_does_not_match_its_marker_is_invalid(tmp_path: Path, damage, reason: str) -> None:
    result = write(tmp_path)
    damage(result)
    found = read_result(result, REQUEST)
    assert found.status == "invalid" and found.data is None and reason in found.reason


def test_a_marker_for_another_request_is_invalid(tmp_path: Path) -> None:
    found = read_result(write(tmp_path, request=b'{"backend": "mlx"}'), REQUEST)
    assert (found.status, found.reason) == ("invalid", "marker belongs to another request")


def test_a_pinned_file_that_is_no_transcript_is_invalid(tmp_path: Path) -> None:
    found = read_result(write(tmp_path, payload=b'{"worker": {}}'), REQUEST)
    assert found.status == "invalid" and "not a transcript" in found.reason


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_truncation_or_changed_byte_is_refused(tmp_path_factory: pytest.TempPathFactory, data) -> None:
    result = write(tmp_path_factory.mktemp("r"))
    payload = result.read_bytes()
    if data.draw(st.booleans(), label="truncate"):
        damaged = payload[: data.draw(st.integers(0, len(payload) - 1), label="keep")]
    else:
        at = data.draw(st.integers(0, len(payload) - 1), label="at")
        byte = data.draw(st.integers(0, 255).filter(lambda b: b != payload[at]), label="byte")
        damaged = payload[:at] + bytes([byte]) + payload[at + 1 :]
    result.write_bytes(damaged)
    assert read_result(result, REQUEST).status == "invalid"


def _stderr_of(code: str, *, term_after_ready: bool = False) -> str:
    """Real faulthandler output from a real process."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if term_after_ready:
        assert proc.stdout and proc.stdout.readline() == "ready\n"
        time.sleep(0.5)  # let it get from print() into the sleep
        proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    return stderr


def test_fatal_error_names_the_signal_and_where() -> None:
    stderr = _stderr_of("import ctypes, faulthandler; faulthandler.enable(all_threads=True); ctypes.string_at(0)")
    found = fatal_error(stderr)
    assert found.startswith("Fatal Python error: Segmentation fault at __init__.py:")  # ctypes/__init__.py
    assert found.endswith(" in string_at")
    assert fatal_error("Traceback (most recent call last):\nValueError: x\n") is None


def test_hang_site_is_where_the_main_thread_waited() -> None:
    code = (
        "import faulthandler, signal, sys, threading, time\n"
        "faulthandler.register(signal.SIGTERM, all_threads=True, chain=True)\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "def stuck():\n    print('ready', flush=True)\n    time.sleep(60)\n"
        "stuck()\n"
    )
    assert hang_site(_stderr_of(code, term_after_ready=True)) == "<string>:6 in stuck"


def test_hang_site_without_a_current_thread_takes_the_main_thread() -> None:
    dump = (
        'Thread 0x00007f01 (most recent call first):\n  File "/x/threading.py", line 324 in wait\n\n'
        'Thread 0x00007f00 (most recent call first):\n  File "/x/backend.py", line 12 in decode\n'
        '  File "/x/worker.py", line 99 in run\n'
    )
    assert hang_site(dump) == "backend.py:12 in decode"


def test_last_line_is_the_workers_own_words() -> None:
    assert last_line("Traceback ...\n  File x\nRuntimeError: no model in /m\n\n") == "RuntimeError: no model in /m"
    assert last_line("\n \n") is None


def test_the_record_of_a_chain_that_produced_a_transcript() -> None:
    crashed = attempt("mlx", "crashed", "SIGSEGV", stage="transcribe")
    timeout = attempt("whisperx", "timeout", "SIGTERM", timed_out=True)
    salvaged = attempt("faster-whisper", "salvaged", "SIGABRT", stage="teardown", model_dir="/models/base")
    worker = {"versions": {"ctranslate2": "4.5.0"}, "chunk_seconds": 20.0}
    record = AsrRecord(("mlx", "whisperx", "faster-whisper"), (crashed, timeout, salvaged), worker)
    assert record.used is salvaged and record.salvaged and not record.reused
    assert (record.crashes, record.fallbacks) == (2, 2)  # our own SIGTERM on a timeout is no crash
    manifest = json.loads(json.dumps(record.to_manifest()))  # as the job's manifest holds it
    assert (manifest["backend"], manifest["model"], manifest["model_dir"]) == ("faster-whisper", "base", "/models/base")
    assert (manifest["device"], manifest["compute_type"], manifest["worker_peak_rss_mb"]) == ("cpu", "int8", 300.0)
    assert manifest["chain"] == ["mlx", "whisperx", "faster-whisper"]
    assert [(a["outcome"], a["stage"], a["signal"]) for a in manifest["attempts"]] == [
        ("crashed", "transcribe", "SIGSEGV"),
        ("timeout", "spawn", "SIGTERM"),
        ("salvaged", "teardown", "SIGABRT"),
    ]
    assert (manifest["crashes"], manifest["salvaged"], manifest["reused"], manifest["fallbacks"]) == (2, 1, 0, 2)
    assert (manifest["chunk_seconds"], manifest["versions"]) == (20.0, {"ctranslate2": "4.5.0"})


def test_worker_env_is_offline_and_imports_this_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    env = worker_env()
    assert env["HF_HUB_OFFLINE"] == "1" and env["PYANNOTE_METRICS_ENABLED"] == "false"
    assert env["PYTHONPATH"].split(":") == [str(PIPELINE.parent), "/elsewhere"]


def test_worker_env_keeps_temporaries_and_caches_in_the_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", "/tmp")
    monkeypatch.delenv("TORCH_HOME", raising=False)
    env = worker_env(Path("/job/work/transcribe/attempt-1/tmp"))
    assert env["TMPDIR"] == "/job/work/transcribe/attempt-1/tmp" and env["ORT_DISABLE_TELEMETRY"] == "1"
    assert env["TORCH_HOME"].startswith(env["TMPDIR"]) and env["MPLCONFIGDIR"].startswith(env["TMPDIR"])


def test_peak_rss_units() -> None:
    expected = 300.0
    assert peak_rss_mb(300 * (1024 * 1024 if sys.platform == "darwin" else 1024)) == expected


def test_events_are_one_json_object_a_line_and_nothing_else_is_one() -> None:
    line = event_line(Event.PROGRESS, done=1.5, total=11.0)
    assert line == '{"event": "progress", "done": 1.5, "total": 11.0}\n'  # the enum is written as its name
    assert read_event(line) == (Event.PROGRESS, {"event": "progress", "done": 1.5, "total": 11.0})
    for other in ("a library's print\n", '{"event": "unknown"}\n', "[1, 2]\n", '{"done": 1}\n', "3\n"):
        assert read_event(other) is None, other


def test_the_watch_follows_the_workers_phases_from_its_events() -> None:
    watch, seen = Watch(started=100.0), []
    assert not watch.feed(100.1, "loading weights...\n", None) and watch.phase == "spawn"
    phases = []
    for at, event, fields in [
        (100.2, Event.START, {"pid": 1}),
        (101.5, Event.LOADED, {"load_s": 1.3}),
        (102.0, Event.PROGRESS, {"done": 4.0, "total": 11.0}),
        (103.0, Event.WRITING, {}),
        (103.1, Event.RESULT, {"path": "r"}),
    ]:
        assert watch.feed(at, event_line(event, **fields), lambda done, total: seen.append((done, total)))
        phases.append(watch.phase)
    assert phases == ["load", "transcribe", "transcribe", "write", "teardown"]
    assert (watch.load_s, watch.done, seen) == (1.5, 4.0, [(4.0, 11.0)])


def test_the_parent_side_never_imports_the_workers_entry_module() -> None:
    code = (
        "import sys\n"
        "import pipeline.asr.isolation, pipeline.progress, pipeline.workflow\n"
        "print('pipeline.asr.worker' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=PIPELINE.parent, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, b"False"), done.stderr


def test_a_worker_records_the_versions_of_what_it_imported_not_of_all_installed() -> None:
    code = (
        "import json\n"
        "from pipeline.versions import library_versions\n"
        "print(json.dumps([library_versions(imported_only=True), library_versions()]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=PIPELINE.parent, timeout=120)
    imported, installed = json.loads(done.stdout)
    assert imported.keys() == {"python", "pipeline"}  # torch and friends are installed, but not imported
    assert {"python", "pipeline", "faster-whisper", "ctranslate2", "torch"} <= installed.keys()


def test_the_worker_takes_exactly_two_paths_so_no_fault_can_be_asked_for() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.asr.worker", "req.json", "res.json", '{"action": "segv"}'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and run.stderr.startswith("usage: python -m pipeline.asr.worker")


def test_production_code_has_no_fault_switch() -> None:
    """Fault hooks are installed only by tests/faults/faulty_worker.py, which is not part of the package."""
    for source in PIPELINE.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert "faulty_worker" not in text and "tests.faults" not in text, source


def test_a_failed_chain_gives_the_manifest_the_same_shape() -> None:
    attempts = (attempt("mlx", "crashed", "SIGSEGV"), attempt("whisperx", "failed", exit_code=1))
    failed = AsrFailed(AsrRecord(("mlx", "whisperx"), attempts, error="ASR failed with every backend"))
    assert str(failed) == "ASR failed with every backend" and failed.attempts == attempts and failed.exit_code == 1
    manifest = failed.record.to_manifest()
    assert manifest.keys() == AsrRecord(("mlx",), (attempt(),)).to_manifest().keys()
    assert (manifest["backend"], manifest["model"], manifest["device"], manifest["worker_peak_rss_mb"]) == (None,) * 4
    assert (manifest["crashes"], manifest["salvaged"], manifest["fallbacks"], manifest["chain"]) == (
        1,
        0,
        1,
        ["mlx", "whisperx"],
    )


# --- finished work is reused, never swept (a resumed stage) ------------------------------------------------

NO_WORKER = [sys.executable, "-c", "import sys; sys.exit('a worker was started')"]


def _request(audio: Path, **changes: object) -> AsrRequest:
    fields = dict(backend="faster-whisper", model_dir="/m", device="cpu", compute_type="int8", audio=str(audio))
    return AsrRequest(**{**fields, "language": "en", "batch_size": 2, "chunk_seconds": 20.0, **changes})


def _earlier_attempt(workdir: Path, number: int, request: AsrRequest) -> Path:
    """What a worker of an earlier run left: its request, its result, then its marker."""
    folder = workdir / f"attempt-{number}"
    folder.mkdir(parents=True)
    data = request_bytes(request)
    (folder / "request.json").write_bytes(data)
    return write(folder, request=data)


def test_a_resumed_run_takes_an_earlier_runs_result_without_starting_a_worker(tmp_path: Path) -> None:
    audio = tmp_path / "audio.wav"
    audio.write_bytes(b"RIFF")
    chain = [_request(audio), _request(audio, threads=1)]
    result = _earlier_attempt(tmp_path / "work", 2, chain[1])  # the fallback had finished it
    log = tmp_path / "job.log"
    outcome = isolation.run_isolated(chain, tmp_path / "work", log_path=log, worker_argv=NO_WORKER, reuse=True)
    (used,) = outcome.attempts
    assert (used.outcome, used.reused, used.exit_code, used.wall_s) == ("reused", "attempt-2/result.json", None, 0)
    record = outcome.record
    assert used.produced and record.reused and not record.salvaged and record.to_manifest()["reused"] == 1
    assert outcome.transcript == TRANSCRIPT
    assert result.is_file() and marker_path(result).is_file()  # kept: a later failure may need it again
    assert "result of an earlier run reused (attempt-2/result.json); no worker started" in log.read_text()


@pytest.mark.parametrize("case", ["another request", "older than its audio", "forced", "unpinned"])
def test_a_result_that_is_not_this_runs_is_swept_and_a_worker_runs(tmp_path: Path, case: str) -> None:
    audio = tmp_path / "audio.wav"
    audio.write_bytes(b"RIFF")
    request = _request(audio)
    result = _earlier_attempt(
        tmp_path / "work", 1, _request(audio, beam_size=1) if case == "another request" else request
    )
    if case == "older than its audio":  # the audio was extracted again after the result was written
        os.utime(result, ns=(audio.stat().st_mtime_ns - 10**9,) * 2)
    if case == "unpinned":
        marker_path(result).unlink()
    with pytest.raises(AsrFailed) as failed:
        isolation.run_isolated([request], tmp_path / "work", worker_argv=NO_WORKER, reuse=case != "forced")
    assert failed.value.attempts[0].outcome == "failed" and "a worker was started" in failed.value.attempts[0].error
    assert not result.exists()


# --- atomic writes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a" * 247 + ".en.json", "आ" * 80 + ".en.json", "x" * 255])
def test_a_target_name_at_the_limit_is_written_atomically(tmp_path: Path, name: str) -> None:
    """The temporary name must fit wherever the target's does (`.<name>.XXXXXXXX.part` adds 15 bytes)."""
    target = tmp_path / name
    atomic.write_text(target, "old")
    atomic.write_json(target, {"new": True})
    assert json.loads(target.read_text()) == {"new": True}
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left beside it


@pytest.mark.parametrize("stem", ["talk", "a" * 240])
def test_a_tools_partial_file_fits_beside_its_target(tmp_path: Path, stem: str) -> None:
    """ffmpeg's output before `commit_file`: `<240-byte stem>.subtitled.mp4` is legal, its partial must be too."""
    target = tmp_path / f"{stem}.subtitled.mp4"
    partial = atomic.partial_path(target)
    assert partial.parent == tmp_path and partial.suffix == ".mp4" and partial.name.startswith(".")
    assert partial == atomic.partial_path(target) != target
    partial.write_bytes(b"muxed")
    atomic.commit_file(partial, target)
    assert target.read_bytes() == b"muxed" and not partial.exists()


def test_a_short_target_keeps_its_name_in_the_temporary(tmp_path: Path) -> None:
    with atomic.atomic_open(tmp_path / "talk.en.json") as handle:
        (temporary,) = [p.name for p in tmp_path.iterdir()]
        handle.write("{}")
    assert temporary.startswith(".talk.en.json.") and temporary.endswith(".part")


# --- the worker dies with its parent ---------------------------------------------------------------------------


def test_the_worker_kills_its_group_when_its_stdin_ends() -> None:
    """The worker's lifeline in a real process, in its own session, with a grandchild: closing its stdin (what
    the parent's death does) kills both at once; until then it lives."""
    code = (
        "import subprocess, time\n"
        "from pipeline.asr import worker\n"
        "worker._lifeline()\n"
        "print(subprocess.Popen(['sleep', '600']).pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=PIPELINE.parent,
        start_new_session=True,
    )
    assert proc.stdout and proc.stdin
    grandchild = int(proc.stdout.readline())
    proc.stdin.write(b"hello\n")
    proc.stdin.flush()
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5)  # a line is no end
    proc.stdin.close()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    deadline = time.monotonic() + 60
    while _alive(grandchild):
        assert time.monotonic() < deadline, "the worker's group outlived its stdin"
        time.sleep(0.05)


def test_a_worker_run_by_hand_has_no_lifeline_to_lose() -> None:
    """Started from a terminal or with stdin from /dev/null (a developer, a script), the worker has no parent to
    outlive: it must not take the end of its stdin for its parent's death."""
    code = "from pipeline.asr import worker\nprint(worker._lifeline().is_set(), flush=True)\n"
    done = subprocess.run(
        [sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True, cwd=PIPELINE.parent, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, b"True"), done


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_load_time_is_the_workers_own_stamp_not_when_the_parent_read_it() -> None:
    # A warm worker's `loaded` waits unread until the stage watches; under load the reader lags. The worker's
    # stamp (same monotonic clock) times the load; a stamp from before the spawn or after the reading is not used.
    watch = Watch(started=100.0)
    watch.feed(130.0, event_line(Event.LOADED, at=101.5), None)
    assert watch.load_s == 1.5
    for bogus in (99.0, 140.0, "soon"):
        watch = Watch(started=100.0)
        watch.feed(130.0, event_line(Event.LOADED, at=bogus), None)
        assert watch.load_s == 30.0
