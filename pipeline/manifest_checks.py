"""Is a manifest read from disk fit to run? A job folder is input like any other: later code builds paths, runs
stages and starts workers from what its manifest says, so every field it trusts is checked, each problem named."""

from __future__ import annotations

import os
import re
from dataclasses import fields
from typing import Any

from pipeline.hardware import Choice
from pipeline.jobs import JOB_ID, STATES

LANGUAGE = re.compile(r"^[a-z]{2,3}$")  # what a manifest may name in an output path: ISO 639-1/-3, or "und"
_CHOICE_FIELDS = {f.name for f in fields(Choice)}


def manifest_problems(data: Any) -> list[str]:
    """What is wrong with a manifest read from disk: the fields later code trusts, each checked."""
    from pipeline import config
    from pipeline.mt import ENGINES
    from pipeline.stages import WORKFLOW_STAGES

    if not isinstance(data, dict):
        return ["not a JSON object"]
    problems: list[str] = []

    def check(field: str, value: Any, ok: bool, allowed: str) -> bool:
        if not ok:
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            problems.append(f"{field}={shown}, allowed: {allowed}")
        return ok

    def language(field: str, value: Any) -> None:
        check(field, value, isinstance(value, str) and bool(LANGUAGE.match(value)), "a language code (en, hi, haw)")

    def number(field: str, value: Any, allowed: str = "a number") -> bool:
        return check(field, value, isinstance(value, int | float) and not isinstance(value, bool), allowed)

    job_id = data.get("job_id")
    check("job_id", job_id, isinstance(job_id, str) and bool(JOB_ID.match(job_id)), "job-YYYYMMDD-<user>-NNNN")
    workflow = data.get("workflow")
    check("workflow", workflow, workflow in config.WORKFLOWS, ", ".join(config.WORKFLOWS))
    media = data.get("media")
    check("media", media, isinstance(media, str) and os.path.isabs(media) and "\0" not in media, "an absolute path")
    stages = data.get("stages")
    expected = list(WORKFLOW_STAGES.get(workflow, ())) if isinstance(workflow, str) else []
    from pipeline.speakers.job import stages as with_speakers  # DIARIZATION adds a stage after transcribe

    ok = isinstance(stages, dict) and list(stages) in (expected, with_speakers(expected, True))
    if check("stages", stages, ok, ", ".join(expected)) and isinstance(stages, dict):
        for name, stage in stages.items():
            if not check(f"stages.{name}", stage, isinstance(stage, dict), "an object"):
                continue
            check(f"stages.{name}.state", stage.get("state"), stage.get("state") in STATES, ", ".join(STATES))
            for key in ("wall_s", "peak_rss_mb", "crashes"):
                if key in stage:
                    number(f"stages.{name}.{key}", stage[key])
            for key in ("error", "reason", "backend", "model", "device", "compute_type"):
                if stage.get(key) is not None:
                    check(f"stages.{name}.{key}", stage[key], isinstance(stage[key], str), "text")
    if "language" in data:
        language("language", data["language"])
    routes = data.get("routes", [])
    if check("routes", routes, isinstance(routes, list), "a list"):
        for i, route in enumerate(routes):
            if not check(
                f"routes[{i}]",
                route,
                isinstance(route, dict) and isinstance(route.get("hops"), list),
                "an object with target and hops",
            ):
                continue
            language(f"routes[{i}].target", route.get("target"))
            for j, hop in enumerate(route["hops"]):
                if check(f"routes[{i}].hops[{j}]", hop, isinstance(hop, dict), "an object with engine, src, tgt"):
                    engines = ("whisper", *ENGINES)
                    check(
                        f"routes[{i}].hops[{j}].engine",
                        hop.get("engine"),
                        hop.get("engine") in engines,
                        ", ".join(engines),
                    )
                    language(f"routes[{i}].hops[{j}].src", hop.get("src"))
                    language(f"routes[{i}].hops[{j}].tgt", hop.get("tgt"))
    info = data.get("media_info")
    if check("media_info", info, isinstance(info, dict), "an object") and isinstance(info, dict):
        number("media_info.duration", info.get("duration"))
        video = info.get("video_streams")
        check("media_info.video_streams", video, isinstance(video, int) and video >= 0, "a whole number")
    flags = data.get("flags", {})
    if check("flags", flags, isinstance(flags, dict), "an object"):
        for key, value in flags.items():
            allowed = key in config.BY_NAME and key not in config.JOB_KEYS and isinstance(value, str)
            check(f"flags.{key}", value, allowed, "config keys (`pipeline config keys`) with text values")
    _plan_problems(data, check)
    return problems


def _plan_problems(data: dict[str, Any], check: Any) -> None:
    """The plan's fields (pipeline.plan), which runs follow: the backends a worker loads, the folders it reads."""
    from pipeline.config_values import BACKENDS, COMPUTE_TYPES, DEVICES

    if "model_dirs" not in data and "plan_settings" not in data:
        return  # a job prepared before plans were kept: its next run resolves one
    chain, dirs, settings = data.get("chain"), data.get("model_dirs"), data.get("plan_settings")
    check("profile", data.get("profile"), isinstance(data.get("profile"), str), "text")
    check("model", data.get("model"), isinstance(data.get("model"), str), "text")
    check("plan_settings", settings, isinstance(settings, dict), "an object")
    if not check("chain", chain, isinstance(chain, list) and bool(chain), "a list of backends") or not isinstance(
        chain, list
    ):
        return
    check("model_dirs", dirs, isinstance(dirs, list) and len(dirs) == len(chain), f"a list of {len(chain)} folders")
    for i, link in enumerate(chain):
        ok = isinstance(link, dict) and set(link) == _CHOICE_FIELDS
        if not check(f"chain[{i}]", link, ok, f"an object with {', '.join(sorted(_CHOICE_FIELDS))}"):
            continue
        for key, allowed in (("backend", BACKENDS[1:]), ("device", DEVICES[1:]), ("compute_type", COMPUTE_TYPES)):
            check(f"chain[{i}].{key}", link.get(key), link.get(key) in allowed, ", ".join(allowed))
        for key in ("batch_size", "chunk_seconds"):
            value = link.get(key)
            check(f"chain[{i}].{key}", value, isinstance(value, int | float) and value > 0, "a positive number")
        check(f"chain[{i}].guards", link.get("guards"), isinstance(link.get("guards"), dict), "an object")
        notices = link.get("notices")
        ok = isinstance(notices, list) and all(isinstance(n, str) for n in notices)
        check(f"chain[{i}].notices", notices, ok, "a list of texts")
    for i, folder in enumerate(dirs if isinstance(dirs, list) else []):
        ok = folder is None or (isinstance(folder, str) and os.path.isabs(folder) and "\0" not in folder)
        check(f"model_dirs[{i}]", folder, ok, "an absolute path or null")
