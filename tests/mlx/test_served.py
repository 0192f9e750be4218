"""The mlx backend in a served worker (`worker --serve`, what `pipeline batch` keeps per actor): loaded once for
several requests, each transcript byte for byte an ordinary worker's (one process per request)."""

from __future__ import annotations

import json
from pathlib import Path

from mlx_speech import JFK, librivox
from test_backend import request

from pipeline.asr.attempts import AsrOutcome
from pipeline.asr.isolation import run_isolated
from pipeline.asr.served import ServedWorker

TIMEOUT = 600


def _text(outcome: AsrOutcome) -> str:
    return json.dumps(outcome.transcript.to_dict(), ensure_ascii=False, sort_keys=True)


def test_an_mlx_worker_serves_several_requests_on_one_load(mlx_models: dict[str, Path], tmp_path: Path) -> None:
    clips = [JFK, librivox("sense_and_sensibility_01_austen_64kb-0880")[0]]
    asks = [request(mlx_models["tiny.en"], audio=str(clip), language="en") for clip in clips]
    served = ServedWorker(root=tmp_path)
    try:
        warm = [run_isolated([a], tmp_path / f"served-{i}", timeout=TIMEOUT, warm=served) for i, a in enumerate(asks)]
        assert served.loads == 1
        assert [o.record.to_manifest()["served"]["request"] for o in warm] == [1, 2]
    finally:
        served.shutdown()
    for i, (ask, outcome) in enumerate(zip(asks, warm, strict=True)):
        ordinary = run_isolated([ask], tmp_path / f"ordinary-{i}", timeout=TIMEOUT)
        assert outcome.used.outcome == "ok" and outcome.transcript.text
        assert _text(outcome) == _text(ordinary)
