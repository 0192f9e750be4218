"""Fixtures for the fault-injection tests: clean reference runs of the real worker (requests: tests/conftest.py),
with tiny.en or with the test-only fake backend."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline.asr import AsrRequest
from pipeline.asr.attempts import AsrOutcome
from pipeline.asr.isolation import run_isolated

from .harness import FAKE, JFK, TIMEOUT, faulty_argv


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


@pytest.fixture(scope="session")
def fake_request_for(request_for: Callable[..., AsrRequest]) -> Callable[..., AsrRequest]:
    """A request for the test-only FAKE backend (no model; run it with worker_argv=faulty_argv(...))."""

    def make(**changes: object) -> AsrRequest:
        return request_for(FAKE, **{"model_dir": "", **changes})

    return make


@pytest.fixture(scope="session")
def fake_jfk_reference(
    fake_request_for: Callable[..., AsrRequest], tmp_path_factory: pytest.TempPathFactory
) -> AsrOutcome:
    """A clean run of the fake on JFK through the worker: what a salvaged fake run must reproduce."""
    workdir = tmp_path_factory.mktemp("fake-jfk-reference")
    outcome = run_isolated([fake_request_for(audio=str(JFK))], workdir, timeout=TIMEOUT, worker_argv=faulty_argv())
    assert outcome.transcript.text.startswith("FAKE TRANSCRIPT 0.00-5.00"), outcome.transcript.text
    return outcome
