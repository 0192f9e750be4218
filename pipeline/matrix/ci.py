"""The CI workflow rendered from the matrix: one job per profile on its runner labels (the default profile's
runs `make test`, a containerised one builds and tests its image, a native one runs tox), a report job over
every profile's results and an all-green gate; plus the actionlint config naming the self-hosted labels."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pipeline.matrix.generated import generated_header
from pipeline.profiles import Matrix, Profile

WORKFLOW = Path(".github/workflows/matrix.yml")
ACTIONLINT = Path(".github/actionlint.yaml")
# Runner labels actionlint knows for self-hosted runners; others are declared in .github/actionlint.yaml.
_ACTIONLINT_LABELS = frozenset({"self-hosted", "linux", "macos", "windows", "x64", "arm", "arm64"})
# Actions on the Node 24 runtime (Node 20 actions are deprecated on GitHub's runners).
CHECKOUT, SETUP_PYTHON = "actions/checkout@v5", "actions/setup-python@v6"
UPLOAD, DOWNLOAD = "actions/upload-artifact@v6", "actions/download-artifact@v7"


def job_id(profile: Profile) -> str:
    return f"e2e-{profile.name}"


def _labels(runner: Iterable[str]) -> str:
    return "[" + ", ".join(runner) + "]"


def _upload(name: str, path: str) -> list[str]:
    return [
        "      - name: Upload results and JUnit XML",
        "        if: always()",
        f"        uses: {UPLOAD}",
        "        with:",
        f"          name: {name}",
        f"          path: {path}",
        "          if-no-files-found: warn",
    ]


def _setup_python(version: str) -> list[str]:
    return [
        f"      - uses: {SETUP_PYTHON}",
        "        with:",
        f'          python-version: "{version}"',
    ]


def _job(matrix: Matrix, profile: Profile) -> list[str]:
    main = profile.name == matrix.default_profile().name
    run = profile.runtime
    if main:
        how = "make test: lint, unit, E2E on the host, image build and run"
    elif profile.ci.container:
        how = f"E2E inside {profile.ci.image}" + (" with GPUs" if profile.ci.gpus else "")
    else:
        how = "E2E natively through tox"
    lines = [
        f"  {job_id(profile)}:",
        f'    name: "{profile.name}: {run.backend} on {run.device}/{run.compute_type} ({how})"',
        f"    runs-on: {_labels(profile.ci.runner)}",
        "    timeout-minutes: 90",
        "    env:",
        f"      PIPELINE_PROFILE: {profile.name}",
        "      PIPELINE_RESULTS_DIR: ${{ github.workspace }}/results",
        "    steps:",
        f"      - uses: {CHECKOUT}",
        *_setup_python(profile.ci.python),
    ]
    if main:
        lines += [
            "      - name: Room for the torch venv and the images",
            "        run: sudo rm -rf /usr/share/dotnet /usr/local/lib/android /opt/ghc",
            "      - name: Debian packages",
            "        run: sudo make system-deps",
            "      - name: Project venv and bundled models",
            "        run: make setup",
            "      - name: make test",
            "        run: make test",
        ]
    elif profile.ci.container:
        lines += [
            f"      - name: Build {profile.ci.image}",
            f"        run: make image PROFILE={profile.name}",
            "      - name: E2E suites inside the image" + (" with GPUs" if profile.ci.gpus else ""),
            f"        run: make e2e-image PROFILE={profile.name}",
        ]
    else:
        brew = " ".join(matrix.system.get("brew", []))
        lines += [
            "      - name: Homebrew packages",
            f"        run: brew install {brew}",
            "      - name: tox",
            '        run: python -m pip install "tox>=4.15"',
            "      - name: E2E suites",
            f"        run: make e2e PROFILE={profile.name}",
        ]
    return lines + _upload(f"results-{profile.name}", "results/") + [""]


def render_workflow(matrix: Matrix) -> str:
    main = matrix.default_profile()
    e2e_jobs = [job_id(p) for p in matrix.profiles.values()]
    lines = [
        generated_header().rstrip("\n"),
        "name: matrix",
        "",
        "on:",
        "  push:",
        "    branches: [main]",
        "  pull_request:",
        "  workflow_dispatch:",
        "",
        "permissions:",
        "  contents: read",
        "",
        "concurrency:",
        "  group: matrix-${{ github.ref }}",
        "  cancel-in-progress: true",
        "",
        "env:",
        '  HF_HUB_OFFLINE: "1"',
        '  PYANNOTE_METRICS_ENABLED: "false"',
        "",
        "jobs:",
    ]
    for profile in matrix.profiles.values():
        lines += _job(matrix, profile)
    lines += [
        "  report:",
        '    name: "report: every profile\'s results in one table and page"',
        f"    needs: {_labels(e2e_jobs)}",
        "    if: always()",
        f"    runs-on: {_labels(main.ci.runner)}",
        "    steps:",
        f"      - uses: {CHECKOUT}",
        *_setup_python(main.ci.python),
        f"      - uses: {DOWNLOAD}",
        "        with:",
        "          pattern: results-*",
        "          path: results",
        "      - name: Report",
        "        run: |",
        '          python -m pip install -e ".[report]"',
        "          pipeline matrix report results -o report",
        '          cat report/report.md >> "$GITHUB_STEP_SUMMARY"',
        f"      - uses: {UPLOAD}",
        "        with:",
        "          name: report",
        "          path: report/",
        "",
        "  all-green:",
        '    name: "all green: every profile\'s E2E suites and the report passed"',
        f"    needs: {_labels([*e2e_jobs, 'report'])}",
        "    if: always()",
        f"    runs-on: {_labels(main.ci.runner)}",
        "    steps:",
        "      - name: Every job succeeded",
        "        env:",
        "          RESULTS: ${{ join(needs.*.result, ' ') }}",
        "        run: |",
        '          echo "needs: $RESULTS"',
        '          for result in $RESULTS; do [ "$result" = success ] || exit 1; done',
    ]
    return "\n".join(lines) + "\n"


def render_actionlint(matrix: Matrix) -> str:
    labels = sorted(
        {label for p in matrix.profiles.values() if "self-hosted" in p.ci.runner for label in p.ci.runner}
        - _ACTIONLINT_LABELS
    )
    return (
        generated_header() + "# Labels of the profiles' self-hosted runners, so that actionlint knows them.\n"
        "self-hosted-runner:\n  labels:\n" + "".join(f"    - {label}\n" for label in labels)
    )
