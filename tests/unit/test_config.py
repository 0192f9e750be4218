"""Config layering and validation: defaults < project file < job file < environment < command line."""

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline import config, envfile
from pipeline.errors import PipelineError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_precedence_defaults_files_environment_flags(tmp_path):
    project = write(
        tmp_path / "config" / ".env.pipeline",
        "WHISPER_MODEL=small\nWHISPER_BEAM_SIZE=3\nWHISPER_DEVICE=cpu\nWHISPER_BATCH_SIZE=4\n",
    )
    job = tmp_path / "job"
    write(job / ".env.pipeline", "WHISPER_MODEL=medium\nWHISPER_BEAM_SIZE=2\nWHISPER_DEVICE=cuda\n")
    cfg = config.load(
        job_dir=job,
        project_config=project,
        environ={"WHISPER_BEAM_SIZE": "1", "WHISPER_DEVICE": "mps", "HOME": "/x"},
        cli={"WHISPER_DEVICE": "cpu"},
    )
    assert cfg.batch_size == 4 and cfg.origins["WHISPER_BATCH_SIZE"] == str(project)  # project file
    assert cfg.model == "medium" and cfg.origins["WHISPER_MODEL"] == str(job / ".env.pipeline")  # job file
    assert cfg.beam_size == 1 and cfg.origins["WHISPER_BEAM_SIZE"] == "environment"
    assert cfg.device == "cpu" and cfg.origins["WHISPER_DEVICE"] == "command line"
    assert cfg.compute_type == "auto" and cfg.origins["WHISPER_COMPUTE_TYPE"] == "default"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("WHISPER_COMPUTE_TYPE", "float61", "allowed: auto, int8"),
        ("WHISPER_DEVICE", "tpu", "allowed: auto, cpu, cuda, mps"),
        ("WHISPER_BACKEND", "openai", "allowed: auto, whisperx, faster-whisper, mlx"),
        ("WHISPER_BATCH_SIZE", "0", "from 1 to 256"),
        ("WHISPER_BEAM_SIZE", "five", "whole number"),
        ("WHISPER_VAD", "maybe", "allowed: true, false"),
        ("SOURCE_LANGUAGE", "xx", "unknown language code 'xx'"),
        ("TARGET_LANGUAGES", "es,klingon", "unknown language code 'klingon'"),
        ("SUBTITLE_FORMATS", "srt,ass", "srt, vtt"),
    ],
)
def test_bad_value_is_one_line_naming_key_file_and_allowed(tmp_path, key, value, expected):
    job = tmp_path / "job"
    env_file = write(job / ".env.pipeline", f"{key}={value}\n")
    with pytest.raises(PipelineError) as caught:
        config.load(job_dir=job, project_config=tmp_path / "none", environ={})
    message = str(caught.value)
    assert "\n" not in message
    assert key in message and str(env_file) in message and expected in message


def test_unknown_key_is_rejected_with_a_suggestion(tmp_path):
    write(tmp_path / "j" / ".env.pipeline", "WHISPER_MODLE=base\n")
    with pytest.raises(PipelineError, match="unknown key WHISPER_MODLE; did you mean WHISPER_MODEL"):
        config.load(job_dir=tmp_path / "j", project_config=tmp_path / "none", environ={})


def test_environment_only_reads_pipeline_keys():
    cfg = config.load(
        project_config=Path("/nonexistent"), environ={"PATH": "/bin", "WHISPER_MODEL": "tiny.en"}
    )
    assert cfg.model == "tiny.en"


def test_targets_are_deduplicated_and_normalised():
    cfg = config.build([("flags", {"TARGET_LANGUAGES": "ES, pt,es,,en"})])
    assert cfg.target_languages == ("es", "pt", "en")


_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)


@given(prompt=_text, media=_text.filter(lambda s: s.strip() == s))
@example(prompt="", media="~0")  # "~0": no user 0's home to expand into (hypothesis found it)
@example(prompt="${HOME}", media="/m/a ${HOME} b.wav")  # not expanded from the environment
def test_rendered_job_file_reads_back_identically(tmp_path_factory, prompt, media):
    """A job's .env.pipeline must reproduce its config exactly: spaces, quotes, '#', '$', non-ASCII included."""
    cfg = config.build(
        [("flags", {"WHISPER_INITIAL_PROMPT": prompt, "MEDIA": media, "TARGET_LANGUAGES": "es,pt"})]
    )
    folder = tmp_path_factory.mktemp("job")
    try:
        text = envfile.render(cfg.to_env(), "header")
    except PipelineError as refused:  # only the values no quoting can keep both verbatim and inert
        assert any(_unquotable(v) for v in (cfg.initial_prompt, cfg.media)), refused
        return
    (folder / ".env.pipeline").write_text(text, encoding="utf-8", newline="")
    again = config.load(job_dir=folder, project_config=folder / "none", environ={"HOME": "/home/x"})
    assert again == cfg


def _unquotable(value: str) -> bool:
    return ("'" in value or "\\\\" in value or value.endswith("\\")) and ("$" in value or "`" in value)


# Anything a file name, a prompt or an exported variable may hold, the shell's special characters first.
_hostile = st.text(
    st.one_of(st.sampled_from("$`'\"\\#=;&|()<>{}*?!~ \n\r\t-"), st.characters(blacklist_categories=("Cs",))),
    max_size=30,
)


@given(value=_hostile)
@example(value="$(touch PWNED)")
@example(value="a\\'b")
@example(value="\\")
@example(value="x\\\\y")
def test_any_value_reads_back_verbatim_or_is_refused_by_name(tmp_path_factory, value):
    """render -> read is the identity for every value it accepts; python-dotenv's interpolation is off."""
    try:
        line = f"MT_MODEL_DIR={envfile.quote('MT_MODEL_DIR', value)}\n"
    except PipelineError as refused:
        assert _unquotable(value) and "MT_MODEL_DIR=" in str(refused) and "\n" not in str(refused)
        return
    path = tmp_path_factory.mktemp("env") / ".env.pipeline"
    path.write_text(f"# header\n{line}", encoding="utf-8", newline="")
    assert envfile.read(path) == {"MT_MODEL_DIR": value}


@settings(max_examples=60, deadline=None)
@given(value=_hostile.filter(lambda v: "\0" not in v))
@example(value="$(touch PWNED)")
@example(value="`touch PWNED`")
@example(value="a'b\"c")
@example(value="${HOME}")
def test_sourcing_a_job_file_in_bash_runs_nothing(tmp_path_factory, value):
    """`set -a; . .env.pipeline` (how users load env files) must not run a file name's `$(...)`; where bash can
    hold the value, it reads the same one."""
    try:
        quoted = envfile.quote("MEDIA", value)
    except PipelineError:
        return  # refused at prepare: no job file is written (test_any_value_reads_back_...)
    folder = tmp_path_factory.mktemp("bash")
    (folder / ".env.pipeline").write_text(f"MEDIA={quoted}\n", encoding="utf-8", newline="")
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", 'set -a; . ./.env.pipeline; printf %s "$MEDIA"'],
        cwd=folder,
        capture_output=True,
        env={"PATH": os.environ["PATH"], "HOME": str(folder / "home")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == [".env.pipeline"], "sourcing the job file ran something"
    assert result.stdout == value.encode("utf-8", "surrogatepass")


def test_values_are_read_verbatim_not_expanded(tmp_path):
    env_file = write(
        tmp_path / "j" / ".env.pipeline",
        "MEDIA='/m/a ${HOME} b.wav'\nWHISPER_INITIAL_PROMPT=\"${API_TOKEN}\"\nMT_MODEL_DIR=$HOME/x\n",
    )
    assert envfile.read(env_file) == {
        "MEDIA": "/m/a ${HOME} b.wav",
        "WHISPER_INITIAL_PROMPT": "${API_TOKEN}",
        "MT_MODEL_DIR": "$HOME/x",
    }


def test_a_malformed_line_is_an_error_naming_file_and_line(tmp_path):
    project = write(tmp_path / "config" / ".env.pipeline", "WHISPER_BEAM_SIZE=3\nWHISPER_MODEL='base\n")
    with pytest.raises(PipelineError) as caught:
        config.load(project_config=project, environ={})
    assert str(project) in str(caught.value) and "line 2" in str(caught.value)


def test_every_bad_key_is_reported_not_only_the_first(tmp_path):
    write(tmp_path / "j" / ".env.pipeline", "WHISPER_MODLE=base\nWHISPER_BEAM_SIZE=0\nWHISPER_DEVICE=tpu\n")
    with pytest.raises(PipelineError) as caught:
        config.load(job_dir=tmp_path / "j", project_config=tmp_path / "none", environ={})
    message = str(caught.value)
    assert "\n" not in message
    assert all(key in message for key in ("WHISPER_MODLE", "WHISPER_BEAM_SIZE", "WHISPER_DEVICE")), message


def test_a_missing_pipeline_config_file_is_an_error(tmp_path):
    with pytest.raises(PipelineError, match=r"PIPELINE_CONFIG=.*no such config file"):
        config.load(environ={"PIPELINE_CONFIG": str(tmp_path / "nope.env")})


def test_an_empty_model_is_its_own_error_not_the_current_folder():
    with pytest.raises(PipelineError, match="WHISPER_MODEL='' is not valid; empty"):
        config.build([("command line", {"WHISPER_MODEL": ""})])


def test_values_that_are_not_utf8_or_hold_nul_are_refused_by_key():
    with pytest.raises(PipelineError, match=r"MEDIA=b'/m/\\xff.wav' is not valid; it is not valid UTF-8"):
        config.build([("command line", {"MEDIA": "/m/\udcff.wav"})])
    with pytest.raises(PipelineError, match=r"WHISPER_INITIAL_PROMPT.*NUL"):
        config.build([("x", {"WHISPER_INITIAL_PROMPT": "a\0b"})])


def test_flags_the_job_was_prepared_with_beat_the_environment_on_every_run(tmp_path):
    job = tmp_path / "job"
    write(job / ".env.pipeline", "WHISPER_MODEL='base'\nWHISPER_BEAM_SIZE='2'\n")
    environ = {"WHISPER_MODEL": "tiny.en", "WHISPER_BEAM_SIZE": "1", "MEDIA": "/elsewhere.wav", "WORKFLOW": "subtitle"}
    flags = {"WHISPER_MODEL": "base", "WHISPER_BEAM_SIZE": "2"}
    cfg = config.load(job_dir=job, project_config=tmp_path / "none", environ=environ, job_flags=flags)
    assert (cfg.model, cfg.beam_size) == ("base", 2)
    assert cfg.origins["WHISPER_MODEL"] == "command line (prepare)"
    assert cfg.media == "" and cfg.workflow == "transcribe"  # the job's own, never an exported MEDIA/WORKFLOW
    again = config.load(
        job_dir=job, project_config=tmp_path / "none", environ=environ, job_flags=flags, cli={"WHISPER_BEAM_SIZE": "3"}
    )
    assert again.beam_size == 3 and again.origins["WHISPER_BEAM_SIZE"] == "command line"


def test_every_key_is_a_config_field_whose_default_its_parser_reads_back() -> None:
    """KEYS is computed from Config's fields: each default, written as a .env file holds it, parses to itself."""
    from dataclasses import fields

    assert [k.attr for k in config.KEYS] == [f.name for f in fields(config.Config) if f.name != "origins"]
    defaults = config.Config()
    for k in config.KEYS:
        assert k.parse(k.default) == getattr(defaults, k.attr), k.name
    assert config.build([]) == defaults and set(config.build([]).origins.values()) == {"default"}
