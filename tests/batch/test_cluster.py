"""The cluster path: a Ray head and a second node started on this machine (`ray start`, each with its own
temporary folder and resources), and a batch that joins them with --address and runs jobs on both nodes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import TIMEOUT, env, pipeline, rows

RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster() -> Iterator[tuple[str, Path]]:
    """(address, the second node's temporary folder). Each `ray start` runs in a session of its own, so its
    node's daemons share its process group: stopping the group stops exactly this test's nodes."""
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
        yield f"127.0.0.1:{port}", folders[1]
    finally:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def test_a_batch_joins_a_cluster_and_runs_jobs_on_its_second_node(
    clips: Path, tmp_path: Path, cluster: tuple[str, Path]
) -> None:
    address, second = cluster
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
