"""Fixtures for the fault-injection tests: clean reference runs of the real worker (requests: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline.asr import AsrRequest
from pipeline.asr.attempts import AsrOutcome
from pipeline.asr.isolation import run_isolated

from .harness import JFK, TIMEOUT


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
