"""What a batch takes (files, folders, @lists), how a file finds its job again, what an actor asks Ray for, and the
head node a local instance gets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.batch import _profile
from pipeline.batch.cluster import _lean_head, actor_options
from pipeline.batch.inputs import existing_jobs, expand, job_key
from pipeline.errors import PipelineError
from pipeline.profiles import load_matrix

from .harness import LIBRIVOX, pipeline


def test_folders_lists_and_files_expand_to_media_in_order_once(tmp_path: Path) -> None:
    media = tmp_path / "films"
    (media / "b").mkdir(parents=True)
    (media / ".hidden").mkdir()
    for name in ("a.mp4", "b/c.MKV", "b/notes.txt", ".hidden/x.wav", "poster.jpg", ".d.wav"):
        (media / name).write_bytes(b"x")
    out = media / "out"  # the output root inside the folder: its outputs are never taken as media
    (out / "2026").mkdir(parents=True)
    (out / "2026" / "film.subtitled.mp4").write_bytes(b"x")
    listing = tmp_path / "lists" / "day.txt"
    listing.parent.mkdir()
    listing.write_text("# the day's recordings\n../films/a.mp4\n\n../other.txt\n")
    found = expand([str(media), f"@{listing}", str(media / "a.mp4")], out)
    assert found == [media / "a.mp4", media / "b" / "c.MKV", tmp_path / "other.txt"]


def test_an_unreadable_list_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"cannot read the media list .*missing.txt.*allowed: a UTF-8 file"):
        expand([f"@{tmp_path / 'missing.txt'}"], tmp_path / "out")


def test_a_file_finds_its_job_by_media_workflow_and_flags(tmp_path: Path) -> None:
    def job(seq: int, flags: dict[str, str], states: list[str], created: str) -> Path:
        folder = tmp_path / "2026" / "12" / "01" / "u" / f"job-20261201-u-{seq:04d}"
        folder.mkdir(parents=True)
        stages = {name: {"state": state} for name, state in zip(("probe", "extract"), states, strict=True)}
        data = {"media": "/m/a.wav", "workflow": "transcribe", "flags": flags, "created": created}
        data |= {"media_stat": {"size": 3, "mtime_ns": 7}, "stages": stages}
        (folder / "manifest.json").write_text(json.dumps(data))
        return folder

    done = job(1, {"SOURCE_LANGUAGE": "en"}, ["done", "done"], "2026-12-01T10:00:00")
    job(2, {"SOURCE_LANGUAGE": "en"}, ["done", "failed"], "2026-12-01T11:00:00")  # newer, unfinished
    other = job(3, {"SOURCE_LANGUAGE": "es"}, ["done", "pending"], "2026-12-01T09:00:00")
    found = existing_jobs(tmp_path)
    stat = {"size": 3, "mtime_ns": 7}
    assert found[job_key("/m/a.wav", "transcribe", {"SOURCE_LANGUAGE": "en"}, stat)] == (done, True)
    assert found[job_key("/m/a.wav", "transcribe", {"SOURCE_LANGUAGE": "es"}, stat)] == (other, False)
    changed = {"size": 4, "mtime_ns": 7}  # the media file changed since: a new job
    assert job_key("/m/a.wav", "transcribe", {"SOURCE_LANGUAGE": "en"}, changed) not in found
    assert job_key("/m/a.wav", "subtitle", {"SOURCE_LANGUAGE": "en"}, stat) not in found


@pytest.mark.parametrize("profile", sorted(load_matrix().profiles))
def test_an_actor_asks_ray_for_a_gpu_exactly_when_its_profile_runs_on_cuda(profile: str) -> None:
    """Resolved from the matrix file, for machines with and without a GPU (none is needed to run this)."""
    resolved, _ = _profile({"WORKFLOW": "transcribe", "PIPELINE_PROFILE": profile})
    assert resolved.name == profile
    cuda = load_matrix().profile(profile).runtime.device == "cuda"
    # A machine with a GPU: the cuda profile's actors each hold one, wherever Ray places them.
    assert actor_options(resolved, 1, joined=True) == {"num_cpus": 1, "num_gpus": 1 if cuda else 0}
    # This machine alone: its CPU, as a single run of the cuda profile here falls back to it.
    assert actor_options(resolved, 0, joined=False) == {"num_cpus": 1, "num_gpus": 0}
    if cuda:  # joining a cluster from here would plan GPU jobs for a CPU
        with pytest.raises(PipelineError, match=r"needs a GPU, and this machine has none.*GPU node"):
            actor_options(resolved, 0, joined=True)
    else:
        assert actor_options(resolved, 0, joined=True)["num_gpus"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "allowed: at least 1 worker"),
        (["--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1 (Connection refused)"),
        (["--address", "head"], "cannot reach the Ray cluster at head (not HOST:PORT)"),
        (["-s", "xx"], "xx"),
    ],
)
def test_bad_batch_options_are_one_line_errors_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0930.wav", media)
    out = tmp_path / "out"
    result = pipeline("batch", str(media), "-w", "transcribe", "--model", "tiny.en", "--out", str(out), *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("pipeline: error: "), result.stderr
    assert message in result.stderr
    assert not out.exists()


def test_a_local_batch_without_a_loopback_network_is_a_one_line_error(tmp_path: Path) -> None:
    """In a network namespace of its own (`unshare -rn`: not even the loopback is up) Ray's processes cannot reach
    each other: Ray's start used to time out after many minutes, in its traceback."""
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0930.wav", media)
    out = tmp_path / "out"
    args = ("batch", str(media), "-w", "transcribe", "--model", "tiny.en", "--out", str(out))
    result = pipeline(*args, wrap=("unshare", "-rn"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "cannot start a local Ray instance: no loopback network" in result.stderr
    assert not out.exists()


def test_a_folder_without_media_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    result = pipeline("batch", str(tmp_path), "-w", "transcribe", "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "no media files in" in result.stderr and result.stderr.count("\n") == 1


def test_a_local_instance_gets_a_head_without_dashboard_monitor_or_log_monitor() -> None:
    """While ray.init runs, the head node it builds is ours: the two switches `ray start` has set, the API server
    skipped (a real batch's processes: tests/batch/test_batch.py); only a head node, and only for that call."""
    from ray._private import node as ray_node
    from ray._private.parameter import RayParams

    original = ray_node.Node
    with _lean_head():
        lean = ray_node.Node
        assert lean is not original and issubclass(lean, original)
        params = RayParams(num_cpus=1)
        made: list[tuple[Any, dict[str, Any]]] = []
        original_init = original.__init__
        try:  # the head's own start, without starting anything: what the subclass hands it is what counts
            original.__init__ = lambda self, ray_params, *a, **k: made.append((ray_params, k))  # type: ignore[method-assign]
            lean(params, head=True, shutdown_at_exit=False)
            lean(RayParams(num_cpus=1), head=False, connect_only=True)
        finally:
            original.__init__ = original_init  # type: ignore[method-assign]
        (head_params, _), (other_params, _) = made
        assert (head_params.no_monitor, head_params.include_log_monitor) == (True, False)
        assert (other_params.no_monitor, other_params.include_log_monitor) == (False, None)
        assert vars(lean)["start_api_server"](None, include_dashboard=False, raise_on_failure=False) is None
    assert ray_node.Node is original
