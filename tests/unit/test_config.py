"""Config layering and validation: defaults < project file < job file < environment < command line."""

from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pipeline import config
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
def test_rendered_job_file_reads_back_identically(tmp_path_factory, prompt, media):
    """A job's .env.pipeline must reproduce its config exactly: spaces, quotes, '#', non-ASCII included."""
    cfg = config.build(
        [("flags", {"WHISPER_INITIAL_PROMPT": prompt, "MEDIA": media, "TARGET_LANGUAGES": "es,pt"})]
    )
    folder = tmp_path_factory.mktemp("job")
    (folder / ".env.pipeline").write_text(config.render_env(cfg, "header"), encoding="utf-8")
    again = config.load(job_dir=folder, project_config=folder / "none", environ={})
    assert again == cfg
