"""Job ids, folders and the manifest."""

import datetime as dt
import json
import logging
import threading
from pathlib import Path

import pytest

from pipeline import config, jobs
from pipeline.errors import PipelineError
from pipeline.hardware import Choice
from pipeline.mt.routing import Hop, Route
from pipeline.plan import JobPlan, settings_of
from pipeline.progress import JobLog


@pytest.mark.parametrize(
    "bad",
    [
        "../etc",
        "job-20251203-me/..-0001",
        "a/b",
        "..",
        "job-2025-me-1",
        "job-20251203-Me-0001",
        "job-20251203-me-0001/../../x",
        "",
    ],
)
def test_job_ids_with_slashes_dots_or_wrong_shape_are_rejected(bad, tmp_path):
    with pytest.raises(PipelineError, match=r"invalid job id|no job folder"):
        jobs.locate(bad, tmp_path) if "/" not in bad and not bad.startswith(".") else jobs.check_job_id(bad)


def test_job_folder_layout_and_sequence(tmp_path):
    day = dt.date(2025, 12, 3)
    first_id, first = jobs.new_job_dir(tmp_path, user="ravi", today=day)
    second_id, second = jobs.new_job_dir(tmp_path, user="ravi", today=day)
    assert first_id == "job-20251203-ravi-0001" and second_id == "job-20251203-ravi-0002"
    assert first == tmp_path / "2025" / "12" / "03" / "ravi" / first_id
    assert jobs.job_dir_for(second_id, tmp_path) == second


def test_concurrent_prepares_get_distinct_ids(tmp_path):
    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.append(jobs.new_job_dir(tmp_path, user="u")[0])) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 16


def test_user_names_are_made_path_safe(monkeypatch):
    monkeypatch.setenv("PIPELINE_USER", "Ana María/../x")
    assert jobs.current_user() == "ana_mar_a_x"


ROUTES = (Route("es", (Hop("apertium", "en", "es"),)),)


def _plan(model_dir: str = "/models/base") -> JobPlan:
    cfg = config.load(cli={"WHISPER_MODEL": "base", "PIPELINE_PROFILE": "cpu"}, project_config=Path("/nonexistent"))
    chain = (Choice("faster-whisper", "cpu", "int8", 4, 120.0), Choice("whisperx", "cpu", "int8", 4, 120.0))
    return JobPlan("cpu", "base", chain, (model_dir, None), ROUTES, settings_of(cfg))


def _manifest(folder, **extra):
    return jobs.Manifest.create(
        folder,
        "job-20251203-u-0001",
        "translate",
        "/m.wav",
        ["probe", "extract", "transcribe", "translate", "subtitles"],
        **_plan().to_record(),
        media_info={"duration": 11.0, "video_streams": 0},
        flags={"WHISPER_MODEL": "base"},
        **extra,
    )


def test_manifest_stage_records_and_lock(tmp_path):
    manifest = _manifest(tmp_path)
    manifest.stage_finished("probe", "done", 0.0, {"duration": 11.0}, started=manifest.created)
    manifest.stage_started("extract")
    loaded = jobs.Manifest.load(tmp_path)
    assert [loaded.state(name) for name in loaded.stage_names] == ["done", "running", "pending", "pending", "pending"]
    assert list(loaded.stage("probe")) == ["state", "started", "finished", "wall_s", "duration"]
    assert not jobs.runner_alive(tmp_path)
    with jobs.locked(tmp_path), pytest.raises(PipelineError, match="already running"), jobs.locked(tmp_path):
        pass
    with jobs.locked(tmp_path):
        assert jobs.runner_alive(tmp_path)  # what `status` asks: is anybody running this job?
    assert not jobs.runner_alive(tmp_path)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("language",), "en/../../x", "language="),
        (("routes", 0, "target"), "../es", "routes[0].target="),
        (("routes", 0, "hops", 0, "tgt"), "es/../../../x", "routes[0].hops[0].tgt="),
        (("routes", 0, "hops", 0, "engine"), "rm -rf", "routes[0].hops[0].engine="),
        (("stages", "subtitles", "state"), "finished", "stages.subtitles.state="),
        (("stages",), {"probe": {"state": "done"}, "evil": {"state": "pending"}}, "stages="),
        (("media",), ["/m.wav"], "media="),
        (("media",), "relative.wav", "media="),
        (("workflow",), "format-disk", "workflow="),
        (("job_id",), "job-1/../..", "job_id="),
        (("media_info", "duration"), "11", "media_info.duration="),
        (("flags",), {"MEDIA": "/etc/shadow"}, "flags.MEDIA="),
        (("flags",), {"API_TOKEN": "x"}, "flags.API_TOKEN="),
        (("stages", "transcribe", "wall_s"), "fast", "stages.transcribe.wall_s="),
        (("chain", 0, "backend"), "rm -rf", "chain[0].backend="),
        (("chain", 1, "device"), "tpu", "chain[1].device="),
        (("chain", 0), {"backend": "mlx", "evil": 1}, "chain[0]="),
        (("model_dirs", 0), "models/base", "model_dirs[0]="),
        (("model_dirs",), ["/models/base"], "model_dirs="),
    ],
)
def test_a_crafted_manifest_is_refused_naming_the_field(tmp_path, path, value, field):
    """A job folder is input: a manifest whose fields would steer a path outside the job (or crash) is refused."""
    data = _manifest(tmp_path).data
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    (tmp_path / jobs.MANIFEST).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PipelineError) as caught:
        jobs.Manifest.load(tmp_path)
    assert field in str(caught.value) and "\n" not in str(caught.value)


def test_the_plan_a_manifest_records_is_the_plan_it_gives_back(tmp_path):
    """What prepare records is what a run reads: chain, model folders and routes, unchanged."""
    plan = _plan(str(tmp_path))
    manifest = _manifest(tmp_path)
    manifest.record_plan(plan)
    loaded = jobs.Manifest.load(tmp_path).plan
    assert loaded == plan and loaded.links == [(plan.chain[0], str(tmp_path))]  # whisperx: no model, no link
    assert loaded.chain[0].guards == plan.chain[0].guards and loaded.routes == ROUTES


def test_a_plan_is_outdated_by_a_changed_setting_or_a_model_gone(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    plan = _plan(str(tmp_path))
    same = config.load(cli={"WHISPER_MODEL": "base", "PIPELINE_PROFILE": "cpu"}, project_config=Path("/nonexistent"))
    assert plan.outdated(same) is None
    other = config.load(cli={"WHISPER_MODEL": "tiny.en", "PIPELINE_PROFILE": "cpu"}, project_config=Path("/none"))
    assert plan.outdated(other) == "WHISPER_MODEL differ from the plan's"
    threads = config.load(
        cli={"WHISPER_MODEL": "base", "PIPELINE_PROFILE": "cpu", "WHISPER_THREADS": "1"}, project_config=Path("/none")
    )
    assert plan.outdated(threads) is None  # not a setting the plan follows from
    (tmp_path / "model.bin").unlink()
    assert plan.outdated(same) == f"the model folder {tmp_path} holds no model any more"


def test_a_job_id_longer_than_a_file_name_is_invalid_not_a_traceback(tmp_path):
    for job in ("job-20251203-u-" + "1" * 300, "x" * 300):
        with pytest.raises(PipelineError, match=r"invalid job id|no job folder"):
            jobs.locate(job, tmp_path)


def test_an_out_root_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PipelineError, match=r"cannot create a job folder under .*file/out: Not a directory"):
        jobs.new_job_dir(tmp_path / "file" / "out")


def test_a_job_log_that_cannot_be_written_is_one_warning_not_a_traceback_per_record(tmp_path, capsys):
    """/dev/full answers every write with ENOSPC, as a full disk does; a folder that is gone fails the open."""
    for path in (Path("/dev/full"), tmp_path / "gone" / "pipeline.log"):
        logger = logging.getLogger(f"test.joblog.{path}")
        logger.propagate = False
        logger.addHandler(JobLog(path))
        for n in range(3):
            logger.warning("record %d", n)
        err = capsys.readouterr().err
        assert err.count("warning: cannot write the job log") == 1 and "Traceback" not in err, err
        assert ("No space left on device" if path.name == "full" else "No such file or directory") in err
