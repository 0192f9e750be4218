"""A job prepared on one machine and run on another (a batch on a cluster, a job folder on shared storage): its
plan is resolved again where the hardware resolves it otherwise, and a device its settings name and the machine
lacks is a one-line error. Hardware values stand for the machines (as in test_hardware); the rest is real."""

from pathlib import Path

import pytest

from pipeline import config, hardware, plan
from pipeline.errors import PipelineError
from pipeline.plan import JobPlan, settings_of

CPU_TYPES = frozenset({"int8", "int8_float32", "float32"})
CPU_ONLY = hardware.Hardware("Linux", "x86_64", 0, False, {"cpu": CPU_TYPES})
GPU = hardware.Hardware("Linux", "x86_64", 1, False, {"cpu": CPU_TYPES, "cuda": frozenset({"float16", "int8"})})


def _settings(**keys: str) -> config.Config:
    # Not the caller's environment: `make test` pins PIPELINE_PROFILE, and here the machine must decide.
    return config.load(cli={"WHISPER_MODEL": "base", **keys}, project_config=Path("/nonexistent"), environ={})


def _planned_on(hw: hardware.Hardware, cfg: config.Config, model_dir: Path) -> JobPlan:
    """The plan `prepare` records on a machine with `hw` (its model folders: `model_dir`, which holds a model)."""
    profile, chain, model = plan._asr(cfg, hw)
    return JobPlan(profile.name, model, chain, tuple(str(model_dir) for _ in chain), (), settings_of(cfg))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "model.bin").write_bytes(b"x")
    return tmp_path


def test_a_job_planned_where_there_is_a_gpu_is_planned_again_where_there_is_none(model_dir: Path) -> None:
    cfg = _settings()  # PIPELINE_PROFILE=auto: the machine decides
    on_gpu = _planned_on(GPU, cfg, model_dir)
    assert on_gpu.profile == "cuda" and on_gpu.chain[0].device == "cuda"
    assert on_gpu.outdated(cfg, GPU) is None, "the same hardware: the recorded plan runs"
    why = on_gpu.outdated(cfg, CPU_ONLY)
    assert why is not None and "\n" not in why
    assert "profile cpu (faster-whisper on cpu" in why and "planned with cuda (faster-whisper on cuda" in why


def test_a_job_planned_without_a_gpu_is_planned_again_where_there_is_one(model_dir: Path) -> None:
    cfg = _settings()
    on_cpu = _planned_on(CPU_ONLY, cfg, model_dir)
    assert on_cpu.outdated(cfg, CPU_ONLY) is None
    assert "this machine resolves profile cuda" in (on_cpu.outdated(cfg, GPU) or "")


def test_a_plan_that_names_its_profile_and_device_stays_put_whatever_the_gpus(model_dir: Path) -> None:
    cfg = _settings(PIPELINE_PROFILE="cpu", WHISPER_DEVICE="cpu")
    on_gpu = _planned_on(GPU, cfg, model_dir)
    assert on_gpu.outdated(cfg, CPU_ONLY) is None and on_gpu.outdated(cfg, GPU) is None


def test_a_cuda_device_asked_for_is_a_one_line_error_where_there_is_none(model_dir: Path) -> None:
    cfg = _settings(WHISPER_DEVICE="cuda")
    on_gpu = _planned_on(GPU, cfg, model_dir)
    with pytest.raises(PipelineError) as caught:
        on_gpu.outdated(cfg, CPU_ONLY)
    assert "WHISPER_DEVICE=cuda" in str(caught.value) and "\n" not in str(caught.value)
