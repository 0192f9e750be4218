"""`pipeline matrix check` on deliberately broken copies of the repository.

Each case copies the real files into a temporary repository, breaks one thing (the matrix, the Makefile or a
rendered file) and expects the problem to name the file, the line and what disagrees.
"""

from __future__ import annotations

import re
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
MATRIX = "matrix/profiles.toml"
WORKFLOW = ".github/workflows/matrix.yml"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    for rel in COPIED:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    for suite in load_matrix(ROOT / MATRIX).defaults["suites"]:
        test = tmp_path / "tests" / "e2e" / f"test_{suite}.py"
        test.parent.mkdir(parents=True, exist_ok=True)
        test.write_text("")
    return tmp_path


def problems(repo: Path) -> list[str]:
    return [str(p) for p in check(repo, load_matrix(repo / MATRIX))]


def edit(repo: Path, rel: str, old: str, new: str, after: str = "") -> int:
    """Replace the first `old` after `after` in `rel` (it must be there); the line number where it was."""
    path = repo / rel
    text = path.read_text()
    start = text.index(after)
    at = text.index(old, start)
    path.write_text(text[:at] + new + text[at + len(old) :])
    return text[:at].count("\n") + 1


def line_of(repo: Path, rel: str, fragment: str, after: str = "") -> int:
    """Line of the first `fragment` that comes after a line holding `after`."""
    lines = (repo / rel).read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if after in line)
    return next(n for n, line in enumerate(lines[start:], start + 1) if fragment in line)


def test_the_repository_agrees_with_its_matrix(repo: Path) -> None:
    assert problems(repo) == []
    assert problems(ROOT) == []


Case = Callable[[Path], str]

# --- the matrix's own consistency ---------------------------------------------------------------------------


def defaults_without_suites(repo: Path) -> str:
    edit(repo, MATRIX, 'suites = ["transcribe", "translate", "subtitle"]\n', "", after="[defaults]")
    return f"{MATRIX}:{line_of(repo, MATRIX, '[defaults]')}: [defaults] lacks suites"


def suite_test_file_missing(repo: Path) -> str:
    (repo / "tests" / "e2e" / "test_subtitle.py").unlink()
    return f"{MATRIX}:{line_of(repo, MATRIX, 'suites = ')}: E2E suite 'subtitle' has no test file"


def defaults_without_test_model(repo: Path) -> str:
    edit(repo, MATRIX, 'test_model = "base"\n', "")
    return f"{MATRIX}:{line_of(repo, MATRIX, '[defaults]')}: [defaults] lacks test_model"


def default_profile_unknown(repo: Path) -> str:
    line = edit(repo, MATRIX, 'profile = "cpu"', 'profile = "rocm"')
    return f"{MATRIX}:{line}: [defaults] profile 'rocm' is not a profile; profiles: cpu, cuda, mps"


def profile_lacks_a_suite(repo: Path) -> str:
    old = 'suites = ["transcribe", "translate", "subtitle"]'
    line = edit(repo, MATRIX, old, 'suites = ["transcribe", "subtitle"]', after="[profiles.mps]")
    return f"{MATRIX}:{line}: profile 'mps' lacks E2E suite(s) translate"


def profile_names_an_unknown_suite(repo: Path) -> str:
    old = 'suites = ["transcribe", "translate", "subtitle"]'
    line = edit(repo, MATRIX, old, old[:-1] + ', "diarize"]', after="[profiles.cuda]")
    return f"{MATRIX}:{line}: profile 'cuda' names suite(s) diarize that are not in [defaults] suites"


def profile_unknown_extra(repo: Path) -> str:
    line = edit(repo, MATRIX, 'extras = ["mlx", "whisperx", "mt", ', 'extras = ["mlx", "whisperX", "mt", ')
    return f"{MATRIX}:{line}: profile 'mps': extra(s) whisperX not in pyproject.toml"


def profile_without_runner(repo: Path) -> str:
    line = edit(repo, MATRIX, 'runner = ["macos-14"]', "runner = []")
    return f"{MATRIX}:{line}: profile 'mps' has no runner labels"


def container_without_base_image(repo: Path) -> str:
    edit(repo, MATRIX, 'base_image = "debian:bookworm-slim"\n', "", after="[profiles.cuda]")
    return f"{MATRIX}:{line_of(repo, MATRIX, '[profiles.cuda]')}: profile 'cuda' is containerised but has no base_image"


def base_image_not_debian(repo: Path) -> str:
    line = edit(repo, MATRIX, 'base_image = "debian:bookworm-slim"', 'base_image = "ubuntu:24.04"')
    return f"{MATRIX}:{line}: profile 'cpu': base_image 'ubuntu:24.04' is not Debian"


def base_image_python(repo: Path) -> str:
    line = edit(repo, MATRIX, 'base_image = "debian:bookworm-slim"', 'base_image = "debian:trixie-slim"')
    return (
        f"{MATRIX}:{line}: profile 'cpu': base_image 'debian:trixie-slim' ships python 3.13, the profile says "
        "python 3.11"
    )


# --- the Makefile (read by make, not rendered) --------------------------------------------------------------


def make_literal_profiles(repo: Path) -> str:
    line = edit(repo, "Makefile", 'PROFILES := $(call matrix,*m["profiles"])', "PROFILES := cpu cuda")
    return f"Makefile:{line}: PROFILES is 'cpu cuda', the matrix has cpu cuda mps"


def make_profiles_not_from_matrix(repo: Path) -> str:
    line = edit(repo, "Makefile", 'PROFILES := $(call matrix,*m["profiles"])', "PROFILES := $(shell ls images)")
    return f"Makefile:{line}: PROFILES is not read from the matrix file"


def make_without_profiles(repo: Path) -> str:
    edit(repo, "Makefile", 'PROFILES := $(call matrix,*m["profiles"])', 'NAMES := $(call matrix,*m["profiles"])')
    return "Makefile:1: no PROFILES variable read from the matrix"


def make_target_missing(repo: Path) -> str:
    edit(repo, "Makefile", "\nbench: venv\n", "\nbenchmark: venv\n")
    return "Makefile:1: no `bench` target"


def make_writes_image(repo: Path) -> str:
    line = edit(repo, "Makefile", "\nMODELS ?=", "\nIMAGE := pipeline:cuda\nMODELS ?=") + 1
    return f"Makefile:{line}: writes 'pipeline:cuda', a fact of profile 'cuda'"


def make_unknown_tox_env(repo: Path) -> str:
    path = repo / "Makefile"
    path.write_text(path.read_text() + "\nrocm:\n\t$(TOX) -e e2e-rocm\n")
    line = len(path.read_text().splitlines())
    return f"Makefile:{line}: tox env e2e-rocm names no profile"


# --- rendered files: compared whole with what rendering makes -----------------------------------------------


def tox_hand_edit(repo: Path) -> str:
    line = edit(repo, "tox.ini", "cpu: torch==2.8.*", "cpu: torch==2.9.*")
    return f"tox.ini:{line}: differs from what `pipeline matrix render` makes: expected '    cpu: torch==2.8.*'"


def matrix_changed_without_render(repo: Path) -> str:
    edit(repo, MATRIX, 'torch = "2.8.*"', 'torch = "2.9.*"', after="[profiles.cpu]")
    line = line_of(repo, "tox.ini", "cpu: torch==2.8.*")
    return f"tox.ini:{line}: differs from what `pipeline matrix render` makes: expected '    cpu: torch==2.9.*'"


def workflow_hand_edit(repo: Path) -> str:
    line = edit(repo, WORKFLOW, "timeout-minutes: 90", "timeout-minutes: 30")
    return f"{WORKFLOW}:{line}: differs from what `pipeline matrix render` makes: expected '    timeout-minutes: 90'"


def workflow_line_appended(repo: Path) -> str:
    path = repo / WORKFLOW
    path.write_text(path.read_text() + "  extra:\n")
    line = len(path.read_text().splitlines())
    return f"{WORKFLOW}:{line}: differs from what `pipeline matrix render` makes: expected '(end of file)'"


def workflow_missing(repo: Path) -> str:
    (repo / WORKFLOW).unlink()
    return f"{WORKFLOW}:1: missing: run `pipeline matrix render --write`"


def actionlint_hand_edit(repo: Path) -> str:
    line = edit(repo, ".github/actionlint.yaml", "    - gpu\n", "    - gpu\n    - tpu\n") + 1
    return f".github/actionlint.yaml:{line}: differs from what `pipeline matrix render` makes: expected '(end of file)'"


def dockerfile_hand_edit(repo: Path) -> str:
    edit(repo, "images/cpu/Dockerfile", "ARG BASE_IMAGE=debian:bookworm-slim", "ARG BASE_IMAGE=python:3.12-slim")
    return (
        "images/cpu/Dockerfile:1: differs from what `pipeline matrix render` makes: expected "
        "'ARG BASE_IMAGE=debian:bookworm-slim'"
    )


def dockerfile_missing(repo: Path) -> str:
    (repo / "images" / "cuda" / "Dockerfile").unlink()
    return "images/cuda/Dockerfile:1: missing: run `pipeline matrix render --write`"


def dockerfile_of_a_native_profile(repo: Path) -> str:
    (repo / "images" / "mps").mkdir()
    shutil.copy(repo / "images" / "cpu" / "Dockerfile", repo / "images" / "mps" / "Dockerfile")
    return "images/mps/Dockerfile:1: profile 'mps' runs natively (image = 'native'): this Dockerfile is stale"


def dockerfile_of_no_profile(repo: Path) -> str:
    (repo / "images" / "rocm").mkdir()
    shutil.copy(repo / "images" / "cpu" / "Dockerfile", repo / "images" / "rocm" / "Dockerfile")
    return "images/rocm/Dockerfile:1: images/rocm/ names no profile; profiles: cpu, cuda, mps: this Dockerfile is stale"


CASES = [
    defaults_without_suites,
    suite_test_file_missing,
    defaults_without_test_model,
    default_profile_unknown,
    profile_lacks_a_suite,
    profile_names_an_unknown_suite,
    profile_unknown_extra,
    profile_without_runner,
    container_without_base_image,
    base_image_not_debian,
    base_image_python,
    make_literal_profiles,
    make_profiles_not_from_matrix,
    make_without_profiles,
    make_target_missing,
    make_writes_image,
    make_unknown_tox_env,
    tox_hand_edit,
    matrix_changed_without_render,
    workflow_hand_edit,
    workflow_line_appended,
    workflow_missing,
    actionlint_hand_edit,
    dockerfile_hand_edit,
    dockerfile_missing,
    dockerfile_of_a_native_profile,
    dockerfile_of_no_profile,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_a_disagreement_names_file_line_and_fact(repo: Path, case: Case) -> None:
    expected = case(repo)
    found = problems(repo)
    assert any(p.startswith(expected) for p in found), f"expected {expected!r} in:\n" + "\n".join(found)


def test_one_problem_per_hand_edited_file(repo: Path) -> None:
    # The first differing line, not one problem per line: the fix is one re-render, not many edits.
    tox_hand_edit(repo)
    workflow_hand_edit(repo)
    found = problems(repo)
    assert [re.sub(r":\d+:.*", "", p) for p in found] == ["tox.ini", WORKFLOW], found


def test_cli_check_exit_codes(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    matrix = str(repo / MATRIX)
    assert cli.main(["--matrix", matrix, "check"]) == 0
    assert "agree with" in capsys.readouterr().out
    expected = tox_hand_edit(repo)
    assert cli.main(["--matrix", matrix, "check"]) == 1
    out, err = capsys.readouterr()
    assert expected in out and "1 problem(s)" in err
    assert cli.main(["--matrix", matrix, "render", "--write"]) == 0
    assert "wrote tox.ini" in capsys.readouterr().out
    assert cli.main(["--matrix", matrix, "check"]) == 0
