"""`pipeline matrix check` on deliberately broken copies of the repository's derived files.

Each case copies the real files into a temporary repository, breaks one thing, and expects the problem to name
the file, the line and the fact that disagrees with the matrix.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.matrix import cli
from pipeline.matrix.check import check
from pipeline.profiles import load_matrix

ROOT = Path(__file__).resolve().parents[2]
COPIED = (
    "matrix/profiles.toml",
    "pyproject.toml",
    "tox.ini",
    "Makefile",
    ".github/workflows/matrix.yml",
    ".github/actionlint.yaml",
    "images/cpu/Dockerfile",
    "images/cuda/Dockerfile",
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    for rel in COPIED:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    for suite in load_matrix(ROOT / "matrix" / "profiles.toml").defaults["suites"]:
        test = tmp_path / "tests" / "e2e" / f"test_{suite}.py"
        test.parent.mkdir(parents=True, exist_ok=True)
        test.write_text("")
    return tmp_path


def problems(repo: Path) -> list[str]:
    return [str(p) for p in check(repo, load_matrix(repo / "matrix" / "profiles.toml"))]


def edit(repo: Path, rel: str, old: str, new: str) -> int:
    """Replace the one occurrence of `old` in `rel`; the line number where it was."""
    path = repo / rel
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {rel}"
    path.write_text(text.replace(old, new))
    return text[: text.index(old)].count("\n") + 1


def line_of(repo: Path, rel: str, fragment: str, after: str = "") -> int:
    """Line of the first `fragment` that comes after a line holding `after`."""
    lines = (repo / rel).read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if after in line)
    return next(n for n, line in enumerate(lines[start:], start + 1) if fragment in line)


def test_the_repository_agrees_with_its_matrix(repo: Path) -> None:
    assert problems(repo) == []
    assert problems(ROOT) == []


Case = Callable[[Path], str]


def tox_extra_missing(repo: Path) -> str:
    edit(repo, "tox.ini", "    cuda: mt\n", "")
    return (
        f"tox.ini:{line_of(repo, 'tox.ini', 'extras =', after='[testenv:e2e-')}: e2e-cuda: extras lacks 'mt'"
    )


def tox_pin_moved(repo: Path) -> str:
    line = edit(repo, "tox.ini", "cpu: torch==2.8.*", "cpu: torch==2.9.*")
    return f"tox.ini:{line}: e2e-cpu: deps has 'torch==2.9.*', not in the matrix"


def tox_env_list(repo: Path) -> str:
    edit(repo, "tox.ini", "e2e-{cpu,cuda,mps}\n\n", "e2e-{cpu,cuda}\n\n")
    return f"tox.ini:{line_of(repo, 'tox.ini', 'env_list =')}: env_list lacks e2e-mps (profile 'mps')"


def tox_profile_env(repo: Path) -> str:
    line = edit(repo, "tox.ini", "cuda: PIPELINE_PROFILE = cuda", "cuda: PIPELINE_PROFILE = cpu")
    return f"tox.ini:{line}: e2e-cuda: set_env gives PIPELINE_PROFILE = cpu, not cuda"


def make_literal_profiles(repo: Path) -> str:
    line = edit(repo, "Makefile", 'PROFILES := $(call matrix,*m["profiles"])', "PROFILES := cpu cuda")
    return f"Makefile:{line}: PROFILES is 'cpu cuda', the matrix has cpu cuda mps"


def make_target_missing(repo: Path) -> str:
    edit(repo, "Makefile", "\nbench: venv\n", "\nbenchmark: venv\n")
    return "Makefile:1: no `bench` target"


def make_writes_image(repo: Path) -> str:
    line = edit(repo, "Makefile", "\nMODELS ?=", "\nIMAGE := pipeline:cuda\nMODELS ?=") + 1
    return f"Makefile:{line}: writes 'pipeline:cuda', a fact of profile 'cuda'"


def dockerfile_base_image(repo: Path) -> str:
    edit(
        repo,
        "images/cpu/Dockerfile",
        "ARG BASE_IMAGE=debian:bookworm-slim",
        "ARG BASE_IMAGE=python:3.12-slim",
    )
    return (
        "images/cpu/Dockerfile:1: first line must be 'ARG BASE_IMAGE=debian:bookworm-slim' (base_image of "
        "profile 'cpu')"
    )


def dockerfile_missing(repo: Path) -> str:
    (repo / "images" / "cuda" / "Dockerfile").unlink()
    line = line_of(repo, "matrix/profiles.toml", 'image = "pipeline:cuda"')
    return f"matrix/profiles.toml:{line}: profile 'cuda' is containerised (pipeline:cuda) but images/cuda/"


def dockerfile_no_gpus(repo: Path) -> str:
    line = edit(
        repo,
        "images/cuda/Dockerfile",
        "ENV PIPELINE_PROFILE=cuda \\\n    NVIDIA_VISIBLE_DEVICES=all "
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility\n",
        "ENV PIPELINE_PROFILE=cuda\n",
    )
    return f"images/cuda/Dockerfile:{line}: profile 'cuda' has gpus = true but the image does not ask"


def dockerfile_stale(repo: Path) -> str:
    (repo / "images" / "mps").mkdir()
    shutil.copy(repo / "images" / "cpu" / "Dockerfile", repo / "images" / "mps" / "Dockerfile")
    return "images/mps/Dockerfile:1: profile 'mps' runs natively (image = 'native'): this Dockerfile is stale"


def workflow_runner(repo: Path) -> str:
    line = edit(
        repo,
        ".github/workflows/matrix.yml",
        "runs-on: [self-hosted, linux, x64, gpu]",
        "runs-on: [ubuntu-24.04]",
    )
    return (
        f".github/workflows/matrix.yml:{line}: e2e-cuda runs on ['ubuntu-24.04'], profile 'cuda' says "
        "['self-hosted', 'linux', 'x64', 'gpu']"
    )


def workflow_job_missing(repo: Path) -> str:
    edit(repo, ".github/workflows/matrix.yml", "  e2e-mps:\n", "  e2e-macos:\n")
    line = line_of(repo, ".github/workflows/matrix.yml", "jobs:")
    return f".github/workflows/matrix.yml:{line}: no job e2e-mps for profile 'mps'"


def workflow_python(repo: Path) -> str:
    path = repo / ".github/workflows/matrix.yml"
    text = path.read_text()
    path.write_text(text.replace('python-version: "3.11"', 'python-version: "3.12"', 1))
    line = line_of(repo, ".github/workflows/matrix.yml", 'python-version: "3.12"')
    return f".github/workflows/matrix.yml:{line}: e2e-cpu sets up python 3.12, profile 'cpu' says 3.11"


def workflow_gate(repo: Path) -> str:
    edit(
        repo,
        ".github/workflows/matrix.yml",
        "needs: [e2e-cpu, e2e-cuda, e2e-mps, report]",
        "needs: [e2e-cpu, e2e-cuda, report]",
    )
    line = line_of(repo, ".github/workflows/matrix.yml", "jobs:")
    return f".github/workflows/matrix.yml:{line}: no all-green gate job"


def workflow_hand_edit(repo: Path) -> str:
    path = repo / ".github/workflows/matrix.yml"
    text = path.read_text()
    path.write_text(text.replace("timeout-minutes: 90", "timeout-minutes: 30", 1))
    line = line_of(repo, ".github/workflows/matrix.yml", "timeout-minutes: 30")
    return (
        f".github/workflows/matrix.yml:{line}: differs from what `pipeline matrix render` makes: expected "
        "'    timeout-minutes: 90'"
    )


def matrix_suite_missing(repo: Path) -> str:
    path = repo / "matrix" / "profiles.toml"
    text = path.read_text()
    mps = text.index("[profiles.mps]")
    old = 'suites = ["transcribe", "translate", "subtitle"]'
    at = text.index(old, mps)
    path.write_text(text[:at] + 'suites = ["transcribe", "subtitle"]' + text[at + len(old) :])
    line = text[:at].count("\n") + 1
    return f"matrix/profiles.toml:{line}: profile 'mps' lacks E2E suite(s) translate"


def suite_test_file_missing(repo: Path) -> str:
    (repo / "tests" / "e2e" / "test_subtitle.py").unlink()
    line = line_of(repo, "matrix/profiles.toml", "suites = ")
    return f"matrix/profiles.toml:{line}: E2E suite 'subtitle' has no test file tests/e2e/test_subtitle.py"


def matrix_base_image_python(repo: Path) -> str:
    path = repo / "matrix" / "profiles.toml"
    text = path.read_text()
    old = 'base_image = "debian:bookworm-slim"'
    path.write_text(text.replace(old, 'base_image = "debian:trixie-slim"', 1))
    line = text[: text.index(old)].count("\n") + 1
    return (
        f"matrix/profiles.toml:{line}: profile 'cpu': base_image 'debian:trixie-slim' ships python 3.13, the "
        "profile says python 3.11"
    )


def matrix_unknown_extra(repo: Path) -> str:
    line = edit(
        repo,
        "matrix/profiles.toml",
        'extras = ["mlx", "whisperx", "mt"]',
        'extras = ["mlx", "whisperX", "mt"]',
    )
    return f"matrix/profiles.toml:{line}: profile 'mps': extra(s) whisperX not in pyproject.toml"


CASES = [
    tox_extra_missing,
    tox_pin_moved,
    tox_env_list,
    tox_profile_env,
    make_literal_profiles,
    make_target_missing,
    make_writes_image,
    dockerfile_base_image,
    dockerfile_missing,
    dockerfile_no_gpus,
    dockerfile_stale,
    workflow_runner,
    workflow_job_missing,
    workflow_python,
    workflow_gate,
    workflow_hand_edit,
    matrix_suite_missing,
    suite_test_file_missing,
    matrix_base_image_python,
    matrix_unknown_extra,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_a_disagreement_names_file_line_and_fact(repo: Path, case: Case) -> None:
    expected = case(repo)
    found = problems(repo)
    assert any(p.startswith(expected) for p in found), f"expected {expected!r} in:\n" + "\n".join(found)


def test_cli_check_exit_codes(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    matrix = str(repo / "matrix" / "profiles.toml")
    assert cli.main(["--matrix", matrix, "check"]) == 0
    assert "agree with" in capsys.readouterr().out
    expected = tox_pin_moved(repo)
    assert cli.main(["--matrix", matrix, "check"]) == 1
    out, err = capsys.readouterr()
    assert expected in out and "2 problem(s)" in err  # the pin it lacks and the one it has
