"""Bad input: a one-line error naming what was wrong and what is allowed, a non-zero exit, nothing written."""

from __future__ import annotations

import shutil

import psutil
import pytest
from conftest import ffmpeg

pytestmark = pytest.mark.e2e


def assert_rejected(run, *phrases: str) -> None:
    assert run.result.returncode == 2, run.result.stderr
    lines = run.result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipeline: error: "), run.result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert not run.out_root.exists(), "something was written for a rejected job"


def test_missing_file(pipeline_cli, tmp_path):
    assert_rejected(pipeline_cli("transcribe", str(tmp_path / "nope.mp4"), check=False), "not found", "nope.mp4")


def test_not_media(pipeline_cli, tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("this is not a video\n" * 50)
    assert_rejected(pipeline_cli("transcribe", str(notes), check=False), "not a media file", "allowed")


def test_video_without_audio(pipeline_cli, tmp_path):
    silent = tmp_path / "silent film.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=160x120:r=5:d=2",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(silent),
    )
    assert_rejected(
        pipeline_cli("subtitle", str(silent), "-s", "en", "-t", "es", check=False),
        "no audio stream",
        "allowed",
    )


def test_zero_length_file(pipeline_cli, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.touch()
    assert_rejected(pipeline_cli("transcribe", str(empty), check=False), "empty")


def test_truncated_file(pipeline_cli, tmp_path, english_video):
    mp4 = tmp_path / "cut.mp4"
    ffmpeg("-i", str(english_video), "-c", "copy", str(mp4))  # moov atom at the end, as most cameras write it
    data = mp4.read_bytes()
    mp4.write_bytes(data[: len(data) // 2])
    assert_rejected(pipeline_cli("transcribe", str(mp4), check=False), "not a media file")


@pytest.mark.parametrize(
    ("flags", "phrases"),
    [
        (["-s", "xx"], ["unknown language code 'xx'", "allowed"]),
        (
            ["-s", "en", "--compute-type", "float61"],
            ["WHISPER_COMPUTE_TYPE='float61'", "command line", "allowed"],
        ),
        (["-s", "en", "--device", "tpu"], ["WHISPER_DEVICE", "auto, cpu, cuda, mps"]),
        (["-s", "en", "--set", "WHISPER_BATCH_SIZE=-3"], ["WHISPER_BATCH_SIZE", "from 1 to 256"]),
        (["-s", "en", "--profile", "tpu"], ["unknown profile 'tpu'", "cpu, cuda, mps"]),
        (["-s", "en", "--model", "/no/such/model"], ["model folder /no/such/model does not exist"]),
    ],
)
def test_bad_values(pipeline_cli, clips, flags, phrases):
    assert_rejected(pipeline_cli("transcribe", clips["jfk"]["path"], *flags, check=False), *phrases)


def test_bad_value_in_the_environment_names_it(pipeline_cli, clips):
    run = pipeline_cli(
        "transcribe", clips["jfk"]["path"], "-s", "en", check=False, env={"WHISPER_BACKEND": "openai-api"}
    )
    assert_rejected(run, "environment", "WHISPER_BACKEND='openai-api'", "whisperx, faster-whisper, mlx")


def test_align_model_dir_that_is_not_a_folder(pipeline_cli, clips, tmp_path):
    missing = tmp_path / "no-aligner-here"
    run = pipeline_cli(
        "transcribe", clips["jfk"]["path"], "-s", "en", check=False, env={"ALIGN_MODEL_DIR": str(missing)}
    )
    assert_rejected(run, "environment", f"ALIGN_MODEL_DIR='{missing}'", "an existing folder")


@pytest.mark.parametrize("job", ["../../etc", "job-20251203-me-0001/..", "a/b", "..", "job-x"])
def test_job_ids_with_slashes_or_dots(pipeline_cli, job):
    run = pipeline_cli("run", job, check=False)
    assert run.result.returncode == 2
    assert run.result.stderr.startswith("pipeline: error: ") and len(run.result.stderr.strip().splitlines()) == 1


def test_bad_value_in_a_job_file_names_the_file(pipeline_cli, clips):
    prepared = pipeline_cli("prepare", clips["jfk"]["path"], "--workflow", "transcribe", "-s", "en")
    env_file = prepared.folder / ".env.pipeline"
    env_file.write_text(
        env_file.read_text(encoding="utf-8").replace("WHISPER_BEAM_SIZE='5'", "WHISPER_BEAM_SIZE='wide'")
    )
    run = pipeline_cli("run", prepared.job_id, check=False)
    assert run.result.returncode == 2
    assert str(env_file) in run.result.stderr and "WHISPER_BEAM_SIZE='wide'" in run.result.stderr


def test_the_media_moved_away_after_prepare(pipeline_cli, clips, tmp_path):
    media = tmp_path / "clip.wav"
    shutil.copy(clips["jfk"]["path"], media)
    prepared = pipeline_cli("prepare", str(media), "--workflow", "transcribe", "-s", "en")
    media.unlink()
    run = pipeline_cli("run", prepared.job_id, check=False)
    assert run.result.returncode == 1
    assert "stage extract failed" in run.result.stderr and "clip.wav" in run.result.stderr
    # The ASR worker started ahead of the audio, to load its model during the extract, is gone with it.
    assert "asr attempt 1" in (log := (prepared.folder / "pipeline.log").read_text()) and "not used" in log
    folder = str(prepared.folder)
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if any(folder in a for a in p.info["cmdline"] or ())]
    assert not leftovers, "the early ASR worker outlived its job"
