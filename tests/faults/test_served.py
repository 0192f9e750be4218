"""A served worker (`pipeline.asr.served`, `worker --serve`): the real worker with tiny.en, real processes and a
real SIGKILL. One load for several requests, transcripts byte for byte an ordinary worker's, a crash mid-request
judged as an ordinary worker's crash, and a request with other load fields never run on the loaded model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.asr import AsrRequest
from pipeline.asr.attempts import AsrOutcome
from pipeline.asr.isolation import run_isolated
from pipeline.asr.process import worker_env
from pipeline.asr.protocol import Event, read_event, request_bytes, serve_line
from pipeline.asr.served import HOME_PREFIX, ServedWorker

from .harness import JFK, TIMEOUT, alive, faulty_argv

MakeRequest = Callable[..., AsrRequest]


def _text(outcome: AsrOutcome) -> str:
    return json.dumps(outcome.transcript.to_dict(), ensure_ascii=False, sort_keys=True)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedWorker]:
    owner = ServedWorker(root=tmp_path)
    yield owner
    pid = owner.pid
    owner.shutdown()
    assert pid is None or not alive(pid), "shutdown stops the served worker"


def test_a_served_worker_loads_once_and_transcribes_as_ordinary_workers_do(
    request_for: MakeRequest, reference: AsrOutcome, jfk_reference: AsrOutcome, served: ServedWorker, tmp_path: Path
) -> None:
    first = run_isolated([request_for()], tmp_path / "one", timeout=TIMEOUT, warm=served)
    second = run_isolated([request_for(audio=str(JFK))], tmp_path / "two", timeout=TIMEOUT, warm=served)
    assert served.loads == 1
    records = [first.record.to_manifest()["served"], second.record.to_manifest()["served"]]
    assert records[0]["pid"] == records[1]["pid"] == served.pid and [r["request"] for r in records] == [1, 2]
    assert first.used.load_s is not None and second.used.load_s is None, "only the first request waited for a load"
    for outcome in (first, second):
        assert (outcome.used.outcome, outcome.used.exit_code, len(outcome.attempts)) == ("ok", None, 1)
        assert outcome.used.peak_rss_mb and outcome.used.peak_rss_mb > 50  # the model it holds, at least
    # Byte for byte what an ordinary worker (one process per request) wrote.
    assert _text(first) == _text(reference) and _text(second) == _text(jfk_reference)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["asr.log", "attempt-1"]
    assert "(served: worker pid" in (tmp_path / "two/asr.log").read_text()


def test_a_served_worker_killed_mid_request_is_a_crash_and_the_next_request_gets_a_fresh_one(
    request_for: MakeRequest, reference: AsrOutcome, tmp_path: Path
) -> None:
    # The served worker kills itself with SIGKILL after its first chunk (as the OOM killer would), once.
    argv = faulty_argv(point="after_chunk", index=0, action="kill", once=str(tmp_path / "fired"))
    owner = ServedWorker(argv, root=tmp_path)
    try:
        chain = [request_for(), request_for(threads=1)]
        outcome = run_isolated(chain, tmp_path / "job1", timeout=TIMEOUT, worker_argv=argv, warm=owner)
        crashed, fallback = outcome.attempts
        assert (crashed.outcome, crashed.signal, crashed.stage) == ("crashed", "SIGKILL", "transcribe")
        assert crashed.peak_rss_mb and (tmp_path / "fired").exists()
        assert fallback.outcome == "ok" and outcome.record.fallbacks == 1 and outcome.record.crashes == 1
        assert "served" not in outcome.record.to_manifest(), "the transcript came from the ordinary fallback"
        assert owner.pid is None, "the dead worker is let go"

        later = run_isolated([request_for()], tmp_path / "job2", timeout=TIMEOUT, worker_argv=argv, warm=owner)
        assert owner.loads == 2 and later.used.outcome == "ok"
        assert later.record.to_manifest()["served"] == {"pid": owner.pid, "request": 1}
        assert _text(later) == _text(reference)
    finally:
        owner.shutdown()


def test_a_request_with_other_load_fields_is_not_served_by_the_loaded_worker(
    request_for: MakeRequest, jfk_reference: AsrOutcome, served: ServedWorker, tmp_path: Path
) -> None:
    run_isolated([request_for(audio=str(JFK))], tmp_path / "one", timeout=TIMEOUT, warm=served)
    loaded = served.pid
    assert loaded is not None
    other = run_isolated([request_for(audio=str(JFK), threads=1)], tmp_path / "two", timeout=TIMEOUT, warm=served)
    assert served.loads == 2 and served.pid != loaded and not alive(loaded), "replaced by a worker for its fields"
    assert other.record.to_manifest()["served"]["request"] == 1 and _text(other) == _text(jfk_reference)


def test_the_worker_itself_refuses_a_request_with_other_load_fields(request_for: MakeRequest, tmp_path: Path) -> None:
    """The worker's side of the contract, on its stdin and stdout: refused, then the next matching line served."""
    load = tmp_path / "served" / "load.json"  # its folder: the worker removes it when its parent is gone
    load.parent.mkdir()
    load.write_bytes(request_bytes(request_for(audio=str(JFK))))
    requests = {}
    for name, request in (("other", request_for(audio=str(JFK), batch_size=1)), ("same", request_for(audio=str(JFK)))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "request.json").write_bytes(request_bytes(request))
        requests[name] = tmp_path / name / "request.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.asr.worker", "--serve", str(load)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=worker_env(tmp_path),
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:

        def next_event(*wanted: Event) -> dict:
            for line in proc.stdout:  # type: ignore[union-attr]
                if (read := read_event(line.decode())) and read[0] in wanted:
                    return read[1]
            raise AssertionError(f"the worker ended before {wanted}")

        next_event(Event.LOADED)
        for name in ("other", "same"):
            proc.stdin.write(serve_line(requests[name], requests[name].with_name("result.json")))
            proc.stdin.flush()
        refused = next_event(Event.REFUSED, Event.DONE)
        assert refused["event"] == "refused" and "load fields" in refused["reason"]
        assert not (tmp_path / "other/result.json").exists()
        done = next_event(Event.REFUSED, Event.DONE)
        assert (done["event"], done["served"]) == ("done", 1) and done["peak_rss_mb"] > 50
    finally:
        proc.stdin.close()  # its lifeline: the worker kills its group
        assert proc.wait(timeout=TIMEOUT) == -9
    assert (tmp_path / "same/result.json.ok").exists() and not load.parent.exists()


def test_the_folder_of_a_served_worker_whose_owner_is_gone_is_swept(tmp_path: Path) -> None:
    """Ray ends an actor and its served worker with SIGKILL, which leaves the worker's folder in the owner's root:
    the next owner on the machine removes it, and leaves a live owner's (and another host's) alone."""
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process
    host = socket.gethostname()
    stale = Path(tempfile.mkdtemp(prefix=f"{HOME_PREFIX}{host}.{dead.pid}.", dir=tmp_path))
    (stale / "tmp").mkdir()
    live = Path(tempfile.mkdtemp(prefix=f"{HOME_PREFIX}{host}.{os.getpid()}.", dir=tmp_path))
    elsewhere = Path(tempfile.mkdtemp(prefix=f"{HOME_PREFIX}{host}-other-node.{dead.pid}.", dir=tmp_path))
    ServedWorker(root=tmp_path).shutdown()
    assert not stale.exists() and live.exists() and elsewhere.exists()


def test_a_served_worker_writes_in_its_root_only_and_leaves_nothing_there(
    request_for: MakeRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its load request, its log between requests and its TMPDIR are in its owner's root (a batch's output root),
    not the system's temporary folder; its shutdown removes them."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    root = tmp_path / "out"
    root.mkdir()
    owner = ServedWorker(root=root)
    try:
        run_isolated([request_for(audio=str(JFK))], root / "job" / "work", timeout=TIMEOUT, warm=owner)
        (home,) = [p for p in root.iterdir() if p.name.startswith(HOME_PREFIX)]
        assert (home / "load.json").is_file() and (home / "tmp").is_dir()
        assert (
            owner.pid is not None
            and f"TMPDIR={home / 'tmp'}".encode() in Path(f"/proc/{owner.pid}/environ").read_bytes()
        )
    finally:
        owner.shutdown()
    assert sorted(p.name for p in root.iterdir()) == ["job"] and list(system_tmp.iterdir()) == []
