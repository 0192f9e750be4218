"""Shared pieces of the fault-injection harness: where things are, how to run the faulty worker."""

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


def faulty_argv(**spec: Any) -> list[str]:
    """worker_argv for run_isolated: the real worker, with the fault `spec` (see faulty_worker.py)."""
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
