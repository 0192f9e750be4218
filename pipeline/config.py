"""One frozen configuration object, layered from defaults, files, the environment and the command line.

Precedence, lowest first: built-in defaults < `config/.env.pipeline` < the job's `.env.pipeline` < environment <
command-line flags. Every value is validated where it enters; a bad one is a one-line error that names the key, the
place it came from and what is allowed. The keys users know from earlier pipelines (WHISPER_BACKEND, WHISPER_MODEL,
WHISPER_COMPUTE_TYPE, WHISPER_DEVICE) keep their meaning.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pipeline import envfile
from pipeline.config_values import (
    BACKENDS,
    COMPUTE_TYPES,
    DEVICES,
    MAX_SPEAKERS,
    MUX_MODES,
    WORKFLOWS,
    Backend,
    ComputeType,
    Device,
    MuxMode,
    SubtitleFormat,
    Workflow,
    _bool,
    _choice,
    _float_range,
    _folder,
    _formats,
    _int_range,
    _language,
    _languages,
    _model,
    _or_auto,
    _path,
    _speakers,
    _text,
)
from pipeline.errors import PipelineError
from pipeline.subtitles.settings import parse_burn_in, parse_names

PROJECT_CONFIG = Path("config") / ".env.pipeline"
JOB_CONFIG = ".env.pipeline"


@dataclass(frozen=True)
class Key:
    """One setting as users write it: computed from a `Config` field (its `key(...)` metadata), never written."""

    name: str  # the key users write in .env files and the environment
    attr: str  # the Config field
    parse: Callable[[str], Any]
    default: str  # the default as a .env file would hold it
    help: str


def key(name: str, parse: Callable[[str], Any], default: Any, help: str) -> Any:
    """A `Config` field that the setting `name` sets: `parse` reads its text (pipeline.config_values), `default`
    is the value when no layer sets it (None: "auto", the profile's), `help` is what `pipeline config keys` says."""
    return field(default=default, metadata={"key": name, "parse": parse, "help": help})


def _as_text(value: Any) -> str:
    """A value as a .env file holds it (what its key's parser reads back)."""
    if value is None:
        return "auto"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Config:
    """Every setting, one field each: the field is the single definition of a key (name, parser, default, help);
    KEYS below is computed from these. Adding a setting is adding one field here, in the order `config keys` shows."""

    workflow: Workflow = key("WORKFLOW", _choice(WORKFLOWS), "transcribe", "transcribe, translate or subtitle")
    media: str = key("MEDIA", _path, "", "the input media file")
    source_language: str = key("SOURCE_LANGUAGE", _language, "auto", "spoken language (ISO 639-1) or auto")
    target_languages: tuple[str, ...] = key("TARGET_LANGUAGES", _languages, (), "comma-separated target languages")
    profile: str = key("PIPELINE_PROFILE", _text, "auto", "hardware profile from matrix/profiles.toml, or auto")
    backend: Backend = key("WHISPER_BACKEND", _choice(BACKENDS), "auto", "ASR backend")
    model: str = key("WHISPER_MODEL", _model, "auto", "model name (base, large-v3, ...) or folder; auto: profile's")
    device: Device = key("WHISPER_DEVICE", _choice(DEVICES), "auto", "compute device")
    compute_type: ComputeType = key(
        "WHISPER_COMPUTE_TYPE", _choice(COMPUTE_TYPES), "auto", "weights/activations precision"
    )
    batch_size: int | None = key(
        "WHISPER_BATCH_SIZE", _or_auto(_int_range(1, 256)), None, "ASR windows decoded together; auto: profile's"
    )
    beam_size: int = key("WHISPER_BEAM_SIZE", _int_range(1, 20), 5, "beam search width")
    vad: bool = key("WHISPER_VAD", _bool, True, "voice activity detection before ASR")
    word_timestamps: bool = key("WHISPER_WORD_TIMESTAMPS", _bool, True, "word timings when the backend has them")
    initial_prompt: str = key("WHISPER_INITIAL_PROMPT", _text, "", "text that primes the decoder's style/script")
    threads: int = key("WHISPER_THREADS", _int_range(0, 256), 0, "CPU threads per worker, 0: library default")
    chunk_seconds: float | None = key(
        "ASR_CHUNK_SECONDS",
        _or_auto(_float_range(30, 7200)),
        None,
        "seconds of audio per ASR call (the memory bound); auto: profile's",
    )
    asr_timeout: float = key(
        "ASR_TIMEOUT", _float_range(10, 86400), 1800.0, "seconds without progress before a worker is killed"
    )
    allow_download: bool = key("MODELS_ALLOW_DOWNLOAD", _bool, False, "allow a hub download of a missing model")
    mt_model_dir: str = key("MT_MODEL_DIR", _path, "", "a CTranslate2 NLLB-200/M2M100 folder for text translation")
    subtitle_formats: tuple[SubtitleFormat, ...] = key(
        "SUBTITLE_FORMATS", _formats, ("srt", "vtt"), "subtitle files to write"
    )
    max_line_chars: int = key("SUBTITLE_MAX_LINE_CHARS", _int_range(16, 120), 42, "characters per subtitle line")
    max_lines: int = key("SUBTITLE_MAX_LINES", _int_range(1, 4), 2, "lines per subtitle cue")
    max_cps: float = key("SUBTITLE_MAX_CPS", _float_range(5, 60), 17.0, "reading speed, characters per second")
    mux: MuxMode = key(
        "SUBTITLE_MUX", _choice(MUX_MODES), "auto", "soft-subtitle mux into the video (subtitle workflow)"
    )
    align_model_dir: str = key(
        "ALIGN_MODEL_DIR",
        _folder,
        "",
        "whisperx: a folder holding its wav2vec2 aligner (and nltk's punkt_tab) for word times; empty: Whisper's own",
    )
    # Guards against text that was never said (issue 12). None (auto): the profile's value ([guards] in the matrix
    # file); the same names and meaning on every backend (pipeline.asr.guards says how each backend honours them).
    no_speech_threshold: float | None = key(
        "WHISPER_NO_SPEECH_THRESHOLD",
        _or_auto(_float_range(0, 1)),
        None,
        "no-speech probability above which a window is silence (when its log prob is also low)",
    )
    log_prob_threshold: float | None = key(
        "WHISPER_LOG_PROB_THRESHOLD",
        _or_auto(_float_range(-20, 0)),
        None,
        "average token log probability below which a decode is retried hotter, or judged silence (see above)",
    )
    compression_ratio_threshold: float | None = key(
        "WHISPER_COMPRESSION_RATIO_THRESHOLD",
        _or_auto(_float_range(1, 100)),
        None,
        "gzip compression ratio above which a decode is retried; removed if also unsure, or twice over",
    )
    condition_on_previous_text: bool | None = key(
        "WHISPER_CONDITION_ON_PREVIOUS_TEXT",
        _or_auto(_bool),
        None,
        "prompt each window with the previous one's text (consistent style, but loops can carry on)",
    )
    hallucination_silence_threshold: float | None = key(
        "WHISPER_HALLUCINATION_SILENCE_THRESHOLD",
        _or_auto(_float_range(0, 600)),
        None,
        "skip silences longer than this (s) around a suspected hallucination, 0: off (needs word timestamps)",
    )
    hotwords: str = key("WHISPER_HOTWORDS", _text, "", 'names and jargon to listen for (e.g. "Nguyen, Kubernetes")')
    repetition_filter: bool | None = key(
        "WHISPER_REPETITION_FILTER",
        _or_auto(_bool),
        None,
        "remove loops, repeated segments and known filler hallucinations (pipeline.asr.guards)",
    )
    language_detection_segments: int | None = key(
        "WHISPER_LANGUAGE_DETECTION_SEGMENTS",
        _or_auto(_int_range(1, 20)),
        None,
        "speech windows (30 s, after VAD) that vote on the language when SOURCE_LANGUAGE=auto",
    )
    # Speaker-aware and styled output (issue 14; pipeline.subtitles, pipeline.writers).
    speaker_names: tuple[str, ...] = key(
        "SPEAKER_NAMES", parse_names, (), "speaker names in order of first appearance (Ravi,Asha)"
    )
    dialogue: bool = key(
        "SUBTITLE_DIALOGUE",
        _bool,
        True,
        'a quick exchange of two speakers may share a cue, a line each led by "- " (else always split)',
    )
    ass_karaoke: bool = key("ASS_KARAOKE", _bool, False, "ASS subtitles highlight each word as it is said")
    subtitle_font: str = key("SUBTITLE_FONT", _text, "DejaVu Sans", "font of ASS and burned-in subtitles")
    subtitle_font_size: int = key(
        "SUBTITLE_FONT_SIZE",
        _int_range(8, 200),
        56,
        "font size of ASS and burned-in subtitles, at 1080 lines (scaled with the video's height)",
    )
    burn_in: str = key(
        "BURN_IN",
        parse_burn_in,
        "",
        "subtitle workflow: burn one language's subtitles into <stem>.<lang>.burned.mp4 (off, source or a code)",
    )
    # Who spoke (issue 14): the speakers stage after transcribe, off by default (pipeline.speakers).
    diarization: str = key("DIARIZATION", _speakers, "off", "speaker labels: off, auto (count found), or the count")
    diarization_threshold: float = key(
        "DIARIZATION_THRESHOLD",
        _float_range(0.05, 2),
        0.5,
        "clustering distance threshold with DIARIZATION=auto: higher finds fewer speakers",
    )
    diarization_min_speakers: int = key("DIARIZATION_MIN_SPEAKERS", _int_range(1, MAX_SPEAKERS), 1, "fewest speakers")
    diarization_max_speakers: int = key("DIARIZATION_MAX_SPEAKERS", _int_range(1, MAX_SPEAKERS), 20, "most speakers")
    diarization_model_dir: str = key(
        "DIARIZATION_MODEL_DIR",
        _path,
        "",
        "segmentation.onnx + embedding.onnx, or a pyannote community-1 folder; empty: `models install speakers`",
    )
    # Where each key's value came from ("default", "environment", a file and line ...): not a setting.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def to_env(self) -> dict[str, str]:
        """The config as KEY=value strings, the form `.env.pipeline` files hold."""
        return {k.name: _as_text(getattr(self, k.attr)) for k in KEYS}


KEYS: tuple[Key, ...] = tuple(
    Key(f.metadata["key"], f.name, f.metadata["parse"], _as_text(f.default), f.metadata["help"])
    for f in fields(Config)
    if "key" in f.metadata
)
BY_NAME = {k.name: k for k in KEYS}


# Keys that define the job itself: fixed at prepare, never taken from the environment (a stray `MEDIA` or
# `WORKFLOW` exported for something else must not swap a job's input) nor changed by a run's --set.
JOB_KEYS = frozenset({"WORKFLOW", "MEDIA"})


def build(layers: Iterable[tuple[str, Mapping[str, str]]]) -> Config:
    """Merge (origin, KEY->raw value) layers, lowest precedence first, and validate every value. Every bad key
    and value is reported, in one line, not only the first."""
    raw: dict[str, tuple[str, str]] = {}  # KEY -> (text, origin), for the keys some layer sets
    problems: list[str] = []
    for origin, values in layers:
        for name, value in values.items():
            if name not in BY_NAME:
                close = difflib.get_close_matches(name, BY_NAME, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                label = name if envfile.check_text(name) is None else envfile.shown(name)
                problems.append(f"{origin}: unknown key {label}{hint} (keys: `pipeline config keys`)")
                continue
            raw[name] = (value, origin)
    parsed: dict[str, Any] = {}
    for k in KEYS:
        if k.name not in raw:  # the field's default, already a value
            continue
        value, origin = raw[k.name]
        try:
            if why := envfile.check_text(value):
                raise ValueError(f"it {why}")
            parsed[k.attr] = k.parse(value)
        except (ValueError, PipelineError) as exc:
            problems.append(f"{origin}: {k.name}={envfile.shown(value)} is not valid; {exc}")
    if problems:
        raise PipelineError(" | ".join(problems))
    parsed["origins"] = {k.name: raw[k.name][1] if k.name in raw else "default" for k in KEYS}
    return Config(**parsed)


def environment_layer(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in BY_NAME if name in environ and name not in JOB_KEYS}


def project_config_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """`$PIPELINE_CONFIG` (which must exist), else `config/.env.pipeline` if there is one."""
    environ = os.environ if environ is None else environ
    if named := environ.get("PIPELINE_CONFIG"):
        path = Path(named).expanduser()
        if not path.is_file():
            raise PipelineError(f"PIPELINE_CONFIG={named}: no such config file; allowed: a .env.pipeline file")
        return path
    return PROJECT_CONFIG if PROJECT_CONFIG.is_file() else None


def load(
    *,
    job_dir: Path | None = None,
    cli: Mapping[str, str] | None = None,
    project_config: Path | None = None,
    environ: Mapping[str, str] | None = None,
    job_flags: Mapping[str, str] | None = None,
) -> Config:
    """The effective config: defaults < project config < job config < environment < command line.

    `job_flags` are the command-line flags the job was prepared with (its manifest keeps them): they rank as
    command-line flags on every later run, above the environment, below that run's own `cli` flags."""
    layers: list[tuple[str, Mapping[str, str]]] = []
    project_config = project_config or project_config_path(environ)
    if project_config is not None and project_config.is_file():
        layers.append((str(project_config), envfile.read(project_config)))
    if job_dir is not None and (job_dir / JOB_CONFIG).is_file():
        layers.append((str(job_dir / JOB_CONFIG), envfile.read(job_dir / JOB_CONFIG)))
    layers.append(("environment", environment_layer(environ)))
    if job_flags:
        layers.append(("command line (prepare)", job_flags))
    if cli:
        layers.append(("command line", cli))
    return build(layers)
