"""The figures table: printed after each benchmark and kept in benchmarks/README.md between two markers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

README = Path(__file__).with_name("README.md")
START, END = "<!-- figures:start -->", "<!-- figures:end -->"
_COLUMNS = ("benchmark", "metric", "pipeline", "peer", "ratio", "paired", "goal", "verdict")


def _cell(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def rows(results: Iterable[dict[str, Any]]) -> list[tuple[str, ...]]:
    out = []
    for data in results:
        if data.get("error"):
            out.append((data["benchmark"], "error", "", "", "", "", "", data["error"].splitlines()[0][:80]))
        for row in data.get("summary", []):
            peer = _cell(row.get("peer"))
            if row.get("peer_name") and peer:
                peer = f"{peer} ({row['peer_name']})"
            out.append(
                (
                    data["benchmark"],
                    row["metric"],
                    _cell(row.get("pipeline")),
                    peer,
                    _cell(row.get("ratio")),
                    _cell(row.get("paired_ratio")),
                    row.get("goal", ""),
                    row.get("verdict", ""),
                )
            )
    return out


def table(results: Iterable[dict[str, Any]]) -> str:
    body = rows(results)
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "|".join("---" for _ in _COLUMNS) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def load(directory: Path) -> list[dict[str, Any]]:
    from benchmarks.__main__ import BENCHMARKS

    found = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in directory.glob("*.json")}
    return [found[name] for name in BENCHMARKS if name in found]


def _context(results: list[dict[str, Any]]) -> str:
    if not results:
        return "No results yet: run `make bench` (or `.venv/bin/python -m benchmarks`)."
    first = results[0]
    m = first["machine"]
    loads = [r["contention"]["load_start"][0] for r in results if "contention" in r]
    dates = sorted(r["started"] for r in results)
    return (
        f"Latest full run: {dates[0]} to {dates[-1]} UTC, {m['cpu_model']}, "
        f"{m['usable_cores']} usable cores, "
        f"{m['memory_gb']} GB, Python {m['python']}; 1-minute load average at the start of each benchmark: "
        f"{', '.join(f'{x:g}' for x in loads)} (the machine was shared: absolute seconds are noisy, the "
        "alternated ratios much less). `ratio` is pipeline/peer of the medians, `paired` the median of the "
        "per-round ratios."
    )


def update_readme(directory: Path) -> None:
    from benchmarks.__main__ import BENCHMARKS

    results = load(directory)
    # A benchmark without a result file yet keeps its place in the table, saying so (never a made-up figure).
    ran = {r["benchmark"] for r in results}
    pending = [{"benchmark": name, "summary": [{"metric": "not yet run"}]} for name in BENCHMARKS if name not in ran]
    shown = sorted([*results, *pending], key=lambda r: list(BENCHMARKS).index(r["benchmark"]))
    text = README.read_text(encoding="utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{START}\n{_context(results)}\n\n{table(shown)}\n{END}{tail}", encoding="utf-8")
