"""`pipeline batch` on a real Ray: tiny.en on short real clips, the CLI in a subprocess, as a user runs it.

Every test leaves no Ray process behind: the batch's local instance ends with its driver, and the cluster test
stops the nodes it started, by pid (the processes whose command line names its own temporary folders)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
FIXTURES = ROOT / "tests" / "fixtures"
TIMEOUT = 600  # generous: the suite runs under load


def env() -> dict[str, str]:
    return dict(
        os.environ,
        RAY_AUTH_MODE="disabled",  # the tests' Ray listens on this machine only; no token is made or read
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="1",
        PYANNOTE_METRICS_ENABLED="false",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_TMPDIR=_mark["tmp"],
        TMPDIR=_mark["tmpdir"],  # the system's temporary folder, as the batch's processes see it (`system_tmp`)
        **{MARK: _mark["value"]},
    )


def pipeline(*args: str, check: int | None = None, wrap: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it (`wrap`: a command it runs under, such as `unshare -rn`)."""
    result = subprocess.run(
        [*wrap, sys.executable, "-m", "pipeline", *args], env=env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    if check is not None:
        assert result.returncode == check, result.stdout + result.stderr
    return result


def start(*args: str) -> subprocess.Popen[str]:
    """The CLI in its own session (as a terminal's job is): a signal to it reaches its group only."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    """Four short real clips (LibriVox, JFK) in a folder, with a poster that a folder's walk must skip."""
    folder = tmp_path / "media"
    folder.mkdir()
    for name in ("sense_and_sensibility_01_austen_64kb-0870.wav", "sense_and_sensibility_01_austen_64kb-0890.wav"):
        shutil.copy(LIBRIVOX / name, folder / name)
    shutil.copy(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0920.wav", folder / "austen-0920.wav")
    shutil.copy(FIXTURES / "jfk.wav", folder / "jfk.wav")
    (folder / "poster.jpg").write_bytes(b"\xff\xd8 not a media file the batch should take")
    return folder


@contextlib.contextmanager
def running(*args: str) -> Iterator[subprocess.Popen[str]]:
    """`start`; leaving the block stops a batch that still runs (a failed assertion), as Ctrl-C does, else kills it."""
    batch = start(*args)
    try:
        yield batch
    finally:
        if batch.poll() is None:
            os.killpg(batch.pid, signal.SIGINT)
            try:
                batch.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                batch.kill()
                batch.communicate(timeout=60)


def rows(output: subprocess.CompletedProcess[str] | str) -> dict[str, dict]:
    """The batch's `--json` summary (a finished run, or the stdout of a started one), by file name."""
    stdout = output if isinstance(output, str) else output.stdout
    return {Path(r["file"]).name: r for r in json.loads(stdout)}


def manifests(out: Path) -> dict[str, dict]:
    """Each job's manifest under `out`, by the media file's name."""
    found = {}
    for path in out.glob("*/*/*/*/job-*/manifest.json"):
        data = json.loads(path.read_text())
        found[Path(data["media"]).name] = data | {"folder": str(path.parent)}
    return found


def wait_for(condition, timeout: float = TIMEOUT, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def actor_running_a_job(driver: int) -> psutil.Process | None:
    """A device actor of the batch run by `driver` while it runs a job (Ray titles it `ray::JobRunner.run`)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or ())
        if cmd.startswith("ray::JobRunner.run"):
            try:
                if any(p.pid == driver for p in proc.parents()):
                    return proc
            except psutil.NoSuchProcess:
                continue
    return None


def marked(mark: str) -> list[psutil.Process]:
    """Every process carrying `mark` in its environment (a test's: Ray's daemons and workers inherit it)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(MARK) == mark:
                found.append(proc)
    return found


def our_commands() -> list[str]:
    """The command lines of every process this test started, Ray's own included."""
    commands = []
    for proc in marked(_mark["value"]):
        with contextlib.suppress(psutil.Error):
            commands.append(" ".join(proc.cmdline()))
    return commands


def ray_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or ()):
            found.append(proc)
    return found


MARK = "PIPELINE_BATCH_TEST"  # in the environment of every process a test starts, Ray's own included
_mark = {"value": "", "tmp": tempfile.gettempdir(), "tmpdir": tempfile.gettempdir()}


def system_tmp() -> Path:
    """The test's own TMPDIR: a batch writes nothing there (its served workers' folders are in its output root)."""
    return Path(_mark["tmpdir"])


@pytest.fixture(autouse=True)
def no_ray_left() -> Iterator[None]:
    """Every process a test started (its batch's local Ray instance, its cluster's nodes, their workers) is gone
    at its end: found by a mark in their environment, which Ray's daemons and workers inherit, so a test running
    beside it (pytest -n) is never taken for its own. Any left over is killed, by pid, and fails the test."""
    _mark["value"] = mark = uuid.uuid4().hex
    # The local Ray instances' session folders, removed with the test (short: Ray's socket paths are limited).
    _mark["tmp"] = scratch = tempfile.mkdtemp(prefix="rbt", dir="/tmp")
    _mark["tmpdir"] = tempfile.mkdtemp(prefix="tmp", dir=scratch)
    yield

    deadline = time.monotonic() + 30  # Ray's processes take a moment to follow their driver
    while marked(mark) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = marked(mark)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    shutil.rmtree(scratch, ignore_errors=True)
    assert not left, f"processes outlived the test: {[p.pid for p in left]}"
