"""What the reports share (`pipeline matrix report`, `pipeline report jobs`): cells, Markdown and HTML tables, one
self-contained HTML page (plots embedded as base64 PNG), and matplotlib figures. matplotlib is the `report` extra,
imported only when a figure is drawn."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from statistics import median, quantiles
from types import ModuleType
from typing import Any

from pipeline.errors import PipelineError

MISSING = "–"


def num(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.0f}%"


def markdown_table(header: Iterable[str], rows: Iterable[list[str]]) -> str:
    header = list(header)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def html_table(header: Iterable[str], rows: Iterable[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_figures(figures: dict[str, bytes]) -> str:
    return "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, png in figures.items()
    )


def html_page(title: str, body: str, left_columns: int = 3) -> str:
    """One page that fetches nothing: the tables' first `left_columns` columns are text, the rest figures."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f2f2f2; }} td:nth-child(-n+{left_columns}) {{ text-align: left; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; }} figcaption {{ color: #666; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{body}
</body></html>
"""


def distribution(values: Sequence[float]) -> tuple[float, float, float] | None:
    """Median, 90th percentile (linear between the closest ranks) and maximum; None for no values."""
    if not values:
        return None
    p90 = quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]
    return median(values), p90, max(values)


# --- figures ------------------------------------------------------------------------------------------------


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the Agg backend (no display needed), or a one-line error naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise PipelineError("the HTML report needs matplotlib: pip install -e '.[report]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def png(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed (pyplot keeps every open figure alive)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return buffer.getvalue()


def grouped_bars(
    ax: Any,
    groups: list[str],
    series: dict[str, list[float | None]],
    ylabel: str,
    fmt: str = "{:.2f}",
    colors: list[str] | None = None,
) -> None:
    """Bars per group (x) and series; missing values leave a gap, every bar carries its value. One series is
    coloured per group (`colors`), several series per series with a legend beside the axes."""
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        present = [(x, v, g) for g, (x, v) in enumerate(zip(xs, values, strict=True)) if v is not None]
        if not present:
            continue
        color = [colors[g] for _, _, g in present] if colors and len(series) == 1 else None
        bars = ax.bar([x for x, _, _ in present], [v for _, v, _ in present], width * 0.9, label=label, color=color)
        ax.bar_label(bars, labels=[fmt.format(v) for _, v, _ in present], fontsize=8, padding=2)
    _group_axis(ax, groups, ylabel)
    ax.margins(y=0.15)
    if len(series) > 1:
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def box_strip(ax: Any, groups: list[str], values: list[list[float]], ylabel: str, colors: list[str]) -> None:
    """A box per group (quartiles, whiskers to 1.5 IQR) with every value drawn over it as a point: with a few
    jobs the points say more than the box, with many the box does."""
    present = [g for g, v in enumerate(values) if v]
    if present:
        ax.boxplot(
            [values[g] for g in present],
            positions=present,
            widths=0.5,
            showfliers=False,  # the points below show every value, outliers included
            medianprops={"color": "black"},
        )
    for g in present:
        # A fixed spread (not random jitter): the same jobs draw the same picture.
        count = len(values[g])
        xs = [g + (0.0 if count == 1 else 0.3 * (k / (count - 1) - 0.5)) for k in range(count)]
        ax.scatter(xs, values[g], s=18, color=colors[g], alpha=0.8, zorder=3)
    _group_axis(ax, groups, ylabel)
    ax.set_ylim(bottom=0)  # times and memory: their size against zero is the point


def _group_axis(ax: Any, groups: list[str], ylabel: str) -> None:
    ax.set_xticks(range(len(groups)), groups, fontsize=9)
    pad = (max(len(groups), 3) - len(groups)) / 2  # one or two groups stay group-wide, centred
    ax.set_xlim(-0.6 - pad, len(groups) - 0.4 + pad)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
