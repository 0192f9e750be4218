"""Job ids, folders and the manifest."""

import datetime as dt
import threading

import pytest

from pipeline import jobs
from pipeline.errors import PipelineError


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
    threads = [
        threading.Thread(target=lambda: ids.append(jobs.new_job_dir(tmp_path, user="u")[0]))
        for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 16


def test_user_names_are_made_path_safe(monkeypatch):
    monkeypatch.setenv("PIPELINE_USER", "Ana María/../x")
    assert jobs.current_user() == "ana_mar_a_x"


def test_manifest_resume_point_and_lock(tmp_path):
    manifest = jobs.Manifest.create(
        tmp_path, "job-20251203-u-0001", "transcribe", "/m.wav", ["probe", "extract"]
    )
    assert manifest.first_unfinished() == "probe"
    manifest.update("probe", state="done")
    assert jobs.Manifest.load(tmp_path).first_unfinished() == "extract"
    with jobs.locked(tmp_path), pytest.raises(PipelineError, match="already running"), jobs.locked(tmp_path):
        pass
