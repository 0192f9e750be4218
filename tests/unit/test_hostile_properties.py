"""Hostile names and values through the real CLI, in-process: `pipeline prepare` (real ffprobe, no ASR) on media
files named with quotes, `$`, backticks, newlines, leading dashes, undecodable bytes and 255-byte names, with such
prompts, `--set` values and job ids. Each run either succeeds or fails with one line (exit 2, `pipeline: error:`),
never a traceback, and nothing is written outside the job folder: not beside the media, not in the working
folder, not in $HOME."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from pipeline import cli, config, envfile, jobs
from pipeline.models import models_dir

JFK = Path(__file__).resolve().parents[1] / "fixtures" / "jfk.wav"
NAME_MAX = 255

# The characters shells, dotenv files and path code treat specially, then anything else.
_special = st.sampled_from([*"$`'\"\\#=;&|()<>{}*?!~ \n\r\t-.%", "${HOME}", "$(touch PWNED)", "`touch PWNED`"])
_char = st.one_of(_special, st.characters(blacklist_categories=("Cs",), blacklist_characters="\0/"))
_text = st.lists(_char, max_size=12).map("".join)
# Lone surrogates \udc80-\udcff are how Python hands over the bytes of a name that is not UTF-8.
_undecodable = st.tuples(_text, st.integers(0x80, 0xFF)).map(lambda t: t[0] + chr(0xDC00 + t[1]))


def _fit(stem: str, limit: int) -> str:
    """`stem` cut to at most `limit` bytes as the file system sees them."""
    while len(os.fsencode(stem)) > limit:
        stem = stem[:-1]
    return stem


_stem = st.one_of(
    _text,
    _text.map(lambda s: "-" + s),  # a leading dash: an option to a careless command line
    _undecodable,
    st.tuples(_text, st.integers(200, 251)).map(lambda t: _fit(t[0] + "é" * 130, t[1])),  # up to NAME_MAX
).filter(lambda s: s.strip(".") != "")

_keys = st.sampled_from(  # the free-text key most often: the others refuse almost any text, in one line
    ["WHISPER_INITIAL_PROMPT"] * 4 + ["WHISPER_BEAM_SIZE", "SOURCE_LANGUAGE", "SUBTITLE_FORMATS", "WHISPER_MODEL"]
)


@contextlib.contextmanager
def _sandbox() -> Iterator[Path]:
    """A fresh folder with home/, cwd/, media/ and out/, the process's HOME and working folder inside it."""
    models = models_dir()  # the installed models, found before HOME moves
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        root = Path(tmp)
        for name in ("home", "cwd", "media"):
            (root / name).mkdir()
        for key in ("PIPELINE_CONFIG", "XDG_CACHE_HOME", *config.BY_NAME):
            os.environ.pop(key, None)
        os.environ.update(
            HOME=str(root / "home"),
            PIPELINE_OUT=str(root / "out"),
            PIPELINE_MODELS_DIR=str(models),
            PIPELINE_PROFILE="cpu",
            HF_HUB_OFFLINE="1",
        )
        os.chdir(root / "cwd")
        try:
            yield root
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)


def _main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:  # argparse's usage errors (one line too: pipeline.cli._Parser)
            code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if not p.is_dir()}


def _assert_one_line_or_success(code: int, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    if code != 0:
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("pipeline: error: "), (code, stderr)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stem=_stem, prompt=_text, key=_keys, value=_text)
@example(stem="a ${HOME} b", prompt="${API_TOKEN}", key="WHISPER_MODEL", value="")
@example(stem="$(touch PWNED) `touch PWNED`", prompt="it's $HOME", key="WHISPER_BEAM_SIZE", value="5; rm")
@example(stem="caf\udce9", prompt="\udcff", key="SOURCE_LANGUAGE", value="en/../../x")
@example(stem="-rf\nnew line", prompt="-x", key="SUBTITLE_FORMATS", value="srt,'vtt'")
@example(stem="é" * 125, prompt="", key="WHISPER_INITIAL_PROMPT", value="\\")  # 250 bytes: too long to write
def test_prepare_with_hostile_names_and_values(stem, prompt, key, value):
    with _sandbox() as root:
        media = root / "media" / f"{stem}.wav"
        shutil.copyfile(JFK, media)
        before = _files(root)
        argv = ["prepare", "-w", "transcribe", "-s", "en", "--model", "tiny.en", f"--initial-prompt={prompt}"]
        code, stdout, stderr = _main([*argv, f"--set={key}={value}", str(media)])
        _assert_one_line_or_success(code, stderr)
        event("prepared" if code == 0 else stderr.split(";")[0][:60])
        written = _files(root) - before
        if code == 0:
            job_id = stdout.strip()
            folder = jobs.job_dir_for(job_id, root / "out")
            assert all(folder in p.parents for p in written), sorted(map(str, written))
            job = envfile.read(folder / config.JOB_CONFIG)
            assert job["MEDIA"] == str(media)  # the file prepared is the file a run will read, byte for byte
            assert jobs.Manifest.load(folder).data["media"] == str(media)
        else:
            assert written == set() and not (root / "out").exists(), sorted(map(str, written))
        assert not list((root / "home").iterdir()) and not list((root / "cwd").iterdir())
        assert sorted(p.name for p in (root / "media").iterdir()) == [media.name]


@settings(max_examples=40, deadline=None)
@example(job="--")
@example(job="-x")
@given(job=st.one_of(_text, _stem, st.just("job-20251203-me-" + "9" * 300), st.just("../../etc")))
def test_run_and_status_with_hostile_job_ids(job):
    with _sandbox() as root:
        # As typed, and after `--` (how a value that starts with a dash is passed; `config show --` alone is
        # `config show` without a job, so it only gets the `--` form).
        for command in (["status", job], ["run", job], ["status", "--json", "--", job], ["config", "show", "--", job]):
            code, _, stderr = _main(command)
            assert code != 0
            _assert_one_line_or_success(code, stderr)
        assert _files(root) == set()
