"""A job's plan: its hardware profile, the ASR fallback chain with each link's model folder, and the translation
routes. Resolved once, when the job is prepared (again only by a run whose settings change it, which then records
the new plan before any stage runs), and kept in the manifest, which every run follows: what the manifest says is
what ran. Models are resolved here and nowhere else, an MLX conversion included, before any worker starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import config as config_mod
from pipeline import hardware, media
from pipeline.errors import PipelineError
from pipeline.hardware import Choice
from pipeline.languages import check_speech_language
from pipeline.mt.routing import Route
from pipeline.profiles import Profile

# The settings the ASR part of a plan follows from: a run in which one of them differs resolves it again.
_ASR_ATTRS = frozenset(
    {"profile", "backend", "model", "device", "compute_type", "batch_size", "chunk_seconds", "allow_download"}
) | frozenset(hardware.GUARDS)
PLAN_KEYS = tuple(key.name for key in config_mod.KEYS if key.attr in _ASR_ATTRS)


@dataclass(frozen=True)
class JobPlan:
    profile: str
    model: str  # as asked (a name or a folder), or the profile's
    chain: tuple[Choice, ...]
    model_dirs: tuple[str | None, ...]  # per link: its model's folder in the backend's format; None: not installed
    routes: tuple[Route, ...] = ()
    settings: Mapping[str, str] = field(default_factory=dict)  # the PLAN_KEYS values it was resolved from

    @property
    def links(self) -> list[tuple[Choice, str]]:
        """The links that can run, in order: a fallback without its model is no fallback."""
        return [(c, d) for c, d in zip(self.chain, self.model_dirs, strict=True) if d is not None]

    def to_record(self) -> dict[str, Any]:
        """The manifest's fields (profile, model and chain keep the shape they had before plans were kept)."""
        return {
            "profile": self.profile,
            "model": self.model,
            "chain": [c.__dict__ for c in self.chain],
            "model_dirs": list(self.model_dirs),
            "routes": [r.to_dict() for r in self.routes],
            "plan_settings": dict(self.settings),
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> JobPlan | None:
        """The plan a manifest holds (checked by `jobs.manifest_problems`); None for a job prepared before plans
        were kept, which its next run resolves and records."""
        if "model_dirs" not in data or "plan_settings" not in data:
            return None
        return cls(
            profile=data["profile"],
            model=data["model"],
            chain=tuple(Choice(**{**c, "notices": tuple(c.get("notices", ()))}) for c in data["chain"]),
            model_dirs=tuple(data["model_dirs"]),
            routes=tuple(Route.from_dict(r) for r in data.get("routes", [])),
            settings=dict(data["plan_settings"]),
        )

    def outdated(self, cfg: config_mod.Config, hw: hardware.Hardware | None = None) -> str | None:
        """Why this plan is not the one to run with `cfg` on this machine (`hw`: detected), or None: a setting
        changed, a model folder is gone, or the job was prepared on a machine whose hardware resolved it otherwise
        (a GPU there and none here, or the reverse). A device the job's settings name and this machine lacks
        (WHISPER_DEVICE=cuda without a GPU) is a PipelineError, as it is when a job is prepared."""
        from pipeline import models

        now = settings_of(cfg)
        if changed := [k for k in PLAN_KEYS if now[k] != self.settings.get(k)]:
            return f"{', '.join(changed)} differ from the plan's"
        if gone := [d for d in self.model_dirs if d is not None and models.model_format(Path(d)) is None]:
            return f"the model folder {gone[0]} holds no model any more"
        profile, chain, _ = _asr(cfg, hw)
        if (profile.name, _links(chain)) != (self.profile, _links(self.chain)):
            return (
                f"this machine resolves profile {profile.name} ({_links(chain)}) where the job was planned with "
                f"{self.profile} ({_links(self.chain)})"
            )
        return None


def _links(chain: tuple[Choice, ...]) -> str:
    """What of a chain depends on the machine: each backend's device."""
    return ", ".join(f"{c.backend} on {c.device}" for c in chain)


def settings_of(cfg: config_mod.Config) -> dict[str, str]:
    env = cfg.to_env()
    return {key: env[key] for key in PLAN_KEYS}


def _asr(cfg: config_mod.Config, hw: hardware.Hardware | None = None) -> tuple[Profile, tuple[Choice, ...], str]:
    from pipeline.profiles import load_matrix

    hw = hw or hardware.detect()
    profile = hardware.resolve_profile(cfg, load_matrix(), hw)
    chain = tuple(hardware.resolve_chain(cfg, profile, hw))
    return profile, chain, profile.runtime.model if cfg.model == "auto" else cfg.model


def _model_dirs(model: str, chain: tuple[Choice, ...], cfg: config_mod.Config) -> tuple[str | None, ...]:
    """Each link's model folder, each format resolved once (an MLX one converted from CTranslate2's if need be).
    A missing primary model is an error now, not halfway through a run; a missing fallback's is None."""
    from pipeline import models

    found: dict[str, str | None] = {}
    for index, choice in enumerate(chain):
        fmt = models.MLX if choice.backend == "mlx" else models.CT2
        if fmt not in found:
            try:
                found[fmt] = str(models.resolve(model, fmt, allow_download=cfg.allow_download))
            except PipelineError:
                if index == 0:
                    raise
                found[fmt] = None
    return tuple(found[models.MLX if c.backend == "mlx" else models.CT2] for c in chain)


def resolve_asr(cfg: config_mod.Config, routes: tuple[Route, ...]) -> JobPlan:
    """A plan with the ASR part resolved again for `cfg` (a run whose settings differ); the routes are kept."""
    profile, chain, model = _asr(cfg)
    return JobPlan(profile.name, model, chain, _model_dirs(model, chain, cfg), routes, settings_of(cfg))


def plan_job(cfg: config_mod.Config) -> tuple[JobPlan, media.MediaInfo]:
    """Validate a job's settings and media and resolve its plan; nothing is written."""
    if not cfg.media:
        raise PipelineError("no media given; pass a media file (MEDIA in .env.pipeline or the MEDIA argument)")
    info = media.probe(Path(cfg.media))
    source = check_speech_language(cfg.source_language)
    targets = tuple(t for t in cfg.target_languages if t != source)
    if cfg.workflow == "transcribe" and targets:
        raise PipelineError(
            f"TARGET_LANGUAGES={','.join(targets)} given for the transcribe workflow; "
            "allowed: none (use --workflow translate or subtitle for targets)"
        )
    if cfg.workflow != "transcribe" and not cfg.target_languages:
        targets = ("en",) if source != "en" else ()
        if not targets:
            raise PipelineError(f"no target language for the {cfg.workflow} workflow; pass -t, e.g. -t es,pt")
    profile, chain, model = _asr(cfg)
    english_only = Path(model).name.endswith(".en")
    if english_only and source not in ("en", "auto"):
        raise PipelineError(f"model {model} is English-only; SOURCE_LANGUAGE={source} needs a multilingual model")
    routes: tuple[Route, ...] = ()
    if targets:
        if source == "auto":
            raise PipelineError(
                f"SOURCE_LANGUAGE=auto with the {cfg.workflow} workflow; pass the spoken language (-s hi, -s en ...) "
                "so that translation routes can be planned before the job starts"
            )
        from pipeline.mt import available_engines
        from pipeline.mt.routing import plan_routes

        engines = available_engines(cfg.mt_model_dir or None)
        planned = plan_routes(source, targets, engines, speech_to_english=not english_only)
        # Targets that others pivot through come first, so a pivot is translated once.
        routes = tuple(sorted(planned.values(), key=lambda r: (len(r.hops), r.target != "en")))
    if cfg.burn_in:  # issue 14: a burn-in that cannot be made is refused now (pipeline.writers.burn)
        from pipeline.writers.burn import check as check_burn_in

        check_burn_in(cfg.burn_in, workflow=cfg.workflow, video_streams=info.video_streams, media_path=cfg.media,
                      languages=[source, *targets])  # fmt: skip
    return JobPlan(profile.name, model, chain, _model_dirs(model, chain, cfg), routes, settings_of(cfg)), info
