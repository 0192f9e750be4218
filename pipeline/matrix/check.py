"""`pipeline matrix check`: every file derived from the matrix agrees with it, or a problem names file and
line.

Checked: the matrix itself (every profile runs every E2E suite, each suite has its test file, extras exist, a
base image's Python is the profile's), tox.ini (an e2e env per profile with its extras, pins and
PIPELINE_PROFILE), the Makefile (profiles read from the matrix, the targets the README and CI use, no profile
fact written in it), the Dockerfiles (one per containerised profile, `ARG BASE_IMAGE=<base_image>` first, the
profile's env) and the workflow (a job per profile on its runner labels, Python, what it runs, the artifacts,
the all-green gate). Last, each rendered file is compared with what `pipeline matrix render` makes, so a hand
edit the checks above do not understand is still caught, at its first differing line.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.matrix import render
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


@dataclass(frozen=True, order=True)
class Problem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def check(root: Path, matrix: Matrix) -> list[Problem]:
    root = root.resolve()
    checks = [_matrix, _tox, _makefile, _dockerfiles, _workflow]
    problems = [p for run in checks for p in run(root, matrix)]
    reported = {p.path for p in problems}
    problems += [p for p in _rendered(root, matrix) if p.path not in reported]
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
    any_header = re.compile(r"^\s*\[")
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if header.match(line):
            if key is None:
                return number
            for offset, inner in enumerate(lines[number:], number + 1):
                if any_header.match(inner):
                    break
                if re.match(rf"^\s*{re.escape(key)}\s*=", inner):
                    return offset
            return number
    return 1


def _matrix(root: Path, matrix: Matrix) -> list[Problem]:
    path, out = matrix.path, []
    rel = _rel(root, path)
    suites = list(matrix.defaults.get("suites", ()))
    if not suites:
        out.append(
            Problem(
                rel, toml_line(path, "defaults"), "[defaults] lacks suites: the E2E suites every profile runs"
            )
        )
    for suite in suites:
        if not (root / "tests" / "e2e" / f"test_{suite}.py").is_file():
            out.append(
                Problem(
                    rel,
                    toml_line(path, "defaults", "suites"),
                    f"E2E suite {suite!r} has no test file tests/e2e/test_{suite}.py",
                )
            )
    default = matrix.defaults.get("profile")
    if default not in matrix.profiles:
        out.append(
            Problem(
                rel,
                toml_line(path, "defaults", "profile"),
                f"[defaults] profile {default!r} is not a profile; profiles: {', '.join(matrix.profiles)}",
            )
        )
    optional = _optional_dependencies(root)
    for p in matrix.profiles.values():
        table = f"profiles.{p.name}"
        if missing := [s for s in suites if s not in p.suites]:
            out.append(
                Problem(
                    rel,
                    toml_line(path, table, "suites"),
                    f"profile {p.name!r} lacks E2E suite(s) {', '.join(missing)}: every profile runs the "
                    f"same suites ({', '.join(suites)})",
                )
            )
        if unknown := [s for s in p.suites if s not in suites]:
            out.append(
                Problem(
                    rel,
                    toml_line(path, table, "suites"),
                    f"profile {p.name!r} names suite(s) {', '.join(unknown)} that are not in [defaults] "
                    f"suites ({', '.join(suites)})",
                )
            )
        if optional is not None and (bad := [e for e in p.extras if e not in optional]):
            out.append(
                Problem(
                    rel,
                    toml_line(path, table, "extras"),
                    f"profile {p.name!r}: extra(s) {', '.join(bad)} not in pyproject.toml; extras there: "
                    f"{', '.join(optional)}",
                )
            )
        if not p.runner:
            out.append(
                Problem(rel, toml_line(path, table, "runner"), f"profile {p.name!r} has no runner labels")
            )
        if p.container:
            out += _base_image(rel, path, p)
    return out


def _base_image(rel: Path, path: Path, p: Profile) -> list[Problem]:
    line = toml_line(path, f"profiles.{p.name}", "base_image")
    if not p.base_image:
        return [Problem(rel, line, f"profile {p.name!r} is containerised but has no base_image")]
    suite = render.debian_suite(p.base_image)
    if suite is None:
        return [
            Problem(
                rel,
                line,
                f"profile {p.name!r}: base_image {p.base_image!r} is not Debian "
                f"({', '.join(render.DEBIAN_PYTHON)}); the Dockerfiles install python3 with apt",
            )
        ]
    if render.DEBIAN_PYTHON[suite] != p.python:
        return [
            Problem(
                rel,
                line,
                f"profile {p.name!r}: base_image {p.base_image!r} ships python "
                f"{render.DEBIAN_PYTHON[suite]}, the profile says python {p.python}",
            )
        ]
    return []


def _optional_dependencies(root: Path) -> dict[str, Any] | None:
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None
    return project.get("optional-dependencies", {})


# --- tox.ini ------------------------------------------------------------------------------------------------


@dataclass
class IniValue:
    line: int
    text: str


def parse_ini(text: str) -> dict[str, dict[str, list[IniValue]]]:
    """Sections -> keys -> value lines with their line numbers (the first one is the text after `=`)."""
    sections: dict[str, dict[str, list[IniValue]]] = {}
    section: dict[str, list[IniValue]] | None = None
    key: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if match := re.match(r"^\[(.+)\]\s*$", raw):
            section, key = sections.setdefault(match.group(1).strip(), {}), None
        elif raw[:1].isspace() and section is not None and key is not None:
            section[key].append(IniValue(number, stripped))
        elif section is not None and "=" in raw:
            name, _, value = raw.partition("=")
            key = name.strip()
            section[key] = [IniValue(number, value.strip())] if value.strip() else [IniValue(number, "")]
    return sections


def expand(name: str) -> list[str]:
    """tox's brace expansion of env names: e2e-{cpu,cuda} -> e2e-cpu, e2e-cuda."""
    parts = re.split(r"(\{[^}]*\})", name)
    options = [p[1:-1].split(",") if p.startswith("{") else [p] for p in parts]
    return ["".join(combo).strip() for combo in itertools.product(*options)]


def factor_values(values: list[IniValue], factors: set[str]) -> list[IniValue]:
    """Values that apply to an env with `factors`: unconditional lines, `a,b: value` and `a-b: value`."""
    out = []
    for value in values:
        if not value.text:
            continue
        match = re.match(r"^([\w.!,-]+):\s+(.*)$", value.text)
        if match is None:
            out.append(value)
            continue
        condition, text = match.groups()
        if any(
            all((f[1:] not in factors) if f.startswith("!") else (f in factors) for f in alt.split("-"))
            for alt in condition.split(",")
        ):
            out.append(IniValue(value.line, text))
    return out


def _tox(root: Path, matrix: Matrix) -> list[Problem]:
    path, rel = root / render.TOX, render.TOX
    if not path.is_file():
        return [Problem(rel, 1, "missing: run `pipeline matrix render --write`")]
    ini = parse_ini(path.read_text(encoding="utf-8"))
    out: list[Problem] = []
    env_list = ini.get("tox", {}).get("env_list") or ini.get("tox", {}).get("envlist")
    if not env_list:
        out.append(Problem(rel, 1, "[tox] has no env_list"))
        listed: dict[str, int] = {}
    else:
        listed = {
            env: v.line
            for v in env_list
            for item in re.split(r",(?![^{]*\})", v.text)
            if item.strip()
            for env in expand(item.strip())
        }
    sections = {
        env: name for name in ini if name.startswith("testenv:") for env in expand(name[len("testenv:") :])
    }
    for p in matrix.profiles.values():
        env = f"e2e-{p.name}"
        if env_list and env not in listed:
            out.append(Problem(rel, env_list[0].line, f"env_list lacks {env} (profile {p.name!r})"))
        if env not in sections:
            out.append(Problem(rel, 1, f"no [testenv:...] section makes {env} (profile {p.name!r})"))
            continue
        keys = ini[sections[env]]
        header = min((v.line for values in keys.values() for v in values), default=1) - 1
        out += _tox_env(rel, header, keys, p)
    for env, line in listed.items():
        if env.startswith("e2e-") and env[4:] not in matrix.profiles:
            out.append(
                Problem(rel, line, f"env {env} names no profile; profiles: {', '.join(matrix.profiles)}")
            )
    return out


def _tox_env(rel: Path, header: int, keys: dict[str, list[IniValue]], p: Profile) -> list[Problem]:
    out: list[Problem] = []
    factors = {"e2e", p.name}

    def compare(key: str, found: list[IniValue], wanted: set[str], what: str) -> None:
        line = keys[key][0].line if key in keys else header
        have = {v.text for v in found}
        for missing in sorted(wanted - have):
            out.append(Problem(rel, line, f"e2e-{p.name}: {key} lacks {missing!r} ({what})"))
        for value in found:
            if value.text not in wanted:
                out.append(
                    Problem(
                        rel,
                        value.line,
                        f"e2e-{p.name}: {key} has {value.text!r}, not in the matrix "
                        f"({what}: {', '.join(sorted(wanted)) or 'none'})",
                    )
                )

    extras = [
        IniValue(v.line, part.strip())
        for v in factor_values(keys.get("extras", []), factors)
        for part in v.text.split(",")
        if part.strip()
    ]
    compare("extras", extras, set(p.extras) | set(render.TOX_E2E_EXTRAS), "profile extras + models, test")
    compare("deps", factor_values(keys.get("deps", []), factors), set(render.pip_pins(p)), "profile pins")
    set_env = keys.get("set_env") or keys.get("setenv") or []
    profile_lines = [v for v in factor_values(set_env, factors) if re.match(r"^PIPELINE_PROFILE\s*=", v.text)]
    values = {re.sub(r"^PIPELINE_PROFILE\s*=\s*", "", v.text) for v in profile_lines}
    if values != {p.name}:
        line = profile_lines[0].line if profile_lines else (set_env[0].line if set_env else header)
        out.append(
            Problem(
                rel,
                line,
                f"e2e-{p.name}: set_env gives PIPELINE_PROFILE = "
                f"{', '.join(sorted(values)) or 'nothing'}, not {p.name}",
            )
        )
    return out


# --- Makefile -----------------------------------------------------------------------------------------------


def _makefile(root: Path, matrix: Matrix) -> list[Problem]:
    path, rel = root / "Makefile", Path("Makefile")
    if not path.is_file():
        return [Problem(rel, 1, "missing")]
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Problem] = []
    targets = {
        m.group(1): n for n, line in enumerate(lines, 1) if (m := re.match(r"^([\w.-]+)\s*:(?!=)", line))
    }
    for target in MAKE_TARGETS:
        if target not in targets:
            out.append(Problem(rel, 1, f"no `{target}` target (the README and CI use `make {target}`)"))
    assignment = next(
        ((n, line) for n, line in enumerate(lines, 1) if re.match(r"^\s*PROFILES\s*[:?]?=", line)), None
    )
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
                        f"PROFILES is {value!r}, the matrix has {' '.join(matrix.profiles)}"
                        " (better: read them from the matrix)",
                    )
                )
        elif "profiles" not in value and "matrix" not in value:
            out.append(Problem(rel, number, "PROFILES is not read from the matrix file"))
    facts = {
        f: p.name for p in matrix.profiles.values() for f in (p.image, p.base_image) if f and f != "native"
    }
    for number, line in enumerate(lines, 1):
        code = line.split("#", 1)[0]
        for fact, name in facts.items():
            if re.search(rf"(?<![\w:./-]){re.escape(fact)}(?![\w:./-])", code):
                out.append(
                    Problem(
                        rel,
                        number,
                        f"writes {fact!r}, a fact of profile {name!r}: read it from the matrix instead",
                    )
                )
        for env in re.findall(r"-e\s+e2e-([\w-]+)", code):
            if env not in matrix.profiles:
                out.append(
                    Problem(
                        rel,
                        number,
                        f"tox env e2e-{env} names no profile; profiles: {', '.join(matrix.profiles)}",
                    )
                )
    return out


# --- Dockerfiles --------------------------------------------------------------------------------------------


def _dockerfiles(root: Path, matrix: Matrix) -> list[Problem]:
    out: list[Problem] = []
    for p in matrix.profiles.values():
        rel = render.dockerfile_path(p)
        path = root / rel
        if not p.container:
            if path.exists():
                out.append(
                    Problem(
                        rel,
                        1,
                        f"profile {p.name!r} runs natively (image = {p.image!r}): this Dockerfile is stale",
                    )
                )
            continue
        if not path.is_file():
            out.append(
                Problem(
                    _rel(root, matrix.path),
                    toml_line(matrix.path, f"profiles.{p.name}", "image"),
                    f"profile {p.name!r} is containerised ({p.image}) but {rel} is missing",
                )
            )
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        wanted = f"ARG BASE_IMAGE={p.base_image}"
        if not lines or lines[0].strip() != wanted:
            out.append(
                Problem(
                    rel,
                    1,
                    f"first line must be {wanted!r} (base_image of profile {p.name!r}), found "
                    f"{lines[0].strip() if lines else 'nothing'!r}",
                )
            )
        out += _dockerfile_env(rel, lines, p)
    images = root / "images"
    for path in sorted(images.glob("*/Dockerfile")) if images.is_dir() else []:
        if path.parent.name not in matrix.profiles:
            out.append(
                Problem(
                    _rel(root, path),
                    1,
                    f"images/{path.parent.name}/ names no profile; profiles: {', '.join(matrix.profiles)}",
                )
            )
    return out


def _dockerfile_env(rel: Path, lines: list[str], p: Profile) -> list[Problem]:
    out: list[Problem] = []
    env = [(n, line) for n, line in enumerate(lines, 1) if re.search(r"\bPIPELINE_PROFILE=", line)]
    names = {m for _, line in env for m in re.findall(r"\bPIPELINE_PROFILE=(\S+)", line)}
    if names != {p.name}:
        out.append(
            Problem(
                rel,
                env[0][0] if env else 1,
                f"sets PIPELINE_PROFILE={', '.join(sorted(names)) or 'nothing'}, not {p.name}",
            )
        )
    gpu = [n for n, line in enumerate(lines, 1) if "NVIDIA_VISIBLE_DEVICES" in line]
    if p.gpus and not gpu:
        out.append(
            Problem(
                rel,
                env[0][0] if env else 1,
                f"profile {p.name!r} has gpus = true but the image does "
                "not ask the container runtime for GPUs "
                "(NVIDIA_VISIBLE_DEVICES)",
            )
        )
    if not p.gpus and gpu:
        out.append(Problem(rel, gpu[0], f"profile {p.name!r} has gpus = false but the image asks for GPUs"))
    for number, line in enumerate(lines, 1):
        for name in re.findall(r"build/images/([\w-]+)/requirements", line):
            if name != p.name:
                out.append(Problem(rel, number, f"installs the lock of profile {name!r}, not {p.name!r}"))
    return out


# --- workflow -----------------------------------------------------------------------------------------------


def _yaml_tree(text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise PipelineError(
            "pipeline matrix check reads the workflow with PyYAML: pip install pyyaml"
        ) from None
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise PipelineError(f"{render.WORKFLOW} is not valid YAML: {exc}") from None


def _get(node: Any, key: str) -> tuple[Any, Any] | None:
    """(key node, value node) of `key` in a YAML mapping node."""
    for k, v in getattr(node, "value", []) if node is not None and node.tag.endswith(":map") else []:
        if k.value == key:
            return k, v
    return None


def _scalars(node: Any) -> list[str]:
    if node is None:
        return []
    if node.tag.endswith(":seq"):
        return [item.value for item in node.value if not isinstance(item.value, list)]
    return [] if isinstance(node.value, list) else [node.value]


def _line(node: Any) -> int:
    return node.start_mark.line + 1


def _workflow(root: Path, matrix: Matrix) -> list[Problem]:
    path, rel = root / render.WORKFLOW, render.WORKFLOW
    if not path.is_file():
        return [Problem(rel, 1, "missing: run `pipeline matrix render --write`")]
    tree = _yaml_tree(path.read_text(encoding="utf-8"))
    found = _get(tree, "jobs")
    if found is None:
        return [Problem(rel, 1, "no jobs")]
    jobs_key, jobs = found
    out: list[Problem] = []
    main = matrix.defaults.get("profile")
    for p in matrix.profiles.values():
        job_id = render.job_id(p)
        job = _get(jobs, job_id)
        if job is None:
            out.append(Problem(rel, _line(jobs_key), f"no job {job_id} for profile {p.name!r}"))
            continue
        out += _workflow_job(rel, job_id, job[0], job[1], p, main == p.name)
    for key, _ in jobs.value:
        if key.value.startswith("e2e-") and key.value[4:] not in matrix.profiles:
            out.append(
                Problem(
                    rel,
                    _line(key),
                    f"job {key.value} names no profile; profiles: {', '.join(matrix.profiles)}",
                )
            )
    gate = next(
        (
            (k, v)
            for k, v in jobs.value
            if (n := _get(v, "needs"))
            and {render.job_id(p) for p in matrix.profiles.values()} <= set(_scalars(n[1]))
            and (c := _get(v, "if"))
            and "always()" in c[1].value
            and k.value != "report"
        ),
        None,
    )
    if gate is None:
        out.append(
            Problem(
                rel,
                _line(jobs_key),
                "no all-green gate job: one that `needs:` every profile's job and runs `if: always()`",
            )
        )
    return out


def _workflow_job(rel: Path, job_id: str, key: Any, job: Any, p: Profile, main: bool) -> list[Problem]:
    out: list[Problem] = []
    runs_on = _get(job, "runs-on")
    labels = _scalars(runs_on[1]) if runs_on else []
    if labels != list(p.runner):
        out.append(
            Problem(
                rel,
                _line(runs_on[1]) if runs_on else _line(key),
                f"{job_id} runs on {labels}, profile {p.name!r} says {list(p.runner)}",
            )
        )
    env = _get(job, "env")
    profile_env = _get(env[1], "PIPELINE_PROFILE") if env else None
    if profile_env is None or profile_env[1].value != p.name:
        out.append(
            Problem(
                rel,
                _line(profile_env[1]) if profile_env else _line(key),
                f"{job_id} does not set PIPELINE_PROFILE: {p.name}",
            )
        )
    steps_found = _get(job, "steps")
    steps = steps_found[1].value if steps_found else []
    runs = " ".join(r[1].value for s in steps if (r := _get(s, "run")))
    if main:
        wanted = ["make test"]
    elif p.container:
        wanted = [f"make image PROFILE={p.name}", f"make e2e-image PROFILE={p.name}"]
    else:
        wanted = [f"make e2e PROFILE={p.name}"]
    for command in wanted:
        if command not in runs:
            out.append(
                Problem(
                    rel,
                    _line(steps_found[1]) if steps_found else _line(key),
                    f"{job_id} never runs `{command}`",
                )
            )
    uploads = [
        s for s in steps if (u := _get(s, "uses")) and u[1].value.startswith("actions/upload-artifact@")
    ]
    names = {n[1].value for s in uploads if (w := _get(s, "with")) and (n := _get(w[1], "name"))}
    if f"results-{p.name}" not in names:
        out.append(Problem(rel, _line(key), f"{job_id} uploads no artifact results-{p.name}"))
    for step in steps:
        uses = _get(step, "uses")
        if uses and uses[1].value.startswith("actions/setup-python@"):
            version = _get(_get(step, "with")[1], "python-version") if _get(step, "with") else None
            if version is None or version[1].value != p.python:
                out.append(
                    Problem(
                        rel,
                        _line(version[1]) if version else _line(uses[1]),
                        f"{job_id} sets up python {version[1].value if version else 'default'}, profile "
                        f"{p.name!r} says {p.python}",
                    )
                )
    return out


# --- rendered files -----------------------------------------------------------------------------------------


def _rendered(root: Path, matrix: Matrix) -> list[Problem]:
    out = []
    for rel, text in render.render_all(matrix).items():
        path = root / rel
        if not path.is_file():
            out.append(Problem(rel, 1, "missing: run `pipeline matrix render --write`"))
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
            Problem(
                rel,
                number,
                f"differs from what `pipeline matrix render` makes: expected {expected!r}; "
                "run `pipeline matrix render --write`",
            )
        )
    return out
