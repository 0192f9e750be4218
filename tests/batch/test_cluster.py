"""The cluster path: a Ray head and a second node started on this machine (`ray start`, each with its own
temporary folder and resources), and a batch that joins them with --address and runs jobs on both nodes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from .harness import TIMEOUT, env, manifests, pipeline, rows, running, wait_for
from .test_batch import _done

pytestmark = pytest.mark.slow  # a real Ray instance per test: the full suite, not `make check`

RAY = str(Path(sys.executable).parent / "ray")


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster() -> Iterator[tuple[str, Path, int]]:
    """(address, the second node's temporary folder, its process group). Each `ray start` runs in a session of
    its own, so its node's daemons share its process group: stopping the group stops exactly this test's nodes
    (the workers a raylet started end with it)."""
    port = _free_port()
    folders = [Path(tempfile.mkdtemp(prefix=name, dir="/tmp")) for name in ("rbh", "rbw")]  # short socket paths
    groups: list[int] = []

    def ray_start(*args: str) -> None:
        proc = subprocess.Popen(
            [RAY, "start", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *args],
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        groups.append(proc.pid)
        output, _ = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, output

    try:
        ray_start("--head", f"--port={port}", f"--temp-dir={folders[0]}", "--num-cpus=1", "--include-dashboard=false")
        ray_start(
            f"--address=127.0.0.1:{port}", f"--temp-dir={folders[1]}", "--num-cpus=1", '--resources={"second": 1}'
        )
        yield f"127.0.0.1:{port}", folders[1], groups[1]
    finally:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(group) for group in groups):
            time.sleep(0.2)  # a dying daemon may still write into its folder
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def test_a_batch_joins_a_cluster_and_runs_jobs_on_its_second_node(
    clips: Path, tmp_path: Path, cluster: tuple[str, Path, int]
) -> None:
    address, second, _ = cluster
    out = tmp_path / "out"
    result = pipeline(
        "batch", str(clips), "-w", "transcribe", "-s", "en", "--model", "tiny.en", "--out", str(out),
        "--address", address, "--workers", "2", "--json", check=0,
    )  # fmt: skip
    table = rows(result)
    assert len(table) == 4 and all(r["state"] == "done" for r in table.values()), table
    # One actor a node (each has one CPU): both nodes ran jobs, and the second node's own Ray logs say which.
    assert len({r["node"] for r in table.values()}) == 2, table
    logs = "".join(p.read_text(errors="replace") for p in second.glob("session_*/logs/worker-*.err"))
    there = [r["job_id"] for r in table.values() if f"pipeline: batch: job {r['job_id']} on" in logs]
    assert there, "no job ran on the second node"
    assert all(f"job {j}" not in logs for r in table.values() if (j := r["job_id"]) not in there)


def test_a_node_lost_mid_file_loses_nothing_and_its_file_is_run_on_the_other_node(
    clips: Path, tmp_path: Path, cluster: tuple[str, Path, int]
) -> None:
    address, second, group = cluster
    out = tmp_path / "out"
    with running(
        "batch", str(clips), "-w", "transcribe", "-s", "en", "--model", "tiny.en", "--out", str(out),
        "--address", address, "--workers", "2", "--json",
    ) as batch:  # fmt: skip
        # The second node is running a job: all of it dies at once (its daemons and its workers, kill -9).
        def logs() -> str:
            return "".join(p.read_text(errors="replace") for p in second.glob("session_*/logs/worker-*.err"))

        wait_for(lambda: "pipeline: batch: job" in logs() or batch.poll() is not None, what="a job on node 2")
        raylets = [p for p in psutil.process_iter(["cmdline"]) if str(second) in " ".join(p.info["cmdline"] or ())]
        doomed = {c for r in raylets for c in r.children(recursive=True)} | set(raylets)
        lost = re.findall(r"pipeline: batch: job (\S+) on", logs())[-1]
        finished = {n: json.dumps(m["stages"]) for n, m in manifests(out).items() if _done(m)}
        os.killpg(group, signal.SIGKILL)
        for proc in doomed:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        stdout, stderr = batch.communicate(timeout=TIMEOUT)
    assert batch.returncode == 0, stderr
    table = rows(stdout)
    assert all(r["state"] == "done" for r in table.values()), table
    again = next(r for r in table.values() if r["job_id"] == lost)
    if not finished.get(Path(again["file"]).name):  # the kill landed mid-file: it ran again, on the head
        assert again["attempts"] == 2 and "died; retrying" in stderr, again
    now = manifests(out)
    assert all(json.dumps(now[name]["stages"]) == stages for name, stages in finished.items())
    assert all(_done(m) for m in now.values()) and len(now) == 4
