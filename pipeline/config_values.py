"""How a config value is parsed and checked: each field of `pipeline.config.Config` names one of these. A parser
takes the raw text (from a file, the environment or a flag) and returns the value, or raises ValueError saying what
is allowed; `pipeline.config.build` turns that into the one-line error naming the key and where it came from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

N = TypeVar("N", int, float)
S = TypeVar("S", bound=str)

# The closed sets, each defined once: the Literal is the type (mypy), its tuple the allowed values (parsers, errors).
Workflow = Literal["transcribe", "translate", "subtitle"]
Backend = Literal["auto", "whisperx", "faster-whisper", "mlx"]
Device = Literal["auto", "cpu", "cuda", "mps"]
ComputeType = Literal[
    "auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16", "float16", "bfloat16", "float32"
]
SubtitleFormat = Literal["srt", "vtt", "ass"]
MuxMode = Literal["auto", "off", "mp4", "mkv"]

WORKFLOWS: tuple[Workflow, ...] = get_args(Workflow)
BACKENDS: tuple[Backend, ...] = get_args(Backend)
DEVICES: tuple[Device, ...] = get_args(Device)
COMPUTE_TYPES: tuple[ComputeType, ...] = get_args(ComputeType)
SUBTITLE_FORMATS: tuple[SubtitleFormat, ...] = get_args(SubtitleFormat)
MUX_MODES: tuple[MuxMode, ...] = get_args(MuxMode)


def _choice(allowed: tuple[S, ...]) -> Callable[[str], S]:
    def parse(raw: str) -> S:
        value = raw.strip().lower()
        for choice in allowed:
            if value == choice:
                return choice
        raise ValueError(f"allowed: {', '.join(allowed)}")

    parse.allowed = allowed  # type: ignore[attr-defined]
    return parse


def _range(cast: Callable[[str], N], low: N, high: N, noun: str) -> Callable[[str], N]:
    allowed = f"allowed: {noun} from {low:g} to {high:g}"

    def parse(raw: str) -> N:
        try:
            value = cast(raw.strip())
        except ValueError:
            raise ValueError(allowed) from None
        if not low <= value <= high:
            raise ValueError(allowed)
        return value

    return parse


def _int_range(low: int, high: int) -> Callable[[str], int]:
    return _range(int, low, high, "a whole number")


def _float_range(low: float, high: float) -> Callable[[str], float]:
    return _range(float, low, high, "a number")


def _or_auto(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse`, or "auto" (None): the hardware profile's value, from the matrix."""

    def wrapped(raw: str) -> Any:
        if raw.strip().lower() == "auto":
            return None
        try:
            return parse(raw)
        except ValueError as exc:
            raise ValueError(f"{exc}, or auto (the profile's value)") from None

    return wrapped


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("allowed: true, false (or 1/0, yes/no, on/off)")


def _text(raw: str) -> str:
    return raw.strip()


def _language(raw: str) -> str:
    from pipeline.languages import check_language

    return check_language(raw.strip().lower(), allow_auto=True)


def _languages(raw: str) -> tuple[str, ...]:
    from pipeline.languages import check_language

    codes: list[str] = []
    for part in raw.replace(" ", ",").split(","):
        if part.strip():
            code = check_language(part.strip().lower(), allow_auto=False)
            if code not in codes:  # "-t es,es" means es once
                codes.append(code)
    return tuple(codes)


def _formats(raw: str) -> tuple[SubtitleFormat, ...]:
    parts = [p.strip().lower() for p in raw.split(",") if p.strip()]
    formats = tuple(f for p in parts for f in SUBTITLE_FORMATS if p == f)
    if len(formats) != len(parts) or not parts:
        raise ValueError(f"allowed: a comma-separated list of {', '.join(SUBTITLE_FORMATS)}")
    return formats


def _model(raw: str) -> str:
    text = raw.strip()
    if not text:  # Path("") is the current folder: an empty value is a mistake, not a model folder
        raise ValueError("empty; allowed: a model name (base, tiny.en, large-v3), a model folder, or auto")
    return text


def _path(raw: str) -> str:
    if not raw.strip():
        return ""
    text = raw  # verbatim: a file name may begin or end with a space
    try:
        return str(Path(text).expanduser())
    except RuntimeError:  # "~name" where no user is called name: a literal file name, not a crash
        return str(Path(text))


def _folder(raw: str) -> str:
    """A folder that exists, or empty: a model folder the user names must be there when the job is prepared."""
    path = _path(raw)
    if path and not Path(path).is_dir():
        raise ValueError("allowed: an existing folder, or empty (none)")
    return path


# Diarization (issue 14): DIARIZATION=off|auto|N, the number of speakers when it is known.
MAX_SPEAKERS = 50


def _speakers(raw: str) -> str:
    value = raw.strip().lower()
    if value in ("off", "auto"):
        return value
    allowed = f"allowed: off, auto, or a number of speakers from 1 to {MAX_SPEAKERS}"
    try:
        count = int(value)
    except ValueError:
        raise ValueError(allowed) from None
    if not 1 <= count <= MAX_SPEAKERS:
        raise ValueError(allowed)
    return str(count)
