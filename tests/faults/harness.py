"""Shared pieces of the fault-injection harness: where things are, how to run the faulty worker.

Two workers: the real one with a real backend (tiny.en), for what a real library does when it dies, and the same
worker with the test-only FAKE backend (tests/fakes/fake_asr.py, requests with backend FAKE, run through
`faulty_argv`), for what the isolation machinery does with any worker that dies: no model, a second a run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
FAULTY_WORKER = Path(__file__).with_name("faulty_worker.py")
JFK = ROOT / "tests/fixtures/jfk.wav"
TIMEOUT = 120.0  # generous: several agents share two cores; hang tests pass their own
FAKE = "fake"  # the test-only backend's name; only the faulty worker can load it


def faulty_argv(**spec: Any) -> list[str]:
    """worker_argv for run_isolated: the real worker, with the fault `spec` (see faulty_worker.py; none: no fault),
    able to load the FAKE backend."""
    return [sys.executable, str(FAULTY_WORKER), json.dumps(spec)]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[int]:
    """Live processes in process group `pgid`."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return members
