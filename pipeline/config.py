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

PROJECT_CONFIG = Path("config") / ".env.pipeline"
JOB_CONFIG = ".env.pipeline"


@dataclass(frozen=True)
class Key:
    name: str  # the key users write in .env files and the environment
    attr: str  # the Config field
    parse: Callable[[str], Any]
    default: str
    help: str


KEYS: tuple[Key, ...] = (
    Key("WORKFLOW", "workflow", _choice(WORKFLOWS), "transcribe", "transcribe, translate or subtitle"),
    Key("MEDIA", "media", _path, "", "the input media file"),
    Key("SOURCE_LANGUAGE", "source_language", _language, "auto", "spoken language (ISO 639-1) or auto"),
    Key("TARGET_LANGUAGES", "target_languages", _languages, "", "comma-separated target languages"),
    Key("PIPELINE_PROFILE", "profile", _text, "auto", "hardware profile from matrix/profiles.toml, or auto"),
    Key("WHISPER_BACKEND", "backend", _choice(BACKENDS), "auto", "ASR backend"),
    Key("WHISPER_MODEL", "model", _model, "auto", "model name (base, large-v3, ...) or folder; auto: profile's"),
    Key("WHISPER_DEVICE", "device", _choice(DEVICES), "auto", "compute device"),
    Key(
        "WHISPER_COMPUTE_TYPE",
        "compute_type",
        _choice(COMPUTE_TYPES),
        "auto",
        "weights/activations precision",
    ),
    Key(
        "WHISPER_BATCH_SIZE",
        "batch_size",
        _or_auto(_int_range(1, 256)),
        "auto",
        "ASR windows decoded together; auto: profile's",
    ),
    Key("WHISPER_BEAM_SIZE", "beam_size", _int_range(1, 20), "5", "beam search width"),
    Key("WHISPER_VAD", "vad", _bool, "true", "voice activity detection before ASR"),
    Key("WHISPER_WORD_TIMESTAMPS", "word_timestamps", _bool, "true", "word timings when the backend has them"),
    Key("WHISPER_INITIAL_PROMPT", "initial_prompt", _text, "", "text that primes the decoder's style/script"),
    Key("WHISPER_THREADS", "threads", _int_range(0, 256), "0", "CPU threads per worker, 0: library default"),
    Key(
        "ASR_CHUNK_SECONDS",
        "chunk_seconds",
        _or_auto(_float_range(30, 7200)),
        "auto",
        "seconds of audio per ASR call (the memory bound); auto: profile's",
    ),
    Key(
        "ASR_TIMEOUT",
        "asr_timeout",
        _float_range(10, 86400),
        "1800",
        "seconds without progress before a worker is killed",
    ),
    Key("MODELS_ALLOW_DOWNLOAD", "allow_download", _bool, "false", "allow a hub download of a missing model"),
    Key("MT_MODEL_DIR", "mt_model_dir", _path, "", "a CTranslate2 NLLB-200/M2M100 folder for text translation"),
    Key("SUBTITLE_FORMATS", "subtitle_formats", _formats, "srt,vtt", "subtitle files to write"),
    Key("SUBTITLE_MAX_LINE_CHARS", "max_line_chars", _int_range(16, 120), "42", "characters per subtitle line"),
    Key("SUBTITLE_MAX_LINES", "max_lines", _int_range(1, 4), "2", "lines per subtitle cue"),
    Key("SUBTITLE_MAX_CPS", "max_cps", _float_range(5, 60), "17", "reading speed, characters per second"),
    Key(
        "SUBTITLE_MUX",
        "mux",
        _choice(MUX_MODES),
        "auto",
        "soft-subtitle mux into the video (subtitle workflow)",
    ),
    Key(
        "ALIGN_MODEL_DIR",
        "align_model_dir",
        _folder,
        "",
        "whisperx: a folder holding its wav2vec2 aligner (and nltk's punkt_tab) for word times; empty: Whisper's own",
    ),
    # Guards against text that was never said (issue 12). auto: the profile's value ([guards] in the matrix file);
    # the same names and meaning on every backend (pipeline.asr.guards says how each backend honours them).
    Key(
        "WHISPER_NO_SPEECH_THRESHOLD",
        "no_speech_threshold",
        _or_auto(_float_range(0, 1)),
        "auto",
        "no-speech probability above which a window is silence (when its log prob is also low)",
    ),
    Key(
        "WHISPER_LOG_PROB_THRESHOLD",
        "log_prob_threshold",
        _or_auto(_float_range(-20, 0)),
        "auto",
        "average token log probability below which a decode is retried hotter, or judged silence (see above)",
    ),
    Key(
        "WHISPER_COMPRESSION_RATIO_THRESHOLD",
        "compression_ratio_threshold",
        _or_auto(_float_range(1, 100)),
        "auto",
        "gzip compression ratio above which a decode is retried; removed if also unsure, or twice over",
    ),
    Key(
        "WHISPER_CONDITION_ON_PREVIOUS_TEXT",
        "condition_on_previous_text",
        _or_auto(_bool),
        "auto",
        "prompt each window with the previous one's text (consistent style, but loops can carry on)",
    ),
    Key(
        "WHISPER_HALLUCINATION_SILENCE_THRESHOLD",
        "hallucination_silence_threshold",
        _or_auto(_float_range(0, 600)),
        "auto",
        "skip silences longer than this (s) around a suspected hallucination, 0: off (needs word timestamps)",
    ),
    Key("WHISPER_HOTWORDS", "hotwords", _text, "", 'names and jargon to listen for (e.g. "Nguyen, Kubernetes")'),
    Key(
        "WHISPER_REPETITION_FILTER",
        "repetition_filter",
        _or_auto(_bool),
        "auto",
        "remove loops, repeated segments and known filler hallucinations (pipeline.asr.guards)",
    ),
    Key(
        "WHISPER_LANGUAGE_DETECTION_SEGMENTS",
        "language_detection_segments",
        _or_auto(_int_range(1, 20)),
        "auto",
        "speech windows (30 s, after VAD) that vote on the language when SOURCE_LANGUAGE=auto",
    ),
    # Who spoke (issue 14): the speakers stage after transcribe, off by default (pipeline.speakers).
    Key("DIARIZATION", "diarization", _speakers, "off", "speaker labels: off, auto (count found), or the count"),
    Key(
        "DIARIZATION_THRESHOLD",
        "diarization_threshold",
        _float_range(0.05, 2),
        "0.5",
        "clustering distance threshold with DIARIZATION=auto: higher finds fewer speakers",
    ),
    Key("DIARIZATION_MIN_SPEAKERS", "diarization_min_speakers", _int_range(1, MAX_SPEAKERS), "1", "fewest speakers"),
    Key("DIARIZATION_MAX_SPEAKERS", "diarization_max_speakers", _int_range(1, MAX_SPEAKERS), "20", "most speakers"),
    Key(
        "DIARIZATION_MODEL_DIR",
        "diarization_model_dir",
        _path,
        "",
        "a folder with segmentation.onnx and embedding.onnx; empty: `pipeline models install speakers`",
    ),
)
BY_NAME = {key.name: key for key in KEYS}


@dataclass(frozen=True)
class Config:
    workflow: str = "transcribe"
    media: str = ""
    source_language: str = "auto"
    target_languages: tuple[str, ...] = ()
    profile: str = "auto"
    backend: str = "auto"
    model: str = "auto"
    device: str = "auto"
    compute_type: str = "auto"
    batch_size: int | None = None  # None: the profile's (matrix)
    beam_size: int = 5
    vad: bool = True
    word_timestamps: bool = True
    initial_prompt: str = ""
    threads: int = 0
    chunk_seconds: float | None = None  # None: the profile's (matrix)
    asr_timeout: float = 1800.0
    allow_download: bool = False
    mt_model_dir: str = ""
    subtitle_formats: tuple[str, ...] = ("srt", "vtt")
    max_line_chars: int = 42
    max_lines: int = 2
    max_cps: float = 17.0
    mux: str = "auto"
    align_model_dir: str = ""  # whisperx's wav2vec2 aligner, offline (load_align_model's model_dir)
    # None: the profile's (matrix [guards])
    no_speech_threshold: float | None = None
    log_prob_threshold: float | None = None
    compression_ratio_threshold: float | None = None
    condition_on_previous_text: bool | None = None
    hallucination_silence_threshold: float | None = None
    hotwords: str = ""
    repetition_filter: bool | None = None
    language_detection_segments: int | None = None
    diarization: str = "off"  # off, auto or a speaker count
    diarization_threshold: float = 0.5
    diarization_min_speakers: int = 1
    diarization_max_speakers: int = 20
    diarization_model_dir: str = ""
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def to_env(self) -> dict[str, str]:
        """The config as KEY=value strings, the form `.env.pipeline` files hold."""
        out = {}
        for key in KEYS:
            value = getattr(self, key.attr)
            if value is None:
                value = "auto"
            elif isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, float):
                value = f"{value:g}"
            out[key.name] = str(value)
        return out


# Keys that define the job itself: fixed at prepare, never taken from the environment (a stray `MEDIA` or
# `WORKFLOW` exported for something else must not swap a job's input) nor changed by a run's --set.
JOB_KEYS = frozenset({"WORKFLOW", "MEDIA"})


def build(layers: Iterable[tuple[str, Mapping[str, str]]]) -> Config:
    """Merge (origin, KEY->raw value) layers, lowest precedence first, and validate every value. Every bad key
    and value is reported, in one line, not only the first."""
    raw: dict[str, tuple[str, str]] = {key.name: (key.default, "default") for key in KEYS}
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
    for key in KEYS:
        value, origin = raw[key.name]
        try:
            if why := envfile.check_text(value):
                raise ValueError(f"it {why}")
            parsed[key.attr] = key.parse(value)
        except (ValueError, PipelineError) as exc:
            problems.append(f"{origin}: {key.name}={envfile.shown(value)} is not valid; {exc}")
    if problems:
        raise PipelineError(" | ".join(problems))
    parsed["origins"] = {key.name: raw[key.name][1] for key in KEYS}
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


assert {f.name for f in fields(Config)} - {"origins"} == {key.attr for key in KEYS}, "KEYS and Config disagree"
