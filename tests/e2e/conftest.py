"""Shared machinery of the E2E suites: the real CLI on real speech, judged against the matrix's thresholds.

The profile comes from one environment variable, PIPELINE_PROFILE (default cpu), and the model from
PIPELINE_TEST_MODEL (default: the matrix's test model), so the same suites run unchanged on every profile.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import jiwer
import pytest

from pipeline.profiles import load_matrix

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MATRIX = load_matrix()
PROFILE = MATRIX.profile(os.environ.get("PIPELINE_PROFILE", "cpu"))
MODEL = os.environ.get("PIPELINE_TEST_MODEL", MATRIX.defaults["test_model"])


def threshold(key: str) -> float:
    return PROFILE.threshold(MODEL, key)


_normalise = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.RemovePunctuation(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(reference, hypothesis, reference_transform=_normalise, hypothesis_transform=_normalise)


def keyword_recall(keywords: list[str], text: str) -> float:
    """Share of keywords found as whole words (accents and case folded) in `text`."""

    def fold(s: str) -> str:
        return "".join(c for c in unicodedata.normalize("NFKD", s.lower()) if not unicodedata.combining(c))

    folded = fold(text)
    found = [k for k in keywords if re.search(rf"\b{re.escape(fold(k))}", folded)]
    return len(found) / len(keywords)


@dataclass
class Run:
    result: subprocess.CompletedProcess
    out_root: Path
    wall_s: float

    @property
    def job_id(self) -> str:
        return self.result.stdout.strip().splitlines()[0]

    @property
    def folder(self) -> Path:
        return next(self.out_root.glob(f"*/*/*/*/{self.job_id}"))

    @property
    def manifest(self) -> dict:
        return json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))

    def output(self, stem: str, language: str, ext: str) -> Path:
        return self.folder / f"{stem}.{language}.{ext}"

    def text(self, stem: str, language: str) -> str:
        return self.output(stem, language, "txt").read_text(encoding="utf-8")


def _threads() -> str:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return str(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture
def pipeline_cli(tmp_path):
    """Run `python -m pipeline ARGS` as a user would, with this profile and model, in a private out/ root.
    `terminal=True` gives it a pseudo-terminal for stderr, as an interactive shell does."""
    out_root = tmp_path / "out"

    def run(*args: str, check: bool = True, env: dict[str, str] | None = None, terminal: bool = False) -> Run:
        environ = os.environ | {
            "PIPELINE_PROFILE": PROFILE.name,
            "WHISPER_MODEL": MODEL,
            "PIPELINE_OUT": str(out_root),
            "WHISPER_THREADS": os.environ.get("WHISPER_THREADS", _threads()),
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        argv = [sys.executable, "-m", "pipeline", *args]
        start = time.perf_counter()
        if terminal:
            result = _run_on_terminal(argv, environ, tmp_path)
        else:
            result = subprocess.run(argv, capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=1800)
        if check and result.returncode != 0:
            pytest.fail(f"pipeline {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
        return Run(result, out_root, time.perf_counter() - start)

    return run


def _run_on_terminal(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """stdout to a pipe, stderr to a pseudo-terminal; what the terminal showed comes back as `stderr`."""
    leader, follower = pty.openpty()
    # 24 rows of 100 columns: a new pty is 0 x 0, and a bar fitted to 0 columns is empty.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    deadline = time.monotonic() + 1800  # as long as a run without a terminal may take
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=follower, env=env, cwd=cwd, text=True) as process:
        os.close(follower)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the last writer to the terminal is gone
            while select.select([leader], [], [], max(0.0, deadline - time.monotonic()))[0]:
                if not (chunk := os.read(leader, 65536)):
                    break
                shown += chunk
        os.close(leader)
        if time.monotonic() >= deadline:
            process.kill()
        stdout = process.stdout.read() if process.stdout else ""
        code = process.wait(timeout=60)
    return subprocess.CompletedProcess(argv, code, stdout, shown.decode("utf-8", errors="replace"))


@pytest.fixture
def record_job(record_result):
    """Record a finished job's ASR facts (backend used, memory, crashes) in the matrix results."""

    def record(run: Run, suite: str, case: str, extra: dict | None = None, **metrics) -> None:
        manifest = run.manifest
        asr = manifest["stages"]["transcribe"]
        audio_seconds = manifest["media_info"]["duration"]
        asr_wall = asr.get("wall_s", 0.0)
        record_result(
            suite=suite,
            case=case,
            audio_seconds=audio_seconds,
            wall_s=round(run.wall_s, 3),
            rtf=round(asr_wall / audio_seconds, 4) if audio_seconds else None,
            peak_rss_mb=max((s.get("peak_rss_mb", 0.0) for s in manifest["stages"].values()), default=None),
            backend=asr.get("backend"),
            fallbacks=[a["backend"] for a in asr.get("attempts", [])[:-1]],
            crashes=[a for a in asr.get("attempts", []) if a.get("signal") and not a.get("timed_out")],
            salvaged=asr.get("salvaged", 0),
            extra={
                "model": MODEL,
                "device": asr.get("device"),
                "compute_type": asr.get("compute_type"),
                **(extra or {}),
            },
            **metrics,
        )

    return record


def _fixture_table() -> dict:
    return tomllib.loads((FIXTURES / "fixtures.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def clips() -> dict:
    """Every speech clip with its reference (tests/fixtures/fixtures.toml), paths made absolute."""
    table = _fixture_table()["clips"]
    for clip in table.values():
        clip["path"] = (
            str((FIXTURES / clip["path"]).resolve()) if not os.path.isabs(clip["path"]) else clip["path"]
        )
    return table


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def librivox(tmp_path_factory, clips) -> tuple[Path, str]:
    """The five LibriVox clips of Debian's pocketsphinx-testdata as one 24.7 s file, and their joined reference."""
    parts = [c for name, c in sorted(clips.items()) if name.startswith("librivox")]
    assert len(parts) == 5, "pocketsphinx-testdata is not installed (apt-get install pocketsphinx-testdata)"
    folder = tmp_path_factory.mktemp("librivox")
    listing = folder / "list.txt"
    listing.write_text("".join(f"file '{p['path']}'\n" for p in parts))
    target = folder / "librivox.wav"
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-ac", "1", "-ar", "16000", str(target))
    return target, " ".join(p["text"] for p in parts)


def make_video(audio: dict, target: Path, audio_codec: str) -> Path:
    """A real H.264 video track (a test pattern) under the clip's speech, as a film or a recorded talk has."""
    ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc2=s=320x240:r=10:d={audio['duration']}", "-i", audio["path"]),
        *("-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
        *("-c:a", audio_codec, "-shortest", str(target)),
    )
    return target


@pytest.fixture(scope="session")
def hindi_video(tmp_path_factory, clips) -> Path:
    """An MP4 film clip with Hindi speech, its name in Devanagari."""
    return make_video(clips["hindi"], tmp_path_factory.mktemp("video") / "बॉलीवुड क्लिप - Hindi film.mp4", "aac")


@pytest.fixture(scope="session")
def english_video(tmp_path_factory, clips) -> Path:
    """A Matroska video of the JFK clip, named like users' files."""
    return make_video(clips["jfk"], tmp_path_factory.mktemp("video") / "Energy Demand in AI.mkv", "libopus")
