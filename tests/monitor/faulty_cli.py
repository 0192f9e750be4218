"""`python -m pipeline ...` whose ASR workers run with real faults, chosen per backend: the real CLI, the real
worker, and tests/faults/faulty_worker.py's real faults (a null-pointer read, abort(), SIGKILL, a hang ...).
TEST-ONLY.

    PIPELINE_TEST_FAULTS='{"faster-whisper": {"point": "after_load", "action": "segv"}}' \
        python tests/monitor/faulty_cli.py transcribe media.wav ...

$PIPELINE_TEST_FAULTS maps a backend to the fault its workers get (faulty_worker.py's SPEC_JSON); a backend it
does not name runs clean. As a worker (`faulty_cli.py --worker FAULTS [--wait] REQUEST RESULT`) it reads the
backend from its request and becomes the faulty worker for that backend's fault, or the plain worker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FAULTS = Path(__file__).resolve().parents[1] / "faults"


def _worker(faults: dict[str, dict[str, object]], args: list[str]) -> None:
    from pipeline.asr import worker

    request = Path(next(a for a in args if a != "--wait"))
    spec = faults.get(json.loads(request.read_text(encoding="utf-8")).get("backend"))
    if spec is None:
        worker.main(args)
    sys.path.insert(0, str(FAULTS))
    from faulty_worker import FaultHooks  # type: ignore[import-not-found]

    worker.main(args, hooks=FaultHooks(spec))


def _cli() -> int:
    import pipeline.asr.isolation
    import pipeline.asr.process
    from pipeline.cli import main

    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", os.environ.get("PIPELINE_TEST_FAULTS", "{}")]
    # The modules that start workers look the default argv up when they start one: replace it where it is bound.
    for module in (pipeline.asr.process, pipeline.asr.isolation):
        if hasattr(module, "default_worker_argv"):
            module.default_worker_argv = lambda: list(argv)  # type: ignore[attr-defined]
    return main()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _worker(json.loads(sys.argv[2]), sys.argv[3:])
    sys.exit(_cli())
