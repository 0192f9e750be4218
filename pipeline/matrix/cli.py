"""`pipeline matrix list | show NAME | check | render [--write] | requirements NAME | report RESULTS...`.

`pipeline.cli` calls `register(subparsers)`; `python -m pipeline.matrix.cli ...` runs the same commands
without the rest of the CLI (the Makefile uses it before the project is installed). Handlers return an exit
code and raise PipelineError for what the user can fix.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.profiles import load_matrix


def _checkout(args: argparse.Namespace, matrix_path: Path) -> Path:
    """The repository checkout a repository-only command works in: --root, else the folder above `matrix/`.

    An installed package finds its matrix in site-packages (pipeline/data/profiles.toml); the folder above
    that is the package itself, and writing tox.ini or .github/ there would corrupt the install. So a folder
    without the project's pyproject.toml and matrix/profiles.toml is refused."""
    root = (args.root or matrix_path.resolve().parent.parent).resolve()
    if not ((root / "pyproject.toml").is_file() and (root / "matrix" / "profiles.toml").is_file()):
        raise PipelineError(
            f"matrix {args.matrix_command}: {root} is not a checkout of the project (no pyproject.toml and "
            "matrix/profiles.toml there); it works on a repository checkout only: run it from one, or pass "
            "--root (or --matrix) of one"
        )
    return root


def _cmd_list(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix)
    if args.names:
        print("\n".join(matrix.profiles))
        return 0
    rows = [("profile", "backend (fallbacks)", "device/compute", "model", "batch", "chunk", "image", "runner")]
    for p in matrix.profiles.values():
        run = p.runtime
        chain = run.backend + (f" ({', '.join(run.fallback)})" if run.fallback else "")
        rows.append(
            (
                p.name,
                chain,
                f"{run.device}/{run.compute_type}",
                run.model,
                str(run.batch_size),
                f"{run.chunk_seconds:g} s",
                p.ci.image,
                " ".join(p.ci.runner),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix)
    facts = asdict(matrix.profile(args.name))
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    runtime, ci = facts.pop("runtime"), facts.pop("ci")
    thresholds = ci.pop("thresholds")
    width = max(map(len, [*facts, *runtime, *ci])) + 2
    for key, value in facts.items():
        print(f"{key.ljust(width)}  {value}")
    for section, values in (("runtime", runtime), ("ci", ci)):
        print(f"{section}:")
        for key, value in values.items():
            if value is None:
                value = "-"
            elif isinstance(value, list | tuple):
                value = ", ".join(value)
            elif isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            print(f"  {key.ljust(width - 2)}  {value}")
    for model, gates in thresholds.items():
        print(f"  {'thresholds'.ljust(width - 2)}  {model}: " + ", ".join(f"{k} {v:g}" for k, v in gates.items()))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from pipeline.matrix.check import check

    matrix = load_matrix(args.matrix)
    root = _checkout(args, matrix.path)
    problems = check(root, matrix)
    for problem in problems:
        print(problem)
    if problems:
        print(
            f"matrix check: {len(problems)} problem(s); fix the file or change {matrix.path.name} and run "
            "`pipeline matrix render --write`",
            file=sys.stderr,
        )
        return 1
    print(f"matrix check: tox.ini, Makefile, Dockerfiles and workflow agree with {matrix.path}")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from pipeline.matrix import render

    matrix = load_matrix(args.matrix)
    root = _checkout(args, matrix.path)
    if args.write:
        changed = render.write(root, matrix)
        for rel in changed:
            print(f"wrote {rel}")
        if not changed:
            print("every derived file is up to date")
        return 0
    stale = render.stale(root, matrix)
    for diff in stale.values():
        sys.stdout.write(diff)
    if stale:
        print(
            f"{len(stale)} derived file(s) differ from the matrix: `pipeline matrix render --write`",
            file=sys.stderr,
        )
        return 1
    print("every derived file is up to date")
    return 0


def _cmd_requirements(args: argparse.Namespace) -> int:
    from pipeline.matrix import images

    matrix = load_matrix(args.matrix)
    root = _checkout(args, matrix.path)
    extras = (*images.IMAGE_EXTRAS, *args.extra)
    sys.stdout.write(images.requirements(matrix.profile(args.name), root / "pyproject.toml", extras))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pipeline.matrix import report

    markdown, written = report.write_report(args.results, args.out)
    print(markdown)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `matrix` and its commands to the `pipeline` command line."""
    parser = subparsers.add_parser(
        "matrix",
        help="hardware profiles: list, show, check, render, report",
        description="The hardware matrix (matrix/profiles.toml) and what derives from it.",
    )
    parser.add_argument("--matrix", type=Path, help="matrix file (default: $PIPELINE_MATRIX or matrix/profiles.toml)")
    commands = parser.add_subparsers(dest="matrix_command", metavar="COMMAND", required=True)

    sub = commands.add_parser("list", help="the profiles, one a line")
    sub.add_argument("--names", action="store_true", help="names only (for scripts and the Makefile)")
    sub.set_defaults(handler=_cmd_list)

    sub = commands.add_parser("show", help="every fact of one profile")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--json", action="store_true", help="as JSON")
    sub.set_defaults(handler=_cmd_show)

    for name, handler, text in (
        (
            "check",
            _cmd_check,
            "fail, naming file and line, where tox.ini, the Makefile, a Dockerfile or the "
            "workflow disagrees with the matrix",
        ),
        ("render", _cmd_render, "show how the derived files differ from the matrix (--write: update them)"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--root", type=Path, help="repository root (default: the folder above the matrix's)")
        if name == "render":
            sub.add_argument("--write", action="store_true", help="write tox.ini, the workflow and the Dockerfiles")
        sub.set_defaults(handler=handler)

    sub = commands.add_parser("requirements", help="pip requirements an image of profile NAME is built from")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--extra", action="append", default=[], help="another extra (repeatable), e.g. test")
    sub.add_argument("--root", type=Path, help="repository root (default: the folder above the matrix's)")
    sub.set_defaults(handler=_cmd_requirements)

    sub = commands.add_parser("report", help="aggregate E2E results files into Markdown and an HTML page")
    sub.add_argument("results", nargs="+", type=Path, metavar="RESULTS", help="results files or folders")
    sub.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("report"),
        help="folder for report.md and report.html (default: ./report)",
    )
    sub.set_defaults(handler=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pipeline.matrix.cli ARGS` is `pipeline matrix ARGS`."""
    parser = argparse.ArgumentParser(prog="pipeline")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["matrix", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.handler(args)
    except PipelineError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
