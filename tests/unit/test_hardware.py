"""Device and compute-type resolution for every profile, with detection replaced at the hardware boundary.

The Hardware values below are fakes of machines we do not have (an NVIDIA GPU, Apple silicon): that boundary is
the only thing faked; the resolution logic and the matrix file are the real ones.
"""

import pytest

from pipeline import config, hardware
from pipeline.errors import PipelineError
from pipeline.profiles import load_matrix

CPU_TYPES = frozenset({"int8", "int8_float32", "float32", "int16"})
LINUX_CPU = hardware.Hardware("Linux", "x86_64", 0, False, {"cpu": CPU_TYPES})
LINUX_GPU = hardware.Hardware(
    "Linux",
    "x86_64",
    1,
    False,
    {"cpu": CPU_TYPES, "cuda": frozenset({"float16", "int8_float16", "float32", "int8"})},
)
APPLE = hardware.Hardware("Darwin", "arm64", 0, True, {"cpu": CPU_TYPES})


def chain(hw, **keys):
    cfg = config.build([("test", keys)])
    matrix = load_matrix()
    profile = hardware.resolve_profile(cfg, matrix, hw)
    return profile.name, [(c.backend, c.device, c.compute_type) for c in hardware.resolve_chain(cfg, profile, hw)]


def test_auto_picks_the_profile_from_the_hardware():
    matrix = load_matrix()
    # faster-whisper first on CTranslate2 hardware, whisperx behind it (the matrix file says why)
    assert chain(LINUX_CPU) == ("cpu", [("faster-whisper", "cpu", "int8"), ("whisperx", "cpu", "int8")])
    assert chain(LINUX_GPU)[0] == "cuda"
    assert chain(LINUX_GPU)[1] == [("faster-whisper", "cuda", "float16"), ("whisperx", "cuda", "float16")]
    name, links = chain(APPLE)
    mps = matrix.profile("mps").runtime
    assert name == "mps" and links[0] == (mps.backend, mps.device, mps.compute_type)
    assert links[1:] == [(b, mps.fallback_device, mps.fallback_compute_type) for b in ("faster-whisper", "whisperx")]


@pytest.mark.parametrize(
    "supported, wanted, expected",
    [
        (CPU_TYPES, "float16", "float32"),  # a float request keeps float precision where the CPU has it
        (frozenset({"int8", "int8_float32"}), "float16", "int8"),  # else the quantised type it has
        (CPU_TYPES, "int8_float16", "int8"),  # a quantised request stays quantised
        (frozenset({"float32"}), "int8_float16", "float32"),  # unless the CPU has no int8 kernels
    ],
    ids=["float16-float32", "float16-int8-only", "int8_float16-int8", "int8_float16-float32-only"],
)
def test_a_type_the_cpu_lacks_becomes_the_one_it_has_with_a_notice(supported, wanted, expected):
    hw = hardware.Hardware("Linux", "x86_64", 0, False, {"cpu": supported})
    cfg = config.build([("t", {"WHISPER_COMPUTE_TYPE": wanted, "WHISPER_BACKEND": "faster-whisper"})])
    first = hardware.resolve_chain(cfg, load_matrix().profile("cpu"), hw)[0]
    assert first.compute_type == expected
    assert first.notices == (
        f"CTranslate2 on cpu does not support {wanted}; using {expected} (supported: {', '.join(sorted(supported))})",
    )


def test_a_type_the_cpu_has_is_kept_without_a_notice():
    cfg = config.build([("t", {"WHISPER_COMPUTE_TYPE": "int16", "WHISPER_BACKEND": "faster-whisper"})])
    first = hardware.resolve_chain(cfg, load_matrix().profile("cpu"), LINUX_CPU)[0]
    assert (first.compute_type, first.notices) == ("int16", ())


def test_ctranslate2_has_no_mps():
    _, links = chain(APPLE, WHISPER_BACKEND="faster-whisper")
    assert links[0][:2] == ("faster-whisper", "cpu")


def test_cuda_profile_without_a_gpu_falls_back_to_cpu_but_explicit_cuda_is_an_error():
    assert chain(LINUX_CPU, PIPELINE_PROFILE="cuda")[1][0] == ("faster-whisper", "cpu", "float32")
    with pytest.raises(PipelineError, match="no CUDA device"):
        chain(LINUX_CPU, WHISPER_DEVICE="cuda")


def test_mlx_on_linux_runs_on_its_cpu_build():
    _, links = chain(LINUX_CPU, PIPELINE_PROFILE="mps")
    assert links[0][:2] == ("mlx", "cpu")
    assert links[1:] == [("faster-whisper", "cpu", "int8"), ("whisperx", "cpu", "int8")]


def test_unknown_profile_lists_the_profiles():
    with pytest.raises(PipelineError, match=r"unknown profile 'tpu'.*cpu, cuda, mps"):
        chain(LINUX_CPU, PIPELINE_PROFILE="tpu")


def test_detect_on_this_machine_reports_the_cpu():
    hw = hardware.detect()
    assert hw.supports("cpu")
    assert "int8" in hw.ct2_compute_types["cpu"]


@pytest.mark.parametrize("hw", [LINUX_CPU, LINUX_GPU, APPLE], ids=["cpu", "cuda", "mps"])
def test_batch_and_chunk_are_the_profiles_unless_set(hw):
    matrix = load_matrix()
    cfg = config.build([("test", {})])
    profile = hardware.resolve_profile(cfg, matrix, hw)
    assert cfg.batch_size is None and cfg.chunk_seconds is None  # "auto"
    for link in hardware.resolve_chain(cfg, profile, hw):
        assert (link.batch_size, link.chunk_seconds) == (profile.runtime.batch_size, profile.runtime.chunk_seconds)
    cfg = config.build([("test", {"WHISPER_BATCH_SIZE": "3", "ASR_CHUNK_SECONDS": "45"})])
    assert {(c.batch_size, c.chunk_seconds) for c in hardware.resolve_chain(cfg, profile, hw)} == {(3, 45.0)}


def test_auto_batch_size_round_trips_through_a_job_file():
    cfg = config.build([("test", {"WHISPER_BATCH_SIZE": "auto"})])
    assert cfg.to_env()["WHISPER_BATCH_SIZE"] == "auto"
    assert config.build([("job", cfg.to_env())]) == cfg
    with pytest.raises(PipelineError, match=r"WHISPER_BATCH_SIZE.*from 1 to 256, or auto"):
        config.build([("job", {"WHISPER_BATCH_SIZE": "lots"})])
