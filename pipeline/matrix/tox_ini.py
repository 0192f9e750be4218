"""tox.ini rendered from the matrix: lint, unit, and one e2e-NAME environment per profile (factor lines
carry each profile's extras, pins and PIPELINE_PROFILE)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pipeline.matrix.generated import generated_header
from pipeline.profiles import Matrix

TOX = Path("tox.ini")
# Extras every E2E environment gets on top of the profile's own.
TOX_E2E_EXTRAS = ("models", "test")


def _factor_lines(by_profile: dict[str, Iterable[str]]) -> list[str]:
    return [f"    {name}: {value}" for name, values in by_profile.items() for value in values]


def render_tox(matrix: Matrix) -> str:
    names = list(matrix.profiles)
    profiles = matrix.profiles.values()
    test_model = matrix.defaults["test_model"]
    results = "{env:PIPELINE_RESULTS_DIR:{tox_root}{/}results}"
    lines = [
        generated_header().rstrip("\n"),
        "#",
        "#   tox -e lint      ruff",
        "#   tox -e unit      the unit tests",
        f"#   tox -e e2e-NAME  the same E2E suites on one profile: {', '.join(f'e2e-{n}' for n in names)}",
        "[tox]",
        "requires = tox>=4.15",
        "env_list =",
        "    lint",
        "    unit",
        f"    e2e-{{{','.join(names)}}}",
        "",
        "[testenv]",
        "package = wheel",
        "wheel_build_env = .pkg",
        "pass_env =",
        "    PIPELINE_*",
        "    WHISPER_*",
        "set_env =",
        "    HF_HUB_OFFLINE = 1",
        "    PYANNOTE_METRICS_ENABLED = false",
        "    PIPELINE_MATRIX = {tox_root}{/}matrix{/}profiles.toml",
        "",
        "[testenv:lint]",
        "description = ruff over the project",
        "skip_install = true",
        "deps = ruff>=0.6",
        "commands = ruff check {posargs:.}",
        "",
        "[testenv:unit]",
        "description = unit tests",
        "extras = test",
        "commands = pytest -n 2 tests{/}unit {posargs}",
        "",
        f"[testenv:e2e-{{{','.join(names)}}}]",
        "description =",
        *_factor_lines(
            {
                p.name: [
                    f"E2E suites on the {p.name} profile: {p.runtime.backend} on "
                    f"{p.runtime.device}/{p.runtime.compute_type}"
                ]
                for p in profiles
            }
        ),
        "extras =",
        *(f"    {extra}" for extra in TOX_E2E_EXTRAS),
        *_factor_lines({p.name: sorted(set(p.ci.extras) - set(TOX_E2E_EXTRAS)) for p in profiles}),
        "deps =",
        *_factor_lines({p.name: p.ci.pip_pins for p in profiles}),
        "set_env =",
        "    {[testenv]set_env}",
        f"    PIPELINE_TEST_MODEL = {{env:PIPELINE_TEST_MODEL:{test_model}}}",
        f"    PIPELINE_RESULTS_DIR = {results}",
        *_factor_lines({p.name: [f"PIPELINE_PROFILE = {p.name}"] for p in profiles}),
        f"commands_pre = pipeline models install {{env:PIPELINE_TEST_MODEL:{test_model}}}",
        f"commands = pytest -n 2 --junitxml={results}{{/}}junit-{{env_name}}.xml tests{{/}}e2e {{posargs}}",
    ]
    return "\n".join(lines) + "\n"
