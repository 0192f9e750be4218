"""Fixtures for the fault-injection tests: real speech, a real model, the real worker with real faults."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.asr import AsrRequest
from pipeline.asr.isolation import AsrOutcome, run_isolated

from .harness import JFK, TIMEOUT


@pytest.fixture(scope="session")
def request_for(tiny_en: Path, speech: Path) -> Callable[..., AsrRequest]:
    def make(backend: str = "faster-whisper", **changes: Any) -> AsrRequest:
        fields: dict[str, Any] = dict(
            backend=backend,
            model_dir=str(tiny_en),
            device="cpu",
            compute_type="int8",
            audio=str(speech),
            language="en",
            batch_size=2,
            chunk_seconds=20.0,
            threads=2,
        )
        return AsrRequest(**{**fields, **changes})

    return make


@pytest.fixture(scope="session")
def reference(request_for: Callable[..., AsrRequest], tmp_path_factory: pytest.TempPathFactory) -> AsrOutcome:
    """One clean run through the real worker: what every salvaged or fallen-back run must reproduce."""
    workdir = tmp_path_factory.mktemp("reference")
    return run_isolated([request_for()], workdir, timeout=TIMEOUT)


@pytest.fixture(scope="session")
def jfk_reference(request_for: Callable[..., AsrRequest], tmp_path_factory: pytest.TempPathFactory) -> AsrOutcome:
    """A clean run on JFK alone (11 s, one chunk): the cheaper reference for the property test."""
    workdir = tmp_path_factory.mktemp("jfk-reference")
    return run_isolated([request_for(audio=str(JFK))], workdir, timeout=TIMEOUT)
