"""`pipeline matrix check`: the files derived from the matrix agree with it, or a problem names file and line.

Checked: the matrix itself (every profile runs every E2E suite, each suite has its test file, extras exist in
pyproject.toml, a containerised profile's base image ships the profile's Python), the Makefile (it is not
rendered: profiles read from the matrix, the targets the README and CI use, no profile fact written in it),
and every rendered file (tox.ini, the workflow, the actionlint config, the Dockerfiles) against what
`pipeline matrix render` makes, at its first differing line. The rendered files are not parsed: the byte
comparison already pins every fact in them, including hand edits no parser would understand.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.matrix import images, render
from pipeline.profiles import Matrix, Profile

MAKE_TARGETS = (
    "setup",
    "demo",
    "test",
    "e2e",
    "image",
    "e2e-image",
    "engine",
    "matrix-check",
    "matrix-render",
    "bench",
    "report",
)
_RENDER = "run `pipeline matrix render --write`"


@dataclass(frozen=True, order=True)
class Problem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def check(root: Path, matrix: Matrix) -> list[Problem]:
    root = root.resolve()
    broken = _matrix(root, matrix)
    problems = broken + _makefile(root, matrix)
    try:
        problems += _rendered(root, matrix)
    except (PipelineError, KeyError):
        if not broken:  # a matrix too broken to render is reported already; otherwise this is news
            raise
    return problems


def _rel(root: Path, path: Path) -> Path:
    try:
        return path.resolve().relative_to(root)
    except ValueError:
        return path


# --- the matrix file itself ---------------------------------------------------------------------------------


def toml_line(path: Path, table: str, key: str | None = None) -> int:
    """Line of `key` in `[table]` (or of the table header) in a TOML file; 1 when not found."""
    header = re.compile(r"^\s*\[\s*" + re.escape(table).replace(r"\.", r"\s*\.\s*") + r"\s*\]\s*(#.*)?$")
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if header.match(line):
            if key is None:
                return number
            for offset, inner in enumerate(lines[number:], number + 1):
                if re.match(r"^\s*\[", inner):
                    break
                if re.match(rf"^\s*{re.escape(key)}\s*=", inner):
                    return offset
            return number
    return 1


def _matrix(root: Path, matrix: Matrix) -> list[Problem]:
    out: list[Problem] = []

    def problem(table: str, key: str | None, message: str) -> None:
        out.append(Problem(_rel(root, matrix.path), toml_line(matrix.path, table, key), message))

    suites = list(matrix.defaults.get("suites", ()))
    if not suites:
        problem("defaults", None, "[defaults] lacks suites: the E2E suites every profile runs")
    for suite in suites:
        if not (root / "tests" / "e2e" / f"test_{suite}.py").is_file():
            problem("defaults", "suites", f"E2E suite {suite!r} has no test file tests/e2e/test_{suite}.py")
    if "test_model" not in matrix.defaults:
        problem("defaults", None, "[defaults] lacks test_model: the model the E2E suites use")
    default = matrix.defaults.get("profile")
    if default not in matrix.profiles:
        problem(
            "defaults",
            "profile",
            f"[defaults] profile {default!r} is not a profile; profiles: {', '.join(matrix.profiles)}",
        )
    optional = _optional_dependencies(root)
    for p in matrix.profiles.values():
        table = f"profiles.{p.name}"
        if missing := [s for s in suites if s not in p.ci.suites]:
            problem(
                table,
                "suites",
                f"profile {p.name!r} lacks E2E suite(s) {', '.join(missing)}: every profile runs the same suites "
                f"({', '.join(suites)})",
            )
        if unknown := [s for s in p.ci.suites if s not in suites]:
            problem(
                table,
                "suites",
                f"profile {p.name!r} names suite(s) {', '.join(unknown)} that are not in [defaults] suites "
                f"({', '.join(suites)})",
            )
        if optional is not None and (bad := [e for e in p.ci.extras if e not in optional]):
            problem(
                table,
                "extras",
                f"profile {p.name!r}: extra(s) {', '.join(bad)} not in pyproject.toml; extras there: "
                f"{', '.join(optional)}",
            )
        if not p.ci.runner:
            problem(table, "runner", f"profile {p.name!r} has no runner labels")
        if p.ci.container and (message := _base_image(p)):
            problem(table, "base_image", message)
    return out


def _base_image(p: Profile) -> str | None:
    """What is wrong with a containerised profile's base image, if anything."""
    if not p.ci.base_image:
        return f"profile {p.name!r} is containerised but has no base_image"
    suite = images.debian_suite(p.ci.base_image)
    if suite is None:
        return (
            f"profile {p.name!r}: base_image {p.ci.base_image!r} is not Debian ({', '.join(images.DEBIAN_PYTHON)}); "
            "the Dockerfiles install python3 with apt"
        )
    if images.DEBIAN_PYTHON[suite] != p.ci.python:
        return (
            f"profile {p.name!r}: base_image {p.ci.base_image!r} ships python {images.DEBIAN_PYTHON[suite]}, the "
            f"profile says python {p.ci.python}"
        )
    return None


def _optional_dependencies(root: Path) -> dict[str, Any] | None:
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None
    return project.get("optional-dependencies", {})


# --- Makefile (read by make, not rendered) ------------------------------------------------------------------


def _makefile(root: Path, matrix: Matrix) -> list[Problem]:
    path, rel = root / "Makefile", Path("Makefile")
    if not path.is_file():
        return [Problem(rel, 1, "missing")]
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Problem] = []
    targets = {m.group(1) for line in lines if (m := re.match(r"^([\w.-]+)\s*:(?!=)", line))}
    for target in MAKE_TARGETS:
        if target not in targets:
            out.append(Problem(rel, 1, f"no `{target}` target (the README and CI use `make {target}`)"))
    assignment = next(((n, line) for n, line in enumerate(lines, 1) if re.match(r"^\s*PROFILES\s*[:?]?=", line)), None)
    if assignment is None:
        out.append(Problem(rel, 1, "no PROFILES variable read from the matrix"))
    else:
        number, line = assignment
        value = line.split("=", 1)[1].strip()
        if "$(" not in value:  # a literal list: it has to be the matrix's
            if sorted(value.split()) != sorted(matrix.profiles):
                out.append(
                    Problem(
                        rel,
                        number,
                        f"PROFILES is {value!r}, the matrix has {' '.join(matrix.profiles)} (better: read them from "
                        "the matrix)",
                    )
                )
        elif "profiles" not in value and "matrix" not in value:
            out.append(Problem(rel, number, "PROFILES is not read from the matrix file"))
    facts = {f: p.name for p in matrix.profiles.values() for f in (p.ci.image, p.ci.base_image) if f and f != "native"}
    for number, line in enumerate(lines, 1):
        code = line.split("#", 1)[0]
        for fact, name in facts.items():
            if re.search(rf"(?<![\w:./-]){re.escape(fact)}(?![\w:./-])", code):
                out.append(
                    Problem(
                        rel, number, f"writes {fact!r}, a fact of profile {name!r}: read it from the matrix instead"
                    )
                )
        for env in re.findall(r"-e\s+e2e-([\w-]+)", code):
            if env not in matrix.profiles:
                out.append(
                    Problem(rel, number, f"tox env e2e-{env} names no profile; profiles: {', '.join(matrix.profiles)}")
                )
    return out


# --- rendered files -----------------------------------------------------------------------------------------


def _rendered(root: Path, matrix: Matrix) -> list[Problem]:
    out = []
    rendered = render.render_all(matrix)
    for rel, text in rendered.items():
        path = root / rel
        if not path.is_file():
            out.append(Problem(rel, 1, f"missing: {_RENDER}"))
            continue
        have, want = path.read_text(encoding="utf-8").splitlines(), text.splitlines()
        if have == want:
            continue
        number = next(
            (n for n, (a, b) in enumerate(zip(have, want, strict=False), 1) if a != b),
            min(len(have), len(want)) + 1,
        )
        expected = want[number - 1] if number <= len(want) else "(end of file)"
        out.append(
            Problem(rel, number, f"differs from what `pipeline matrix render` makes: expected {expected!r}; {_RENDER}")
        )
    # A Dockerfile rendering would not make: its profile is gone or runs natively, and `make image` would use it.
    for path in sorted((root / "images").glob("*/Dockerfile")):
        rel = _rel(root, path)
        if rel not in rendered:
            name = path.parent.name
            why = (
                f"profile {name!r} runs natively (image = {matrix.profiles[name].ci.image!r})"
                if name in matrix.profiles
                else f"images/{name}/ names no profile; profiles: {', '.join(matrix.profiles)}"
            )
            out.append(Problem(rel, 1, f"{why}: this Dockerfile is stale; delete it"))
    return out
