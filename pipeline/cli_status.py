"""`pipeline status`: a job's manifest as a table, a stage per row."""

from __future__ import annotations

from typing import Any


def format_status(data: dict[str, Any]) -> str:
    rows = [("stage", "state", "time", "peak MB", "backend / detail")]
    for name, stage in data["stages"].items():
        detail = stage.get("error") or stage.get("reason") or ""
        if stage.get("backend"):
            detail = (
                f"{stage['backend']} {stage.get('model', '')} {stage.get('device', '')}/"
                f"{stage.get('compute_type', '')}"
                + (f", {stage['crashes']} crash(es)" if stage.get("crashes") else "")
                + (f", {n} invented segment(s) removed" if (n := stage.get("removed_segments")) else "")
                + (", no speech found" if stage.get("speech") is False else "")
            )
        wall = f"{stage['wall_s']:.1f}s" if "wall_s" in stage else ""
        peak = f"{stage['peak_rss_mb']:.0f}" if "peak_rss_mb" in stage else ""
        state = stage["state"] + (" (runner gone)" if stage.get("runner_gone") else "")
        if stage.get("runner_gone"):
            detail = f"no `pipeline run` holds the job; resume with `pipeline run {data['job_id']}`"
        rows.append((name, state, wall, peak, detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"job {data['job_id']} ({data['workflow']}) {data['media']}", f"folder {data['folder']}"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4] for row in rows]
    return "\n".join(lines)
