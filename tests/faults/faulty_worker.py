"""The real ASR worker with real faults injected at its hook points. TEST-ONLY: this file is not packaged.

    python tests/faults/faulty_worker.py SPEC_JSON [--wait] REQUEST_JSON RESULT_JSON

This worker, and only this one, can also load the test-only FAKE backend (tests/fakes/fake_asr.py) for a request
whose backend is "fake": the real worker protocol with a canned transcript and no model. SPEC_JSON "{}" injects
nothing.

SPEC_JSON: {"point": HOOK, "action": ACTION, "index": CHUNK (after_chunk only), "once": TOKEN_PATH,
"pidfile": PATH, "orphan": bool, "ignore_term": bool}. Action "report" injects nothing: it writes the pidfile
and carries on, so that a test knows the worker got that far. With "once", only the first worker that manages to
create TOKEN_PATH faults; later workers in the chain run clean, so a test can crash one attempt, not the next.
The point of this module is that the faults are real: a null-pointer read, abort(), SIGKILL, a process that
never returns, bytes that are really half written. Nothing here is simulated by return values.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.asr import worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, where the fake lives (run as a script)
from fakes.fake_asr import NAME as FAKE
from fakes.fake_asr import FakeAsr

POINTS = ("after_load", "after_chunk", "before_result_write", "after_result_before_marker", "after_marker")
ACTIONS = ("segv", "abort", "kill", "exit", "raise", "hang", "half", "forge", "tamper", "bad_marker", "report")


def forged_payload(payload: bytes) -> bytes:
    """A complete, well-formed result that says something else: its marker must reject it, not its syntax."""
    document = json.loads(payload)
    for segment in document["transcript"]["segments"]:
        segment["text"] = "CORRUPTED"
    return (json.dumps(document) + "\n").encode()


class FaultHooks(worker.Hooks):
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.payload = b""

    def _armed(self, point: str, index: int | None = None) -> bool:
        if self.spec.get("point") != point or (index is not None and self.spec.get("index", 0) != index):
            return False
        if once := self.spec.get("once"):
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return False
        return True

    def _fault(self, result: Path | None = None) -> None:
        action = self.spec["action"]
        if pidfile := self.spec.get("pidfile"):
            pids = {"pid": os.getpid(), "pgid": os.getpgid(0)}
            if self.spec.get("orphan"):  # a grandchild that would outlive a worker killed alone
                pids["child"] = subprocess.Popen(["sleep", "1000"]).pid
            Path(pidfile).write_text(json.dumps(pids))
        if action == "report":  # no fault: the pidfile only says that the worker got this far
            return
        sys.stderr.write(f"faulty_worker: injecting {action} at {self.spec['point']}\n")
        sys.stderr.flush()
        if action == "segv":
            ctypes.string_at(0)  # a genuine null-pointer read: the kernel sends SIGSEGV
        elif action == "abort":
            os.abort()  # what a failed C++ assertion or std::terminate does
        elif action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)  # how the OOM killer ends a process
        elif action == "exit":
            os._exit(3)  # a native library calling exit() under us
        elif action == "raise":
            raise RuntimeError("injected fault")
        elif action == "hang":
            if self.spec.get("ignore_term"):
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(3600)
        elif action == "half":  # a non-atomic writer dying mid-write: half the bytes, then gone
            assert result is not None
            result.write_bytes(self.payload[: len(self.payload) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "forge":  # a complete-looking result without a marker, then death
            assert result is not None
            result.write_bytes(forged_payload(self.payload))
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "tamper":  # the result changed after its marker was written (disk, another process)
            assert result is not None
            result.write_bytes(forged_payload(result.read_bytes()))
        elif action == "bad_marker":
            assert result is not None
            marker = worker.marker_path(result)
            pinned = json.loads(marker.read_text())
            marker.write_text(json.dumps({**pinned, "sha256": "0" * 64}))
        else:
            raise ValueError(f"unknown fault action {action!r}; known: {', '.join(ACTIONS)}")

    def after_load(self) -> None:
        if self._armed("after_load"):
            self._fault()

    def after_chunk(self, index: int) -> None:
        if self._armed("after_chunk", index):
            self._fault()

    def before_result_write(self, result: Path, payload: bytes) -> None:
        self.payload = payload
        if self._armed("before_result_write"):
            self._fault(result)

    def after_result_before_marker(self, result: Path) -> None:
        if self._armed("after_result_before_marker"):
            self._fault(result)

    def after_marker(self, result: Path) -> None:
        if self._armed("after_marker"):
            self._fault(result)


class _NoSpeechRegions(worker.SpeechRegions):
    """Speech regions as an install without faster-whisper has them (none): the fake loads no VAD model either."""

    def __init__(self) -> None:
        self.regions = []
        self._options = None


def _load_backend_class(name: str) -> Any:
    """The worker's backend loader, plus the fake by its name (the real worker has no such backend)."""
    if name != FAKE:
        return _real_load_backend_class(name)
    worker.SpeechRegions = _NoSpeechRegions  # type: ignore[misc]
    return FakeAsr


_real_load_backend_class = worker.load_backend_class

if __name__ == "__main__":
    worker.load_backend_class = _load_backend_class
    worker.main(sys.argv[2:], hooks=FaultHooks(json.loads(sys.argv[1])))
